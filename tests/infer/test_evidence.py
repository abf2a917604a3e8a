"""Known-answer tests of the ELBO and IWAE estimators on probabilistic PCA (float64)."""

import pytest
import torch

from pyrovi.guides import AmortizedNormal
from pyrovi.infer import elbo, fit, log_importance_weights, log_marginal_likelihood
from tests.infer.ppca import PPCA


@pytest.fixture
def ppca(device):
    return PPCA(device=device)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_exact_posterior_gives_exact_evidence(ppca, k):
    x = ppca.sample(50)
    exact = ppca.log_evidence(x)
    iwae = log_marginal_likelihood(ppca.model, ppca.exact_guide, x, num_samples=k, batch_size=16)
    bound = elbo(ppca.model, ppca.exact_guide, x, num_samples=k)
    assert iwae.shape == bound.shape == (50,)
    assert iwae.dtype == torch.float64
    torch.testing.assert_close(iwae, exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(bound, exact, atol=1e-6, rtol=0)


def test_chunking_does_not_change_the_estimate(ppca):
    x = ppca.sample(20)
    torch.manual_seed(3)
    a = log_marginal_likelihood(ppca.model, ppca.prior_guide, x, num_samples=64, batch_size=20)
    torch.manual_seed(3)
    b = log_marginal_likelihood(
        ppca.model, ppca.prior_guide, x, num_samples=64, batch_size=20, max_samples_per_pass=20 * 8
    )
    # different chunking draws the same number of samples; both estimate the same quantity
    assert (a - b).abs().mean() < 0.5
    log_w = log_importance_weights(ppca.model, ppca.prior_guide, x, num_samples=5)
    assert log_w.shape == (5, 20)


def test_iwae_with_prior_guide_rises_towards_exact_from_below(ppca):
    x = ppca.sample(200)
    exact = ppca.log_evidence(x).mean()
    estimates = [
        log_marginal_likelihood(ppca.model, ppca.prior_guide, x, num_samples=k).mean()
        for k in (1, 10, 100, 1000, 10000)
    ]
    gaps = [float(exact - e) for e in estimates]
    # below the exact value (beyond Monte Carlo noise) and rising with K ...
    assert all(g > 0 for g in gaps[:-1]), gaps
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    # ... until it is indistinguishable from it
    assert abs(gaps[-1]) < 0.02, gaps


def test_trained_amortized_normal_reaches_exact_evidence(ppca, device):
    x = ppca.sample(2000)
    guide = AmortizedNormal(ppca.d, ppca.k, hidden_dims=()).double()
    fit(
        ppca.model,
        guide,
        x,
        epochs=60,
        batch_size=100,
        lr=1e-2,
        progress=False,
        seed=0,
        device=device,
    )
    x_test = ppca.sample(500, seed=7)
    exact = ppca.log_evidence(x_test).mean()
    iwae = log_marginal_likelihood(ppca.model, guide, x_test, num_samples=1000).mean()
    bound = elbo(ppca.model, guide, x_test, num_samples=100).mean()
    assert float(exact - iwae) < 0.02
    assert float(iwae) - float(exact) < 0.02
    assert bound < iwae


def test_global_latent_is_rejected_with_a_clear_error():
    import pyro
    import pyro.distributions as dist

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="site 'mu' is outside the plate 'data'"):
        log_marginal_likelihood(model, guide, torch.zeros(3), num_samples=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_arguments(ppca, kwargs, match):
    with pytest.raises(ValueError, match=match):
        log_marginal_likelihood(ppca.model, ppca.exact_guide, ppca.sample(3), **kwargs)


def test_deterministic_sites_outside_the_plate_are_ignored():
    import pyro
    import pyro.distributions as dist

    def model(x):
        z_bar = pyro.deterministic("zbar", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z + z_bar, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    x = torch.randn(4)
    lw = log_importance_weights(model, guide, x, num_samples=3)
    assert lw.shape == (3, 4) and torch.isfinite(lw).all()
