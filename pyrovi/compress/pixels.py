"""Pixel likelihoods the bits-back coder can code: how values map to symbols and frequencies.

Each :class:`PixelLikelihood` turns one decoder output (a float64 vector) into a
:class:`~pyrovi.compress.codecs.QuantizedCDF` over the symbols of every pixel, and converts
between data values and integer symbols.
"""

from __future__ import annotations

import numpy as np

from pyrovi.compress import codecs

__all__ = [
    "PixelLikelihood",
    "BernoulliPixels",
    "DiscretizedGaussianPixels",
    "CategoricalPixels",
]


def _first(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True entry of ``mask`` (C order)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _index(where: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, where)) + "]"


class PixelLikelihood:
    """Base class: ``p(x | z)`` over ``num_symbols`` values per pixel.

    Attributes:
        kind: Short name stored in the compressed header.
        num_symbols: Values per pixel.
    """

    kind = "abstract"
    num_symbols = 2

    def to_symbols(self, x: np.ndarray) -> np.ndarray:
        """Data ``(..., D)`` in [0, 1] to integer symbols (``int64``, same shape).

        Raises:
            ValueError: If ``x`` holds values that are not on this likelihood's grid (the
                message names the first one and where it is).
        """
        levels = self.num_symbols - 1
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        if not finite.all():
            where = _first(~finite)
            raise ValueError(f"data must be finite; data{_index(where)} is {x[where]}")
        s = np.rint(x * levels)
        off = (np.abs(x * levels - s) > 1e-4) | (s < 0) | (s > levels)
        if off.any():
            where = _first(off)
            grid = "{0, 1}" if levels == 1 else f"{{0, 1/{levels}, 2/{levels}, ..., 1}}"
            hint = "binarize the data" if levels == 1 else "quantize the data to the grid"
            if levels > 1 and 1 < x.max() <= levels and (x == np.rint(x)).all():
                hint = f"scale integer data to [0, 1] (divide by {levels})"
            raise ValueError(
                f"data: a {self.kind} likelihood codes values in {grid}; data{_index(where)} = "
                f"{x[where]:g} is not one of them ({hint} first)"
            )
        return s.astype(np.int64)

    def from_symbols(self, s: np.ndarray) -> np.ndarray:
        """Integer symbols to data values in [0, 1] (float64, same shape)."""
        return np.asarray(s, dtype=np.float64) / (self.num_symbols - 1)

    def codec(self, out: np.ndarray, precision: int) -> codecs.QuantizedCDF:
        """Frequencies of every pixel given one decoder output ``out`` (float64 vector)."""
        raise NotImplementedError(f"{type(self).__name__} must define codec(out, precision)")

    def output_size(self, x_dim: int) -> int:
        """Length of the decoder output for ``x_dim`` pixels."""
        return x_dim


class BernoulliPixels(PixelLikelihood):
    """Binary pixels; the decoder outputs logits ``(D,)``."""

    kind = "bernoulli"
    num_symbols = 2

    def codec(self, out: np.ndarray, precision: int) -> codecs.QuantizedCDF:  # noqa: D102
        return codecs.bernoulli(out, precision)


class DiscretizedGaussianPixels(PixelLikelihood):
    """Grey levels ``{0, ..., levels-1} / (levels-1)`` under a discretized ``N(mean, scale)``.

    Args:
        scale: Standard deviation per pixel ``(D,)`` or a scalar (the model's ``obs_scale``).
        levels: Grey levels (256 for 8-bit images).
    """

    kind = "gaussian"

    def __init__(self, scale: np.ndarray | float, levels: int = 256) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 65536:
            raise ValueError(f"levels must be an integer in [2, 65536], got {levels!r}")
        scale = np.asarray(scale, dtype=np.float64)
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("scale must be positive and finite")
        self.scale, self.num_symbols = scale, levels

    def codec(self, out: np.ndarray, precision: int) -> codecs.QuantizedCDF:  # noqa: D102
        return codecs.discretized_gaussian(out, self.scale, self.num_symbols, precision)


class CategoricalPixels(PixelLikelihood):
    """``levels`` values per pixel; the decoder outputs logits ``(D * levels,)``, pixel-major.

    Args:
        levels: Categories per pixel; value ``v`` stands for ``v / (levels - 1)``.
    """

    kind = "categorical"

    def __init__(self, levels: int = 256) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 65536:
            raise ValueError(f"levels must be an integer in [2, 65536], got {levels!r}")
        self.num_symbols = levels

    def output_size(self, x_dim: int) -> int:  # noqa: D102
        return x_dim * self.num_symbols

    def codec(self, out: np.ndarray, precision: int) -> codecs.QuantizedCDF:  # noqa: D102
        logits = np.asarray(out, dtype=np.float64).reshape(-1, self.num_symbols)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return codecs.categorical(probs, precision)
