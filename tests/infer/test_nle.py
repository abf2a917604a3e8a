"""Neural likelihood estimation: the learned likelihood inside Pyro models (NUTS on a Gaussian
linear model against its analytic posterior, plates of i.i.d. trials, per-group parameters),
the ensemble posterior sampler, sequential NLE, save/load and argument errors."""

import functools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC, NUTS, Predictive
from pyro.ops.stats import effective_sample_size

from pyrovi.infer import (
    NLE,
    NPE,
    CheckpointError,
    NotTrainedError,
    ensemble_mcmc,
    expected_coverage,
)
from pyrovi.models import GaussianLinear, RickerModel, WoodSummary

PRIOR_VAR, NOISE_VAR = 1.0, 0.5
Y = torch.tensor([[0.5, 0.1], [0.2, -0.4], [0.1, 0.0]])  # three i.i.d. trials of a 2-d y


@functools.lru_cache(maxsize=2)
def _trained(device_name: str) -> NLE:
    """A small NLE of y | θ ~ N(θ, 0.5 I), 5000 simulations (a few seconds)."""
    pyro.set_rng_seed(0)
    model = GaussianLinear(2, PRIOR_VAR, NOISE_VAR).to(device_name)
    nle = NLE(model, ["theta"], "y", num_layers=2, hidden_features=32)
    nle.train(5000, seed=0, progress=False)
    return nle


