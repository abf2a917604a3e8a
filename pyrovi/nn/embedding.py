"""Embedding networks for simulation-based inference: data (or summary statistics) -> features."""

from __future__ import annotations

import torch
from torch import nn

from pyrovi._checks import check_int, check_nonnegative, check_tensor
from pyrovi.nn.mlp import MLP

__all__ = ["Standardize", "SeriesConvEmbedding", "SeriesGRUEmbedding", "embedding_net"]

EMBEDDING_KINDS = ("mlp", "conv", "gru", "identity")


class Standardize(nn.Module):
    """``(x − mean) / std`` with fixed buffers, computed from data by :meth:`fit`.

    Args:
        shape: Shape of one input (the trailing dimensions the statistics are taken over).
    """

    def __init__(self, shape: tuple[int, ...] | torch.Size) -> None:
        super().__init__()
        if isinstance(shape, int):
            shape = (shape,)
        if not isinstance(shape, tuple | list | torch.Size) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(f"shape must be a tuple of positive integers, got {shape!r}")
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, min_std: float = 1e-6) -> Standardize:
        """Set mean and standard deviation from ``x`` of shape ``(N,) + shape``; returns self.

        Constant features (std below ``min_std`` times the largest std, or zero) get std 1.

        Raises:
            ValueError: ``x`` is empty, has the wrong shape or non-finite values; ``min_std`` is
                negative.
            TypeError: ``x`` is not a floating-point tensor.
        """
        shape = tuple(self.mean.shape)
        check_tensor("x", x, floating=True)
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must have shape (N, *{shape}), got {tuple(x.shape)}")
        check_tensor("x", x, nonempty=True, finite=True)
        min_std = check_nonnegative("min_std", min_std)
        mean = x.mean(0)
        std = x.std(0) if x.shape[0] > 1 else torch.zeros_like(mean)
        floor = min_std * float(std.max().clamp_min(1e-12))
        std = torch.where(std > floor, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n = self.mean.dim()
        if x.dim() < n or x.shape[x.dim() - n :] != self.mean.shape:
            raise ValueError(
                f"x must have shape (..., *{tuple(self.mean.shape)}), got {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std


class SeriesConvEmbedding(nn.Module):
    """A 1-D convolutional embedding of a univariate series ``(batch, T) -> (batch, out)``.

    Two conv layers (kernel 5, ``channels`` channels, ReLU), adaptive average pooling to 8
    positions, then a linear layer.

    Args:
        out_features: Output features.
        channels: Convolution channels.
    """

    def __init__(self, out_features: int = 16, channels: int = 16) -> None:
        super().__init__()
        out_features = check_int("out_features", out_features)
        channels = check_int("channels", channels)
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(8),
            nn.Flatten(),
            nn.Linear(8 * channels, out_features),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if y.dim() != 2:
            raise ValueError(f"y must be a batch of series (batch, T), got {tuple(y.shape)}")
        return self.net(y.unsqueeze(-2))


class SeriesGRUEmbedding(nn.Module):
    """A GRU over a univariate series, its last hidden state mapped to ``out_features``.

    Args:
        out_features: Output features.
        hidden: GRU hidden size.
    """

    def __init__(self, out_features: int = 16, hidden: int = 32) -> None:
        super().__init__()
        out_features, hidden = check_int("out_features", out_features), check_int("hidden", hidden)
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if y.dim() != 2:
            raise ValueError(f"y must be a batch of series (batch, T), got {tuple(y.shape)}")
        _, h = self.gru(y.unsqueeze(-1))
        return self.head(h[-1])


def embedding_net(
    kind: str | nn.Module, in_features: int, out_features: int = 32, hidden: int = 64
) -> tuple[nn.Module, int]:
    """An embedding network by name and its number of output features.

    Args:
        kind: ``"mlp"`` (two hidden layers of width ``hidden`` on a feature vector), ``"conv"``
            (:class:`SeriesConvEmbedding`) or ``"gru"`` (:class:`SeriesGRUEmbedding`) on a raw
            series ``(batch, T)``, ``"identity"``, or a module (its output width is probed).
        in_features: Input features (the series length T for ``conv``/``gru``).
        out_features: Output features of the named networks.
        hidden: Hidden width (MLP layers, GRU state, conv channels / 2).

    Returns:
        ``(module, out_features)``.

    Raises:
        ValueError: Unknown ``kind``; a count that is not a positive integer; a module that
            fails on, or does not map, a batch ``(2, in_features)`` to ``(2, F)``.
    """
    in_features = check_int("in_features", in_features)
    if isinstance(kind, nn.Module):
        p = next(iter(kind.parameters()), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        device = p.device if p is not None else None
        try:
            with torch.no_grad():
                out = kind(torch.zeros(2, in_features, dtype=dtype, device=device))
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"embedding must map (batch, {in_features}) to (batch, features); calling it on "
                f"zeros of shape (2, {in_features}) failed: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
            out = out if isinstance(out, torch.Tensor) else torch.zeros(0)
            raise ValueError(
                f"embedding must map (batch, {in_features}) to (batch, features), got "
                f"{tuple(out.shape)} for a batch of 2"
            )
        return kind, int(out.shape[-1])
    out_features = check_int("out_features", out_features)
    hidden = check_int("hidden", hidden)
    if kind == "mlp":
        return MLP(in_features, (hidden, hidden), out_features), out_features
    if kind == "conv":
        return SeriesConvEmbedding(out_features, max(1, hidden // 2)), out_features
    if kind == "gru":
        return SeriesGRUEmbedding(out_features, hidden), out_features
    if kind == "identity":
        return nn.Identity(), in_features
    raise ValueError(f"embedding must be one of {EMBEDDING_KINDS} or an nn.Module, got {kind!r}")
