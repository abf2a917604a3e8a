"""Potentials for overdamped Langevin dynamics ``dz = −∇U(z) dt + σ dW`` (known forward models).

Each potential is an ``nn.Module`` whose ``forward(t, z)`` returns the drift ``−∇U(z)``, the
coefficient convention of :class:`~pyrovi.distributions.EulerMaruyama` and
:class:`~pyrovi.models.ForwardSDE`; ``energy(z)`` returns ``U(z)``. With diffusion σ the
stationary density is ``∝ exp(−2 U / σ²)`` (inverse temperature ``β = 2 / σ²``).

* :class:`DoubleWell`: ``U(z) = h Σ_i (z_i² − 1)²``, minima at ±1 per coordinate, barrier h;
  the same dynamics as :func:`pyrovi.data.double_well`.
* :class:`MullerBrown`: the Müller–Brown surface (Müller & Brown 1979), a standard
  two-dimensional test system of molecular-dynamics transition-path methods, with its energy
  multiplied by ``scale`` (the original energies span about 150 units).
"""

from __future__ import annotations

import torch
from torch import nn

from pyrovi._checks import check_positive

__all__ = ["DoubleWell", "MullerBrown"]


class DoubleWell(nn.Module):
    """Quartic double well ``U(z) = h Σ_i (z_i² − 1)²`` in any dimension.

    Args:
        barrier: Barrier height ``h > 0`` (energy units).
    """

    def __init__(self, barrier: float = 1.0) -> None:
        super().__init__()
        self.barrier = check_positive("barrier", barrier)

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """``U(z)`` for ``z`` ``(..., d)``; returns ``(...)``."""
        return self.barrier * (z * z - 1).pow(2).sum(-1)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Drift ``−∇U(z) = −4 h z (z² − 1)``, shape of ``z``."""
        return -4.0 * self.barrier * z * (z * z - 1)


class MullerBrown(nn.Module):
    """The Müller–Brown potential, ``U(x, y) = scale · Σ_k A_k exp(a_k (x − x_k)² + b_k (x −
    x_k)(y − y_k) + c_k (y − y_k)²)``.

    Minima near ``(−0.558, 1.442)`` (deepest), ``(0.623, 0.028)`` and ``(−0.050, 0.467)``.

    Args:
        scale: Multiplies the energy (e.g. 0.05 brings the barriers to a few units).
    """

    A = (-200.0, -100.0, -170.0, 15.0)
    a = (-1.0, -1.0, -6.5, 0.7)
    b = (0.0, 0.0, 11.0, 0.6)
    c = (-10.0, -10.0, -6.5, 0.7)
    x0 = (1.0, 0.0, -0.5, -1.0)
    y0 = (0.0, 0.5, 1.5, 1.0)
    #: Approximate minima (x, y): A (deepest), B, and the intermediate one.
    MINIMA = ((-0.558, 1.442), (0.623, 0.028), (-0.050, 0.467))

    def __init__(self, scale: float = 0.05) -> None:
        super().__init__()
        self.scale = check_positive("scale", scale)
        for name in ("A", "a", "b", "c", "x0", "y0"):
            self.register_buffer(f"_{name}", torch.tensor(getattr(self, name)))

    def _terms(self, z: torch.Tensor):
        if z.shape[-1] != 2:
            raise ValueError(f"z: the Müller–Brown potential is 2-D, got shape {tuple(z.shape)}")
        p = {n: getattr(self, f"_{n}").to(z.dtype) for n in ("A", "a", "b", "c", "x0", "y0")}
        dx = z[..., :1] - p["x0"]  # (..., 4)
        dy = z[..., 1:] - p["y0"]
        e = p["A"] * torch.exp(p["a"] * dx * dx + p["b"] * dx * dy + p["c"] * dy * dy)
        return e, dx, dy, p

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """``U(z)`` for ``z`` ``(..., 2)``; returns ``(...)``."""
        return self.scale * self._terms(z)[0].sum(-1)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Drift ``−∇U(z)``, shape ``(..., 2)``."""
        e, dx, dy, p = self._terms(z)
        gx = (e * (2 * p["a"] * dx + p["b"] * dy)).sum(-1)
        gy = (e * (p["b"] * dx + 2 * p["c"] * dy)).sum(-1)
        return -self.scale * torch.stack([gx, gy], dim=-1)