def _exact(y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Posterior mean and per-coordinate variance of θ given i.i.d. trials y (n, 2)."""
    var = 1.0 / (1.0 / PRIOR_VAR + len(y) / NOISE_VAR)
    return var * y.sum(0) / NOISE_VAR, var


def user_model(nle: NLE, y: torch.Tensor) -> None:
    """A user's model: a global θ with the learned likelihood of i.i.d. trials in a plate."""
    zero = torch.zeros(2, device=y.device)
    theta = pyro.sample("theta", dist.Normal(zero, PRIOR_VAR**0.5).to_event(1))
    with pyro.plate("trials", len(y)):
        pyro.sample("y", nle.likelihood(theta), obs=y)


def test_nuts_on_the_learned_likelihood_recovers_the_analytic_posterior(device):
    """NLE + Pyro's NUTS: posterior mean and covariance within 3 Monte Carlo standard errors."""
    nle = _trained(str(device))
    y = Y.to(device)
    mcmc = MCMC(NUTS(lambda y: user_model(nle, y)), 800, warmup_steps=200, disable_progbar=True)
    mcmc.run(y)
    draws = mcmc.get_samples()["theta"].cpu()  # (800, 2)
    ess = effective_sample_size(draws.unsqueeze(0), chain_dim=0, sample_dim=1)
    mean, var = _exact(Y)
    se_mean = (var / ess).sqrt()
    assert ((draws.mean(0) - mean).abs() < 3 * se_mean).all(), (draws.mean(0), mean, ess)
    cov = torch.cov(draws.T)
    se_var = var * (2.0 / ess).sqrt()
    assert ((cov.diagonal() - var).abs() < 3 * se_var).all(), (cov, var, ess)
    se_cov = var / ess.min().sqrt()  # sd of a sample covariance of independent coordinates
    assert abs(float(cov[0, 1])) < 3 * float(se_cov), cov


def test_trials_in_a_plate_are_the_product_of_per_trial_densities(device):
    nle = _trained(str(device))
    y = Y.to(device)
    trace = pyro.poutine.trace(user_model).get_trace(nle, y)
    trace.compute_log_prob()
    site = trace.nodes["y"]
    assert site["fn"].batch_shape == (3,) and site["fn"].event_shape == (2,)
    theta = trace.nodes["theta"]["value"]
    one_by_one = sum(nle.likelihood(theta).log_prob(row) for row in y)
    torch.testing.assert_close(site["log_prob_sum"], one_by_one)
    # the learned density is close to the simulator's own (a Gaussian): within 0.15 nats a trial
    exact = dist.Normal(theta, NOISE_VAR**0.5).to_event(1).log_prob(y)
    assert float((site["fn"].log_prob(y) - exact).abs().max().detach()) < 0.15


def test_per_group_parameters_and_gradients(device):
    """θ per group (nested plates), a mapping of sites, and d log q / dθ for NUTS and SVI."""
    nle = _trained(str(device))
    theta = torch.zeros(4, 2, device=device, requires_grad=True)  # 4 groups
    y = torch.randn(5, 4, 2, device=device)  # 5 trials per group

    def model() -> None:
        with pyro.plate("groups", 4, dim=-1):
            with pyro.plate("trials", 5, dim=-2):
                pyro.sample("y", nle.likelihood({"theta": theta}), obs=y)

    trace = pyro.poutine.trace(model).get_trace()
    lp = trace.nodes["y"]["fn"].log_prob(y)
    assert lp.shape == (5, 4)
    grad = torch.autograd.grad(lp.sum(), theta)[0]
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # the gradient of a Gaussian likelihood: Σ_trials (y − θ) / σ², learned to within 25%
    exact = (y - theta.detach()).sum(0) / NOISE_VAR
    assert float((grad - exact).norm() / exact.norm()) < 0.25


def test_samples_of_the_learned_likelihood_look_like_the_simulator(device):
    nle = _trained(str(device))
    theta = torch.tensor([0.5, -1.0], device=device)
    x = nle.likelihood(theta).expand([20_000]).sample()
    assert x.shape == (20_000, 2)
    torch.testing.assert_close(x.mean(0), theta, atol=0.05, rtol=0)
    torch.testing.assert_close(x.var(0), torch.full_like(theta, NOISE_VAR), atol=0.08, rtol=0)
    pred = Predictive(lambda: user_model(nle, torch.zeros(3, 2, device=device)), num_samples=4)
    assert pred()["theta"].reshape(4, -1).shape == (4, 2)


def test_ensemble_posterior_matches_the_analytic_one(device):
    nle = _trained(str(device))
    draws = nle.posterior(Y.to(device), progress=False).sample((20_000,)).cpu()
    mean, var = _exact(Y)
    # estimation error of the learned likelihood dominates (MC error ≈ 0.004 sd)
    torch.testing.assert_close(draws.mean(0), mean, atol=0.15 * var**0.5, rtol=0)
    torch.testing.assert_close(draws.var(0), torch.full((2,), var), atol=0.15 * var, rtol=0)


def test_ensemble_mcmc_on_a_bimodal_correlated_target():
    """Two equal, strongly correlated modes, three independent problems at once."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
    mode = dist.MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov)

    def log_density(x):
        return torch.logsumexp(torch.stack([mode.log_prob(x - 3), mode.log_prob(x + 3)]), 0)

    draws = ensemble_mcmc(
        log_density, 4 * torch.randn(100, 3, 2, dtype=torch.float64), 20_000, progress=False
    )
    assert draws.shape == (20_000, 3, 2)
    right = draws[..., 0] > 0
    assert ((right.double().mean(0) - 0.5).abs() < 0.05).all()
    within = draws[:, 0][right[:, 0]] - 3
    torch.testing.assert_close(torch.cov(within.T), cov, atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="at least 4 chains"):
        ensemble_mcmc(log_density, torch.zeros(3, 2, dtype=torch.float64), 10)
    with pytest.raises(ValueError, match="non-finite log-density"):
        ensemble_mcmc(lambda x: torch.full(x.shape[:-1], -math.inf), torch.zeros(8, 2), 10)


def test_nle_sampler_is_calibrated_on_gaussian_linear():
    """Expected coverage through the NLE's sampler: the learned posterior is calibrated."""
    nle = _trained("cpu")
    pyro.set_rng_seed(1)
    theta, y = nle.simulate(200, progress=False)
    result = expected_coverage(nle.sampler(progress=False, warmup=100), theta, y, 200)
    assert result.p_value > 0.01 and result.outside_band() <= 0.1, result


def test_sequential_nle_rounds_accumulate_simulations():
    torch.manual_seed(0)
    nle = NLE(
        GaussianLinear(2, PRIOR_VAR, NOISE_VAR), ["theta"], "y", num_layers=2, hidden_features=32
    )
    out = nle.train_rounds(Y, 2, 1000, seed=0, progress=False, mcmc={"warmup": 100})
    assert out.num_simulations == [1000, 2000] and out.num_proposed == [1000, 1000]
    assert len(out.rounds) == 2 and out.rounds[1].num_simulations == 2000
    draws = nle.posterior(Y, progress=False).sample((2000,))
    mean, var = _exact(Y)
    assert float((draws.mean(0) - mean).abs().max()) < 0.5 * var**0.5


def test_summary_statistics_and_ricker_parameters_by_site():
    """A Ricker NLE on Wood's summaries: the likelihood of the summaries, parameters by name."""
    pyro.set_rng_seed(0)
    model = RickerModel(num_steps=20)
    _, y_ref = NPE(model, ["log_r"], "y").simulate(200, progress=False)
    nle = NLE(model, ["log_r", "sigma", "phi"], "y", summary=WoodSummary(y_ref[0]), num_layers=1)
    nle.train(300, seed=0, progress=False, max_epochs=3)
    theta = {
        "log_r": torch.tensor([3.8, 4.0]),
        "sigma": torch.tensor(0.3),
        "phi": torch.tensor(10.0),
    }
    lik = nle.likelihood(theta)
    assert lik.batch_shape == (2,) and lik.event_shape == (20,)
    assert lik.log_prob(y_ref[:2]).shape == (2,)
    with pytest.raises(NotImplementedError, match="models summary statistics"):
        lik.sample()


def test_save_and_load_round_trip(tmp_path):
    nle = _trained("cpu")
    path = tmp_path / "nle.pt"
    nle.save(path)
    other = NLE.load(path, GaussianLinear(2, PRIOR_VAR, NOISE_VAR))
    theta = torch.tensor([0.1, 0.2])
    torch.testing.assert_close(
        other.likelihood(theta).log_prob(Y), nle.likelihood(theta).log_prob(Y)
    )
    with pytest.raises(CheckpointError, match="holds an NLE checkpoint, not an NPE one"):
        NPE.load(path, GaussianLinear(2))
    with pytest.raises(CheckpointError, match="saved for 2 parameters, the model has 3"):
        NLE.load(path, GaussianLinear(3))


def test_bad_inputs_are_named():
    model = GaussianLinear(2)
    fresh = NLE(model, ["theta"], "y", num_layers=1)
    with pytest.raises(NotTrainedError, match=r"NLE.likelihood: the estimator is not trained"):
        fresh.likelihood(torch.zeros(2))
    with pytest.raises(NotTrainedError, match=r"NLE.posterior: the estimator is not trained"):
        fresh.posterior(torch.zeros(2))
    with pytest.raises(ValueError, match="flow must be one of"):
        NLE(model, ["theta"], "y", flow="glow")
    nle = _trained("cpu")
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 2\)"):
        nle.likelihood(torch.zeros(3))
    with pytest.raises(ValueError, match=r"the mapping lacks the parameter sites \['theta'\]"):
        nle.likelihood({"mu": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., \*\(2,\)\)"):
        nle.likelihood(torch.zeros(2)).log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match=r"y_obs must have shape \(2,\) or \(n, \*\(2,\)\)"):
        nle.posterior(torch.zeros(4, 3, 2))
    with pytest.raises(TypeError, match="y_obs must be a tensor"):
        nle.posterior([0.0, 1.0])
    with pytest.raises(ValueError, match="num_chains must be a positive integer"):
        nle.posterior(Y, num_chains=0).sample((10,))
