"""Input checks shared by the models."""

from __future__ import annotations

import math

import torch

from pyrovi._validation import positive_int, value_range
from pyrovi.nn.probe import probe_output

_LIKELIHOODS = ("bernoulli", "gaussian")


def check_likelihood(likelihood: str) -> str:
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def check_features(name: str, x: torch.Tensor, dim: int) -> None:
    """Raise unless ``x`` is a tensor ``(batch, dim)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape (batch, {dim}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}")


def check_values(name: str, x: torch.Tensor, likelihood: str | None = None) -> None:
    """Raise on NaN/inf, and on values outside [0, 1] for a Bernoulli likelihood."""
    if not x.numel():
        return
    if x.is_floating_point():
        lo, hi = value_range(x)  # one pass for both checks
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or infinite values")
    elif likelihood == "bernoulli":
        lo, hi = float(x.min()), float(x.max())
    if likelihood == "bernoulli" and (lo < 0 or hi > 1):
        raise ValueError(
            f"{name} must lie in [0, 1] for a Bernoulli likelihood, got values in "
            f"[{lo:.4g}, {hi:.4g}]; rescale the data or use likelihood='gaussian'"
        )


def check_output(name: str, module: torch.nn.Module, in_dim: int, out_dim: int) -> None:
    """Run ``module`` on a dummy input to check that it maps ``in_dim`` to ``out_dim`` features."""
    probe_output(module, in_dim, name, expected=out_dim)


def batch_of(x: torch.Tensor | None, x_dim: int, num_samples: int | None) -> int:
    """Batch size of a model call: ``x`` ``(batch, x_dim)``, or ``num_samples`` if ``x`` is None."""
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != x_dim:
            raise ValueError(
                f"x must be a tensor of shape (batch, x_dim={x_dim}), got "
                f"{getattr(x, 'shape', type(x).__name__)}"
            )
        return x.shape[0]
    if num_samples is None:
        raise ValueError("num_samples is needed when x is None (sampling from the model)")
    return positive_int("num_samples", num_samples)
