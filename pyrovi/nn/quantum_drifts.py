"""Drift networks ``v(x)`` for learning quantum ground states (``dX = v dt + dW``).

The optimal drift is ``∇ log φ₀``. Every module is called as ``module(t, x)`` with states ``x`` of
shape ``(..., N·dim)`` (particles flattened) and ``t`` ignored (time-homogeneous), and returns
``(..., N·dim)``, as :class:`~pyrovi.distributions.EulerMaruyama` expects.

* :class:`ResNetDrift`: a generic residual MLP on the flattened state (plus an optional skip term);
* :class:`EquivariantDrift`: for identical particles; each particle's drift is a function of its
  own features and the mean of pair features over the others, so permuting the particles
  permutes the drifts;
* :class:`CoulombCusp`: the analytic short-distance drift of a Coulomb system — ``−Z r̂`` towards
  each nucleus and ``+½ r̂₁₂`` away from every other electron (Kato's cusp conditions). Added as a
  skip term it cancels the ``1/r`` singularities of ``V`` in ``½|v|² + V`` so that the network
  only learns a smooth correction; it stays finite (no NaN/inf) at coalescence points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from pyrovi._checks import check_finite, check_tensor
from pyrovi._validation import positive_int as _positive

if TYPE_CHECKING:  # pyrovi.models imports pyrovi.nn: no runtime import back
    from pyrovi.models.hamiltonians import Hamiltonian

__all__ = [
    "ResNetDrift",
    "EquivariantDrift",
    "CoulombCusp",
    "CoulombFeatures",
    "HarmonicSkip",
    "drift_for",
]


def distance(a: torch.Tensor) -> torch.Tensor:
    """``|a|`` over the last dimension, with a finite gradient at ``a = 0``."""
    return (a * a).sum(-1).clamp_min(torch.finfo(a.dtype).tiny).sqrt()


def _unit(a: torch.Tensor) -> torch.Tensor:
    """``a / |a|`` over the last dimension; 0 at ``a = 0``."""
    return a / distance(a)[..., None]


class _ResNet(nn.Module):
    """``in -> width -> [width + act(W width)] × depth -> out`` with a zero-initialized output."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.out(h)


class CoulombCusp(nn.Module):
    """Cusp drift of electrons among nuclei: ``v_i = −Σ_A Z_A r̂_iA + ½ Σ_{j≠i} r̂_ij``.

    ``r̂_iA`` is the unit vector from nucleus A to electron i, ``r̂_ij`` from electron j to
    electron i. This is ``∇ log`` of ``exp(−Σ Z_A r_iA + ½ Σ_{i<j} r_ij)``; its divergence
    ``−2Z/r`` (``+2/r``) cancels the Coulomb singularity in the local energy.

    Args:
        nuclei: Positions ``(M, 3)`` (bohr).
        charges: Charges ``(M,)``.
        num_electrons: Number of electrons n (state dimension ``3n``).
        electron_cusp: Coefficient of the electron–electron term (½ for antiparallel spins; 0
            to leave it out).
    """

    def __init__(
        self,
        nuclei: torch.Tensor,
        charges: torch.Tensor,
        num_electrons: int,
        electron_cusp: float = 0.5,
    ) -> None:
        super().__init__()
        nuclei, charges = torch.as_tensor(nuclei), torch.as_tensor(charges)
        if nuclei.dim() != 2 or nuclei.shape[-1] != 3 or charges.shape != nuclei.shape[:1]:
            raise ValueError(
                f"nuclei must be (M, 3) and charges (M,), got {tuple(nuclei.shape)} and "
                f"{tuple(charges.shape)}"
            )
        check_tensor("nuclei", nuclei.double(), finite=True)
        check_tensor("charges", charges.double(), finite=True)
        self.num_electrons = _positive("num_electrons", num_electrons)
        self.electron_cusp = check_finite("electron_cusp", electron_cusp)
        self.register_buffer("nuclei", nuclei.to(torch.get_default_dtype()))
        self.register_buffer("charges", charges.to(torch.get_default_dtype()))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        r = x.reshape(*x.shape[:-1], self.num_electrons, 3)
        nuclei = self.nuclei.to(x.dtype)
        charges = self.charges.to(x.dtype)
        v = -(charges[:, None] * _unit(r[..., :, None, :] - nuclei)).sum(-2)
        if self.num_electrons > 1 and self.electron_cusp != 0:
            v = v + self.electron_cusp * _unit(r[..., :, None, :] - r[..., None, :, :]).sum(-2)
        return v.reshape(x.shape)


