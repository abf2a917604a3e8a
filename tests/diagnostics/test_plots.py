"""Image mosaics and latent scatter plots: figures are returned and saved."""

import pytest
import torch

from pyrovi.diagnostics import plot_image_rows, plot_latent, project_2d


def test_plot_image_rows_returns_and_saves(tmp_path):
    rows = [("data", torch.rand(5, 8, 8)), ("recon.", torch.rand(5, 8, 8))]
    fig = plot_image_rows(rows, "title", cols=3, path=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert fig.axes[0].get_title() == "title"
    # two blocks of three columns, two labelled rows each
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["data", "recon."] * 2
    with pytest.raises(ValueError, match="every group must be"):
        plot_image_rows([("a", torch.rand(2, 8, 8)), ("b", torch.rand(2, 4, 4))])


def test_project_2d_keeps_low_dimensions_and_uses_principal_components():
    z2 = torch.randn(10, 2)
    xy, names = project_2d(z2)
    torch.testing.assert_close(xy, z2.double())
    assert names == ("z[0]", "z[1]")
    # points on a line in 5-D project onto the first component with zero spread on the second
    t = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
    xy, _ = project_2d(t * torch.tensor([[1.0, 2.0, 0.0, -1.0, 3.0]], dtype=torch.float64))
    assert xy[:, 1].abs().max() < 1e-10
    assert xy[:, 0].std() > 1


def test_plot_latent(tmp_path):
    fig = plot_latent(torch.randn(30, 4), torch.arange(30) % 3, "z", path=tmp_path / "z.png")
    assert (tmp_path / "z.png").is_file() and fig.axes[0].get_xlabel() == "principal component 1"
    with pytest.raises(ValueError, match=r"labels must have shape \(30,\)"):
        plot_latent(torch.randn(30, 4), torch.arange(29))
