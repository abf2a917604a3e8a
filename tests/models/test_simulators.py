"""SBI simulators: the Ricker model, Wood's summary statistics, the Gaussian linear model."""

import math

import pyro
import pytest
import torch
from pyro.infer import Predictive

from pyrovi.models import (
    RICKER_TRUTH,
    GaussianLinear,
    RickerModel,
    WoodSummary,
    simulate_ricker_at,
    wood_summaries,
)
from pyrovi.models.simulators import ricker_population


def at_truth(model, num, device):
    truth = {k: torch.full((num,), v, device=device) for k, v in RICKER_TRUTH.items()}
    return Predictive(
        model, posterior_samples=truth, return_sites=["y", "_RETURN"], parallel=True
    )()


def test_ricker_population_matches_the_recursion_and_its_fixed_point():
    torch.manual_seed(0)
    log_r, noise = (
        torch.tensor([3.8, 1.5], dtype=torch.float64),
        torch.zeros(2, 60, dtype=torch.float64),
    )
    noise[0] = 0.3 * torch.randn(60, dtype=torch.float64)
    n = ricker_population(log_r, noise, 1.0)
    # the recursion written out for the first series; the dynamics are chaotic (rounding errors
    # grow by a factor ~e per step), so compare the first 12 steps only
    prev, r = 1.0, math.exp(3.8)
    for t in range(12):
        prev = r * prev * math.exp(-prev + float(noise[0, t]))
        assert float(n[0, t]) == pytest.approx(prev, rel=1e-7, abs=1e-300)
    # without noise and r = e^1.5 < e^2 the population converges to its fixed point N* = log r
    assert float(n[1, -1]) == pytest.approx(1.5, abs=1e-6)


def test_ricker_prior_predictive_shapes_support_and_device(device):
    model = RickerModel().to(device)
    out = Predictive(
        model, num_samples=500, parallel=True, return_sites=["log_r", "sigma", "phi", "y"]
    )()
    assert out["y"].shape == (500, 50) and out["y"].device.type == device.type
    for name, lo, hi in (("log_r", 3, 5), ("sigma", 0, 0.8), ("phi", 4, 20)):
        assert out[name].shape == (500,)
        assert lo <= float(out[name].min()) and float(out[name].max()) <= hi
    y = out["y"]
    assert (y >= 0).all() and (y == y.round()).all()


def test_ricker_statistics_at_the_truth_are_sensible(device):
    model = RickerModel().to(device)
    out = at_truth(model, 2000, device)
    y, n = out["y"], out["_RETURN"]
    # the Poisson observation: E[y_t | N_t] = φ N_t, checked on all (series, t) pooled
    assert float(y.mean()) == pytest.approx(10.0 * float(n.mean()), rel=0.02)
    # log r = 3.8: r ≈ 45, so boom-bust cycles (many zeros, occasional large counts) but
    # hardly ever extinction within 50 steps at σ = 0.3
    frac_zero = float((y == 0).double().mean())
    assert 0.2 < frac_zero < 0.6
    assert float((y.sum(-1) == 0).double().mean()) < 0.01
    assert 10 < float(y.mean()) < 60
    # the one-step autocorrelation of a boom-bust series is negative
    s = wood_summaries(y, simulate_ricker_at(RICKER_TRUTH).to(device))
    assert float((s[:, 1] / s[:, 0]).median()) < 0


def test_wood_summaries_known_values():
    torch.manual_seed(0)
    y = torch.poisson(20 * torch.rand(4, 50, dtype=torch.float64))
    ref = simulate_ricker_at(RICKER_TRUTH, seed=3).double()
    s = wood_summaries(y, ref)
    assert s.shape == (4, 13) and s.dtype == torch.float64
    torch.testing.assert_close(s[:, 0], y.var(-1, unbiased=False))
    yc = y - y.mean(-1, keepdim=True)
    torch.testing.assert_close(s[:, 2], (yc[:, :-2] * yc[:, 2:]).sum(-1) / 50)
    torch.testing.assert_close(s[:, 11], y.mean(-1))
    torch.testing.assert_close(s[:, 12], (y == 0).sum(-1).double())
    # the ordered-difference regression: y = 2·ref has sorted differences 2× the reference's,
    # so the cubic fit is exactly linear (slope 2 in units of the reference's largest |difference|)
    scale = torch.diff(ref).abs().max()
    cubic = wood_summaries(2 * ref, ref)[6:9]
    torch.testing.assert_close(
        cubic,
        torch.stack(
            [
                2 * scale,
                torch.tensor(0.0, dtype=torch.float64),
                torch.tensor(0.0, dtype=torch.float64),
            ]
        ),
        atol=1e-8,
        rtol=1e-8,
    )


