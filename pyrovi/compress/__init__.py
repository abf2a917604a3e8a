"""Lossless compression with trained VAEs by bits-back coding (BB-ANS).

- :mod:`~pyrovi.compress.rans`: vectorized rANS (64-bit heads, 32-bit words, exact integers);
- :mod:`~pyrovi.compress.codecs`: integer frequency tables from CDFs (Bernoulli, discretized
  Gaussian, categorical);
- :mod:`~pyrovi.compress.buckets`: latent buckets of equal prior mass;
- :mod:`~pyrovi.compress.pixels`: pixel likelihoods (Bernoulli, discretized Gaussian,
  categorical);
- :mod:`~pyrovi.compress.bitsback`: the bits-back chain, :func:`encode` / :func:`decode`;
- :mod:`~pyrovi.compress.stream`: the stream format (version 2: checksummed, every count bounded
  by the stream's size) and its checks;
- :mod:`~pyrovi.compress.bundle`: save, load and train the MLP VAEs the command line uses;
- :mod:`~pyrovi.compress.errors`: :class:`CorruptStreamError`, :class:`ModelFileError` (both
  ``ValueError``).

Command line: ``python -m pyrovi.compress --help``.
"""

from pyrovi.compress.bitsback import (
    LANE_COST_BITS,
    LANE_SHARE,
    MAX_DEFAULT_LANES,
    BitsBackCoder,
    CompressionStats,
    decode,
    default_lanes,
    encode,
)
from pyrovi.compress.buckets import LatentBuckets
from pyrovi.compress.bundle import load_vae, save_vae, train_vae
from pyrovi.compress.codecs import (
    QuantizedCDF,
    bernoulli,
    categorical,
    discretized_gaussian,
    uniform_frequencies,
)
from pyrovi.compress.errors import CorruptStreamError, ModelFileError
from pyrovi.compress.pixels import (
    BernoulliPixels,
    CategoricalPixels,
    DiscretizedGaussianPixels,
    PixelLikelihood,
)
from pyrovi.compress.rans import MAX_PRECISION, Message, WordStack, clean_words
from pyrovi.compress.stream import parse_stream, stream_info

__all__ = [
    "BitsBackCoder",
    "CompressionStats",
    "encode",
    "decode",
    "default_lanes",
    "LANE_COST_BITS",
    "LANE_SHARE",
    "MAX_DEFAULT_LANES",
    "stream_info",
    "parse_stream",
    "CorruptStreamError",
    "ModelFileError",
    "LatentBuckets",
    "save_vae",
    "load_vae",
    "train_vae",
    "QuantizedCDF",
    "bernoulli",
    "categorical",
    "discretized_gaussian",
    "uniform_frequencies",
    "PixelLikelihood",
    "BernoulliPixels",
    "CategoricalPixels",
    "DiscretizedGaussianPixels",
    "Message",
    "WordStack",
    "clean_words",
    "MAX_PRECISION",
]
