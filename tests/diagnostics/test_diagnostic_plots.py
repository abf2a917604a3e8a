"""Training curves, image grids and diagnostic figures: returned, saved, bad input refused."""

import math

import pytest
import torch

from pyrovi.diagnostics import (
    CollapseReport,
    InferenceGaps,
    ParetoKHat,
    plot_elbo,
    plot_gaps,
    plot_khat,
    plot_kl_per_dimension,
    plot_reconstructions,
    plot_samples,
)
from pyrovi.infer import FitResult


def test_plot_elbo_takes_a_fit_result_a_history_or_values(tmp_path):
    result = FitResult(
        history={
            "train_elbo": [-90.0, -80.0, -75.0],
            "val_elbo": [-95.0, -85.0, -79.0],
            "epoch_time": [1.0, 1.0, 1.0],
        }
    )
    fig = plot_elbo(result, "run", path=tmp_path / "elbo.png")
    assert (tmp_path / "elbo.png").stat().st_size > 0
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["train elbo", "val elbo"]  # epoch_time is not an ELBO
    fig = plot_elbo(torch.linspace(-10, -1, 50))
    assert fig.axes[0].get_xlabel() == "step"
    with pytest.raises(TypeError, match="history must be a FitResult"):
        plot_elbo(3.0)
    with pytest.raises(ValueError, match="no ELBO values to plot"):
        plot_elbo({"loss": [1.0]})


def test_image_grids(tmp_path):
    x = torch.rand(6, 64)
    fig = plot_reconstructions(x, x.flip(0), (8, 8), path=tmp_path / "recon.png")
    assert (tmp_path / "recon.png").is_file()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["data", "recon."]
    fig = plot_samples(torch.rand(10, 8, 8), (8, 8), cols=5, path=tmp_path / "samples.png")
    assert (tmp_path / "samples.png").is_file() and len(fig.axes[0].get_yticklabels()) == 2
    with pytest.raises(ValueError, match="as many images, got 6 and 5"):
        plot_reconstructions(x, x[:5], (8, 8))
    with pytest.raises(ValueError, match=r"samples must be \(n, 64\) or \(n, 8, 8\) images"):
        plot_samples(torch.rand(3, 10), (8, 8))


def test_plot_khat_colours_by_category(tmp_path):
    k = torch.tensor([-math.inf, 0.1, 0.3, 0.55, 0.8, 1.2])
    fig = plot_khat(ParetoKHat(k, torch.zeros(30, 6), True), path=tmp_path / "khat.png")
    assert (tmp_path / "khat.png").is_file()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["k < 0.5: 2", "0.5 <= k < 0.7: 1", "k >= 0.7: 2"]  # -inf is not drawn
    assert plot_khat(k.numpy()).axes[0].get_ylabel() == "Pareto k-hat"


def test_plot_kl_and_gaps(tmp_path):
    report = CollapseReport(
        activity=torch.tensor([0.5, 0.001, 0.2]), kl=torch.tensor([1.0, 0.0, 0.4])
    )
    fig = plot_kl_per_dimension(report, path=tmp_path / "kl.png")
    assert (tmp_path / "kl.png").is_file()
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == pytest.approx([1.0, 0.0, 0.4])
    gaps = InferenceGaps(
        log_px=torch.randn(40) - 20,
        elbo_amortized=torch.randn(40) - 21,
        elbo_optimized=torch.randn(40) - 20.5,
    )
    fig = plot_gaps(gaps, path=tmp_path / "gaps.png")
    assert (tmp_path / "gaps.png").is_file()
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    with pytest.raises(TypeError, match="report must be a CollapseReport"):
        plot_kl_per_dimension(gaps)
    with pytest.raises(TypeError, match="gaps must be an InferenceGaps"):
        plot_gaps(report)
