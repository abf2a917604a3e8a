"""RBM: energies against brute force, exact log Z, Gibbs sampling, CD/PCD training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pyrovi.models import RBM, train_rbm


def all_binary(n: int, device) -> torch.Tensor:
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), device=device)


def random_rbm(v: int, h: int, visible: str, device, scale: float = 1.0, seed: int = 0) -> RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(v, h, visible=visible, sigma=0.7 if visible == "gaussian" else 1.0)
    with torch.no_grad():
        rbm.weight.copy_(scale * torch.randn(v, h, generator=g))
        rbm.visible_bias.copy_(torch.randn(v, generator=g))
        rbm.hidden_bias.copy_(torch.randn(h, generator=g))
    return rbm.to(device, torch.float64)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_sums_out_the_hidden_units(visible, device):
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(5, 4, visible, device)
    v = torch.rand(3, 5, device=device)
    hs = all_binary(4, device)
    brute = -torch.logsumexp(-rbm.energy(v.unsqueeze(1), hs.unsqueeze(0)), dim=1)
    torch.testing.assert_close(rbm.free_energy(v), brute)


def test_exact_log_partition_bernoulli_by_full_enumeration(device):
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(6, 5, "bernoulli", device)
    vs, hs = all_binary(6, device), all_binary(5, device)
    with torch.no_grad():
        brute = torch.logsumexp(-rbm.energy(vs.unsqueeze(1), hs.unsqueeze(0)).reshape(-1), 0)
    assert rbm.log_partition() == pytest.approx(float(brute), abs=1e-10)
    # and p(v) sums to one
    with torch.no_grad():
        total = torch.logsumexp(rbm.log_prob(vs, rbm.log_partition()), 0)
    assert float(total) == pytest.approx(0.0, abs=1e-10)


def test_exact_log_partition_gaussian_by_quadrature(device):
    """One Gaussian visible unit: integrate exp(−F(v)) on a fine grid."""
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(1, 3, "gaussian", device)
    grid = torch.linspace(-15, 15, 200001, device=device).unsqueeze(1)
    log_f = -rbm.free_energy(grid).detach()
    dv = float(grid[1, 0] - grid[0, 0])
    numeric = float(torch.logsumexp(log_f, 0)) + math.log(dv)
    assert rbm.log_partition() == pytest.approx(numeric, abs=1e-8)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_conditionals_match_the_joint(visible, device):
    """p(h_j = 1 | v) and E[v | h] from the energy, by finite enumeration / differentiation."""
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(4, 3, visible, device)
    v = torch.rand(2, 4, device=device)
    hs = all_binary(3, device)
    log_joint = -rbm.energy(v.unsqueeze(1), hs.unsqueeze(0))  # (2, 8)
    post = torch.softmax(log_joint, dim=1)
    torch.testing.assert_close(post @ hs, rbm.hidden_probs(v))
    h = hs[5:7]
    if visible == "bernoulli":
        vs = all_binary(4, device)
        p = torch.softmax(-rbm.energy(vs.unsqueeze(0), h.unsqueeze(1)), dim=1)
        torch.testing.assert_close(p @ vs, rbm.visible_mean(h))
    else:  # the energy is quadratic in v with its minimum at the conditional mean
        m = rbm.visible_mean(h).requires_grad_(True)
        (grad,) = torch.autograd.grad(rbm.energy(m, h).sum(), m)
        torch.testing.assert_close(grad, torch.zeros_like(grad))


def test_gibbs_sampling_reaches_the_exact_distribution(device):
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(5, 3, "bernoulli", device, scale=1.0)
    vs = all_binary(5, device)
    exact = rbm.log_prob(vs, rbm.log_partition()).exp()
    g = torch.Generator(device=device).manual_seed(0)
    samples = rbm.sample(20000, steps=50, generator=g)
    codes = (samples * (2 ** torch.arange(4, -1, -1, device=device))).sum(-1).long()
    freq = torch.bincount(codes, minlength=32).double() / codes.numel()
    tv = 0.5 * (freq - exact).abs().sum()
    assert tv < 0.03, float(tv)


def test_gaussian_rbm_samples_have_the_exact_mean(device):
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(2, 3, "gaussian", device, scale=0.8)
    # exact E[v] = Σ_h p(h) (a + σ W h), p(h) ∝ exp(b h + Σ_i ((Wh)_i²/2 + a_i (Wh)_i / σ_i))
    hs = all_binary(3, device)
    wh = hs @ rbm.weight.T
    log_ph = hs @ rbm.hidden_bias + (wh**2 / 2 + rbm.visible_bias * wh / rbm.sigma).sum(-1)
    mean = torch.softmax(log_ph, 0) @ rbm.visible_mean(hs)
    g = torch.Generator(device=device).manual_seed(1)
    samples = rbm.sample(20000, steps=100, generator=g)
    stderr = samples.std(0) / math.sqrt(20000)
    assert ((samples.mean(0) - mean).abs() < 5 * stderr + 1e-3).all()


@pytest.mark.parametrize("persistent, lr", [(False, 0.1), (True, 0.05)], ids=["cd1", "pcd"])
def test_training_beats_the_independent_model(persistent, lr, device):
    """Data from two noisy prototypes over 10 bits: after training, the RBM's exact test
    log-likelihood beats the best model of independent bits (which cannot represent the
    correlation) by a wide margin, and far exceeds the untrained RBM."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    protos = torch.tensor([[1.0] * 5 + [0.0] * 5, [0.0] * 5 + [1.0] * 5])

    def draw(n):
        which = protos[torch.randint(2, (n,), generator=g)]
        flip = torch.rand(n, 10, generator=g) < 0.05
        return torch.where(flip, 1 - which, which).to(device)

    x_train, x_test = draw(2000), draw(1000)
    p = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
    independent = float((x_test * p.log() + (1 - x_test) * (1 - p).log()).sum(-1).mean())
    rbm = RBM(10, 4).to(device)
    untrained = float(rbm.log_prob(x_test, rbm.log_partition()).mean().detach())
    result = train_rbm(rbm, x_train, epochs=30, batch_size=50, lr=lr, persistent=persistent, seed=0)
    trained = float(rbm.log_prob(x_test, rbm.log_partition()).mean().detach())
    # entropy bound: per-bit noise 0.05 costs 10 × H(0.05) ≈ 1.99 nats, plus log 2 for the mode
    assert trained > independent + 2.0, (trained, independent)
    assert trained > untrained + 3.0
    assert trained < -1.99 - math.log(2) + 0.05  # cannot beat the true distribution's entropy
    assert len(result.history["recon_error"]) == 30 and result.steps == 30 * 40
    assert (result.chains is not None) == persistent


