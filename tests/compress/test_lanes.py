"""The default number of rANS lanes follows the data size, so the whole output of a small data
set stays within 2% of its -ELBO plus the header (with 64 lanes, the old default on 8x8 digits, it
was 23-26% over)."""

import math

import pytest
import torch

from pyrovi.compress import (
    LANE_COST_BITS,
    LANE_SHARE,
    MAX_DEFAULT_LANES,
    BitsBackCoder,
    decode,
    default_lanes,
)
from pyrovi.compress.bundle import train_vae
from pyrovi.data import binarize_data, load_dataset
from pyrovi.infer import elbo

BOUND = 0.02  # total bits <= (1 + BOUND) x (-ELBO bits + header bits)


def test_default_lanes_follow_the_estimated_size():
    per_lane = LANE_COST_BITS / LANE_SHARE  # estimated bits that pay for one more lane
    assert default_lanes(0.0, 784, 32) == 1
    assert default_lanes(1.99 * per_lane, 784, 32) == 1
    assert default_lanes(2.0 * per_lane, 784, 32) == 2
    assert default_lanes(50.5 * per_lane, 784, 32) == 50
    assert default_lanes(1e12, 784, 32) == MAX_DEFAULT_LANES
    assert default_lanes(1e12, 20, 3) == 20  # never more than max(x_dim, z_dim)
    sizes = [10.0**k for k in range(2, 10)]
    lanes = [default_lanes(b, 784, 32) for b in sizes]
    assert lanes == sorted(lanes)


@pytest.fixture(scope="module")
def digits_vae():
    data = load_dataset("digits")
    model, guide, _ = train_vae(data.x_train, 4, hidden_dims=(64,), epochs=60, seed=0)
    x = binarize_data(data, seed=0).x_test  # 359 binarized 8x8 digits: 22,976 pixels
    torch.manual_seed(0)
    with torch.no_grad():
        neg_elbo_bits = -elbo(model, guide, x, num_samples=100).sum().item() / math.log(2)
    return model, guide, x, neg_elbo_bits


def test_rate_on_digits_within_2_percent_of_neg_elbo_plus_header(digits_vae):
    model, guide, x, neg_elbo_bits = digits_vae
    assert neg_elbo_bits > 10_000  # a data set of more than ~10 kbit
    coder = BitsBackCoder(model, guide)
    estimate = coder.estimate_bits(x)
    blob = coder.encode(x)
    stats = coder.last_stats
    assert torch.equal(decode(model, guide, blob), x)
    # the estimate that picks the lanes is close to the code length (at the posterior mean: low)
    assert 0.8 < estimate / stats.code_lengths.sum() < 1.05
    assert stats.lanes == default_lanes(estimate, 64, 4) == 1
    overhead = stats.total_bits / (neg_elbo_bits + stats.header_bits) - 1
    assert overhead < BOUND, f"{overhead:.2%} over -ELBO + header"
    # the previous default (min(max(x_dim, z_dim), 128) = 64 lanes) misses the bound widely
    wide = BitsBackCoder(model, guide, lanes=64)
    wide.encode(x)
    assert wide.last_stats.total_bits / (neg_elbo_bits + stats.header_bits) - 1 > 10 * BOUND
