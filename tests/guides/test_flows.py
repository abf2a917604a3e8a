"""Amortized flow guides: AmortizedFlow on PPCA, Trace_ELBO by hand (FlowGuide: test_flow_guide)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovi.distributions.flow_layers import FLOW_KINDS
from pyrovi.guides import AmortizedFlow, AmortizedNormal
from pyrovi.infer import elbo, fit, log_marginal_likelihood
from pyrovi.models import VAE
from tests.infer.ppca import PPCA


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_amortized_flow_is_a_drop_in_guide(kind, device):
    torch.manual_seed(0)
    model = VAE(12, 3, hidden_dims=(16,)).to(device)
    guide = AmortizedFlow(12, 3, flow=kind, hidden_dims=(16,), hidden_features=8).to(device)
    x = (torch.rand(10, 12, device=device) < 0.4).float()
    result = fit(model, guide, x, epochs=2, batch_size=5, progress=False, seed=0)
    assert all(torch.isfinite(torch.tensor(result.history["train_elbo"])))
    ll = log_marginal_likelihood(model, guide, x, num_samples=8)
    bound = elbo(model, guide, x, num_samples=8)
    assert ll.shape == bound.shape == (10,) and torch.isfinite(ll).all()
    vectorized = Trace_ELBO(num_particles=4, vectorize_particles=True)
    vectorized.differentiable_loss(model, guide, x).backward()
    assert all(p.grad is not None for p in guide.parameters())


def test_trace_elbo_with_a_flow_guide_equals_the_hand_computed_elbo():
    torch.set_default_dtype(torch.float64)
    model = VAE(6, 2, hidden_dims=(8,)).double()
    guide = AmortizedFlow(6, 2, flow="iaf", hidden_dims=(8,), hidden_features=8).double()
    x = (torch.rand(4, 6) < 0.5).double()
    pyro.set_rng_seed(11)
    loss = Trace_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(11)
    with torch.no_grad():
        z, log_q = guide.distribution(x).sample_and_log_prob()
        log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = dist.Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
    assert loss == pytest.approx(-(log_prior + log_lik - log_q).sum().item(), rel=1e-10)


@pytest.mark.parametrize("kind", ["iaf", "realnvp"])
def test_flow_guide_closes_the_ppca_gap_that_mean_field_leaves(kind):
    torch.set_default_dtype(torch.float64)
    ppca = PPCA(sigma=1.0, correlation=0.8)
    assert ppca.diagonal_gap() > 0.3  # the best diagonal Gaussian loses > 0.3 nats per point
    x, x_test = ppca.sample(2000), ppca.sample(1000, seed=7)
    exact = ppca.log_evidence(x_test).mean()
    gaps = {}
    for name, guide in {
        "normal": AmortizedNormal(5, 2, hidden_dims=()),
        kind: AmortizedFlow(5, 2, flow=kind, num_layers=2, hidden_features=16, hidden_dims=()),
    }.items():
        torch.manual_seed(0)
        for lr in (1e-2, 2e-3, 4e-4):  # a step-decayed learning rate: fit once per phase
            fit(ppca.model, guide, x, epochs=20, batch_size=100, lr=lr, progress=False, seed=0)
        gaps[name] = float(exact - elbo(ppca.model, guide, x_test, num_samples=50).mean())
    assert gaps["normal"] > 0.3, gaps
    assert gaps[kind] < 0.02, gaps
    assert gaps[kind] < 0.5 * gaps["normal"], gaps


def test_bad_flow_names():
    with pytest.raises(ValueError, match="flow must be one of"):
        AmortizedFlow(5, 2, flow="glow")
