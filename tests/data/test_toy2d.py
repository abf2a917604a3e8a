"""Synthetic 2-D densities: samplers match their exact log-densities; energy targets."""

import math

import pytest
import torch

from pyrovi.data import ENERGIES, TOY_DATASETS, wall


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_exact_log_density_is_normalized_and_matches_samples(name):
    sampler, log_prob = TOY_DATASETS[name]
    g = torch.Generator().manual_seed(0)
    x = sampler(4000, g)
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    # the density integrates to one on a grid covering the support
    t = torch.linspace(-6, 6, 301)
    grid = torch.cartesian_prod(t, t)
    cell = (t[1] - t[0]) ** 2
    mass = float(log_prob(grid).double().exp().sum() * cell)
    assert mass == pytest.approx(1.0, abs=1e-3)
    # samples are typical: their mean log-density is above that of a broad Gaussian's samples
    broad = torch.randn(4000, 2, generator=g) * 3
    assert log_prob(x).mean() > log_prob(broad).mean() + 1.0


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_energies_are_finite_and_the_wall_makes_them_integrable(name):
    U = ENERGIES[name]
    t = torch.linspace(-8, 8, 321, dtype=torch.float64)
    z = torch.cartesian_prod(t, t)
    values = U(z)
    assert values.shape == (z.shape[0],) and torch.isfinite(values).all()
    cell = float((t[1] - t[0]) ** 2)
    log_z = torch.logsumexp(-(values + wall(z)), 0) + math.log(cell)
    assert torch.isfinite(log_z)
    assert (wall(z)[z[:, 0].abs() <= 4] == 0).all()
