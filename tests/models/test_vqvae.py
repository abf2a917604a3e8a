"""VQVAE model, CodebookCategorical prior and the VQEncoder guide."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyrovi.data import binarize_data, load_digits
from pyrovi.guides import VQEncoder
from pyrovi.infer import elbo, fit, log_marginal_likelihood
from pyrovi.models import VQVAE, CodebookCategorical
from pyrovi.models.vqvae import nearest_code


def make(device, ema_decay=0.99, **guide_kwargs):
    args = {"num_codes": 8, "code_dim": 3, "num_latents": 4, "hidden_dims": (16,)}
    model = VQVAE(10, **args).to(device)
    guide = VQEncoder(model, ema_decay=ema_decay, **guide_kwargs).to(device)
    return model, guide


def test_nearest_code_matches_brute_force(device):
    z = torch.randn(5, 4, 3, device=device)
    codebook = torch.randn(7, 3, device=device)
    brute = ((z.unsqueeze(-2) - codebook) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nearest_code(z, codebook), brute)


def test_codebook_categorical_log_prob_sample_and_expand(device):
    torch.set_default_dtype(torch.float64)
    codebook = torch.randn(5, 2, device=device)
    logits = torch.randn(3, 5, device=device)
    d = CodebookCategorical(codebook, logits)
    assert d.batch_shape == () and d.event_shape == (3, 2)
    idx = torch.tensor([[0, 4, 2], [1, 1, 3]], device=device)
    log_pi = torch.log_softmax(logits, -1)
    expected = torch.stack([log_pi[torch.arange(3), row].sum() for row in idx])
    torch.testing.assert_close(d.log_prob(codebook[idx]), expected)
    # tiny perturbations (straight-through values) score as their nearest code
    torch.testing.assert_close(d.log_prob(codebook[idx] + 1e-9), expected)
    e = d.expand((4,))
    assert e.batch_shape == (4,) and e.sample().shape == (4, 3, 2)
    s = d.sample((6,))
    assert s.shape == (6, 3, 2)
    assert torch.isin(s.reshape(-1, 2)[:, 0], codebook[:, 0]).all()
    # probabilities of all K^M index tuples sum to one
    grid = torch.cartesian_prod(*[torch.arange(5, device=device)] * 3)
    total = torch.logsumexp(d.log_prob(codebook[grid]), 0)
    torch.testing.assert_close(total, torch.zeros((), device=device, dtype=total.dtype))


def test_bad_codebook_categorical_arguments():
    with pytest.raises(ValueError, match="codebook"):
        CodebookCategorical(torch.zeros(3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="logits"):
        CodebookCategorical(torch.zeros(3, 2), torch.zeros(2, 4))


@pytest.mark.parametrize("ema_decay", [None, 0.99])
def test_elbo_is_decoder_likelihood_minus_m_log_k(ema_decay, device):
    """Point-mass guide + uniform prior: ELBO = log p(x | e_k(x)) − M log K, exactly."""
    torch.set_default_dtype(torch.float64)
    model, guide = make(device, ema_decay=ema_decay)
    model.eval()
    guide.eval()
    x = torch.bernoulli(torch.full((6, 10), 0.4, device=device))
    e = guide.codebook(guide.codes(x))
    log_px = (
        torch.distributions.Bernoulli(logits=model.decoder(e.reshape(6, -1))).log_prob(x).sum(-1)
    )
    expected = log_px - 4 * math.log(8)
    torch.testing.assert_close(elbo(model, guide, x), expected)
    # the guide is deterministic: every importance weight is the same
    torch.testing.assert_close(log_marginal_likelihood(model, guide, x, num_samples=5), expected)


def test_training_loss_adds_commitment_and_gradients_reach_encoder(device):
    torch.set_default_dtype(torch.float64)
    model, guide = make(device, ema_decay=None)
    x = torch.bernoulli(torch.full((6, 10), 0.4, device=device))
    guide_trace = poutine.trace(guide).get_trace(x)
    assert guide_trace.nodes["vq_loss"]["infer"]["is_auxiliary"]
    z_e = guide.encode(x)
    e = guide.codebook(guide.codes(x))
    vq = 1.25 * ((z_e - e) ** 2).sum((-2, -1))  # codebook + 0.25 × commitment, same value
    with torch.no_grad():
        model.eval()
        guide.eval()
        plain = Trace_ELBO().loss(model, guide, x)
        model.train()
        guide.train()
        with_vq = Trace_ELBO().loss(model, guide, x)
    assert with_vq == pytest.approx(plain + float(vq.detach().sum()), rel=1e-10)
    loss = Trace_ELBO().differentiable_loss(model, guide, x)
    loss.backward()
    for name, p in guide.encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.codebook.weight.grad.abs().sum() > 0  # codebook loss (no EMA)
    for name, p in model.decoder.named_parameters():
        assert p.grad.abs().sum() > 0, name


def test_ema_updates_codebook_towards_assigned_vectors(device):
    model, guide = make(device, ema_decay=0.5, dead_threshold=0.0)
    x = torch.bernoulli(torch.full((32, 10), 0.4, device=device))
    guide.init_codebook(x, torch.Generator().manual_seed(0))
    before = model.codebook.weight.detach().clone()
    z_e = guide.encode(x).detach().reshape(-1, 3)
    idx = nearest_code(z_e, before)
    guide(x)  # training mode with gradients enabled: one EMA step
    after = model.codebook.weight.detach()
    for k in idx.unique():
        members = z_e[idx == k]
        count = 0.5 * 1.0 + 0.5 * members.shape[0]
        expected = (0.5 * before[k] + 0.5 * members.sum(0)) / count
        torch.testing.assert_close(after[k], expected)
    with torch.no_grad():
        guide(x)  # no update without gradients (e.g. fit's validation pass)
    torch.testing.assert_close(model.codebook.weight.detach(), after)


def test_fit_prior_is_smoothed_frequencies(device):
    model, _ = make(device)
    idx = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 7], [0, 5, 2, 7]], device=device)
    logits = model.fit_prior(idx, smoothing=1.0)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(4, device=device))
    assert logits[0, 0].exp().item() == pytest.approx((3 + 1) / (3 + 8))
    assert logits[1, 5].exp().item() == pytest.approx((1 + 1) / (3 + 8))
    assert model.sample(5).shape == (5, 10)
    model.reset_prior()
    assert (model.prior_logits == 0).all()
    with pytest.raises(ValueError, match="index"):
        model.fit_prior(torch.zeros(3, 2, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="smoothing"):
        model.fit_prior(idx, smoothing=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_codes": 0}, "num_codes"),
        ({"code_dim": 1.5}, "code_dim"),
        ({"num_latents": -1}, "num_latents"),
        ({"likelihood": "cat"}, "likelihood"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VQVAE(10, **kwargs)


def test_bad_guide_arguments(device):
    model, guide = make(device)
    with pytest.raises(ValueError, match="commitment"):
        VQEncoder(model, commitment=-1)
    with pytest.raises(ValueError, match="ema_decay"):
        VQEncoder(model, ema_decay=1.0)
    with pytest.raises(ValueError, match="model must be a VQVAE"):
        VQEncoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 10\)"):
        guide(torch.zeros(2, 3, device=device))


@pytest.mark.slow
def test_learns_digits_and_learned_prior_tightens_the_elbo():
    """Training improves the test ELBO well beyond the untrained model, the codebook is used,
    and the fitted categorical prior gives a higher ELBO than the uniform one (it can only
    raise Σ log π(k) on codes distributed like the training codes)."""
    torch.set_num_threads(1)
    data = binarize_data(load_digits(), seed=0)
    pyro.set_rng_seed(0)
    model = VQVAE(64, num_codes=16, code_dim=4, num_latents=4, hidden_dims=(64,))
    guide = VQEncoder(model)
    guide.init_codebook(data.x_train[:256], torch.Generator().manual_seed(0))
    model.eval()
    guide.eval()
    before = elbo(model, guide, data.x_test).mean().item()
    model.train()
    guide.train()
    fit(model, guide, data.x_train, epochs=20, progress=False, seed=0)
    model.eval()
    guide.eval()
    uniform = elbo(model, guide, data.x_test).mean().item()
    used = guide.codes(data.x_train).unique().numel()
    model.fit_prior(guide.codes(data.x_train))
    learned = elbo(model, guide, data.x_test).mean().item()
    assert uniform > before + 5.0
    assert used >= 12
    assert learned > uniform + 1.0
