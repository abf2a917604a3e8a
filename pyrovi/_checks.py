"""Argument checks for models, guides, distributions and estimators: a clear error that names
the argument and what was expected.

Every check raises ``ValueError`` (a bad value, including a float or a bool where an integer is
needed) or ``TypeError`` (not the kind of object at all: a string where a sequence of numbers is
needed, a list where a tensor is needed, something not callable) with a message that starts with
the argument's name. The checks are meant for construction time and for the first call of a
user-supplied function; the per-call ones (:func:`check_data`, :func:`check_output`) cost one
reduction of the tensor at most (:func:`pyrovi._validation.all_finite`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from pyrovi._validation import all_finite, boolean, describe, integer

__all__ = [
    "check_int",
    "check_optional_int",
    "check_hidden_dims",
    "check_real",
    "check_positive",
    "check_nonnegative",
    "check_finite",
    "check_probability",
    "check_bool",
    "check_callable",
    "check_tensor",
    "check_data",
    "check_model_args",
    "check_output",
    "check_plate_name",
]


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool, not a float) ``>= minimum``
    (:func:`pyrovi._validation.integer`).

    Raises:
        ValueError: Otherwise (``2.5``, ``2.0``, ``True``, ``"3"``, values below ``minimum``).
    """
    return integer(name, value, minimum)


def check_optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """:func:`check_int`, except that ``None`` passes (and is returned)."""
    return None if value is None else check_int(name, value, minimum)


def check_hidden_dims(
    value: Any, name: str = "hidden_dims", *, allow_empty: bool = True
) -> tuple[int, ...]:
    """Layer widths: a sequence of positive integers.

    A string is refused rather than iterated (``"16"`` would otherwise give layers of width 1
    and 6), and so are single numbers, floats, bools, zeros and negative widths.

    Args:
        value: What was passed.
        name: The argument's name.
        allow_empty: Whether ``()`` (no hidden layer) is allowed.

    Returns:
        The widths as a tuple of ints.

    Raises:
        TypeError: ``value`` is a string, a number, None or not iterable.
        ValueError: An element is not a positive integer, or the sequence is empty when that is
            not allowed.
    """
    if isinstance(value, str | bytes):
        raise TypeError(
            f"{name} must be a sequence of positive integers (layer widths), got the string "
            f"{value!r}; write e.g. (16,) for one hidden layer of 16 units"
        )
    if isinstance(value, torch.Tensor) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a sequence of positive integers (layer widths), got "
            f"{describe(value)}; write e.g. (16,) for one hidden layer of 16 units"
        )
    widths = tuple(value)
    for i, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(
                f"{name} must be a sequence of positive integers (layer widths), got "
                f"{describe(value)}: entry {i} is {w!r}"
            )
    if not widths and not allow_empty:
        raise ValueError(f"{name} must hold at least one layer width, got {describe(value)}")
    return tuple(int(w) for w in widths)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    allow_none: bool = False,
    kind: str | None = None,
) -> float | None:
    """``value`` as a ``float`` if it is a real number (not a bool, not NaN) in a range.

    Args:
        name: The argument's name.
        value: What was passed.
        low: Lower bound (inclusive unless ``low_open``).
        high: Upper bound (inclusive unless ``high_open``).
        low_open: Exclude ``low``.
        high_open: Exclude ``high``.
        allow_inf: Accept infinities (within the bounds).
        allow_none: Accept ``None`` (returned as is).
        kind: How the message describes the allowed values (default from the bounds).

    Returns:
        ``float(value)`` (or None).

    Raises:
        ValueError: Not a number, a bool, NaN, infinite (unless allowed) or out of range.
    """
    if value is None and allow_none:
        return None
    if kind is None:
        kind = _kind(low, high, low_open, high_open)
    none = " or None" if allow_none else ""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {kind}{none}, got {describe(value)}")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must be {kind}{none}, got nan")
    if math.isinf(x) and not allow_inf:
        raise ValueError(f"{name} must be {kind}{none}, got {x}; it must be finite")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name} must be {kind}{none}, got {value!r}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name} must be {kind}{none}, got {value!r}")
    return x


def _kind(low, high, low_open, high_open) -> str:
    if low == 0 and high is None:
        return "a positive number" if low_open else "a non-negative number"
    if low is None and high is None:
        return "a finite number"
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"a number in {left}{lo}, {hi}{right}"


def check_positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """A finite number ``> 0`` (see :func:`check_real`)."""
    return check_real(name, value, low=0.0, low_open=True, allow_none=allow_none)


