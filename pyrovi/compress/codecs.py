"""Integer frequency tables for vectors of discrete distributions, built from their CDFs.

A :class:`QuantizedCDF` turns a monotone CDF in float64 into integer cumulative frequencies of
total ``2**precision`` in which every one of the ``n`` symbols has frequency at least 1:

``C(j) = j + floor(F(j) * (2**precision - n))``, ``j = 0 .. n``,

with ``F(0) = 0`` and ``F(n) = 1``, so ``C(0) = 0``, ``C(n) = 2**precision`` and
``C(j + 1) - C(j) >= 1``. Only the ``C(j)`` that are needed are computed: encoding a symbol
evaluates two of them, decoding runs a vectorized binary search (``ceil(log2 n)`` evaluations),
so a distribution over 4096 buckets costs no 4096-entry table. The same float64 inputs give the
same integers on the encoding and the decoding side, which is what an exact round trip needs.

Each lane (entry of the leading dimension) has its own distribution: pixel ``d`` of an image,
latent dimension ``k``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "QuantizedCDF",
    "bernoulli",
    "categorical",
    "discretized_gaussian",
    "normal_cdf",
    "uniform_frequencies",
]


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF in float64 (``torch.special.ndtr``), elementwise, same shape."""
    return torch.special.ndtr(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


class QuantizedCDF:
    """Integer frequencies of ``m`` distributions over ``{0, ..., n-1}`` (one per lane).

    Args:
        cdf: Vectorized CDF ``cdf(j, lanes)``: maps integer positions ``j`` (values in
            ``1 .. n-1``, one per lane of the slice ``lanes`` of the ``m`` lanes) to
            ``P(symbol < j)`` in float64, same shape. It must be non-decreasing in ``j`` for every
            lane and deterministic.
        num_symbols: Alphabet size ``n >= 2``.
        lanes: Number of distributions ``m``.
        precision: Total frequency ``2**precision``; needs ``2**precision >= 2 * n``.
    """

    def __init__(
        self,
        cdf: Callable[[np.ndarray, slice], np.ndarray],
        num_symbols: int,
        lanes: int,
        precision: int,
    ) -> None:
        if num_symbols < 2:
            raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")
        if not 1 <= precision <= 32 or (1 << precision) < 2 * num_symbols:
            raise ValueError(
                f"precision must be in [1, 32] with 2**precision >= 2 * num_symbols "
                f"({2 * num_symbols}), got {precision}"
            )
        self.cdf, self.n, self.m, self.precision = cdf, int(num_symbols), int(lanes), precision
        self._spare = float((1 << precision) - num_symbols)

    def cumfreq(self, j: np.ndarray, lanes: slice | None = None) -> np.ndarray:
        """``C(j)`` for integer positions ``j`` (values ``0 .. n``) of the lanes ``lanes``
        (default: all ``m``; ``j`` has one entry per lane), ``int64``."""
        j = np.asarray(j, dtype=np.int64)
        lanes = slice(0, self.m) if lanes is None else lanes
        f = self.cdf(np.minimum(np.maximum(j, 1), self.n - 1), lanes)
        f = np.where(j <= 0, 0.0, np.where(j >= self.n, 1.0, np.minimum(np.maximum(f, 0.0), 1.0)))
        return j + np.floor(f * self._spare).astype(np.int64)

    def encode_ranges(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, freqs)`` of ``symbols`` (shape ``(m,)``, values ``0 .. n-1``), ``int64``."""
        symbols = np.asarray(symbols, dtype=np.int64)
        if symbols.shape != (self.m,):
            raise ValueError(f"symbols must have shape ({self.m},), got {symbols.shape}")
        if symbols.size and (symbols.min() < 0 or symbols.max() >= self.n):
            raise ValueError(
                f"symbols must lie in [0, {self.n - 1}], got range "
                f"[{symbols.min()}, {symbols.max()}]"
            )
        lo = self.cumfreq(symbols)
        return lo, self.cumfreq(symbols + 1) - lo

    def lookup(
        self, cf: np.ndarray, lanes: slice | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Symbols whose range contains slot ``cf``: ``(symbols, starts, freqs)``.

        A vectorized binary search keeping ``C(lo) <= cf < C(hi)``.

        Args:
            cf: Slots in ``[0, 2**precision)``, one per lane of ``lanes``.
            lanes: Slice of the ``m`` lanes (default: all).
        """
        cf = np.asarray(cf).astype(np.int64)
        m = cf.shape[0]
        lo = np.zeros(m, dtype=np.int64)
        hi = np.full(m, self.n, dtype=np.int64)
        c_lo = np.zeros(m, dtype=np.int64)
        c_hi = np.full(m, 1 << self.precision, dtype=np.int64)
        while True:
            open_ = hi - lo > 1
            if not open_.any():
                break
            mid = (lo + hi) // 2
            c_mid = self.cumfreq(np.where(open_, mid, lo), lanes)
            right = open_ & (c_mid <= cf)
            left = open_ & ~right
            lo, c_lo = np.where(right, mid, lo), np.where(right, c_mid, c_lo)
            hi, c_hi = np.where(left, mid, hi), np.where(left, c_mid, c_hi)
        return lo, c_lo, c_hi - c_lo


def uniform_frequencies(symbols: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, freqs)`` of symbols under the uniform distribution on ``2**precision`` values."""
    symbols = np.asarray(symbols, dtype=np.int64)
    return symbols, np.ones_like(symbols)


def _logistic(x: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))).numpy()


def bernoulli(logits: np.ndarray, precision: int = 24) -> QuantizedCDF:
    """Bernoulli pixels from logits (shape ``(m,)``): symbol 0 has probability ``sigmoid(-l)``."""
    p0 = _logistic(-np.asarray(logits, dtype=np.float64))
    return QuantizedCDF(lambda j, lanes: p0[lanes], 2, p0.size, precision)


def discretized_gaussian(
    loc: np.ndarray, scale: np.ndarray, levels: int = 256, precision: int = 24
) -> QuantizedCDF:
    """Gaussian pixels on the grid ``{0, 1, ..., levels-1} / (levels-1)``.

    Symbol ``v`` gets the mass of ``N(loc, scale)`` between the midpoints to its neighbours;
    the end symbols take the tails (so values in ``[0, 1]`` with ``levels`` steps).

    Args:
        loc: Means, shape ``(m,)``, on the ``[0, 1]`` scale of the data.
        scale: Standard deviations, shape ``(m,)`` or scalar, positive.
        levels: Number of grey levels (256 for 8-bit images).
        precision: Bits of the frequency tables.
    """
    loc = np.asarray(loc, dtype=np.float64)
    inv = 1.0 / np.broadcast_to(np.asarray(scale, dtype=np.float64), loc.shape)
    step = 1.0 / (levels - 1)
    return QuantizedCDF(
        lambda j, lanes: normal_cdf(((j - 0.5) * step - loc[lanes]) * inv[lanes]),
        levels,
        loc.size,
        precision,
    )


def categorical(probs: np.ndarray, precision: int = 24) -> QuantizedCDF:
    """Categorical distributions from probabilities ``(m, K)`` (rows are normalized here)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (lanes, K) with K >= 2, got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs must be finite and non-negative")
    table = np.cumsum(probs, axis=1)
    total = table[:, -1:]
    if (total <= 0).any():
        raise ValueError("probs: every row needs a positive sum")
    table = table / total
    rows = np.arange(probs.shape[0])
    return QuantizedCDF(
        lambda j, lanes: table[rows[lanes], j - 1], probs.shape[1], probs.shape[0], precision
    )
