"""Checks of what :class:`~pyrovi.compress.BitsBackCoder` is given: the model/guide pair, its
options and the data. Each failure is a ``TypeError`` or ``ValueError`` naming the argument."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pyrovi.compress.pixels import BernoulliPixels, DiscretizedGaussianPixels, PixelLikelihood

__all__ = ["positive_int", "check_pair", "model_likelihood", "as_array", "shape_hint"]


def positive_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int if it is an integer in ``[low, high]``, else a ValueError naming it."""
    integer = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not integer or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _dimension(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def check_pair(model: Any, guide: Any) -> tuple[int, int]:
    """``(x_dim, z_dim)`` of a VAE-like model/guide pair, or a TypeError/ValueError saying why
    it is not one."""
    for attr in ("z_dim", "x_dim", "decoder"):
        if not hasattr(model, attr):
            raise TypeError(
                f"model must have a '{attr}' attribute (a VAE-like model such as "
                f"pyrovi.models.VAE), got {type(model).__name__}"
            )
    if not isinstance(model.decoder, nn.Module):
        raise TypeError(
            f"model.decoder must be a torch.nn.Module, got {type(model.decoder).__name__}"
        )
    if not callable(getattr(guide, "encode", None)):
        raise TypeError(
            "guide must have an encode(x) -> (loc, scale) method (an amortized Gaussian guide "
            f"such as pyrovi.guides.AmortizedNormal), got {type(guide).__name__}"
        )
    if not isinstance(guide, nn.Module):
        raise TypeError(f"guide must be a torch.nn.Module, got {type(guide).__name__}")
    x_dim, z_dim = _dimension("model.x_dim", model.x_dim), _dimension("model.z_dim", model.z_dim)
    for name, mine in (("x_dim", x_dim), ("z_dim", z_dim)):
        theirs = getattr(guide, name, None)
        if isinstance(theirs, int) and theirs != mine:
            raise ValueError(
                f"guide.{name}={theirs} but model.{name}={mine}: they are not a model/guide pair"
            )
    return x_dim, z_dim


def model_likelihood(model: Any, levels: int) -> PixelLikelihood:
    """The pixel likelihood of a model with ``likelihood`` ``"bernoulli"`` or ``"gaussian"``."""
    kind = getattr(model, "likelihood", None)
    if kind == "bernoulli":
        return BernoulliPixels()
    if kind == "gaussian":
        scale = getattr(model, "obs_scale", None)
        if not isinstance(scale, torch.Tensor):
            raise TypeError("model.obs_scale must be a tensor for a Gaussian likelihood")
        return DiscretizedGaussianPixels(scale.detach().to("cpu", torch.float64).numpy(), levels)
    raise ValueError(
        f"model.likelihood must be 'bernoulli' or 'gaussian', got {kind!r}; "
        "pass likelihood=CategoricalPixels(...) or another PixelLikelihood"
    )


def as_array(data: Any, x_dim: int) -> np.ndarray:
    """``data`` as a float64 array (any shape), or a TypeError/ValueError naming it."""
    if isinstance(data, torch.Tensor):
        if data.is_complex():
            raise TypeError(f"data must be real, got a complex tensor ({data.dtype})")
        return data.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise ValueError(
            f"data must be a rectangular (N, {x_dim}) array, got a ragged {type(data).__name__}"
        ) from None
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"data must hold real numbers (a tensor or array of bool, integer or float), got "
            f"{type(data).__name__} of dtype {array.dtype}"
        )
    return array.astype(np.float64)


def shape_hint(shape: tuple[int, ...], x_dim: int) -> str:
    """A suggestion for data of ``shape`` that is not ``(N, x_dim)`` with ``N >= 1``."""
    if len(shape) == 2 and shape[0] == 0:
        return ": it is empty, there is nothing to encode"
    if len(shape) == 1 and shape[0] == x_dim:
        return " (a single datapoint: pass data[None])"
    if len(shape) > 2 and math.prod(shape[1:]) == x_dim:
        return f" (flatten the images: data.reshape(len(data), {x_dim}))"
    return ""
