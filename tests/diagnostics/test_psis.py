"""PSIS and Pareto k-hat: the generalized Pareto fit against known tails and ArviZ, and
``psis_khat`` on guides whose quality is known."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.diagnostics import BAD_KHAT, GOOD_KHAT, ParetoKHat, pareto_khat, psis, psis_khat
from pyrovi.diagnostics._arviz import import_arviz
from tests.diagnostics.conjugate import ConjugateNormal
from tests.diagnostics.idioms import (
    GMM_DATA,
    GMM_VALUES,
    BayesianRegression,
    batch_reshaping_model,
    gmm,
    gmm_log_joint,
    regression_data,
)
from tests.infer.ppca import PPCA


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)


@pytest.mark.parametrize("shape", [0.2, 0.6, 0.9])
def test_khat_recovers_the_shape_of_a_pareto_tail(shape):
    # Weights U^(-k) are Pareto: above any threshold their tail is generalized Pareto with shape
    # exactly k. 5000 draws fit a tail of 213; one k-hat has a standard error near 0.1.
    g = torch.Generator().manual_seed(1)
    u = torch.rand(5000, 64, generator=g, dtype=torch.float64)
    k = pareto_khat(-shape * torch.log(u))
    assert k.shape == (64,)
    assert abs(k.mean().item() - shape) < 0.04, k.mean()
    assert (k - shape).abs().max() < 0.4, k


def test_bounded_weights_have_negative_khat():
    g = torch.Generator().manual_seed(2)
    lw = torch.log(torch.rand(4000, 3, generator=g, dtype=torch.float64))  # weights in (0, 1)
    assert (pareto_khat(lw) < 0).all()


def test_psis_matches_arviz():
    az = import_arviz()
    if not hasattr(az, "psislw"):
        pytest.skip("this ArviZ has no psislw")
    rng = np.random.default_rng(0)
    for s in (21, 200, 2000):
        lw = np.log(np.abs(rng.standard_t(df=1.5, size=(s, 5)))) + rng.normal(size=(s, 5))
        smoothed, khat = psis(lw)
        lw_az, k_az = az.psislw(lw.T.copy())
        np.testing.assert_allclose(khat.numpy(), k_az, rtol=0, atol=1e-10)
        np.testing.assert_allclose(smoothed.numpy(), lw_az.T, rtol=0, atol=1e-10)


def test_psis_smoothing_normalizes_and_keeps_the_order(device):
    lw = torch.randn(500, 3, dtype=torch.float64, device=device) * 3
    smoothed, khat = psis(lw)
    assert smoothed.device == lw.device and khat.shape == (3,)
    zeros = torch.zeros(3, dtype=torch.float64, device=device)
    assert torch.allclose(torch.logsumexp(smoothed, 0), zeros, atol=1e-12)
    # smoothing replaces the tail values but never reorders the draws
    assert torch.equal(torch.argsort(smoothed, 0), torch.argsort(lw, 0))
    # only the largest M = ceil(min(500 / 5, 3 sqrt(500))) = 68 change: the body keeps its ratios
    order = torch.argsort(lw, 0)
    shift = torch.gather(smoothed - lw, 0, order)
    body = shift[: 500 - 68]
    assert torch.allclose(body, body[:1].expand_as(body), atol=1e-12)
    assert not torch.allclose(shift[-68:], body[:1].expand(68, 3), atol=1e-6)


def test_constant_weights_have_khat_minus_infinity():
    smoothed, khat = psis(torch.full((100,), -3.25, dtype=torch.float64))
    assert khat.item() == -math.inf
    assert torch.allclose(smoothed, torch.full((100,), -math.log(100), dtype=torch.float64))
    # a set whose weights are all zero: importance sampling failed outright
    lw = torch.randn(50, 2, dtype=torch.float64)
    lw[:, 1] = -math.inf
    smoothed, khat = psis(lw)
    assert math.isfinite(khat[0].item()) and khat[1].item() == math.inf
    assert torch.isclose(torch.logsumexp(smoothed[:, 0], 0), torch.zeros((), dtype=torch.float64))
    assert (smoothed[:, 1] == -math.inf).all()
    # float32 rounding noise is constant too
    noisy = torch.full((100,), 12.5) + torch.randn(100) * 1e-6
    assert pareto_khat(noisy).item() == -math.inf


def test_exact_posterior_gives_constant_log_weights_equal_to_the_evidence(device, float64):
    conj = ConjugateNormal(n=25, device=device)
    result = psis_khat(conj.model, conj.guide, conj.x, num_samples=500, parallel=True)
    assert not result.pointwise and result.khat.dim() == 0
    assert result.log_weights.shape == (500,)
    torch.testing.assert_close(
        result.log_weights,
        conj.log_evidence(conj.x).expand(500),
        rtol=0,
        atol=1e-9,
    )
    assert result.khat.item() < GOOD_KHAT and bool(result.good)
    assert result.category.item() == "good"


def test_guide_five_times_too_narrow_is_bad(device, float64):
    # log w = c + (24/25) chi²_1 / 2: a tail with shape 24/25. 10000 draws fit a tail of 300,
    # where one k-hat has a standard error near 0.11.
    conj = ConjugateNormal(n=25, device=device)

    def narrow(x):
        conj.guide(x, width=0.2)

    bad = psis_khat(conj.model, narrow, conj.x, num_samples=10000, parallel=True)
    assert bad.khat.item() > BAD_KHAT and bool(bad.bad) and bad.category.item() == "bad"


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_exact_and_wider_guides_are_good(device, float64, parallel):
    conj = ConjugateNormal(n=25, device=device)

    def wide(x):
        conj.guide(x, width=1.5)

    exact = psis_khat(conj.model, conj.guide, conj.x, num_samples=200, parallel=parallel)
    assert exact.khat.item() == -math.inf  # constant weights
    good = psis_khat(conj.model, wide, conj.x, num_samples=1000, parallel=parallel)
    assert math.isfinite(good.khat.item()) and good.khat.item() < GOOD_KHAT  # bounded weights


def test_local_latents_give_one_khat_per_datapoint(device, float64):
    ppca = PPCA(d=4, k=2, device=device)
    x = ppca.sample(12)

    def narrow(x):  # five times too narrow: log w = c + (24/25) chi²_2 / 2, tail shape 24/25
        post = ppca.posterior(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(post.loc, post.covariance_matrix / 25))

    result = psis_khat(ppca.model, narrow, x, num_samples=10000, max_samples_per_pass=50000)
    assert result.pointwise and result.khat.shape == (12,)
    assert result.log_weights.shape == (10000, 12)
    assert result.khat.median() > 0.8 and result.bad.sum() >= 10, result.khat
    exact = psis_khat(ppca.model, ppca.exact_guide, x, num_samples=100)
    assert exact.good.all()
    torch.testing.assert_close(
        exact.log_weights, ppca.log_evidence(x).expand(100, 12), rtol=0, atol=1e-9
    )


def test_categories_counts_and_summary():
    k = torch.tensor([-math.inf, 0.2, 0.5, 0.69, 0.7, 1.3])
    result = ParetoKHat(khat=k, log_weights=torch.zeros(50, 6), pointwise=True)
    assert result.good.tolist() == [True, True, False, False, False, False]
    assert result.ok.tolist() == [False, False, True, True, False, False]
    assert result.bad.tolist() == [False, False, False, False, True, True]
    assert list(result.category) == ["good", "good", "ok", "ok", "bad", "bad"]
    assert result.counts() == {"good": 2, "ok": 2, "bad": 2}
    text = str(result)
    assert "6 datapoints" in text and "k >= 0.7: 2 (33.3%)" in text
    overall = ParetoKHat(khat=torch.tensor(0.62), log_weights=torch.zeros(50), pointwise=False)
    assert "0.620 (ok; 50 draws" in overall.summary()


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="at least 21 draws along dimension 0.*got 20"):
        psis(torch.randn(20))
    with pytest.raises(ValueError, match="log_weights contains NaN"):
        psis(torch.tensor([float("nan")] * 30))
    with pytest.raises(ValueError, match="r_eff must be a positive number"):
        psis(torch.randn(30), r_eff=0)
    with pytest.raises(ValueError, match="draws along dimension 0, got a scalar"):
        psis(torch.tensor(1.0))
    with pytest.raises(TypeError, match="log_weights must be a tensor or an array of numbers"):
        psis(np.array(["a"] * 30))
    conj = ConjugateNormal(n=5)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 21.*got 10"):
        psis_khat(conj.model, conj.guide, conj.x, num_samples=10)


# --------------------------------------------------------------------------- Pyro idioms


def test_non_vectorizable_local_model_keeps_one_khat_per_datapoint(float64):
    ppca = PPCA(d=4, k=2)
    x = ppca.sample(10)
    model = batch_reshaping_model(ppca)
    with pytest.warns(UserWarning, match="psis_khat: .*one at a time.*vectorize=False"):
        result = psis_khat(model, ppca.exact_guide, x, num_samples=30)
    assert result.pointwise and result.khat.shape == (10,)
    torch.testing.assert_close(
        result.log_weights, ppca.log_evidence(x).expand(30, 10), rtol=0, atol=1e-10
    )
    assert (result.khat == -math.inf).all()  # constant weights
    with pytest.raises(ValueError, match="not broadcastable"):
        psis_khat(model, ppca.exact_guide, x, num_samples=30, vectorize=True)


def test_bayesian_regression_tutorial_model_has_one_joint_khat(float64):
    x, y = regression_data()
    model = BayesianRegression(sigma=0.4)
    result = psis_khat(model, model.exact_guide, x, y, num_samples=25, vectorize=False)
    assert not result.pointwise and result.khat.dim() == 0
    torch.testing.assert_close(
        result.log_weights, model.log_evidence(x, y).expand(25), rtol=0, atol=1e-9
    )
    assert result.khat.item() == -math.inf


def test_enumerated_mixture_weights_sum_out_the_assignment(float64):
    from pyro import poutine
    from pyro.infer.autoguide import AutoDelta
    from pyro.infer.autoguide.initialization import init_to_value

    guide = AutoDelta(
        poutine.block(gmm, expose=["weights", "locs", "scale"]),
        init_loc_fn=init_to_value(values=GMM_VALUES),
    )
    result = psis_khat(gmm, guide, GMM_DATA, num_samples=25, vectorize=False)
    assert not result.pointwise  # the weights, scale and locs are global
    torch.testing.assert_close(result.log_weights, gmm_log_joint().expand(25), rtol=0, atol=1e-10)


def test_parallel_is_the_older_name_of_vectorize(float64):
    conj = ConjugateNormal(n=10)
    a = psis_khat(conj.model, conj.guide, conj.x, num_samples=25, parallel=False)
    torch.testing.assert_close(a.log_weights, conj.log_evidence(conj.x).expand(25))
    with pytest.raises(ValueError, match="vectorize=False and parallel=True disagree"):
        psis_khat(conj.model, conj.guide, conj.x, num_samples=25, vectorize=False, parallel=True)
    with pytest.raises(TypeError, match="parallel must be True, False or None, got 1"):
        psis_khat(conj.model, conj.guide, conj.x, num_samples=25, parallel=1)
