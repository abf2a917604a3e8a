"""Amortized Gaussian guides ``q(z | x)`` whose parameters come from an encoder network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_hidden_dims, check_nonnegative, check_plate_name
from pyrovi.models._checks import check_features, check_values
from pyrovi.nn import MLP, submodule
from pyrovi.nn.probe import probe_output

__all__ = ["AmortizedNormal", "AmortizedMultivariateNormal"]


def _out_features(encoder: nn.Module, in_dim: int) -> int:
    out_dim = getattr(encoder, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    return probe_output(encoder, in_dim, "encoder")


class _AmortizedGuide(PyroModule):
    """Shared trunk: ``[x, context] -> features``; subclasses add the distribution heads."""

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        hidden_dims: Sequence[int] = (512, 256),
        encoder: nn.Module | None = None,
        context_dim: int = 0,
        site: str = "z",
        plate: str = "data",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, value in (("x_dim", x_dim), ("z_dim", z_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 0:
            raise ValueError(f"context_dim must be a non-negative integer, got {context_dim!r}")
        min_scale = check_nonnegative("min_scale", min_scale)
        site = check_plate_name(site, "site", allow_none=False, what="a sample site")
        plate = check_plate_name(plate, "plate", allow_none=False)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module or None, got {type(encoder).__name__}")
        self.x_dim, self.z_dim, self.context_dim = x_dim, z_dim, context_dim
        self.site, self.plate, self.min_scale = site, plate, min_scale
        in_dim = x_dim + context_dim
        hidden = check_hidden_dims(hidden_dims)
        if encoder is None:
            encoder = (
                nn.Sequential(MLP(in_dim, hidden[:-1], hidden[-1]), nn.ReLU())
                if hidden
                else nn.Identity()
            )
        self.encoder = encoder
        self.features = (
            in_dim if isinstance(encoder, nn.Identity) else _out_features(encoder, in_dim)
        )
        size = self.head_size(z_dim)
        self.head = nn.Linear(self.features, size) if size else None

    @staticmethod
    def head_size(z_dim: int) -> int:
        """Number of outputs of the linear head on the encoder features (abstract: each guide
        defines its own)."""
        raise NotImplementedError(
            f"a subclass of _AmortizedGuide must define head_size, not {z_dim}"
        )

    def _inputs(self, x: torch.Tensor, args: tuple) -> torch.Tensor:
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)
        if not self.context_dim:
            return x
        if not args or not isinstance(args[0], torch.Tensor):
            raise ValueError(
                f"this guide has context_dim={self.context_dim}: call it as guide(x, c) with c of "
                f"shape (batch, {self.context_dim})"
            )
        c = args[0]
        if c.shape != (x.shape[0], self.context_dim):
            raise ValueError(
                f"c must have shape ({x.shape[0]}, {self.context_dim}), got {tuple(c.shape)}"
            )
        return torch.cat([x, c.to(x.dtype)], dim=-1)

    def distribution(self, x: torch.Tensor, *args: torch.Tensor) -> dist.Distribution:
        """``q(z | x, c)`` with batch shape ``(batch,)`` and event shape ``(z_dim,)`` (abstract)."""
        raise NotImplementedError(f"{type(self).__name__} must define distribution(x, *context)")

    def forward(self, x: torch.Tensor, *args: torch.Tensor, **kwargs) -> torch.Tensor:
        """The guide. ``x``: ``(batch, x_dim)``; ``args[0]`` is the context when
        ``context_dim > 0``, other arguments (the model's) are ignored. Returns ``z``."""
        q = self.distribution(x, *args)
        with pyro.plate(self.plate, x.shape[0]):
            return pyro.sample(self.site, q)


class AmortizedNormal(_AmortizedGuide):
    """Diagonal Gaussian ``q(z | x) = N(μ(x), diag σ(x)²)`` at site ``site`` in plate ``plate``.

    Works with any Pyro model whose latent site has the same name and lies in
    ``pyro.plate(plate, batch)``, e.g. :class:`pyrovi.models.VAE`.

    Args:
        x_dim: Observed features D.
        z_dim: Latent dimension.
        hidden_dims: Widths of the default MLP trunk (empty: a linear encoder).
        encoder: Optional trunk module mapping ``(batch, x_dim + context_dim) -> (batch, F)``.
        context_dim: Features of a conditioning input ``c`` (guide called as ``guide(x, c)``).
        site: Name of the latent sample site.
        plate: Name of the per-datapoint plate.
        min_scale: Floor added to σ for numerical stability.
    """

    @staticmethod
    def head_size(z_dim: int) -> int:
        """Outputs of the linear head: ``z_dim`` means and ``z_dim`` raw scales."""
        return 2 * z_dim

    def encode(self, x: torch.Tensor, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation, each ``(batch, z_dim)``."""
        features = submodule(self, "encoder")(self._inputs(x, args))
        loc, raw = submodule(self, "head")(features).chunk(2, dim=-1)
        return loc, F.softplus(raw) + self.min_scale

    def distribution(self, x: torch.Tensor, *args: torch.Tensor) -> dist.Distribution:  # noqa: D102
        loc, scale = self.encode(x, *args)
        return dist.Normal(loc, scale).to_event(1)


class AmortizedMultivariateNormal(_AmortizedGuide):
    """Full-covariance Gaussian ``q(z | x) = N(μ(x), L(x) L(x)ᵀ)`` with a Cholesky factor L.

    The lower triangle of L comes from a linear head; its diagonal goes through a softplus
    (plus ``min_scale``), so L is a valid Cholesky factor for every input. Same arguments as
    :class:`AmortizedNormal`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rows, cols = torch.tril_indices(self.z_dim, self.z_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    @staticmethod
    def head_size(z_dim: int) -> int:
        """Outputs of the linear head: means, raw diagonal, strictly lower triangle of L."""
        return 2 * z_dim + z_dim * (z_dim - 1) // 2

    def encode(self, x: torch.Tensor, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean ``(batch, z_dim)`` and Cholesky factor ``(batch, z_dim, z_dim)``."""
        out = submodule(self, "head")(submodule(self, "encoder")(self._inputs(x, args)))
        d = self.z_dim
        loc, raw_diag, off = out[..., :d], out[..., d : 2 * d], out[..., 2 * d :]
        tril = torch.diag_embed(F.softplus(raw_diag) + self.min_scale)
        if off.shape[-1]:
            tril = _fill(tril, off, self._rows, self._cols)
        return loc, tril

    def distribution(self, x: torch.Tensor, *args: torch.Tensor) -> dist.Distribution:  # noqa: D102
        loc, tril = self.encode(x, *args)
        return dist.MultivariateNormal(loc, scale_tril=tril)


def _fill(tril: torch.Tensor, off: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    lower = torch.zeros_like(tril)
    lower[..., rows, cols] = off
    return tril + lower