def check_nonnegative(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """A finite number ``>= 0`` (see :func:`check_real`)."""
    return check_real(name, value, low=0.0, allow_none=allow_none)


def check_finite(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Any finite number (see :func:`check_real`)."""
    return check_real(name, value, allow_none=allow_none)


def check_probability(name: str, value: Any, *, open_low: bool = True, open_high: bool = True):
    """A number in ``(0, 1)`` (ends included when ``open_low`` / ``open_high`` are False)."""
    kind = f"in {'(' if open_low else '['}0, 1{')' if open_high else ']'}"
    return check_real(
        name, value, low=0.0, high=1.0, low_open=open_low, high_open=open_high, kind=kind
    )


check_bool = boolean
"""``value`` if it is a bool (NumPy bools too); else ``TypeError`` naming ``name`` (a string
such as ``"False"`` would otherwise count as true); :func:`pyrovi._validation.boolean`."""


def check_callable(name: str, value: Any, what: str = "a callable") -> Callable:
    """``value`` if it is callable, else ``TypeError`` naming ``name``."""
    if not callable(value):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_tensor(
    name: str,
    value: Any,
    *,
    dim: int | None = None,
    shape: Sequence[int | None] | None = None,
    floating: bool = False,
    finite: bool = False,
    nonempty: bool = False,
    where: str = "",
) -> torch.Tensor:
    """``value`` if it is a tensor of the given rank / shape / dtype, with finite entries.

    Args:
        name: The argument's name.
        value: What was passed.
        dim: Required number of dimensions.
        shape: Required shape; ``None`` entries match any size.
        floating: Require a floating-point dtype.
        finite: Require no NaN or infinity (floating tensors; one reduction).
        nonempty: Require at least one element.
        where: Prefix of the message (e.g. the function's name).

    Returns:
        ``value``.

    Raises:
        TypeError: Not a tensor, or not floating point when required.
        ValueError: Wrong rank or shape, empty, or non-finite entries.
    """
    pre = f"{where}: " if where else ""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{pre}{name} must be a torch.Tensor, got {type(value).__name__}")
    if dim is not None and value.dim() != dim:
        raise ValueError(
            f"{pre}{name} must have {dim} dimension(s), got shape {tuple(value.shape)}"
        )
    if shape is not None:
        want = tuple(shape)
        got = tuple(value.shape)
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            text = "(" + ", ".join("·" if w is None else str(w) for w in want) + ")"
            raise ValueError(f"{pre}{name} must have shape {text}, got {got}")
    if floating and not value.is_floating_point():
        raise TypeError(f"{pre}{name} must be a floating-point tensor, got dtype {value.dtype}")
    if nonempty and value.numel() == 0:
        raise ValueError(f"{pre}{name} is empty (shape {tuple(value.shape)})")
    if finite and (value.is_floating_point() or value.is_complex()) and not all_finite(value):
        raise ValueError(f"{pre}{name} contains NaN or infinite values")
    return value


def check_data(tensors: Sequence[Any], names: Sequence[str], caller: str) -> None:
    """Refuse empty data and NaN/inf values in the tensors among ``tensors``.

    Non-tensor entries are skipped; integer and bool tensors (labels, counts, masks) are only
    checked for emptiness. A tensor with no datapoints (size 0 along dimension 0) is refused.

    Args:
        tensors: The data (or the model's arguments).
        names: One name per entry, used in the messages (e.g. ``"data"``, ``"args[1]"``).
        caller: The public function's name.

    Raises:
        ValueError: An empty tensor, or a floating tensor with NaN or infinite values.
    """
    for value, name in zip(tensors, names, strict=True):
        if not isinstance(value, torch.Tensor):
            continue
        if value.dim() and value.shape[0] == 0:
            raise ValueError(
                f"{caller}: {name} is empty (shape {tuple(value.shape)}): no datapoints"
            )
        if (value.is_floating_point() or value.is_complex()) and not all_finite(value):
            raise ValueError(
                f"{caller}: {name} contains NaN or infinite values; remove or impute them "
                "(or mask missing observations and fill them with any finite value)"
            )


def check_model_args(args: Sequence[Any], kwargs: dict[str, Any], caller: str) -> None:
    """The arguments a model is called with, as data: the first tensor among ``args`` must hold
    datapoints (not be empty along dimension 0) and every floating tensor must be finite.

    Messages name ``args[i]`` or the keyword. Non-tensor arguments are skipped.

    Raises:
        ValueError: An empty first tensor, or NaN / infinite values.
    """
    named = [(a, f"args[{i}]") for i, a in enumerate(args)]
    named += [(v, k) for k, v in kwargs.items()]
    tensors = [(v, n) for v, n in named if isinstance(v, torch.Tensor)]
    for i, (value, name) in enumerate(tensors):
        if i == 0:  # the data: datapoints along dimension 0
            check_data([value], [name], caller)
        elif (value.is_floating_point() or value.is_complex()) and not all_finite(value):
            raise ValueError(f"{caller}: {name} contains NaN or infinite values")


def check_output(
    name: str,
    value: Any,
    expected: Sequence[int],
    *,
    last: int | None = None,
    allow_scalar: bool = False,
    finite: bool = True,
    what: str = "",
) -> torch.Tensor:
    """Check what a user-supplied callable (``drift``, ``diffusion``, ``potential``) returned.

    The output must be a tensor that broadcasts to ``expected`` without enlarging it (so that
    it neither changes the shape of the states nor is silently spread over a wrong axis), with
    last dimension ``last`` when given, and with finite values when ``finite``.

    Args:
        name: The callable's name (e.g. ``"drift"``).
        value: What it returned.
        expected: The shape it must broadcast to.
        last: Allowed sizes of the last dimension (an int), or None for any.
        allow_scalar: Accept a 0-d tensor.
        finite: Check for NaN and infinities (one reduction).
        what: Description of the expected output for the message (default: the shape).

    Returns:
        ``value``.

    Raises:
        TypeError: Not a tensor.
        ValueError: A shape that does not fit, or non-finite values.
    """
    expected = tuple(expected)
    desc = what or f"shape {expected}"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must return a tensor ({desc}), got {type(value).__name__}")
    got = tuple(value.shape)
    ok = bool(got) or allow_scalar
    if ok and got:
        try:
            ok = torch.broadcast_shapes(got, expected) == expected
        except RuntimeError:
            ok = False
        if ok and last is not None:
            ok = got[-1] == last
    if not ok:
        raise ValueError(f"{name} returned a tensor of shape {got}, expected {desc}")
    if finite and value.is_floating_point() and not all_finite(value):
        raise ValueError(f"{name} returned NaN or infinite values ({desc})")
    return value


def check_plate_name(
    value: Any, name: str = "plate", *, allow_none: bool = True, what: str = "a pyro.plate"
) -> str | None:
    """A plate (or site) name: a non-empty string (or None when allowed)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be the name of {what} (a non-empty str), got {value!r}")
    return value
