"""Hamiltonians: potentials at hand-computed points, exact drifts, walker samplers, errors."""

import math

import pytest
import torch

from pyrovi.models import hamiltonians as H


def test_coulomb_potentials_at_hand_computed_points(device):
    torch.set_default_dtype(torch.float64)
    hy = H.hydrogen()
    assert float(hy.potential(torch.tensor([0.0, 3.0, 4.0], device=device))) == pytest.approx(-0.2)
    he = H.helium()
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 0.0], device=device)
    assert float(he.potential(x)) == pytest.approx(-2 / 1 - 2 / 2 + 1 / math.sqrt(5))
    mol = H.h2()
    assert mol.exact_energy == pytest.approx(-1.174476)
    r = 1.401
    # electron 1 on the upper proton's axis above it, electron 2 at the origin
    x = torch.tensor([0.0, 0.0, r / 2 + 1.0, 0.0, 0.0, 0.0], device=device)
    expected = -(1 / 1.0 + 1 / (r + 1.0)) - 2 * (1 / (r / 2)) + 1 / (r / 2 + 1.0) + 1 / r
    assert float(mol.potential(x)) == pytest.approx(expected)
    assert H.h2(2.0).exact_energy is None


def test_oscillator_and_bosons(device):
    torch.set_default_dtype(torch.float64)
    ho = H.harmonic_oscillator(num_particles=2, dim=3, omega=2.0)
    assert ho.state_dim == 6 and ho.exact_energy == 6.0
    x = torch.randn(4, 6, device=device)
    assert torch.allclose(ho.potential(x), 2.0 * x.pow(2).sum(-1))
    b = H.gaussian_bosons(num_particles=2, g=3.0, s=0.5)
    assert b.exact_energy == 2.312 and H.gaussian_bosons(g=6.0).exact_energy == 2.484
    assert H.gaussian_bosons(num_particles=3, g=0.0).exact_energy == 3.0
    x = torch.tensor([[0.5, 0.0, 0.0, 0.0]], device=device)
    u = 3.0 / (math.pi * 0.25) * math.exp(-0.25 / 0.25)
    assert float(b.potential(x)) == pytest.approx(0.125 + u)


@pytest.mark.parametrize("name", ["harmonic", "hydrogen"])
def test_exact_drift_is_the_gradient_of_log_psi(name, device):
    torch.set_default_dtype(torch.float64)
    ham = H.harmonic_oscillator(2, 2) if name == "harmonic" else H.hydrogen()
    x = ham.sample_init(16, device=device).requires_grad_(True)
    (grad,) = torch.autograd.grad(ham.log_psi(x).sum(), x)
    assert torch.allclose(ham.exact_drift(x), grad, atol=1e-10)


def test_samplers_draw_from_the_ground_state_density(device):
    torch.set_default_dtype(torch.float64)
    x = H.hydrogen().sample_init(20000, device=device)
    r = x.norm(dim=-1)  # |φ₀|² ∝ e^{−2r}: r ~ Gamma(3, 2), mean 3/2, var 3/4
    assert abs(float(r.mean()) - 1.5) < 4 * math.sqrt(0.75 / 20000)
    assert abs(float(x.mean(0).abs().max())) < 0.05
    y = H.harmonic_oscillator(dim=2, omega=2.0).sample_init(20000, device=device)
    assert float(y.var(0).mean()) == pytest.approx(0.25, rel=0.03)
    z = H.h2().sample_init(5)
    assert z.shape == (5, 6) and z.dtype == torch.float64


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="omega must be a positive number"):
        H.harmonic_oscillator(omega=0.0)
    with pytest.raises(ValueError, match="num_particles must be a positive integer"):
        H.gaussian_bosons(num_particles=0)
    with pytest.raises(ValueError, match="s must be a positive number"):
        H.gaussian_bosons(s=-1.0)
    with pytest.raises(ValueError, match="bond_length must be a positive number"):
        H.h2(0.0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        H.helium().sample_init(0)
    with pytest.raises(ValueError, match="x: expected states"):
        H.helium().particles(torch.zeros(2, 5))
