"""SBC ranks and their uniformity test; the classifier two-sample test."""

import pytest
import torch

from pyrovi.infer import c2st, plot_sbc_ranks, sbc_ranks, sbc_uniformity, simulate
from pyrovi.models import GaussianLinear


def test_sbc_passes_for_the_exact_posterior_and_fails_for_an_overconfident_one(device):
    torch.manual_seed(0)
    model = GaussianLinear(2).to(device)
    theta, y = simulate(model, ["theta"], "y", 1000)

    def exact(yy, L):
        return model.posterior(yy).sample((L,))

    def overconfident(yy, L):  # right mean, half the posterior sd
        post = model.posterior(yy)
        return post.mean + 0.5 * post.stddev * torch.randn((L, *yy.shape), device=yy.device)

    good = sbc_ranks(exact, theta, y, num_posterior_samples=99)
    assert good.ranks.shape == (1000, 2) and good.ranks.min() >= 0 and good.ranks.max() <= 99
    assert float(good.p_values.min()) > 0.001, good.p_values
    bad = sbc_ranks(overconfident, theta, y, num_posterior_samples=99)
    assert float(bad.p_values.max()) < 1e-6, bad.p_values  # ∪-shaped rank histogram


def test_sbc_uniformity_binning_and_known_p_values():
    # exactly uniform counts: statistic 0, p = 1
    ranks = torch.arange(100).repeat(5).unsqueeze(-1)
    assert float(sbc_uniformity(ranks, 99)[0]) == pytest.approx(1.0)
    # all ranks in the lowest bin
    assert float(sbc_uniformity(torch.zeros(500, 1, dtype=torch.long), 99)[0]) < 1e-12
    with pytest.raises(ValueError, match="num_bins must be in"):
        sbc_uniformity(ranks, 99, num_bins=1)
    with pytest.raises(ValueError, match=r"ranks must have shape \(N, D\)"):
        sbc_uniformity(torch.zeros(10), 9)


def test_plot_sbc_ranks_writes_a_figure(tmp_path):
    torch.manual_seed(0)
    theta = torch.randn(200, 2)
    result = sbc_ranks(lambda yy, L: torch.randn(L, *yy.shape), theta, theta, 19)
    path = tmp_path / "sbc.png"
    plot_sbc_ranks(result, ["a", "b"], path=str(path))
    assert path.is_file() and path.stat().st_size > 1000


def test_c2st_chance_for_equal_distributions_and_one_for_disjoint_ones():
    torch.manual_seed(0)
    a, b = torch.randn(600, 3), torch.randn(600, 3)
    assert c2st(a, b) < 0.56
    assert c2st(a, b + 4.0) > 0.98
    # a moderate shift of 0.8 in one coordinate: Bayes accuracy Φ(0.4) ≈ 0.655
    assert 0.58 < c2st(a, b + torch.tensor([0.8, 0.0, 0.0])) < 0.72


def test_c2st_without_early_stopping_is_sbibms_classifier_and_agrees_on_clear_cases():
    torch.manual_seed(0)
    a, b = torch.randn(400, 2), torch.randn(400, 2)
    kwargs = {"seed": 1, "early_stopping": False, "max_iter": 10_000}
    assert c2st(a, b, **kwargs) < 0.57
    assert c2st(a, b + 4.0, **kwargs) > 0.98
    # Bayes accuracy of a 0.8 shift is Φ(0.4) ≈ 0.655 whichever classifier is used
    assert 0.58 < c2st(a, b + torch.tensor([0.8, 0.0]), **kwargs) < 0.72


def test_c2st_is_invariant_to_affine_maps_through_z_scoring():
    torch.manual_seed(0)
    a, b = torch.randn(300, 2), 1.3 * torch.randn(300, 2) + 0.3
    scale, shift = torch.tensor([1000.0, 0.001]), torch.tensor([5.0, -7.0])
    assert c2st(a * scale + shift, b * scale + shift) == pytest.approx(c2st(a, b), abs=1e-9)


def test_c2st_bad_arguments():
    with pytest.raises(ValueError, match="x and y must be"):
        c2st(torch.zeros(10, 2), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="finite"):
        c2st(torch.full((10, 2), float("nan")), torch.zeros(10, 2))
    with pytest.raises(ValueError, match="folds must be"):
        c2st(torch.zeros(3, 2), torch.zeros(3, 2))


def test_sbc_refuses_non_finite_draws_and_bad_arguments():
    torch.manual_seed(0)
    theta, y = torch.randn(10, 2), torch.randn(10, 2)

    def nan_sampler(yy, L):
        return torch.full((L, yy.shape[0], 2), float("nan"))

    with pytest.raises(ValueError, match="sample returned NaN or infinite posterior draws"):
        sbc_ranks(nan_sampler, theta, y, 20)

    def good(yy, L):
        return torch.randn(L, yy.shape[0], 2)

    cases = [
        (lambda: sbc_ranks(good, theta, y, 2.5), ValueError, "num_posterior_samples must be a"),
        (lambda: sbc_ranks(good, theta, y, 20, batch_size=0), ValueError, "batch_size must be"),
        (lambda: sbc_ranks(good, theta, y, 20, batch_size=2.5), ValueError, "batch_size must"),
        (
            lambda: sbc_ranks(good, torch.full((10, 2), float("nan")), y, 20),
            ValueError,
            "theta contains NaN",
        ),
        (
            lambda: sbc_ranks(good, torch.empty(0, 2), torch.empty(0, 2), 20),
            ValueError,
            r"theta is empty",
        ),
        (lambda: sbc_ranks(good, [[0.0, 1.0]], y, 20), TypeError, "theta must be a torch.Tensor"),
        (lambda: sbc_ranks(3, theta, y, 20), TypeError, "sample must be a callable"),
        (lambda: sbc_ranks(lambda yy, L: 0.0, theta, y, 20), TypeError, "sample must return a"),
        (
            lambda: sbc_uniformity(torch.zeros(10, 2, dtype=torch.long), 20, 2.5),
            ValueError,
            "num_bins must be a positive integer, got 2.5",
        ),
        (
            lambda: sbc_uniformity(torch.full((10, 2), 50), 20),
            ValueError,
            r"ranks must lie in 0..num_posterior_samples=20, got values in 50..50",
        ),
        (lambda: sbc_uniformity(torch.zeros(10, 2), 20), TypeError, "ranks must be an integer"),
        (
            lambda: c2st(torch.randn(20, 2), torch.randn(20, 2), folds=2.5),
            ValueError,
            "folds must be an integer >= 2, got 2.5",
        ),
        (
            lambda: c2st(torch.randn(20, 2), torch.randn(20, 2), hidden=0),
            ValueError,
            "hidden must be a positive integer, got 0",
        ),
        (
            lambda: c2st(torch.randn(20, 2), torch.randn(20, 2), max_iter=0),
            ValueError,
            "max_iter must be a positive integer, got 0",
        ),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()
