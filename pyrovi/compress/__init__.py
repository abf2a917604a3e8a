"""Lossless compression with trained VAEs by bits-back coding (BB-ANS).

- :mod:`~pyrovi.compress.rans`: vectorized rANS (64-bit heads, 32-bit words, exact integers);
- :mod:`~pyrovi.compress.codecs`: integer frequency tables from CDFs (Bernoulli, discretized
  Gaussian, categorical);
- :mod:`~pyrovi.compress.buckets`: latent buckets of equal prior mass;
- :mod:`~pyrovi.compress.pixels`: pixel likelihoods (Bernoulli, discretized Gaussian,
  categorical);
- :mod:`~pyrovi.compress.bitsback`: the bits-back chain, :func:`encode` / :func:`decode`;
- :mod:`~pyrovi.compress.bundle`: save, load and train the MLP VAEs the command line uses.

Command line: ``python -m pyrovi.compress --help``.
"""

from pyrovi.compress.bitsback import (
    BitsBackCoder,
    CompressionStats,
    decode,
    encode,
    stream_info,
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
from pyrovi.compress.pixels import (
    BernoulliPixels,
    CategoricalPixels,
    DiscretizedGaussianPixels,
    PixelLikelihood,
)
from pyrovi.compress.rans import MAX_PRECISION, Message, WordStack, clean_words

__all__ = [
    "BitsBackCoder",
    "CompressionStats",
    "encode",
    "decode",
    "stream_info",
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
