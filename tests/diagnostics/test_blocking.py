"""Blocking standard errors against series with a known autocorrelation."""

import math

import pytest
import torch

from pyrovi.diagnostics import blocking


def _ar1(n, phi, seed):
    """x_k = φ x_{k−1} + e_k, started stationary."""
    from scipy.signal import lfilter

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, generator=g, dtype=torch.float64).numpy()
    noise[0] /= math.sqrt(1 - phi**2)
    return torch.from_numpy(lfilter([1.0], [1.0, -phi], noise))


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_blocking_matches_the_ar1_standard_error(phi):
    """AR(1) with unit innovations: Var(mean) ≈ 1/((1 − φ)² n)."""
    n = 2**16
    errors = []
    for seed in range(4):
        res = blocking(_ar1(n, phi, seed))
        errors.append(res.stderr)
        assert res.converged
    exact = 1 / ((1 - phi) * math.sqrt(n))
    assert sum(errors) / len(errors) == pytest.approx(exact, rel=0.15)
    if phi > 0:  # the naive error is too small by √((1+φ)/(1−φ))
        naive = blocking(_ar1(n, phi, 0)).naive_stderr
        assert naive < 0.8 * exact


def test_blocking_of_independent_samples_is_the_naive_error():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = blocking(x)
    assert res.stderr == pytest.approx(res.naive_stderr, rel=0.25)
    assert res.mean == pytest.approx(float(x.mean()))
    assert res.levels[0] == (1, pytest.approx(float(x.std()) / 64))
    assert "stderr" in res.as_dict() and "BlockingResult" in repr(res)


def test_blocking_of_a_constant_is_zero():
    res = blocking(torch.full((100,), 2.5, dtype=torch.float64))
    assert res.stderr == 0 and res.mean == 2.5 and res.inefficiency == 1.0


def test_blocking_rejects_bad_series():
    with pytest.raises(ValueError, match="series: expected a 1-D series"):
        blocking(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="series: expected a 1-D series"):
        blocking(torch.zeros(1))
    with pytest.raises(ValueError, match="series: contains NaN"):
        blocking(torch.tensor([1.0, float("nan"), 2.0]))
    with pytest.raises(ValueError, match="min_blocks must be an integer >= 2"):
        blocking(torch.zeros(10), min_blocks=1)
