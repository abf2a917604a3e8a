"""Bits-back coding with VAEs: exact round trips, rate = -log p(x) with an exact posterior,
rate = -ELBO with an amortized one, and clear errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pyrovi import VAE, AmortizedNormal
from pyrovi.compress import (
    BitsBackCoder,
    CategoricalPixels,
    decode,
    encode,
    stream_info,
)
from pyrovi.compress.buckets import LatentBuckets
from pyrovi.compress.codecs import normal_cdf
from pyrovi.infer import elbo


def _small_vae(x_dim=20, z_dim=3, likelihood="bernoulli", **kwargs):
    model = VAE(x_dim, z_dim, likelihood=likelihood, hidden_dims=(16,), **kwargs)
    guide = AmortizedNormal(x_dim, z_dim, hidden_dims=(16,))
    return model, guide


def test_bernoulli_round_trip_exact(device):
    model, guide = _small_vae()
    model, guide = model.to(device), guide.to(device)
    x = (torch.rand(40, 20, device=device) < 0.3).float()
    blob, stats = encode(model, guide, x, return_stats=True)
    assert isinstance(blob, bytes) and stats.total_bits == 8 * len(blob)
    y = decode(model, guide, blob)
    assert y.device == x.device
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    # the chain started on clean bits: random heads + words drawn for the first latent
    assert stats.clean_bits >= 32 * stats.lanes + 32
    assert stats.net_bits == stats.total_bits - stats.header_bits - stats.clean_bits


def test_gaussian_round_trip_exact(device):
    model, guide = _small_vae(likelihood="gaussian", scale=0.1)
    model, guide = model.to(device), guide.to(device)
    x = torch.randint(0, 256, (15, 20), device=device).float() / 255
    blob = encode(model, guide, x, latent_bits=10)
    y = decode(model, guide, blob, latent_bits=10)
    assert torch.equal((y * 255).round(), (x * 255).round())


class _CategoricalModel(nn.Module):
    """A VAE-like model whose decoder gives 4-way categorical logits per pixel."""

    def __init__(self, x_dim, z_dim, levels):
        super().__init__()
        self.x_dim, self.z_dim = x_dim, z_dim
        self.decoder = nn.Sequential(nn.Linear(z_dim, 16), nn.Tanh(), nn.Linear(16, x_dim * levels))


def test_categorical_round_trip_exact(device):
    model = _CategoricalModel(12, 2, 4).to(device)
    guide = AmortizedNormal(12, 2, hidden_dims=(8,)).to(device)
    x = torch.randint(0, 4, (25, 12), device=device).float() / 3
    options = {"likelihood": CategoricalPixels(4)}
    y = decode(model, guide, encode(model, guide, x, **options), **options)
    assert torch.equal((y * 3).round(), (x * 3).round())


def _linear_gaussian(w, b, sigma, device):
    """VAE with x = b + w z + sigma ε, z_dim = 1, and a guide set to its exact posterior."""
    x_dim = len(w)
    w_t, b_t = torch.tensor(w), torch.tensor(b)
    model = VAE(x_dim, 1, likelihood="gaussian", decoder=nn.Linear(1, x_dim), scale=sigma)
    guide = AmortizedNormal(x_dim, 1, hidden_dims=())
    precision = 1 + (w_t**2).sum() / sigma**2
    post_scale = precision.rsqrt()
    with torch.no_grad():
        model.decoder.weight.copy_(w_t[:, None])
        model.decoder.bias.copy_(b_t)
        guide.head.weight.zero_()
        guide.head.weight[0] = w_t / sigma**2 / precision
        guide.head.bias[0] = -(w_t * b_t).sum() / sigma**2 / precision
        s = post_scale - guide.min_scale
        guide.head.bias[1] = s + torch.log(-torch.expm1(-s))  # softplus^-1
    return model.to(device), guide.to(device)


def _exact_neg_log2_p(x, w, b, sigma, latent_bits, levels=256):
    """-log2 P(x) under the coder's model: z uniform on the buckets, x on the discretized grid."""
    centres = LatentBuckets(latent_bits).centres  # (K,)
    v = np.rint(x * (levels - 1))  # (N, D)
    step = 1 / (levels - 1)
    mean = np.asarray(b)[None, :] + centres[:, None] * np.asarray(w)[None, :]  # (K, D)
    v = v[:, None, :]  # (N, 1, D)
    upper = np.where(v < levels - 1, normal_cdf(((v + 0.5) * step - mean) / sigma), 1.0)
    lower = np.where(v > 0, normal_cdf(((v - 0.5) * step - mean) / sigma), 0.0)
    log_px_z = np.log(np.maximum(upper - lower, 1e-300)).sum(-1)  # (N, K)
    m = log_px_z.max(1, keepdims=True)
    log_p = m[:, 0] + np.log(np.exp(log_px_z - m).mean(1))
    return -log_p / math.log(2)