def test_gaussian_rbm_trains_on_real_data(device):
    """Two well separated Gaussian clusters in 4-D: the trained GB-RBM's exact test
    log-density beats a single Gaussian with the same fixed σ centred on the data mean."""
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 2.0, -2.0, -2.0], [-2.0, -2.0, 2.0, 2.0]])

    def draw(n):
        return (centres[torch.randint(2, (n,), generator=g)] + torch.randn(n, 4, generator=g)).to(
            device
        )

    x_train, x_test = draw(2000), draw(1000)
    rbm = RBM(4, 4, visible="gaussian", sigma=1.0, init_std=0.1).to(device)
    with torch.no_grad():
        rbm.visible_bias.copy_(x_train.mean(0))
    single = torch.distributions.Normal(x_train.mean(0), 1.0).log_prob(x_test).sum(-1).mean()
    train_rbm(rbm, x_train, epochs=40, batch_size=50, lr=0.02, persistent=True, seed=0)
    trained = float(rbm.log_prob(x_test, rbm.log_partition()).mean().detach())
    assert trained > float(single) + 3.0, (trained, float(single))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_visible": 0}, "num_visible"),
        ({"num_hidden": 2.5}, "num_hidden"),
        ({"visible": "poisson"}, "visible"),
        ({"sigma": 0.0}, "sigma"),
        ({"init_std": -1.0}, "init_std"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"num_visible": 4, "num_hidden": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        RBM(**args)


def test_bad_inputs_and_training_arguments(device):
    rbm = RBM(4, 3).to(device)
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., 4\)"):
        rbm.free_energy(torch.zeros(2, 5, device=device))
    with pytest.raises(ValueError, match="num_hidden=30"):
        RBM(4, 30).log_partition()
    x = torch.ones(10, 4, device=device)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_rbm(rbm, 2 * x)
    with pytest.raises(ValueError, match="lr"):
        train_rbm(rbm, x, lr=0)
    with pytest.raises(ValueError, match="momentum"):
        train_rbm(rbm, x, momentum=1.0)
    with pytest.raises(ValueError, match="k must"):
        train_rbm(rbm, x, k=0)
    with pytest.raises(ValueError, match="steps"):
        rbm.gibbs(x, steps=-1)
