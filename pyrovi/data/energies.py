"""Unnormalized 2-D energy targets ``p(z) ∝ exp(−U(z))`` of Rezende & Mohamed (2015), table 1.

``z`` has shape ``(..., 2)``; each ``U`` returns ``(...)``. U2–U4 are not integrable over R²
(nothing confines ``z1``); add :func:`wall` to confine the mass to ``|z1| ≲ 4``, the box the
paper plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["U1", "U2", "U3", "U4", "ENERGIES", "wall", "WALL_AT", "WALL_SCALE"]


def _check_z(z: torch.Tensor) -> None:
    if not isinstance(z, torch.Tensor) or z.dim() == 0 or z.shape[-1] != 2:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"z must have shape (..., 2) (points in the plane), got {got}")


def _w1(z: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * z[..., 0] / 4)


def _w2(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)


def _w3(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.sigmoid((z[..., 0] - 1) / 0.3)


def U1(z: torch.Tensor) -> torch.Tensor:
    """½((‖z‖ − 2)/0.4)² − log(exp(−½((z1 − 2)/0.6)²) + exp(−½((z1 + 2)/0.6)²))."""
    _check_z(z)
    ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
    modes = torch.stack(
        [-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2], -1
    )
    return ring - torch.logsumexp(modes, dim=-1)


def U2(z: torch.Tensor) -> torch.Tensor:
    """½((z2 − w1(z))/0.4)², w1 = sin(2π z1 / 4)."""
    _check_z(z)
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2


def U3(z: torch.Tensor) -> torch.Tensor:
    """−log(exp(−½((z2 − w1)/0.35)²) + exp(−½((z2 − w1 + w2)/0.35)²)),
    w2 = 3 exp(−½((z1 − 1)/0.6)²)."""
    _check_z(z)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + _w2(z)) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], -1), dim=-1)


def U4(z: torch.Tensor) -> torch.Tensor:
    """−log(exp(−½((z2 − w1)/0.4)²) + exp(−½((z2 − w1 + w3)/0.35)²)), w3 = 3 σ((z1 − 1)/0.3)."""
    _check_z(z)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + _w3(z)) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], -1), dim=-1)


ENERGIES: dict[str, Callable] = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}
WALL_AT, WALL_SCALE = 4.0, 0.25


def wall(z: torch.Tensor) -> torch.Tensor:
    """``½((|z1| − 4)₊ / 0.25)²``: confines the mass to ``|z1| ≲ 4``, the box the paper plots."""
    _check_z(z)
    return 0.5 * (torch.relu(z[..., 0].abs() - WALL_AT) / WALL_SCALE) ** 2
