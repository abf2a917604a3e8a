"""Flow guides: AmortizedFlow on PPCA, Trace_ELBO by hand, FlowGuide on a Gaussian posterior."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovi.distributions.flow_layers import FLOW_KINDS
from pyrovi.guides import AmortizedFlow, AmortizedNormal, FlowGuide
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


def _gaussian_posterior_model(x):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(theta, 1.0).to_event(1), obs=x)


def test_flow_guide_reaches_a_gaussian_posterior():
    torch.manual_seed(0)
    x = torch.randn(20, 2) + torch.tensor([1.0, -2.0])
    # conjugate: theta | x ~ N(sum(x) / (n + 1), 1 / (n + 1))
    n = x.shape[0]
    post = dist.Normal(x.sum(0) / (n + 1), (1.0 / (n + 1)) ** 0.5).to_event(1)
    guide = FlowGuide(_gaussian_posterior_model, flow="iaf", num_layers=2, hidden_features=16)
    for lr, steps in ((1e-2, 800), (2e-3, 400), (4e-4, 300)):  # step-decayed learning rate
        fit(
            _gaussian_posterior_model,
            guide,
            x,
            epochs=steps,
            batch_size=n,
            lr=lr,
            num_particles=8,
            progress=False,
            seed=0,
        )
    q = guide.get_posterior()
    with torch.no_grad():
        theta, log_q = q.sample_and_log_prob((20000,))
        kl = (log_q - post.log_prob(theta)).mean()
    assert float(kl) < 0.01
    median = guide.median()["theta"]
    torch.testing.assert_close(median, post.mean, atol=0.03, rtol=0)
    quantiles = guide.quantiles([0.1, 0.9])["theta"]
    assert (
        quantiles.shape == (2, 2)
        and (quantiles[0] < median).all()
        and (median < quantiles[1]).all()
    )


def test_flow_guide_handles_constrained_sites():
    def model(x):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, scale), obs=x)

    x = 3.0 * torch.randn(50)
    guide = FlowGuide(model, flow="nsf", num_layers=2, hidden_features=8)
    fit(model, guide, x, epochs=300, batch_size=50, lr=1e-2, progress=False, seed=0)
    samples = guide.sample_posterior(500)["scale"]
    assert samples.shape == (500,) and (samples > 0).all()
    assert 2.0 < float(guide.median()["scale"]) < 4.0


def test_bad_flow_names():
    with pytest.raises(ValueError, match="flow must be one of"):
        AmortizedFlow(5, 2, flow="glow")
    with pytest.raises(ValueError, match="flow must be one of"):
        FlowGuide(_gaussian_posterior_model, flow="glow")
