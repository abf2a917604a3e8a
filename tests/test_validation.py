"""pyrovi._validation: the shared argument and value checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyrovi._validation import (
    all_finite,
    boolean,
    integer_in,
    positive_float,
    positive_int,
    value_range,
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_all_finite_finds_nan_and_both_infinities(dtype, device):
    x = torch.linspace(-3, 3, 7, device=device).to(dtype).reshape(1, 7)
    assert all_finite(x)
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[0, 4] = bad
        assert not all_finite(y), bad
    assert all_finite(torch.empty(0, 3, dtype=dtype, device=device))


def test_all_finite_on_complex_tensors():
    assert all_finite(torch.tensor([1 + 2j, -3j]))
    assert not all_finite(torch.tensor([1 + 2j, complex(0, float("inf"))]))


def test_value_range_is_min_and_max(device):
    x = torch.tensor([[0.5, -2.0], [7.0, 1.0]], dtype=torch.float64, device=device)
    assert value_range(x) == (-2.0, 7.0)
    lo, hi = value_range(torch.tensor([1.0, float("nan")]))
    assert math.isnan(lo) and math.isnan(hi)


def test_positive_int_names_the_argument():
    assert positive_int("steps", 3) == 3
    for bad in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            positive_int("steps", bad)


def test_positive_float_names_the_argument():
    assert positive_float("lr", 0.5) == 0.5
    assert positive_float("lr", np.float32(0.25)) == 0.25
    assert positive_float("clip", None, allow_none=True) is None
    for bad in (0, -1.0, float("nan"), float("inf"), True, "1", None, torch.tensor(1.0)):
        with pytest.raises(ValueError, match="lr must be a positive finite number, got"):
            positive_float("lr", bad)
    with pytest.raises(ValueError, match="clip must be a positive finite number or None, got 0"):
        positive_float("clip", 0, allow_none=True)


def test_integer_in_names_the_argument_and_the_range():
    assert integer_in("seed", np.int64(7), 0, 9) == 7
    for bad in (-1, 10, 1.0, True, "3", None):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9\], got"):
            integer_in("seed", bad, 0, 9)


def test_boolean_refuses_truthy_values():
    assert boolean("progress", False) is False and boolean("progress", np.bool_(True)) is True
    for bad in ("no", 0, 1, None):
        with pytest.raises(TypeError, match="progress must be True or False, got"):
            boolean("progress", bad)
