"""Sequential rounds: truncated sequential NPE beats one round at the same total budget on Gaussian
linear (closed-form posterior); truncation keeps only the posterior's region; errors."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.infer import NPE
from pyrovi.models import GaussianLinear

MODEL_ARGS = (3, 1.0, 0.01)  # D = 3, prior N(0, I), noise N(0, 0.01 I): posterior sd ≈ 0.1
Y_OBS = torch.tensor([0.4, -0.7, 1.1])


def _gaussian_kl(draws: torch.Tensor, exact: dist.Normal) -> float:
    """KL(exact ‖ Gaussian with the draws' mean and covariance), float64."""
    mean, cov = draws.mean(0).double(), torch.cov(draws.T.double())
    p = dist.MultivariateNormal(exact.mean.double(), torch.diag(exact.variance.double()))
    return float(torch.distributions.kl_divergence(p, dist.MultivariateNormal(mean, cov)))


def _npe(device) -> NPE:
    model = GaussianLinear(*MODEL_ARGS).to(device)
    return NPE(model, ["theta"], "y", embedding="identity", num_layers=2, hidden_features=32)


@pytest.mark.parametrize("seed", [0, 2])
def test_tsnpe_beats_one_round_at_the_same_budget(seed, device):
    exact = GaussianLinear(*MODEL_ARGS).posterior(Y_OBS).base_dist
    one = _npe(device)
    pyro.set_rng_seed(seed)
    one.train(2000, seed=seed, progress=False)
    tsnpe = _npe(device)
    pyro.set_rng_seed(seed)
    out = tsnpe.train_rounds(Y_OBS.to(device), 2, 1000, seed=seed, progress=False)
    assert out.num_simulations == [1000, 2000]
    assert out.acceptance[0] == 1.0 and 0 < out.acceptance[1] < 0.1  # a small part of the prior
    assert out.num_proposed[1] >= 1000 / 0.1
    kl_one = _gaussian_kl(one.posterior(Y_OBS.to(device)).sample((20_000,)).cpu(), exact)
    kl_ts = _gaussian_kl(tsnpe.posterior(Y_OBS.to(device)).sample((20_000,)).cpu(), exact)
    assert kl_ts < kl_one, (kl_ts, kl_one)


def test_truncation_keeps_the_highest_posterior_region():
    """Round 2's parameters all lie where q(θ | y_o) is above the threshold: near y_o, not the
    prior's spread."""
    npe = _npe("cpu")
    captured = {}
    original = npe.train

    def spy(**kwargs):
        captured.setdefault("theta", []).append(kwargs["theta"])
        return original(**kwargs)

    npe.train = spy
    npe.train_rounds(Y_OBS, 2, 500, seed=0, progress=False)
    second = captured["theta"][1][500:]
    assert second.shape == (500, 3)
    # the exact posterior has sd 0.0995 around ≈ y_o: the truncated prior stays within ~6 sd
    dist_to_obs = (second - Y_OBS).norm(dim=-1)
    assert float(dist_to_obs.max()) < 0.8 and float(captured["theta"][0][:500].std()) > 0.8


def test_round_errors_are_named():
    npe = _npe("cpu")
    with pytest.raises(ValueError, match=r"y_obs must be one data set of shape \(3,\)"):
        npe.train_rounds(torch.zeros(2, 3), 2, 100)
    with pytest.raises(ValueError, match="num_rounds must be a positive integer"):
        npe.train_rounds(Y_OBS, 0, 100)
    with pytest.raises(ValueError, match="theta is set by the rounds"):
        npe.train_rounds(Y_OBS, 1, 100, progress=False, **{"theta": None})
    with pytest.raises(ValueError, match="quantile must be in"):
        npe.train_rounds(Y_OBS, 2, 100, quantile=1.5)
    with pytest.raises(RuntimeError, match=r"kept \d+ of \d+ prior draws.*max_proposals=600"):
        npe.train_rounds(Y_OBS, 2, 500, max_proposals=600, progress=False, seed=0)
