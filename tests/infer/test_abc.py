"""Rejection ABC: a known posterior, the standardization, shared simulations, errors."""

import pyro
import pytest
import torch

from pyrovi.infer import abc_rejection, simulate
from pyrovi.models import GaussianLinear, RickerModel, WoodSummary


def test_abc_approximates_the_gaussian_posterior(device):
    """D = 2: accepted draws have the posterior mean y/2 and sd sqrt(0.05) ≈ 0.224."""
    model = GaussianLinear(2).to(device)
    y_o = torch.tensor([0.4, -0.2], device=device)
    result = abc_rejection(model, ["theta"], "y", y_o, num_simulations=40_000, quantile=0.01)
    assert result.samples.shape == (400, 2) and result.num_simulations == 40_000
    # 400 draws: Monte Carlo sd of the mean 0.011; ABC with ε > 0 also widens the posterior
    torch.testing.assert_close(result.samples.mean(0), y_o / 2, atol=0.05, rtol=0)
    sd = result.samples.std(0)
    assert ((sd > 0.18) & (sd < 0.3)).all(), sd
    assert torch.all(result.distances[1:] >= result.distances[:-1])
    assert result.threshold == pytest.approx(float(result.distances[-1]))


def test_scale_is_the_mad_of_the_simulations_and_distances_use_it():
    torch.manual_seed(0)
    theta = torch.randn(1001, 1)
    y = torch.cat([theta, 100 * torch.randn(1001, 1)], -1)  # second summary: pure noise, scale 100
    result = abc_rejection(None, ["theta"], "y", torch.zeros(2), theta=theta, y=y, quantile=0.1)
    med = y.median(0).values
    mad = 1.4826 * (y - med).abs().median(0).values
    torch.testing.assert_close(result.scale, mad.double())
    # distances are Euclidean on the standardized summaries
    d = ((y.double() / mad.double()) ** 2).sum(-1).sqrt()
    torch.testing.assert_close(result.distances, d.sort().values[: len(result.distances)])
    std = abc_rejection(None, ["theta"], "y", torch.zeros(2), theta=theta, y=y, scale="std")
    torch.testing.assert_close(std.scale, y.double().std(0))


def test_ricker_abc_with_shared_simulations_and_extinct_series(device):
    model = RickerModel().to(device)
    summary = WoodSummary().to(device)
    pyro.set_rng_seed(0)
    theta, y = simulate(model, list(model.params), "y", 2000)
    y[:5] = 0  # extinct series must not break the standardization
    y_o = y[10]
    result = abc_rejection(
        model, model.params, "y", y_o, theta=theta, y=y, summary=summary, quantile=0.05
    )
    assert result.samples.shape == (100, 3) and result.num_dropped == 0
    assert torch.equal(result.samples[0], theta[10])  # the observation itself, at distance 0
    assert float(result.distances[0]) == 0.0
    # precomputed summaries of the bank give the same answer
    again = abc_rejection(
        model,
        model.params,
        "y",
        y_o,
        theta=theta,
        y=y,
        summary=summary,
        summaries=summary(y),
        quantile=0.05,
    )
    torch.testing.assert_close(again.samples, result.samples)
    with pytest.raises(ValueError, match="summaries must have one row per simulation"):
        abc_rejection(model, model.params, "y", y_o, theta=theta, y=y, summaries=summary(y[:5]))


def test_nonfinite_summaries_are_never_accepted():
    theta = torch.arange(6.0).unsqueeze(-1)
    y = theta.clone()
    y[0] = float("nan")
    result = abc_rejection(None, ["theta"], "y", torch.zeros(1), theta=theta, y=y, quantile=1.0)
    assert result.num_dropped == 1
    assert torch.isinf(result.distances[-1]) and float(result.samples[-1]) == 0.0


def test_bad_arguments_are_named():
    model = GaussianLinear(2)
    y_o = torch.zeros(2)
    with pytest.raises(ValueError, match="quantile must be in"):
        abc_rejection(model, ["theta"], "y", y_o, num_simulations=10, quantile=0.0)
    with pytest.raises(ValueError, match="scale must be one of"):
        abc_rejection(model, ["theta"], "y", y_o, num_simulations=10, scale="iqr")
    with pytest.raises(ValueError, match="pass either num_simulations, or theta and y"):
        abc_rejection(model, ["theta"], "y", y_o)
    with pytest.raises(ValueError, match="y_obs must have the shape of one simulation"):
        abc_rejection(model, ["theta"], "y", torch.zeros(3), num_simulations=10)
    with pytest.raises(ValueError, match="num_simulations must be a positive integer"):
        abc_rejection(model, ["theta"], "y", y_o, num_simulations=0)


def test_abc_names_the_real_mismatch():
    model = GaussianLinear(2)
    y_o = torch.zeros(2)
    with pytest.raises(ValueError, match="theta has 5 rows, y has shape \\(6, 2\\)"):
        abc_rejection(model, ["theta"], "y", y_o, theta=torch.zeros(5, 2), y=torch.zeros(6, 2))
    cases = [
        (dict(theta=[[0.0, 0.0]], y=torch.zeros(1, 2)), TypeError, "theta must be a torch.Tensor"),
        (
            dict(theta=torch.full((5, 2), float("nan")), y=torch.zeros(5, 2)),
            ValueError,
            "theta contains NaN or infinite values",
        ),
        (dict(theta=torch.zeros(0, 2), y=torch.zeros(0, 2)), ValueError, r"theta is empty"),
        (dict(num_simulations=5, quantile="a"), ValueError, r"quantile must be in \(0, 1\]"),
        (dict(num_simulations=5, batch_size=0), ValueError, "batch_size must be a positive"),
        (dict(num_simulations=5, summary=3), TypeError, "summary must be a callable"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            abc_rejection(model, ["theta"], "y", y_o, **kwargs)