def test_exact_posterior_rate_is_minus_log_p(device):
    w, b, sigma, latent_bits = [0.12, -0.09, 0.15, 0.05, 0.1], [0.5, 0.45, 0.55, 0.5, 0.4], 0.04, 12
    model, guide = _linear_gaussian(w, b, sigma, device)
    gen = torch.Generator().manual_seed(0)
    n = 400
    z = torch.randn(n, 1, generator=gen)
    x = torch.tensor(b) + z * torch.tensor(w) + sigma * torch.randn(n, len(w), generator=gen)
    x = (x * 255).round().clamp(0, 255) / 255
    coder = BitsBackCoder(model, guide, latent_bits=latent_bits)
    blob = coder.encode(x.to(device))
    stats = coder.last_stats
    exact = _exact_neg_log2_p(x.double().numpy(), w, b, sigma, latent_bits)
    rate = stats.code_lengths
    # rate -> -log2 p(x): on average to 0.2% and per datapoint to within a small fraction of a bit
    assert abs(rate.mean() / exact.mean() - 1) < 2e-3
    assert np.abs(rate - exact).mean() < 0.05
    # the stream size counts the same bits plus fixed costs (header, heads' flush, clean bits)
    assert stats.net_bits == pytest.approx(rate.sum(), abs=64 * coder.lanes + 64)
    assert np.array_equal(np.rint(coder.decode_values(blob) * 255), np.rint(x.numpy() * 255))
    # an approximate posterior (3x too wide) costs its KL from the true one: visibly more
    with torch.no_grad():
        guide.head.bias[1] += math.log(3.0) + 1.0
    coder_wide = BitsBackCoder(model, guide, latent_bits=latent_bits)
    coder_wide.encode(x.to(device))
    assert coder_wide.last_stats.code_lengths.mean() > exact.mean() + 0.5


def test_rate_matches_negative_elbo(device):
    torch.manual_seed(0)
    model, guide = _small_vae(x_dim=30, z_dim=4)
    model, guide = model.to(device), guide.to(device)
    x = (torch.rand(300, 30, device=device) < 0.25).float()
    coder = BitsBackCoder(model, guide)
    coder.encode(x)
    rate = coder.last_stats.code_lengths.mean()
    with torch.no_grad():
        neg_elbo = -elbo(model, guide, x, num_samples=200).mean().item() / math.log(2)
    # The chain's z are single draws per datapoint: Monte Carlo noise ~ std / sqrt(300).
    assert rate == pytest.approx(neg_elbo, rel=0.01)


def test_clean_bits_are_counted_once_per_chain():
    model, guide = _small_vae()
    x = (torch.rand(30, 20) < 0.5).float()
    coder = BitsBackCoder(model, guide, seed=3, lanes=20)
    coder.encode(x[:1])
    first = coder.last_stats.clean_bits
    coder.encode(x)
    # later datapoints get their bits back from earlier ones (with a margin for early ones)
    assert coder.last_stats.clean_bits <= first + 32 * 3 * 2
    assert coder.last_stats.clean_bits >= 32 * 20


def test_decode_with_other_guide_fails_integrity_check():
    model, guide = _small_vae()
    x = (torch.rand(10, 20) < 0.5).float()
    blob = encode(model, guide, x)
    with torch.no_grad():
        guide.head.bias.add_(0.3)
    with pytest.raises(ValueError, match="integrity"):
        decode(model, guide, blob)


def test_errors_name_the_argument():
    model, guide = _small_vae()
    with pytest.raises(ValueError, match=r"data must have shape \(N, 20\)"):
        encode(model, guide, torch.zeros(3, 21))
    with pytest.raises(ValueError, match="binarize"):
        encode(model, guide, torch.full((3, 20), 0.5))
    with pytest.raises(ValueError, match="latent_bits"):
        BitsBackCoder(model, guide, latent_bits=0)
    with pytest.raises(ValueError, match="posterior_precision"):
        BitsBackCoder(model, guide, latent_bits=12, posterior_precision=12)
    with pytest.raises(TypeError, match="guide must have an encode"):
        BitsBackCoder(model, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bad magic"):
        decode(model, guide, b"not a stream at all, not at all......................")
    blob = encode(model, guide, torch.zeros(2, 20))
    with pytest.raises(ValueError, match="latent_bits=12"):
        decode(model, guide, blob, latent_bits=10)
    other, other_guide = _small_vae(z_dim=4)
    with pytest.raises(ValueError, match="z_dim=3"):
        decode(other, other_guide, blob)
    with pytest.raises(ValueError, match="truncated"):
        decode(model, guide, blob[:-4])


@pytest.mark.parametrize("lanes", [1, 7])
def test_fewer_lanes_round_trip_and_cost_less_overhead(lanes):
    model, guide = _small_vae()
    x = (torch.rand(30, 20) < 0.3).float()
    blob, stats = encode(model, guide, x, lanes=lanes, return_stats=True)
    full_blob, full_stats = encode(model, guide, x, lanes=20, return_stats=True)
    assert stream_info(blob)["lanes"] == lanes
    assert torch.equal(decode(model, guide, blob), x)  # settings read from the stream
    assert stats.total_bits < full_stats.total_bits
    assert stats.clean_bits < full_stats.clean_bits
    with pytest.raises(ValueError, match="lanes"):
        BitsBackCoder(model, guide, lanes=21)


def test_thread_count_does_not_matter_and_is_restored():
    model, guide = _small_vae()
    x = (torch.rand(10, 20) < 0.4).float()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        blob = encode(model, guide, x)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert torch.equal(decode(model, guide, blob), x)
    finally:
        torch.set_num_threads(threads)


def test_corrupted_stream_is_detected():
    model, guide = _small_vae()
    x = (torch.rand(30, 20) < 0.4).float()
    blob = bytearray(encode(model, guide, x))
    blob[len(blob) // 2 + 40] ^= 0x10  # one flipped bit in the stack words
    with pytest.raises(ValueError, match="integrity|corrupt"):
        decode(model, guide, bytes(blob))
