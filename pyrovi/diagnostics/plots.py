"""Matplotlib figures for variational inference: image mosaics, 2-D views of a latent space,
training curves and diagnostics (Pareto k-hat, KL per dimension, inference gaps).

Figures are built with ``matplotlib.figure.Figure`` (no pyplot global state, no display needed);
each function returns the figure and saves it when given a path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pyrovi._checks import check_int

__all__ = [
    "plot_image_rows",
    "plot_latent",
    "project_2d",
    "plot_elbo",
    "plot_reconstructions",
    "plot_samples",
    "plot_khat",
    "plot_kl_per_dimension",
    "plot_gaps",
]


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
        fig.savefig(path, dpi=120, bbox_inches="tight")  # keeps a legend below the axes


def _legend_below(ax, *more_axes) -> None:
    """One legend for ``ax`` (and twin axes) below the plot, where it covers no data."""
    handles, labels = ax.get_legend_handles_labels()
    for other in more_axes:
        h, lab = other.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=min(3, len(handles)),
            fontsize="small",
            frameon=False,
        )


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
    cols = n if cols is None else check_int("cols", cols)
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


def plot_elbo(
    history: Any,
    title: str = "",
    path: str | os.PathLike | None = None,
):
    """ELBO per datapoint against epoch (or step).

    Args:
        history: A :class:`~pyrovi.infer.FitResult`, its ``history`` dict (every key containing
            ``"elbo"`` is drawn, e.g. ``train_elbo`` and ``val_elbo``), or a sequence of values.
        title: Figure title.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    history = getattr(history, "history", history)
    if isinstance(history, Mapping):
        curves = {k: list(v) for k, v in history.items() if "elbo" in k and len(v)}
    elif isinstance(history, Sequence | torch.Tensor):
        curves = {"elbo": [float(v) for v in history]}
    else:
        raise TypeError(
            "history must be a FitResult, a dict of per-epoch lists or a sequence of values, got "
            f"{type(history).__name__}"
        )
    if not curves or not any(curves.values()):
        raise ValueError("history: no ELBO values to plot (no non-empty key containing 'elbo')")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, label=name.replace("_", " "))
    ax.set_xlabel("epoch" if isinstance(history, Mapping) else "step")
    ax.set_ylabel("ELBO per datapoint (nats)")
    # the first epochs are often far below the rest: show the last 90% of the range
    values = [v for vals in curves.values() for v in vals[len(vals) // 10 :]]
    if values:
        lo, hi = min(values), max(values)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax.set_ylim(lo - pad, hi + pad)
    _legend_below(ax)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig


def _images(name: str, x: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    h, w = (int(v) for v in image_shape)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x[0].numel() != h * w:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be (n, {h * w}) or (n, {h}, {w}) images, got {shape}")
    return x.detach().cpu().reshape(-1, h, w)


def plot_reconstructions(
    data: torch.Tensor,
    reconstructions: torch.Tensor,
    image_shape: Sequence[int],
    title: str = "data and reconstructions",
    cols: int = 16,
    path: str | os.PathLike | None = None,
):
    """Images above their reconstructions, column by column.

    Args:
        data: ``(n, H*W)`` or ``(n, H, W)`` images in [0, 1].
        reconstructions: The same shape (e.g. decoder means at the encoder means).
        image_shape: ``(H, W)``.
        title: Figure title.
        cols: Images per row.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    x = _images("data", data, image_shape)
    r = _images("reconstructions", reconstructions, image_shape)
    if len(x) != len(r):
        raise ValueError(
            f"data and reconstructions must hold as many images, got {len(x)} and {len(r)}"
        )
    return plot_image_rows([("data", x), ("recon.", r)], title, cols=min(cols, len(x)), path=path)


def plot_samples(
    samples: torch.Tensor,
    image_shape: Sequence[int],
    title: str = "samples",
    cols: int = 16,
    path: str | os.PathLike | None = None,
):
    """A grid of generated images.

    Args:
        samples: ``(n, H*W)`` or ``(n, H, W)`` images in [0, 1] (e.g. decoder means of prior
            draws).
        image_shape: ``(H, W)``.
        title: Figure title.
        cols: Images per row.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    x = _images("samples", samples, image_shape)
    return plot_image_rows([("", x)], title, cols=min(cols, len(x)), path=path)


def plot_khat(
    khat: Any,
    title: str = "Pareto k-hat per datapoint",
    path: str | os.PathLike | None = None,
):
    """Pareto k-hat per datapoint with the 0.5 and 0.7 thresholds, coloured by category.

    Args:
        khat: A :class:`~pyrovi.diagnostics.ParetoKHat` or a ``(N,)`` tensor of k-hats.
        title: Figure title.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    from pyrovi.diagnostics.psis import BAD_KHAT, GOOD_KHAT

    k = getattr(khat, "khat", khat)
    if not isinstance(k, torch.Tensor):
        k = torch.as_tensor(k)
    k = k.detach().cpu().double().reshape(-1)
    idx = torch.arange(len(k), dtype=torch.float64)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    groups = (
        (k < GOOD_KHAT, "tab:green", f"k < {GOOD_KHAT}"),
        ((k >= GOOD_KHAT) & (k < BAD_KHAT), "tab:orange", f"{GOOD_KHAT} <= k < {BAD_KHAT}"),
        (k >= BAD_KHAT, "tab:red", f"k >= {BAD_KHAT}"),
    )
    finite = torch.isfinite(k)
    for mask, colour, label in groups:
        mask = mask & finite
        ax.scatter(
            idx[mask].numpy(), k[mask].numpy(), s=10, c=colour, label=f"{label}: {int(mask.sum())}"
        )
    for level, style in ((GOOD_KHAT, "--"), (BAD_KHAT, "-")):
        ax.axhline(level, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xlabel("datapoint")
    ax.set_ylabel("Pareto k-hat")
    _legend_below(ax)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_kl_per_dimension(
    report: Any,
    title: str = "KL(q(z_d|x) || p(z_d)) per latent dimension",
    path: str | os.PathLike | None = None,
):
    """Bars of the KL per latent dimension, active units highlighted, activity on a second axis.

    Args:
        report: A :class:`~pyrovi.diagnostics.CollapseReport`.
        title: Figure title.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    for name in ("kl", "activity", "active", "threshold"):
        if not hasattr(report, name):
            raise TypeError(
                f"report must be a CollapseReport (from posterior_collapse), got "
                f"{type(report).__name__}"
            )
    kl = report.kl.detach().cpu().double().numpy()
    activity = report.activity.detach().cpu().double().numpy()
    active = report.active.detach().cpu()
    d = list(range(len(kl)))
    fig = Figure(figsize=(max(5.0, 0.35 * len(kl) + 2), 4))
    ax = fig.add_subplot()
    colours = ["tab:blue" if a else "lightgrey" for a in active.tolist()]
    ax.bar(d, kl, color=colours)
    ax.set_xlabel("latent dimension (grey: inactive)")
    ax.set_ylabel("KL (nats, mean over data)")
    ax.set_xticks(d)
    twin = ax.twinx()
    twin.plot(d, activity, "o", color="black", markersize=4, label="activity Cov_x(E_q[z_d])")
    twin.axhline(report.threshold, color="black", linestyle=":", linewidth=0.8)
    twin.set_yscale("log")
    twin.set_ylabel("activity (log scale)")
    _legend_below(ax, twin)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_gaps(
    gaps: Any,
    title: str = "inference gaps per datapoint",
    path: str | os.PathLike | None = None,
):
    """Histograms of the approximation and amortization gaps per datapoint.

    Args:
        gaps: An :class:`~pyrovi.diagnostics.InferenceGaps`.
        title: Figure title.
        path: Save the figure here.

    Returns:
        ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    if not hasattr(gaps, "approximation_gap") or not hasattr(gaps, "amortization_gap"):
        raise TypeError(
            f"gaps must be an InferenceGaps (from inference_gaps), got {type(gaps).__name__}"
        )
    import numpy as np

    names = (("approximation_gap", "tab:blue"), ("amortization_gap", "tab:orange"))
    series = {name: getattr(gaps, name).detach().cpu().double() for name, _ in names}
    finite = np.concatenate([v[torch.isfinite(v)].numpy() for v in series.values()])
    bins = np.histogram_bin_edges(finite, bins=30) if finite.size else 30
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for name, colour in names:
        values = series[name]
        ax.hist(
            values[torch.isfinite(values)].numpy(),
            bins=bins,
            alpha=0.6,
            color=colour,
            label=f"{name.replace('_', ' ')} (mean {values.mean().item():.3f})",
        )
    ax.set_xlabel("nats")
    ax.set_ylabel("datapoints")
    _legend_below(ax)
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)
    return fig
