"""Annealed importance sampling: known answers for tiny RBMs and a Gaussian path."""

from __future__ import annotations

import math

import pytest
import torch

from pyrovi.infer import ais_schedule, annealed_importance_sampling
from pyrovi.models import RBM


def random_rbm(v, h, visible, device, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(v, h, visible=visible, sigma=0.8 if visible == "gaussian" else 1.0)
    with torch.no_grad():
        rbm.weight.copy_(scale * torch.randn(v, h, generator=g))
        rbm.visible_bias.copy_(torch.randn(v, generator=g))
        rbm.hidden_bias.copy_(torch.randn(h, generator=g))
    return rbm.to(device, torch.float64)


@pytest.mark.parametrize(
    "visible, seed, scale",
    [("bernoulli", 0, 1.0), ("bernoulli", 1, 1.5), ("gaussian", 2, 0.5)],
    ids=["bb", "bb-strong", "gb"],
)
def test_ais_matches_exact_log_partition_of_tiny_rbm(visible, seed, scale, device):
    """Known answer: 12 visible and 8 hidden units, exact log Z by enumeration of 2^8 hidden
    states; AIS with 200 chains and 3000 temperatures lands within 0.05 nats."""
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(12, 8, visible, device, seed=seed, scale=scale)
    exact = rbm.log_partition()
    g = torch.Generator(device=device).manual_seed(seed)
    result = rbm.log_partition_ais(num_chains=200, betas=3000, generator=g)
    assert abs(result.log_z - exact) < 0.05, (result.log_z, exact, result.log_z_std)
    assert result.log_weights.shape == (200,) and result.num_betas == 3000
    assert 1.0 <= result.ess <= 200.0
    assert result.samples.shape == (200, 12)


def test_ais_with_a_data_base_model(device):
    torch.set_default_dtype(torch.float64)
    rbm = random_rbm(12, 8, "bernoulli", device, seed=3)
    data = torch.bernoulli(torch.full((100, 12), 0.3, device=device))
    base = RBM.base_from_data(data)
    g = torch.Generator(device=device).manual_seed(0)
    result = rbm.log_partition_ais(num_chains=200, betas=3000, base=base, generator=g)
    assert abs(result.log_z - rbm.log_partition()) < 0.05
    with pytest.raises(ValueError, match=r"base must have shape \(12,\)"):
        rbm.log_partition_ais(base=torch.zeros(3, device=device))


def test_generic_ais_between_gaussians_is_exact_with_exact_transitions(device):
    """f_β = N(0, 1)^(1−β) × (c · N(3, 0.5²))^β with exact sampling at every β: log Z of the
    target is log c, and AIS recovers it to Monte Carlo accuracy."""
    torch.set_default_dtype(torch.float64)
    c = 2.5
    g = torch.Generator(device=device).manual_seed(0)

    def log_f(x, beta):
        a = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
        b = -0.5 * ((x - 3) / 0.5) ** 2 - math.log(0.5 * math.sqrt(2 * math.pi)) + math.log(c)
        return ((1 - beta) * a + beta * b).sum(-1)

    def exact_draw(x, beta):
        prec = (1 - beta) + beta / 0.25
        mean = beta * 3 / 0.25 / prec
        noise = torch.randn(x.shape, generator=g, device=device)
        return mean + noise / math.sqrt(prec)

    init = torch.randn(500, 1, generator=g, device=device)
    result = annealed_importance_sampling(init, 0.0, log_f, exact_draw, betas=200)
    assert result.log_z == pytest.approx(math.log(c), abs=4 * result.log_z_std + 0.01)
    assert result.log_z_std < 0.05


def test_schedule():
    lin = ais_schedule(5, "linear")
    torch.testing.assert_close(lin, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    sig = ais_schedule(101)
    assert sig[0] == 0 and sig[-1] == 1 and (sig.diff() > 0).all()
    assert sig[1] < 0.01  # denser near the ends than linear
    with pytest.raises(ValueError, match="num_betas"):
        ais_schedule(1)
    with pytest.raises(ValueError, match="kind"):
        ais_schedule(10, "cosine")


def test_bad_ais_arguments():
    with pytest.raises(ValueError, match="betas must increase"):
        annealed_importance_sampling(
            torch.zeros(3, 1), 0.0, lambda x, b: x.sum(-1), lambda x, b: x, torch.tensor([0.0, 0.5])
        )
    with pytest.raises(ValueError, match="init"):
        annealed_importance_sampling(torch.zeros(()), 0.0, None, None)


def test_ais_names_bad_arguments_and_callables():
    init = torch.zeros(4, 2)

    def log_density(x, beta):
        return -beta * x.pow(2).sum(-1)

    def stay(x, beta):
        return x

    nan = float("nan")
    cases = [
        (lambda: annealed_importance_sampling(init, nan, log_density, stay, 5), "log_z0 must be"),
        (
            lambda: annealed_importance_sampling(init, 0.0, log_density, stay, 1),
            "betas must be the number of temperatures",
        ),
        (
            lambda: annealed_importance_sampling(
                init, 0.0, log_density, stay, torch.tensor([0.0, nan, 1.0])
            ),
            r"betas must increase from 0 to 1 \(finite values\)",
        ),
        (
            lambda: annealed_importance_sampling(init, 0.0, lambda x, b: x, stay, 5),
            r"log_density must return one value per chain \(4,\), got \(4, 2\)",
        ),
        (
            lambda: annealed_importance_sampling(init, 0.0, lambda x, b: x.sum(-1) * nan, stay, 5),
            "log_density returned NaN",
        ),
        (
            lambda: annealed_importance_sampling(init, 0.0, log_density, lambda x, b: x[:2], 5),
            r"transition must return states of the shape of init \(4, 2\), got \(2, 2\)",
        ),
        (
            lambda: annealed_importance_sampling(
                torch.full((4, 2), nan), 0.0, log_density, stay, 5
            ),
            "init contains NaN",
        ),
        (lambda: ais_schedule(10, sharpness=float("inf")), "sharpness must be a positive number"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()
    with pytest.raises(TypeError, match="transition must be a callable"):
        annealed_importance_sampling(init, 0.0, log_density, 3, 5)
