"""Synthetic 2-D densities with exact log-densities: two moons, rings, eight Gaussians.

Every sampler returns ``(n, 2)`` float32 samples drawn with a ``torch.Generator`` and has a
matching exact log-density (by quadrature over the curve for moons and rings), so held-out
negative log-likelihoods of density models can be compared with the data's own entropy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyrovi._checks import check_int, check_nonnegative

__all__ = [
    "TOY_DATASETS",
    "two_moons",
    "two_moons_log_prob",
    "rings",
    "rings_log_prob",
    "eight_gaussians",
    "eight_gaussians_log_prob",
]

# Every sampler returns (n, 2) float32 samples drawn with the given torch.Generator, and has a
# matching exact log-density, so held-out NLLs can be compared with the data's own entropy.

MOONS_NOISE = 0.1
RINGS_RADII = (1.0, 2.0, 3.0)
RINGS_NOISE = 0.1
GAUSSIANS_RADIUS, GAUSSIANS_SCALE = 2.5, 0.25


def _check_sampler(n: int, generator: torch.Generator, noise: float | None = None) -> int:
    n = check_int("n", n)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if noise is not None:
        check_nonnegative("noise", noise)
    return n


def _check_points(x: torch.Tensor, m: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be points of shape (n, 2), got {got}")
    if m is not None:
        check_int("m", m)


def _moon_centres(t: torch.Tensor, moon: torch.Tensor) -> torch.Tensor:
    """Points on the two half circles (centred, scaled by 2): moon 0 upper, moon 1 lower."""
    upper = torch.stack([torch.cos(t), torch.sin(t)], -1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], -1)
    xy = torch.where(moon.unsqueeze(-1).bool(), lower, upper)
    return 2.0 * (xy - torch.tensor([0.5, 0.25]))


def two_moons(n: int, generator: torch.Generator, noise: float = MOONS_NOISE) -> torch.Tensor:
    """Two interleaved half circles (scikit-learn's ``make_moons`` shape), centred and scaled
    by 2, with isotropic Gaussian noise of standard deviation ``2 * noise``."""
    n = _check_sampler(n, generator, noise)
    moon = torch.randint(0, 2, (n,), generator=generator)
    t = torch.rand(n, generator=generator) * math.pi
    eps = torch.randn(n, 2, generator=generator)
    return _moon_centres(t, moon) + 2.0 * noise * eps


def rings(n: int, generator: torch.Generator, noise: float = RINGS_NOISE) -> torch.Tensor:
    """Concentric circles of radii 1, 2, 3 (points per ring ∝ radius, i.e. uniform along the
    curves) with isotropic Gaussian noise of standard deviation ``noise``."""
    n = _check_sampler(n, generator, noise)
    radii = torch.tensor(RINGS_RADII)
    ring = torch.multinomial(radii / radii.sum(), n, replacement=True, generator=generator)
    theta = torch.rand(n, generator=generator) * 2 * math.pi
    eps = torch.randn(n, 2, generator=generator)
    r = radii[ring].unsqueeze(-1)
    return r * torch.stack([torch.cos(theta), torch.sin(theta)], -1) + noise * eps


def eight_gaussians(n: int, generator: torch.Generator) -> torch.Tensor:
    """Eight equally weighted Gaussians (sd 0.25) on a circle of radius 2.5."""
    n = _check_sampler(n, generator)
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.float() * (2 * math.pi / 8)
    centres = GAUSSIANS_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return centres + GAUSSIANS_SCALE * torch.randn(n, 2, generator=generator)


def _gauss_mixture_over_curve(x: torch.Tensor, centres: torch.Tensor, sd: float) -> torch.Tensor:
    """``log mean_j N(x; centres_j, sd² I)`` for x ``(n, 2)``, centres ``(m, 2)``."""
    out = []
    for rows in x.double().split(1024):  # bounded memory: 1024 × m distances at a time
        d2 = torch.cdist(rows, centres.double()) ** 2
        log_n = -0.5 * d2 / sd**2 - math.log(2 * math.pi * sd**2)
        out.append(torch.logsumexp(log_n, dim=1) - math.log(centres.shape[0]))
    return torch.cat(out).float()


def two_moons_log_prob(x: torch.Tensor, noise: float = MOONS_NOISE, m: int = 1000) -> torch.Tensor:
    """Exact log-density of :func:`two_moons` (the average over t by the midpoint rule)."""
    _check_points(x, m)
    noise = check_nonnegative("noise", noise)
    t = (torch.arange(m) + 0.5) / m * math.pi
    centres = torch.cat([_moon_centres(t, torch.zeros(m)), _moon_centres(t, torch.ones(m))])
    return _gauss_mixture_over_curve(x, centres, 2.0 * noise)


def rings_log_prob(x: torch.Tensor, noise: float = RINGS_NOISE, m: int = 1000) -> torch.Tensor:
    """Exact log-density of :func:`rings` (the average over the angle by the midpoint rule)."""
    _check_points(x, m)
    noise = check_nonnegative("noise", noise)
    theta = (torch.arange(m) + 0.5) / m * 2 * math.pi
    circle = torch.stack([torch.cos(theta), torch.sin(theta)], -1)
    radii = torch.tensor(RINGS_RADII)
    weights = radii / radii.sum()
    parts = [
        _gauss_mixture_over_curve(x, r * circle, noise) + torch.log(w)
        for r, w in zip(radii, weights)
    ]
    return torch.logsumexp(torch.stack(parts), dim=0)


def eight_gaussians_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Exact log-density of :func:`eight_gaussians`."""
    _check_points(x)
    angle = torch.arange(8) * (2 * math.pi / 8)
    centres = GAUSSIANS_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    return _gauss_mixture_over_curve(x, centres, GAUSSIANS_SCALE)


TOY_DATASETS: dict[str, tuple[Callable, Callable]] = {
    "moons": (two_moons, two_moons_log_prob),
    "rings": (rings, rings_log_prob),
    "8gaussians": (eight_gaussians, eight_gaussians_log_prob),
}
