"""Expected coverage and TARP: the exact posterior is calibrated, over-confident and biased ones
are flagged; NPE and ABC plug in as samplers."""

import math

import pytest
import torch

from pyrovi.infer import (
    NPE,
    CoverageResult,
    abc_sampler,
    expected_coverage,
    plot_coverage,
    simulate,
    tarp,
)
from pyrovi.models import GaussianLinear


@pytest.fixture
def gaussian_tests(device):
    torch.manual_seed(0)
    model = GaussianLinear(2).to(device)
    theta, y = simulate(model, ["theta"], "y", 600)
    return model, theta, y


def _sampler(model, scale=1.0, shift=0.0):
    """The exact posterior with its sd times ``scale`` and its mean moved by ``shift`` sd."""

    def sample(y, num):
        post = model.posterior(y)
        noise = torch.randn((num, *y.shape), device=y.device)
        return post.mean + post.stddev * (shift + scale * noise)

    def log_prob(theta, y):
        post = model.posterior(y)
        moved = torch.distributions.Normal(post.mean + shift * post.stddev, scale * post.stddev)
        return moved.log_prob(theta).sum(-1)

    return sample, log_prob


def _all_methods(model, theta, y, **kw):
    sample, log_prob = _sampler(model, **kw)
    return [
        expected_coverage(sample, theta, y, 400),
        expected_coverage(sample, theta, y, 400, log_prob=log_prob),
        tarp(sample, theta, y, 400),
    ]


def test_the_exact_posterior_is_calibrated(gaussian_tests):
    model, theta, y = gaussian_tests
    for res in _all_methods(model, theta, y):
        assert res.p_value > 0.01, res
        assert res.outside_band() <= 0.05, res
        assert (res.coverage - res.levels).abs().max() < 0.08
        assert res.num_tests == 600 and res.num_posterior_samples == 400
    assert [r.method for r in _all_methods(model, theta, y)] == ["ellipsoid", "hpd", "tarp"]


@pytest.mark.parametrize("kind", ["over-confident", "biased"])
def test_miscalibrated_posteriors_are_flagged(gaussian_tests, kind):
    model, theta, y = gaussian_tests
    kw = {"scale": 0.5} if kind == "over-confident" else {"shift": 1.0}  # variance ÷ 4 / 1 sd
    for res in _all_methods(model, theta, y, **kw):
        assert res.p_value < 1e-3, res
        assert res.outside_band() > 0.3, res
        if res.method != "tarp":  # regions too small or off-centre: below the diagonal
            assert float((res.coverage - res.levels).mean()) < -0.05


def test_under_confident_posterior_is_above_the_diagonal(gaussian_tests):
    model, theta, y = gaussian_tests
    sample, _ = _sampler(model, scale=2.0)
    res = expected_coverage(sample, theta, y, 400)
    assert res.p_value < 1e-3 and float((res.coverage - res.levels).mean()) > 0.05


def test_npe_and_abc_are_samplers():
    torch.manual_seed(0)
    model = GaussianLinear(2)
    npe = NPE(model, ["theta"], "y", embedding="identity", num_layers=1, hidden_features=16)
    npe.train(1000, seed=0, progress=False, max_epochs=20)
    theta, y = simulate(model, ["theta"], "y", 100)

    def sample(yy, num):
        return npe.posterior(yy).sample((num,))

    def log_prob(th, yy):
        return npe.posterior(yy).log_prob(th)

    res = expected_coverage(sample, theta, y, 200, log_prob=log_prob)
    assert isinstance(res, CoverageResult) and res.method == "hpd"
    assert float((res.coverage - res.levels).abs().max()) < 0.3  # roughly calibrated
    bank_theta, bank_y = simulate(model, ["theta"], "y", 20_000)
    abc = abc_sampler(["theta"], "y", bank_theta, bank_y)
    draws = abc(y[:3], 100)
    assert draws.shape == (100, 3, 2)
    res = tarp(abc, theta[:60], y[:60], 100)
    assert res.method == "tarp" and res.num_tests == 60
    with pytest.raises(ValueError, match="abc_sampler: 30000 draws asked"):
        abc(y[:1], 30_000)


def test_plot_coverage_and_bad_inputs(gaussian_tests, tmp_path):
    model, theta, y = gaussian_tests
    sample, _ = _sampler(model)
    good = expected_coverage(sample, theta, y, 100)
    bad = tarp(_sampler(model, scale=0.5)[0], theta, y, 100)
    fig = plot_coverage([good, bad], labels=["exact", "over-confident"], path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 5000 and len(fig.axes) == 1
    assert set(good.as_dict()) >= {"levels", "coverage", "band", "p_value", "method"}
    assert "outside_band" in repr(good)
    with pytest.raises(ValueError, match="levels: expected a 1-D sequence in"):
        expected_coverage(sample, theta, y, 100, levels=[0.0, 0.5])
    with pytest.raises(ValueError, match="num_posterior_samples must be"):
        expected_coverage(sample, theta, y, 2)
    with pytest.raises(ValueError, match="references: expected one point per test"):
        tarp(sample, theta, y, 10, references=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="log_prob must return"):
        expected_coverage(sample, theta, y, 10, log_prob=lambda th, yy: th)
    with pytest.raises(TypeError, match="results: expected a CoverageResult"):
        plot_coverage([])
    with pytest.raises(ValueError, match="sample must return"):
        tarp(lambda yy, n: torch.zeros(n, 2), theta, y, 10)
    assert math.isfinite(good.p_value)
