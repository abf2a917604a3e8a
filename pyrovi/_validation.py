"""Argument checks shared across pyrovi's modules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_tensors",
    "data_names",
    "describe",
    "integer",
    "positive_int",
    "positive_float",
    "integer_in",
    "boolean",
    "value_range",
    "all_finite",
]


def describe(value: Any) -> str:
    """A short description of an argument's value for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``int(value)`` if it is an integer (not a bool, not a float, not a string) with
    ``minimum <= value <= maximum``; else raise ``ValueError`` naming ``name`` and the range."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if not (ok and value >= minimum and (maximum is None or value <= maximum)):
        if maximum is not None:
            kind = f"an integer in [{minimum}, {maximum}]"
        elif minimum == 1:
            kind = "a positive integer"
        elif minimum == 0:
            kind = "a non-negative integer"
        else:
            kind = f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {describe(value)}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """Return ``int(value)`` if it is an integer >= 1 (not a bool); else raise ``ValueError``
    naming ``name``."""
    return integer(name, value, 1)


def positive_float(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Return ``float(value)`` if it is a finite real number > 0 (not a bool, a string or a
    tensor); ``None`` if ``allow_none`` and it is None; else raise ``ValueError`` naming ``name``.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        expected = "a positive finite number" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def integer_in(name: str, value: Any, lo: int, hi: int) -> int:
    """Return ``int(value)`` if it is an integer (not a bool) with ``lo <= value <= hi``; else
    raise ``ValueError`` naming ``name``."""
    return integer(name, value, lo, hi)


def boolean(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (or a NumPy bool); else raise ``TypeError`` naming
    ``name`` (a string such as ``"no"`` would otherwise count as true)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def value_range(x: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty real tensor in one pass (NaN in both if ``x`` has a NaN).

    One reduction and one device sync: about 15× faster on CPU than ``torch.isfinite(x).all()``,
    which writes a mask as large as ``x``.
    """
    lo, hi = torch.stack(torch.aminmax(x)).tolist()
    return lo, hi


def all_finite(x: torch.Tensor) -> bool:
    """True unless the floating-point tensor ``x`` holds a NaN or an infinity."""
    if x.numel() == 0:
        return True
    if x.is_complex():
        return bool(torch.isfinite(x).all())
    lo, hi = value_range(x)
    return math.isfinite(lo) and math.isfinite(hi)


def all_finite_many(tensors: Sequence[torch.Tensor]) -> bool:
    """True unless a floating-point tensor of ``tensors`` holds a NaN or an infinity: one
    max-norm per device and dtype (one host sync each), not one check per tensor."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        if t.numel() == 0:
            continue
        if t.is_complex():
            if not all_finite(t):
                return False
            continue
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        peak = torch.stack(torch._foreach_norm(group, math.inf)).max()
        if not math.isfinite(float(peak)):
            return False
    return True


def as_tensors(data: torch.Tensor | Sequence[torch.Tensor], name: str = "data") -> tuple:
    """``data`` (a tensor or a sequence of tensors) as a tuple of tensors sharing their leading
    (datapoint) dimension; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(data, torch.Tensor):
        tensors = (data,)
    else:
        try:
            tensors = () if isinstance(data, str | bytes) else tuple(data)
        except TypeError:  # not iterable (None, a number, ...)
            tensors = ()
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{name} must be a tensor or a tuple of tensors, got {type(data).__name__}")
    n = tensors[0].shape[0] if tensors[0].dim() else None
    if n is None or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            f"{name}: every tensor needs the same leading (datapoint) dimension, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return tensors


def data_names(tensors: tuple, name: str = "data") -> list[str]:
    """Names of the data tensors for messages: ``data``, or ``data[i]`` for a tuple."""
    return [name] if len(tensors) == 1 else [f"{name}[{i}]" for i in range(len(tensors))]
