"""Discretization of a standard-normal latent into buckets of equal prior mass.

With ``2**bits`` buckets, bucket ``j`` is the interval between the prior quantiles
``j / 2**bits`` and ``(j + 1) / 2**bits``: under the prior ``N(0, 1)`` every bucket has mass
exactly ``2**-bits``, so coding a bucket with the prior costs exactly ``bits`` bits (a uniform
symbol). A Gaussian posterior ``N(mu, sigma)`` gives bucket ``j`` the mass between its edges;
the bucket stands for its prior median (the quantile ``(j + 1/2) / 2**bits``), the value the
decoder network sees.
"""

from __future__ import annotations

import numpy as np
import torch

from pyrovi.compress.codecs import QuantizedCDF, normal_cdf

__all__ = ["LatentBuckets"]


class LatentBuckets:
    """Equal-prior-mass buckets of a ``N(0, 1)`` latent coordinate.

    Args:
        bits: ``log2`` of the number of buckets (1 to 20).

    Attributes:
        edges: ``(2**bits + 1,)`` float64 bucket edges, ``-inf`` and ``inf`` at the ends.
        centres: ``(2**bits,)`` float64 prior medians of the buckets.
    """

    def __init__(self, bits: int = 12) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 20:
            raise ValueError(f"latent_bits must be an integer in [1, 20], got {bits!r}")
        self.bits = bits
        self.num = 1 << bits
        q = torch.arange(self.num + 1, dtype=torch.float64) / self.num
        self.edges = torch.special.ndtri(q).numpy()
        self.centres = torch.special.ndtri(
            (torch.arange(self.num, dtype=torch.float64) + 0.5) / self.num
        ).numpy()

    def posterior(self, loc: np.ndarray, scale: np.ndarray, precision: int = 24) -> QuantizedCDF:
        """Bucket frequencies under ``N(loc, scale)`` per lane (``loc``, ``scale``: ``(m,)``)."""
        loc = np.asarray(loc, dtype=np.float64)
        inv = 1.0 / np.asarray(scale, dtype=np.float64)
        edges = self.edges
        return QuantizedCDF(
            lambda j, lanes: normal_cdf((edges[j] - loc[lanes]) * inv[lanes]),
            self.num,
            loc.size,
            precision,
        )

    def values(self, index: np.ndarray) -> np.ndarray:
        """Latent values (bucket centres) of bucket indices, float64, same shape."""
        return self.centres[np.asarray(index, dtype=np.int64)]

    def index(self, z: np.ndarray) -> np.ndarray:
        """Bucket of each latent value (``int64``, same shape)."""
        cdf = normal_cdf(np.asarray(z, dtype=np.float64))
        return np.clip(np.floor(cdf * self.num).astype(np.int64), 0, self.num - 1)
