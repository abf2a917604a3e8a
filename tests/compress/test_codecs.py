"""Integer frequency tables and latent buckets: exact sums, no zero frequencies, right masses."""

import numpy as np
import pytest
import torch

from pyrovi.compress import (
    LatentBuckets,
    QuantizedCDF,
    bernoulli,
    categorical,
    discretized_gaussian,
)
from pyrovi.compress.codecs import normal_cdf


def _table(codec):
    return np.stack([codec.cumfreq(np.full(codec.m, j)) for j in range(codec.n + 1)], axis=1)


@pytest.mark.parametrize(
    "codec",
    [
        bernoulli(np.array([-50.0, -3.0, 0.0, 2.5, 800.0]), 16),
        discretized_gaussian(np.array([0.0, 0.3, 1.0, 2.0]), np.array([1e-6, 0.1, 0.05, 1.0]), 16),
        categorical(np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1e-200]]), 8),
        LatentBuckets(6).posterior(np.array([0.0, 3.0, -9.0]), np.array([1.0, 1e-4, 0.5]), 12),
    ],
)
def test_tables_are_valid_and_lookup_inverts_them(codec):
    table = _table(codec)
    assert (table[:, 0] == 0).all() and (table[:, -1] == 1 << codec.precision).all()
    assert (np.diff(table, axis=1) >= 1).all()  # every symbol stays decodable
    for s in range(codec.n):  # encode_ranges reads the same table
        starts, freqs = codec.encode_ranges(np.full(codec.m, s))
        np.testing.assert_array_equal(starts, table[:, s])
        np.testing.assert_array_equal(freqs, table[:, s + 1] - table[:, s])
    slots = np.random.default_rng(0).integers(0, 1 << codec.precision, (50, codec.m))
    slots[0], slots[1] = 0, (1 << codec.precision) - 1
    for cf in slots:
        sym, starts, freqs = codec.lookup(cf)
        rows = np.arange(codec.m)
        assert (table[rows, sym] <= cf).all() and (cf < table[rows, sym + 1]).all()
        np.testing.assert_array_equal(starts, table[rows, sym])


def test_discretized_gaussian_frequencies_match_bin_masses():
    loc, scale = np.array([0.5]), np.array([0.1])
    codec = discretized_gaussian(loc, scale, levels=256, precision=24)
    freqs = np.diff(_table(codec)[0]) / 2**24
    v = np.arange(256)
    upper = np.where(v < 255, normal_cdf(((v + 0.5) / 255 - 0.5) / 0.1), 1.0)
    lower = np.where(v > 0, normal_cdf(((v - 0.5) / 255 - 0.5) / 0.1), 0.0)
    np.testing.assert_allclose(freqs, upper - lower, atol=256 / 2**24)


def test_buckets_have_equal_prior_mass():
    buckets = LatentBuckets(10)
    mass = np.diff(normal_cdf(buckets.edges))
    np.testing.assert_allclose(mass, 2.0**-10, rtol=1e-9)
    j = np.arange(1024)
    np.testing.assert_array_equal(buckets.index(buckets.values(j)), j)
    assert (buckets.edges[:-1] < buckets.centres).all() and (
        buckets.centres < buckets.edges[1:]
    ).all()
    # a standard-normal posterior puts (nearly) 2**-10 on every bucket
    post = buckets.posterior(np.zeros(1), np.ones(1), 24)
    np.testing.assert_allclose(np.diff(_table(post)[0]) / 2**24, 2.0**-10, atol=2**-23)


def test_tables_do_not_depend_on_the_torch_default_dtype():
    torch.set_default_dtype(torch.float64)
    a = _table(discretized_gaussian(np.array([0.3]), np.array([0.07]), 256, 20))
    torch.set_default_dtype(torch.float32)
    b = _table(discretized_gaussian(np.array([0.3]), np.array([0.07]), 256, 20))
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_symbols"):
        QuantizedCDF(lambda j, lanes: j, 1, 1, 8)
    with pytest.raises(ValueError, match="precision"):
        categorical(np.ones((1, 300)), 8)
    with pytest.raises(ValueError, match="probs"):
        categorical(np.array([[0.5, -0.1]]))
    with pytest.raises(ValueError, match="symbols must lie"):
        bernoulli(np.zeros(2)).encode_ranges(np.array([0, 2]))
    with pytest.raises(ValueError, match="latent_bits"):
        LatentBuckets(0)