def test_wood_autoregression_recovers_exact_coefficients():
    b1, b2 = 1.2, -0.05
    p = [2.0]
    for _ in range(49):
        p.append(b1 * p[-1] + b2 * p[-1] ** 2)
    y = torch.tensor(p, dtype=torch.float64) ** (1 / 0.3)
    s = wood_summaries(y, simulate_ricker_at(RICKER_TRUTH))
    torch.testing.assert_close(
        s[9:11], torch.tensor([b1, b2], dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_all_zero_and_near_extinct_series_give_finite_summaries(device):
    summary = WoodSummary().to(device)
    y = torch.zeros(3, 50, device=device)
    y[1, 0] = 5.0  # one count, then extinct
    y[2, :3] = torch.tensor([3.0, 1.0, 0.0])
    s = summary(y)
    assert s.shape == (3, 13) and torch.isfinite(s).all()
    assert float(s[0, 12]) == 50 and (s[0, :12] == 0).all()
    # extinct series straight from the simulator (σ large, log r small still gives some)
    model = RickerModel().to(device)
    extinct = {
        "log_r": torch.full((200,), 3.0),
        "sigma": torch.full((200,), 0.8),
        "phi": torch.full((200,), 4.0),
    }
    extinct = {k: v.to(device) for k, v in extinct.items()}
    out = Predictive(model, posterior_samples=extinct, return_sites=["y"], parallel=True)()
    assert torch.isfinite(summary(out["y"])).all()


def test_wood_summary_default_reference_is_deterministic():
    a, b = WoodSummary(), WoodSummary()
    assert torch.equal(a.reference, b.reference)
    assert not torch.equal(a.reference, WoodSummary(seed=1).reference)


def test_gaussian_linear_posterior_is_the_conjugate_update(device):
    model = GaussianLinear(3, prior_var=0.5, noise_var=0.25).to(device)
    y = torch.tensor([0.3, -1.0, 2.0], device=device)
    post = model.posterior(y)
    # precision 1/0.5 + 1/0.25 = 6: variance 1/6, mean (y / 0.25) / 6
    torch.testing.assert_close(post.mean, y * 4 / 6)
    torch.testing.assert_close(post.variance, torch.full((3,), 1 / 6, device=device))
    # Bayes' rule on a grid for one coordinate: p(θ|y) ∝ N(θ; 0, 0.5) N(y; θ, 0.25)
    grid = torch.linspace(-4, 4, 4001, dtype=torch.float64)
    log_joint = -(grid**2) / (2 * 0.5) - (0.3 - grid) ** 2 / (2 * 0.25)
    w = torch.softmax(log_joint, 0)
    assert float((w * grid).sum()) == pytest.approx(0.3 * 4 / 6, abs=1e-6)
    out = Predictive(model, num_samples=7, parallel=True, return_sites=["theta", "y"])()
    assert out["theta"].shape == (7, 3) and out["y"].shape == (7, 3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_steps must be an integer"):
        RickerModel(num_steps=1)
    with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 50\)"):
        pyro.poutine.trace(RickerModel()).get_trace(torch.zeros(49))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        GaussianLinear(0)
    with pytest.raises(ValueError, match="prior_var must be a positive number"):
        GaussianLinear(2, prior_var=0.0)
    with pytest.raises(ValueError, match="reference must have shape"):
        wood_summaries(torch.zeros(2, 50), torch.zeros(40))
    with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., T\)"):
        wood_summaries(torch.zeros(2, 3), torch.zeros(3))
