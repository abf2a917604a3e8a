"""FastTrace_ELBO computes Trace_ELBO's estimator; Trace and TraceMeanField agree in expectation."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovi.guides import AmortizedNormal
from pyrovi.infer import FastTrace_ELBO
from pyrovi.models import VAE


def _pair(likelihood="bernoulli", device="cpu"):
    model = VAE(12, 3, likelihood=likelihood, hidden_dims=(16,)).to(device)
    guide = AmortizedNormal(12, 3, hidden_dims=(16,)).to(device)
    return model, guide


@pytest.mark.parametrize("num_particles, vectorize", [(1, False), (3, False), (5, True)])
def test_fast_trace_elbo_equals_trace_elbo(num_particles, vectorize, device):
    model, guide = _pair(device=device)
    x = torch.rand(8, 12, device=device)
    kwargs = dict(num_particles=num_particles, vectorize_particles=vectorize)
    pyro.set_rng_seed(1)
    with pyro.validation_enabled(False):
        fast = FastTrace_ELBO(**kwargs).differentiable_loss(model, guide, x)
    grads_fast = torch.autograd.grad(fast, list(guide.parameters()))
    pyro.set_rng_seed(1)
    ref = Trace_ELBO(**kwargs).differentiable_loss(model, guide, x)
    grads_ref = torch.autograd.grad(ref, list(guide.parameters()))
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_fast_trace_elbo_delegates_non_reparameterized_sites():
    def model():
        pyro.sample("k", dist.Bernoulli(0.3))

    def guide():
        p = pyro.param("p", torch.tensor(0.6), constraint=dist.constraints.unit_interval)
        pyro.sample("k", dist.Bernoulli(p))

    loss = FastTrace_ELBO()
    with pyro.validation_enabled(False):
        value = loss.differentiable_loss(model, guide)
    value.backward()
    # score-function surrogate from Trace_ELBO: the gradient exists and is finite
    grad = pyro.param("p").unconstrained().grad
    assert grad is not None and torch.isfinite(grad).all()


def test_trace_and_mean_field_elbo_agree_in_expectation():
    torch.set_default_dtype(torch.float64)
    model, guide = _pair("gaussian")
    model, guide = model.double(), guide.double()
    x = torch.randn(16, 12, dtype=torch.float64)
    n = 4000
    with torch.no_grad():
        trace = Trace_ELBO(num_particles=n, vectorize_particles=True).loss(model, guide, x)
        mf = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True).loss(model, guide, x)
        # Monte Carlo standard error of the Trace_ELBO estimate
        singles = torch.tensor([Trace_ELBO().loss(model, guide, x) for _ in range(200)])
    stderr = float(singles.std()) / n**0.5
    assert abs(trace - mf) < 5 * stderr + 1e-6, (trace, mf, stderr)


def test_skipping_param_registration_changes_nothing_but_the_param_sites():
    from pyro import poutine

    from pyrovi.nn import skip_param_registration

    model, guide = _pair()
    x = torch.rand(8, 12)
    with pyro.validation_enabled(False):
        pyro.set_rng_seed(2)
        with poutine.trace(param_only=True) as registered:
            a = FastTrace_ELBO().loss(model, guide, x)
        pyro.set_rng_seed(2)
        with poutine.trace(param_only=True) as skipped, skip_param_registration():
            b = FastTrace_ELBO().loss(model, guide, x)
    assert a == b
    assert len(registered.trace.nodes) == len(list(model.parameters())) + len(
        list(guide.parameters())
    )
    assert len(skipped.trace.nodes) == 0