class CoulombFeatures(nn.Module):
    """Input features ``(x, r_iA for all i, A, r_ij for i < j)`` of electrons among nuclei.

    Shapes: ``(..., 3n) -> (..., 3n + nM + n(n−1)/2)`` (see :attr:`out_dim`).

    Args:
        nuclei: Positions ``(M, 3)``.
        num_electrons: n.
    """

    def __init__(self, nuclei: torch.Tensor, num_electrons: int) -> None:
        super().__init__()
        self.num_electrons = _positive("num_electrons", num_electrons)
        self.register_buffer(
            "nuclei", torch.as_tensor(nuclei).to(torch.get_default_dtype()).clone()
        )
        n, m = self.num_electrons, len(self.nuclei)
        self.out_dim = 3 * n + n * m + n * (n - 1) // 2
        self._pairs = torch.triu_indices(n, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        r = x.reshape(*x.shape[:-1], self.num_electrons, 3)
        parts = [x, distance(r[..., :, None, :] - self.nuclei.to(x.dtype)).flatten(-2)]
        if self.num_electrons > 1:
            i, j = self._pairs
            parts.append(distance(r[..., i, :] - r[..., j, :]))
        return torch.cat(parts, -1)


class HarmonicSkip(nn.Module):
    """The drift ``−ω x`` of independent particles in a harmonic trap (a skip term).

    Args:
        omega: Trap frequency.
    """

    def __init__(self, omega: float = 1.0) -> None:
        super().__init__()
        self.omega = check_finite("omega", omega)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -self.omega * x


class ResNetDrift(nn.Module):
    """A generic drift ``v(x) = ResNet(x) + skip(x)`` on the flattened state.

    The residual network has ``depth`` tanh blocks of ``width`` units; its output layer starts at
    zero, so the initial drift is the skip term (or 0).

    Args:
        state_dim: Dimension of the state ``N·dim``.
        width: Hidden width.
        depth: Number of residual blocks.
        skip: Optional analytic drift ``skip(t, x)`` added to the network (e.g.
            :class:`CoulombCusp`).
        features: Optional module mapping ``x`` to the network's input (e.g.
            :class:`CoulombFeatures`); it must have an ``out_dim`` attribute.
    """

    def __init__(
        self,
        state_dim: int,
        width: int = 64,
        depth: int = 2,
        skip: nn.Module | None = None,
        features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.state_dim = _positive("state_dim", state_dim)
        if features is not None:
            out_dim = getattr(features, "out_dim", None)
            if not isinstance(features, nn.Module) or not isinstance(out_dim, int) or out_dim < 1:
                raise TypeError(
                    "features must be an nn.Module with a positive integer out_dim attribute "
                    f"(its number of output features), got {type(features).__name__}"
                )
        in_dim = state_dim if features is None else int(features.out_dim)
        self.features = features
        self.net = _ResNet(in_dim, _positive("width", width), _nonneg("depth", depth), state_dim)
        self.skip = skip

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.shape[-1] != self.state_dim:
            raise ValueError(f"x: expected last dimension {self.state_dim}, got {tuple(x.shape)}")
        v = self.net(x if self.features is None else self.features(x))
        return v if self.skip is None else v + self.skip(t, x)


class EquivariantDrift(nn.Module):
    """Permutation-equivariant drift for N identical particles in ``dim`` dimensions.

    For particle i with position ``r_i``:

    * single-particle features ``s_i = (r_i, |r_i|)`` and, for each nucleus A,
      ``(r_i − R_A, |r_i − R_A|)``;
    * pair features ``p_ij = (r_i − r_j, |r_i − r_j|)`` for ``j ≠ i``;
    * ``h_i = φ(s_i) + mean_{j≠i} ψ(p_ij)``, ``c = mean_k h_k``;
    * ``v_i = ρ(h_i, c)`` (a residual network with zero-initialized output), plus ``skip``.

    Permuting the particles permutes the ``v_i``: the drift of a symmetric (bosonic) ground state.

    Args:
        num_particles: N.
        dim: Spatial dimension of one particle.
        width: Width of the embeddings and of ρ.
        depth: Residual blocks of ρ.
        nuclei: Optional fixed centres ``(M, dim)`` whose relative positions enter ``s_i``.
        skip: Optional analytic drift added to the output (e.g. :class:`CoulombCusp`).
    """

    def __init__(
        self,
        num_particles: int,
        dim: int,
        width: int = 64,
        depth: int = 2,
        nuclei: torch.Tensor | None = None,
        skip: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.num_particles = _positive("num_particles", num_particles)
        self.dim = _positive("dim", dim)
        width = _positive("width", width)
        nuclei = torch.zeros(0, dim) if nuclei is None else torch.as_tensor(nuclei)
        if nuclei.dim() != 2 or nuclei.shape[-1] != dim:
            raise ValueError(f"nuclei must be (M, {dim}), got {tuple(nuclei.shape)}")
        check_tensor("nuclei", nuclei.double(), finite=True)
        self.register_buffer("nuclei", nuclei.to(torch.get_default_dtype()))
        single = (dim + 1) * (1 + len(nuclei))
        self.single = nn.Sequential(nn.Linear(single, width), nn.Tanh(), nn.Linear(width, width))
        self.pair = nn.Sequential(nn.Linear(dim + 1, width), nn.Tanh(), nn.Linear(width, width))
        self.head = _ResNet(2 * width, width, _nonneg("depth", depth), dim)
        self.skip = skip

    def _features(self, r: torch.Tensor) -> torch.Tensor:
        rel = [r]
        if len(self.nuclei):
            rel.append(r[..., None, :] - self.nuclei.to(r.dtype))  # (..., N, M, dim)
            rel[-1] = rel[-1].flatten(-2)
        pos = torch.cat(rel, -1).unflatten(-1, (-1, self.dim))  # (..., N, 1 + M, dim)
        return torch.cat([pos, distance(pos)[..., None]], -1).flatten(-2)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n = self.num_particles
        if x.shape[-1] != n * self.dim:
            raise ValueError(f"x: expected last dimension {n * self.dim}, got {tuple(x.shape)}")
        r = x.reshape(*x.shape[:-1], n, self.dim)
        h = self.single(self._features(r))  # (..., N, width)
        if n > 1:
            diff = r[..., :, None, :] - r[..., None, :, :]  # (..., N, N, dim)
            pair = self.pair(torch.cat([diff, distance(diff)[..., None]], -1))
            off = 1.0 - torch.eye(n, dtype=x.dtype, device=x.device)
            h = h + (pair * off[..., None]).sum(-2) / (n - 1)
        context = h.mean(-2, keepdim=True).expand_as(h)
        v = self.head(torch.cat([h, context], -1)).reshape(x.shape)
        return v if self.skip is None else v + self.skip(t, x)


def _nonneg(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def drift_for(
    hamiltonian: Hamiltonian, kind: str = "auto", width: int = 64, depth: int = 2
) -> nn.Module:
    """A drift network suited to ``hamiltonian``.

    Args:
        hamiltonian: The system.
        kind: ``"resnet"`` (generic), ``"equivariant"``, ``"gradient"`` (a
            :class:`~pyrovi.nn.GradientDrift` of :func:`~pyrovi.nn.log_psi_for`: ``∇ log ψ_θ``
            with exact cusps, which the variational and projected estimators need), or
            ``"auto"`` (equivariant for several identical particles, ResNet otherwise).
        width: Hidden width.
        depth: Residual blocks.

    Returns:
        The drift module. Coulomb systems get a :class:`CoulombCusp` skip term (and, for the
        ResNet, :class:`CoulombFeatures` inputs); trapped interacting bosons the trap drift
        :class:`HarmonicSkip` (the oscillator itself is learned from zero).
    """
    kinds = ("auto", "resnet", "equivariant", "gradient")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    if kind == "auto":
        several = hamiltonian.identical and hamiltonian.num_particles > 1
        kind = "equivariant" if several else "resnet"
    if kind == "gradient":
        from pyrovi.nn.wavefunctions import GradientDrift, log_psi_for

        return GradientDrift(log_psi_for(hamiltonian, width, depth))
    skip = features = None
    if hamiltonian.interaction == "coulomb":
        skip = CoulombCusp(hamiltonian.nuclei, hamiltonian.charges, hamiltonian.num_particles)
        features = CoulombFeatures(hamiltonian.nuclei, hamiltonian.num_particles)
    elif hamiltonian.interaction == "gaussian":
        skip = HarmonicSkip(1.0)
    if kind == "resnet":
        return ResNetDrift(hamiltonian.state_dim, width, depth, skip=skip, features=features)
    nuclei = hamiltonian.nuclei if len(hamiltonian.nuclei) else None
    return EquivariantDrift(
        hamiltonian.num_particles, hamiltonian.dim, width, depth, nuclei=nuclei, skip=skip
    )
