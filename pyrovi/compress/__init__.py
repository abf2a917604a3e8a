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

from pyrovi._lazy import lazy_exports

# Loaded on first use (PEP 562), so ``python -m pyrovi.compress --help`` answers at once.
_EXPORTS = {
    "LANE_COST_BITS": "pyrovi.compress.bitsback",
    "LANE_SHARE": "pyrovi.compress.bitsback",
    "MAX_DEFAULT_LANES": "pyrovi.compress.bitsback",
    "BitsBackCoder": "pyrovi.compress.bitsback",
    "CompressionStats": "pyrovi.compress.bitsback",
    "decode": "pyrovi.compress.bitsback",
    "default_lanes": "pyrovi.compress.bitsback",
    "encode": "pyrovi.compress.bitsback",
    "LatentBuckets": "pyrovi.compress.buckets",
    "load_vae": "pyrovi.compress.bundle",
    "save_vae": "pyrovi.compress.bundle",
    "train_vae": "pyrovi.compress.bundle",
    "QuantizedCDF": "pyrovi.compress.codecs",
    "bernoulli": "pyrovi.compress.codecs",
    "categorical": "pyrovi.compress.codecs",
    "discretized_gaussian": "pyrovi.compress.codecs",
    "uniform_frequencies": "pyrovi.compress.codecs",
    "CorruptStreamError": "pyrovi.compress.errors",
    "ModelFileError": "pyrovi.compress.errors",
    "BernoulliPixels": "pyrovi.compress.pixels",
    "CategoricalPixels": "pyrovi.compress.pixels",
    "DiscretizedGaussianPixels": "pyrovi.compress.pixels",
    "PixelLikelihood": "pyrovi.compress.pixels",
    "MAX_PRECISION": "pyrovi.compress.rans",
    "Message": "pyrovi.compress.rans",
    "WordStack": "pyrovi.compress.rans",
    "clean_words": "pyrovi.compress.rans",
    "parse_stream": "pyrovi.compress.stream",
    "stream_info": "pyrovi.compress.stream",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
