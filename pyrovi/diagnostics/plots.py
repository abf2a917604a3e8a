"""Matplotlib figures for image models: image mosaics and 2-D views of a latent space.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state, no display needed);
each function returns the figure and saves it when given a path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["plot_image_rows", "plot_latent", "project_2d"]


def _tile(images: torch.Tensor, rows: int, cols: int, pad: float = 0.3) -> torch.Tensor:
    """``(n, H, W)`` images -> one ``(rows*(H+1)-1, cols*(W+1)-1)`` mosaic, row by row."""
    n, h, w = images.shape
    grid = images.new_full((rows * (h + 1) - 1, cols * (w + 1) - 1), pad)
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i]
    return grid


def _save(fig, path: str | os.PathLike | None) -> None:
    if path is not None:
        fig.savefig(path, dpi=120)


def plot_image_rows(
    rows: Sequence[tuple[str, torch.Tensor]],
    title: str = "",
    cols: int | None = None,
    path: str | os.PathLike | None = None,
    box: tuple[int, int, int, int] | None = None,
):
    """A mosaic whose rows are labelled groups of images, e.g. data above reconstructions.

    A group with more than ``cols`` images continues in a later block, so that matching images
    of different groups stay in the same column.

    Args:
        rows: ``(label, images)`` pairs; ``images`` of shape ``(n, H, W)`` with values in [0, 1]
            (clamped), the same ``H, W`` for every group.
        title: Figure title.
        cols: Images per row (default: the largest group).
        path: Save the figure here (PNG, PDF, ... by extension).
        box: ``(top, left, height, width)`` in pixels: outline that region of every image
            (e.g. the part a conditional model filled in).

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not rows:
        raise ValueError("rows must hold at least one (label, images) pair")
    shapes = {tuple(images.shape[1:]) for _, images in rows}
    if len(shapes) != 1 or any(images.dim() != 3 for _, images in rows):
        raise ValueError(f"rows: every group must be (n, H, W) with one H, W; got {shapes}")
    n = max(len(images) for _, images in rows)
    cols = cols or n
    h, w = rows[0][1].shape[1:]
    blank = torch.zeros(h, w)
    tiles, labels = [], []
    for start in range(0, n, cols):
        for label, images in rows:
            images = images.detach().cpu().float().clamp(0, 1)
            for i in range(start, start + cols):
                tiles.append(images[i] if i < len(images) else blank)
            labels.append(label)
    grid = _tile(torch.stack(tiles), len(labels), cols)
    fig = Figure(figsize=(max(4.0, 0.45 * cols + 1.5), 0.45 * len(labels) + 0.9))
    ax = fig.add_subplot()
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    if box is not None:
        top, left, bh, bw = box
        for r in range(len(labels)):
            for c in range(cols):
                corner = (c * (w + 1) + left - 0.5, r * (h + 1) + top - 0.5)
                ax.add_patch(
                    Rectangle(corner, bw, bh, fill=False, edgecolor="tab:red", linewidth=0.8)
                )
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(len(labels))], labels)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The latent itself if it has 1 or 2 dimensions, else its first two principal components.

    Args:
        z: Latent points ``(n, d)``.

    Returns:
        ``(n, 2)`` coordinates (float64, CPU) and the two axis labels.
    """
    if z.dim() != 2:
        raise ValueError(f"z must have shape (n, d), got {tuple(z.shape)}")
    z = z.detach().cpu().double()
    if z.shape[1] == 1:
        return torch.cat([z, torch.zeros_like(z)], dim=1), ("z", "(none)")
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    centred = z - z.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, ("principal component 1", "principal component 2")


def plot_latent(
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    title: str = "",
    path: str | os.PathLike | None = None,
):
    """Scatter plot of latent points (projected to 2-D by :func:`project_2d`), coloured by label.

    Args:
        z: Latent points ``(n, d)``, e.g. encoder means of test images.
        labels: Integer labels ``(n,)`` for the colours (optional).
        title: Figure title.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    xy, what = project_2d(z)
    xy = xy.numpy()
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.8)
    else:
        labels = labels.detach().cpu()
        if labels.shape != (len(xy),):
            raise ValueError(f"labels must have shape ({len(xy)},), got {tuple(labels.shape)}")
        k = max(int(labels.max()) + 1, 1) if labels.numel() else 1
        cmap = "tab10" if k <= 10 else "tab20" if k <= 20 else "viridis"
        sc = ax.scatter(
            xy[:, 0], xy[:, 1], c=labels.numpy(), cmap=cmap, s=8, alpha=0.8, vmin=-0.5, vmax=k - 0.5
        )
        fig.colorbar(sc, ax=ax, ticks=range(k) if k <= 20 else None, label="label")
    ax.set_xlabel(what[0])
    ax.set_ylabel(what[1])
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig
