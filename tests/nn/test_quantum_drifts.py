"""Drift networks: shapes, permutation equivariance, Coulomb cusp terms finite at singularities."""

import pytest
import torch

from pyrovi.models import hamiltonians as H
from pyrovi.nn import CoulombCusp, EquivariantDrift, ResNetDrift, drift_for


def _t(device):
    return torch.zeros((), device=device)


def test_resnet_drift_starts_at_its_skip_term_and_trains(device):
    skip = lambda t, x: -x  # noqa: E731
    net = ResNetDrift(4, width=16, depth=2, skip=skip).to(device)
    x = torch.randn(5, 3, 4, device=device)
    assert torch.allclose(net(_t(device), x), -x)
    net(_t(device), x).pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_equivariant_drift_permutes_with_the_particles(device):
    torch.set_default_dtype(torch.float64)
    net = EquivariantDrift(3, 2, width=16, nuclei=torch.tensor([[0.0, 1.0]])).to(device)
    torch.nn.init.normal_(net.head.out.weight)  # non-trivial output
    x = torch.randn(7, 6, device=device)
    v = net(_t(device), x)
    assert v.shape == (7, 6) and torch.isfinite(v).all()
    perm = torch.tensor([2, 0, 1])
    xp = x.reshape(7, 3, 2)[:, perm].reshape(7, 6)
    vp = net(_t(device), xp)
    assert torch.allclose(vp, v.reshape(7, 3, 2)[:, perm].reshape(7, 6), atol=1e-12)
    assert not torch.allclose(v.reshape(7, 3, 2)[:, 0], v.reshape(7, 3, 2)[:, 1])


def test_coulomb_cusp_values(device):
    torch.set_default_dtype(torch.float64)
    cusp = CoulombCusp(torch.zeros(1, 3), torch.full((1,), 2.0), 2).to(device)
    x = torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0, -1.0]], device=device)
    v = cusp(_t(device), x).reshape(2, 3)
    r12 = torch.tensor([3.0, 0.0, 1.0], device=device) / 10**0.5
    assert torch.allclose(v[0], torch.tensor([-2.0, 0.0, 0.0], device=device) + 0.5 * r12)
    assert torch.allclose(v[1], torch.tensor([0.0, 0.0, 2.0], device=device) - 0.5 * r12)


@pytest.mark.parametrize("system", ["hydrogen", "helium", "h2"])
def test_coulomb_drifts_are_finite_at_the_singularities(system, device):
    ham = H.SYSTEMS[system]()
    net = drift_for(ham).to(device)
    nuc = ham.nuclei[0].to(device)
    points = [nuc.repeat(ham.num_particles)]  # every electron on a nucleus (and on each other)
    points.append(nuc.repeat(ham.num_particles) + 1e-30)
    x = torch.stack(points).requires_grad_(True)
    v = net(_t(device), x)
    assert torch.isfinite(v).all()
    v.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert torch.isfinite(ham.potential(x.detach() + 1e-3)).all()


def test_drift_for_chooses_the_architecture():
    assert isinstance(drift_for(H.harmonic_oscillator(dim=3)), ResNetDrift)
    assert isinstance(drift_for(H.gaussian_bosons()), EquivariantDrift)
    assert isinstance(drift_for(H.helium()).skip, CoulombCusp)
    assert isinstance(drift_for(H.hydrogen(), "equivariant"), EquivariantDrift)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="kind must be one of"):
        drift_for(H.hydrogen(), "cnn")
    with pytest.raises(ValueError, match="width must be a positive integer"):
        ResNetDrift(3, width=0)
    with pytest.raises(ValueError, match="nuclei must be"):
        EquivariantDrift(2, 3, nuclei=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="nuclei must be"):
        CoulombCusp(torch.zeros(2), torch.ones(2), 1)
    with pytest.raises(ValueError, match="x: expected last dimension 4"):
        ResNetDrift(4)(torch.zeros(()), torch.zeros(2, 3))
