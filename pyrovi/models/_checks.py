"""Input checks shared by the models."""

from __future__ import annotations

import math

import torch
from pyro.poutine.util import is_validation_enabled

from pyrovi._checks import check_hidden_dims, check_real
from pyrovi._validation import positive_int, value_range
from pyrovi.nn.probe import probe_output

_LIKELIHOODS = ("bernoulli", "gaussian")


def check_likelihood(likelihood: str) -> str:
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def check_features(name: str, x: torch.Tensor, dim: int) -> None:
    """Raise unless ``x`` is a non-empty floating-point tensor ``(batch, dim)`` (O(1))."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape (batch, {dim}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): no datapoints")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype} (convert with .float())"
        )


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


def check_number(
    name: str, value: float, *, positive: bool = False, allow_inf: bool = False
) -> float:
    """A finite number ``>= 0`` (``> 0`` with ``positive``), or ``ValueError`` naming ``name``."""
    return check_real(name, value, low=0.0, low_open=positive, allow_inf=allow_inf)


def reversed_hidden(hidden_dims) -> tuple[int, ...]:
    """The checked ``hidden_dims`` reversed (the decoder's widths)."""
    return tuple(reversed(check_hidden_dims(hidden_dims)))


def check_output(name: str, module: torch.nn.Module, in_dim: int, out_dim: int) -> None:
    """Run ``module`` on a dummy input to check that it maps ``in_dim`` to ``out_dim`` features."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{name} must be an nn.Module, got {type(module).__name__}")
    probe_output(module, in_dim, name, expected=out_dim)


def batch_of(x: torch.Tensor | None, x_dim: int, num_samples: int | None) -> int:
    """Batch size of a model call: ``x`` ``(batch, x_dim)``, or ``num_samples`` if ``x`` is None."""
    if x is not None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != x_dim:
            raise ValueError(
                f"x must be a tensor of shape (batch, x_dim={x_dim}), got "
                f"{getattr(x, 'shape', type(x).__name__)}"
            )
        check_features("x", x, x_dim)
        if is_validation_enabled():
            check_values("x", x)
        return x.shape[0]
    if num_samples is None:
        raise ValueError("num_samples is needed when x is None (sampling from the model)")
    return positive_int("num_samples", num_samples)
