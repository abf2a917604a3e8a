"""The small-model fast path: autoguides evaluated without Pyro's handlers give the same draws,
loss and gradients as through Pyro, bit for bit, and anything unrecognised goes through Pyro."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import (
    AutoDiagonalNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from pyro.nn import PyroModule, PyroSample

from pyrovi.guides import FlowGuide
from pyrovi.infer import FastTrace_ELBO, fit
from pyrovi.infer import fused_guides as fg

Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def eight_schools(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


def _data(device, dtype=torch.float64):
    return (
        torch.tensor(Y, dtype=dtype, device=device),
        torch.tensor(SIGMA, dtype=dtype, device=device),
    )


GUIDES = {
    "normal": AutoNormal,
    "diagonal": AutoDiagonalNormal,
    "mvn": AutoMultivariateNormal,
    "flow": lambda m: FlowGuide(m, hidden_features=8),
}


def _guide(kind, model, args, device):
    torch.set_default_dtype(torch.float64)
    try:
        guide = GUIDES[kind](model).to(device)
        guide(*args)  # builds the prototype and the parameters in float64 on the device
    finally:
        torch.set_default_dtype(torch.float32)
    return guide


def _steps(model, guide, args, fused, steps=3, seed=1, wrap=None):
    """Losses and gradients of ``steps`` evaluations (no optimizer step in between)."""
    elbo = FastTrace_ELBO(fused=fused)
    pyro.set_rng_seed(seed)
    losses, grads = [], []
    with pyro.validation_enabled(False):
        for _ in range(steps):
            store = [p for _, p in pyro.get_param_store().named_parameters()]
            for p in list(guide.parameters()) + store:
                p.grad = None
            with wrap() if wrap else poutine.scale(scale=1.0):
                losses.append(elbo.loss_and_grads(model, guide, *args))
            grads.append([p.grad.clone() for p in guide.parameters()])
    return losses, grads


def _assert_identical(a, b):
    assert a[0] == b[0]
    for ga, gb in zip(a[1], b[1]):
        for x, y in zip(ga, gb):
            assert torch.equal(x, y)


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("kind", sorted(GUIDES))
def test_fused_guide_equals_pyro_bit_for_bit(kind, local, device):
    args = _data(device)
    with pyro.settings.context(module_local_params=local):
        guide = _guide(kind, eight_schools, args, device)
        fused = _steps(eight_schools, guide, args, fused=True)
        assert isinstance(fg._PLANS.get(guide), fg.FusedGuide)  # the fast path was taken
        through_pyro = _steps(eight_schools, guide, args, fused=False)
    _assert_identical(fused, through_pyro)
    # and Pyro's own Trace_ELBO gives the same loss and gradients from the same seed
    pyro.set_rng_seed(1)
    with pyro.validation_enabled(False), pyro.settings.context(module_local_params=local):
        loss = Trace_ELBO().differentiable_loss(eight_schools, guide, *args)
        grads = torch.autograd.grad(loss, list(guide.parameters()))
    torch.testing.assert_close(loss.item(), fused[0][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, fused[1][0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_flow_guide_skips_the_module_statement_only_when_nothing_is_to_register(device):
    """FlowGuide's posterior is built from its flow directly while every flow parameter is in
    Pyro's param store as itself; after the store is cleared, the next steps read ``guide.flow``
    through Pyro again, which registers them anew."""
    args = _data(device)
    with pyro.settings.context(module_local_params=False):
        guide = _guide("flow", eight_schools, args, device)
        _steps(eight_schools, guide, args, fused=True, steps=1)
        plan = fg._PLANS.get(guide)
        assert isinstance(plan, fg.FusedGuide) and plan._flow_posterior() is not None
        names = set(pyro.get_param_store().keys())
        assert any("flow" in n for n in names)
        pyro.clear_param_store()
        assert plan._flow_posterior() is None  # not registered: Pyro's path registers them
        _steps(eight_schools, guide, args, fused=True, steps=1)
        assert set(pyro.get_param_store().keys()) >= {n for n in names if "flow" in n}
        assert plan._flow_posterior() is not None
    with pyro.settings.context(module_local_params=True):
        assert plan._flow_posterior() is not None


def simplex_model(y, sigma):
    """Latents with event dimensions: a simplex (stick-breaking, event_dim 1) and a vector."""
    w = pyro.sample("w", dist.Dirichlet(torch.ones(3, dtype=y.dtype, device=y.device)))
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([3]).to_event(1))
    with pyro.plate("schools", len(y)):
        pyro.sample("obs", dist.Normal((w * locs).sum(), sigma), obs=y)


@pytest.mark.parametrize("kind", sorted(GUIDES))
def test_event_dim_latents_bit_for_bit(kind, device):
    args = _data(device)
    guide = _guide(kind, simplex_model, args, device)
    fused = _steps(simplex_model, guide, args, fused=True)
    assert isinstance(fg._PLANS.get(guide), fg.FusedGuide)
    _assert_identical(fused, _steps(simplex_model, guide, args, fused=False))


@pytest.mark.parametrize("kind", ["normal", "diagonal"])
def test_scaling_handlers_are_reproduced(kind, device):
    args = _data(device)
    guide = _guide(kind, eight_schools, args, device)
    wrap = lambda: poutine.scale(scale=0.37)  # noqa: E731
    fused = _steps(eight_schools, guide, args, fused=True, wrap=wrap)
    assert isinstance(fg._PLANS.get(guide), fg.FusedGuide)
    _assert_identical(fused, _steps(eight_schools, guide, args, fused=False, wrap=wrap))


def test_fit_histories_identical_with_and_without_fused_guide(device):
    """fit: data scaling of a minibatched plate, β / KL annealing (latent scaling), Adam steps."""
    n = 40
    x = torch.randn(n, dtype=torch.float64, device=device) * 2 + 1

    def model(x):
        loc = pyro.sample("loc", dist.Normal(0.0, 10.0))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(loc, scale), obs=x)

    histories, params = [], []
    for fused in (True, False):
        pyro.clear_param_store()
        guide = _guide("normal", model, (x,), device)
        result = fit(
            model,
            guide,
            x,
            epochs=4,
            batch_size=16,
            kl_annealing=2,
            loss=FastTrace_ELBO(fused=fused),
            progress=False,
            seed=3,
        )
        histories.append(result.history["train_elbo"])
        params.append([p.detach().clone() for p in guide.parameters()])
    assert histories[0] == histories[1]
    for a, b in zip(*params):
        assert torch.equal(a, b)


def test_pyro_module_model_with_pyro_sample(device):
    """The regression idiom: PyroModule[nn.Linear] with PyroSample priors."""

    class Regression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[torch.nn.Linear](3, 1)
            self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
            self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([1]).to_event(1))

        def forward(self, x, y=None):
            sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
            mean = self.linear(x).squeeze(-1)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("obs", dist.Normal(mean, sigma), obs=y)

    torch.set_default_dtype(torch.float64)
    try:
        model = Regression().to(device)
    finally:
        torch.set_default_dtype(torch.float32)
    x = torch.randn(30, 3, dtype=torch.float64, device=device)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, device=device) + 0.1
    guide = _guide("normal", model, (x, y), device)
    fused = _steps(model, guide, (x, y), fused=True)
    assert isinstance(fg._PLANS.get(guide), fg.FusedGuide)
    _assert_identical(fused, _steps(model, guide, (x, y), fused=False))


def test_other_handlers_go_through_pyro(device):
    args = _data(device)
    guide = _guide("normal", eight_schools, args, device)
    mask = lambda: poutine.mask(mask=torch.tensor(False, device=device))  # noqa: E731
    fused = _steps(eight_schools, guide, args, fused=True, wrap=mask)
    assert fg._PLANS.get(guide) is None  # never planned: the step went through Pyro
    _assert_identical(fused, _steps(eight_schools, guide, args, fused=False, wrap=mask))


class _OwnForward(AutoNormal):
    def forward(self, *args, **kwargs):
        return super().forward(*args, **kwargs)


def _subsampled(y, sigma):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("schools", 8, subsample_size=4) as idx:
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + eta, sigma[idx]), obs=y[idx])


@pytest.mark.parametrize(
    "make, model",
    [
        (_OwnForward, eight_schools),  # a forward of its own
        (
            lambda m: AutoNormal(m, create_plates=lambda y, s: pyro.plate("schools", 8)),
            eight_schools,
        ),
        (AutoNormal, _subsampled),  # a subsampled plate
    ],
)
def test_unrecognised_guides_stay_on_pyro(make, model, device):
    args = _data(device)
    torch.set_default_dtype(torch.float64)
    try:
        guide = make(model).to(device)
        guide(*args)
    finally:
        torch.set_default_dtype(torch.float32)
    fused = _steps(model, guide, args, fused=True)
    assert fg._PLANS.get(guide) is False
    _assert_identical(fused, _steps(model, guide, args, fused=False))


def test_a_plan_that_differs_from_pyro_is_rejected(monkeypatch, device):
    args = _data(device)
    guide = _guide("normal", eight_schools, args, device)
    original = fg.FusedGuide._run_normal

    def off_by_a_bit(self, outer):
        sites = original(self, outer)
        value = sites["mu_unconstrained"]["value"]
        sites["mu_unconstrained"]["value"] = torch.nextafter(value, value + 1)
        return sites

    monkeypatch.setattr(fg.FusedGuide, "_run_normal", off_by_a_bit)
    fused = _steps(eight_schools, guide, args, fused=True)
    assert fg._PLANS.get(guide) is False
    _assert_identical(fused, _steps(eight_schools, guide, args, fused=False))


def test_plan_follows_replaced_parameters(device):
    args = _data(device)
    guide = _guide("normal", eight_schools, args, device)
    _steps(eight_schools, guide, args, fused=True, steps=1)
    plan = fg._PLANS[guide]
    assert plan.current()
    with torch.no_grad():  # in-place updates (what optimizers do) keep the plan
        guide.locs.mu_unconstrained.add_(0.5)
    assert plan.current()
    guide.locs.mu_unconstrained = torch.nn.Parameter(guide.locs.mu_unconstrained.detach() + 1)
    assert not plan.current()
    fused = _steps(eight_schools, guide, args, fused=True)
    assert fg._PLANS[guide] is not plan and isinstance(fg._PLANS[guide], fg.FusedGuide)
    _assert_identical(fused, _steps(eight_schools, guide, args, fused=False))


def test_fused_argument_is_checked():
    with pytest.raises(TypeError, match="fused must be True or False, got 'yes'"):
        FastTrace_ELBO(fused="yes")
