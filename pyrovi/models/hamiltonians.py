"""Hamiltonians ``H = −½∇² + V`` for ground-state learning (atomic units: ħ = m = e = 1).

A :class:`Hamiltonian` holds the potential ``V`` as a function of the flattened state
``x = (r_1, ..., r_N)`` of shape ``(..., N·dim)``, the reference ground-state energy, the Coulomb
centres (nuclei) and particle kind a drift network needs for its cusp terms, a sampler of initial
walkers and, where known, the exact ground state ``log φ₀`` and its drift ``∇ log φ₀``.

Systems: :func:`harmonic_oscillator`, :func:`hydrogen`, :func:`helium`, :func:`h2` and
:func:`gaussian_bosons` (N bosons in a 2-D harmonic trap with a Gaussian interaction).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from pyrovi._checks import check_callable, check_finite, check_positive
from pyrovi._validation import positive_int as _positive_int

__all__ = [
    "Hamiltonian",
    "SYSTEMS",
    "harmonic_oscillator",
    "hydrogen",
    "helium",
    "h2",
    "gaussian_bosons",
    "distance",
    "coulomb_potential",
]

#: H₂ equilibrium proton separation (bohr) and its exact Born–Oppenheimer energy (Hartree).
H2_BOND_LENGTH = 1.401
H2_ENERGY = -1.174476
#: Helium ground-state energy (Hartree, non-relativistic, infinite nuclear mass).
HELIUM_ENERGY = -2.903724
#: 2-D Gaussian bosons, N = 2, s = 0.5 (Mujal, Juliá-Díaz & Polls 2017): g -> energy (ħω).
BOSON_REFERENCE = {0.0: 2.0, 3.0: 2.312, 6.0: 2.484}


def distance(a: torch.Tensor) -> torch.Tensor:
    """``|a|`` over the last dimension, with a finite gradient at ``a = 0``."""
    return (a * a).sum(-1).clamp_min(torch.finfo(a.dtype).tiny).sqrt()


@dataclass
class Hamiltonian:
    """A Hamiltonian ``H = −½ Σ_i ∇_i² + V`` of ``num_particles`` particles in ``dim`` dimensions.

    Attributes:
        name: Short name (e.g. ``"helium"``).
        num_particles: N.
        dim: Spatial dimension of one particle.
        potential: ``V(x)``: ``(..., N·dim) -> (...)`` (Hartree / ħω).
        exact_energy: Ground-state energy ``E₀`` (exact or best reference), or ``None``.
        nuclei: Fixed Coulomb centres ``(M, dim)`` (empty when none).
        charges: Their charges ``(M,)``.
        interaction: ``"coulomb"`` (electrons: repulsive 1/r, cusp ½ between pairs),
            ``"gaussian"`` or ``"none"``.
        identical: Whether the particles are identical bosons (or spin-paired electrons in a
            symmetric spatial ground state), i.e. the ground state is permutation symmetric.
        log_psi: ``log φ₀(x)`` up to a constant, when known.
        exact_drift: ``∇ log φ₀(x)``, when known.
        sampler: ``sampler(n, generator) -> (n, N·dim)``: initial walkers (exactly ``|φ₀|²``
            when ``exact_sampler`` is true, otherwise a rough guess to equilibrate from).
        exact_sampler: Whether ``sampler`` draws from ``|φ₀|²``.
        params: The parameters the system was built with (for reports).
    """

    name: str
    num_particles: int
    dim: int
    potential: Callable[[torch.Tensor], torch.Tensor]
    exact_energy: float | None
    sampler: Callable[..., torch.Tensor]
    nuclei: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 3))
    charges: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    interaction: str = "none"
    identical: bool = False
    log_psi: Callable[[torch.Tensor], torch.Tensor] | None = None
    exact_drift: Callable[[torch.Tensor], torch.Tensor] | None = None
    exact_sampler: bool = False
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive_int("num_particles", self.num_particles)
        _positive_int("dim", self.dim)
        check_callable("potential", self.potential, "a callable V(x): (..., N·dim) -> (...)")
        check_callable("sampler", self.sampler, "a callable sampler(n, generator) -> (n, N·dim)")
        if self.interaction not in ("coulomb", "gaussian", "none"):
            raise ValueError(
                f"interaction must be 'coulomb', 'gaussian' or 'none', got {self.interaction!r}"
            )
        if self.exact_energy is not None:
            check_finite("exact_energy", self.exact_energy)

    @property
    def state_dim(self) -> int:
        """Dimension of the flattened state, ``N·dim``."""
        return self.num_particles * self.dim

    def particles(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., N·dim)`` -> ``(..., N, dim)``."""
        if x.shape[-1] != self.state_dim:
            raise ValueError(
                f"x: expected states with last dimension N·dim = {self.state_dim}, got "
                f"{tuple(x.shape)}"
            )
        return x.reshape(*x.shape[:-1], self.num_particles, self.dim)

    def sample_init(
        self,
        n: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` initial walkers ``(n, N·dim)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        x = self.sampler(n, generator)
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, self.state_dim):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"sampler must return ({n}, {self.state_dim}) walkers, got {got}")
        return x.to(dtype=dtype or torch.get_default_dtype(), device=device)


def _gaussian_sampler(shape_dim: int, std: float) -> Callable[..., torch.Tensor]:
    def sample(n: int, generator: torch.Generator | None) -> torch.Tensor:
        return std * torch.randn(n, shape_dim, generator=generator, dtype=torch.float64)

    return sample


def harmonic_oscillator(num_particles: int = 1, dim: int = 1, omega: float = 1.0) -> Hamiltonian:
    """Independent particles in ``V = ½ ω² Σ_i |r_i|²``: ``E₀ = ½ ω N dim``, ``φ₀ ∝ e^{−ω|x|²/2}``.

    Args:
        num_particles: N.
        dim: Spatial dimension.
        omega: Trap frequency ω > 0 (energy unit ħω).
    """
    n, d = _positive_int("num_particles", num_particles), _positive_int("dim", dim)
    omega = check_positive("omega", omega)

    def potential(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * omega**2 * x.pow(2).sum(-1)

    return Hamiltonian(
        name="harmonic",
        num_particles=n,
        dim=d,
        potential=potential,
        exact_energy=0.5 * omega * n * d,
        sampler=_gaussian_sampler(n * d, math.sqrt(0.5 / omega)),
        identical=True,
        log_psi=lambda x: -0.5 * omega * x.pow(2).sum(-1),
        exact_drift=lambda x: -omega * x,
        exact_sampler=True,
        params={"num_particles": n, "dim": d, "omega": omega},
    )


def coulomb_potential(
    x: torch.Tensor,
    num_electrons: int,
    nuclei: torch.Tensor,
    charges: torch.Tensor,
    nuclear_repulsion: bool = True,
) -> torch.Tensor:
    """Coulomb energy of electrons ``(..., 3·n)`` among fixed nuclei ``(M, 3)`` of ``charges``.

    ``V = −Σ_{i,A} Z_A/|r_i − R_A| + Σ_{i<j} 1/|r_i − r_j| + Σ_{A<B} Z_A Z_B/|R_A − R_B|``.
    """
    r = x.reshape(*x.shape[:-1], num_electrons, 3)
    nuclei = nuclei.to(dtype=x.dtype, device=x.device)
    charges = charges.to(dtype=x.dtype, device=x.device)
    v = -(charges / distance(r[..., :, None, :] - nuclei)).sum((-1, -2))
    for i in range(num_electrons):
        for j in range(i + 1, num_electrons):
            v = v + 1.0 / distance(r[..., i, :] - r[..., j, :])
    if nuclear_repulsion:
        for a in range(len(nuclei)):
            for b in range(a + 1, len(nuclei)):
                v = v + float(charges[a] * charges[b]) / float((nuclei[a] - nuclei[b]).norm())
    return v


def _hydrogenic_sampler(
    nuclei: torch.Tensor, num_electrons: int, zeta: float
) -> Callable[..., torch.Tensor]:
    """Electrons from ``|e^{−ζ r}|²`` around randomly chosen nuclei (exact for hydrogen)."""

    def sample(n: int, generator: torch.Generator | None) -> torch.Tensor:
        shape = (n, num_electrons)
        # radius ~ Gamma(3, rate 2ζ): sum of three exponentials
        u = torch.rand(*shape, 3, generator=generator, dtype=torch.float64)
        radius = -torch.log1p(-u).sum(-1) / (2 * zeta)
        direction = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
        direction = direction / distance(direction)[..., None]
        which = torch.randint(len(nuclei), shape, generator=generator)
        centre = nuclei.to(torch.float64)[which]
        return (centre + radius[..., None] * direction).reshape(n, 3 * num_electrons)

    return sample


def hydrogen() -> Hamiltonian:
    """Hydrogen atom, ``V = −1/r``: ``E₀ = −½``, ``φ₀ = e^{−r}``, drift ``−r̂``."""
    nuclei, charges = torch.zeros(1, 3), torch.ones(1)

    def potential(x: torch.Tensor) -> torch.Tensor:
        return coulomb_potential(x, 1, nuclei, charges)

    def exact_drift(x: torch.Tensor) -> torch.Tensor:
        return -x / distance(x)[..., None]

    return Hamiltonian(
        name="hydrogen",
        num_particles=1,
        dim=3,
        potential=potential,
        exact_energy=-0.5,
        sampler=_hydrogenic_sampler(nuclei, 1, 1.0),
        nuclei=nuclei,
        charges=charges,
        interaction="coulomb",
        identical=True,
        log_psi=lambda x: -distance(x),
        exact_drift=exact_drift,
        exact_sampler=True,
    )


def helium() -> Hamiltonian:
    """Helium atom: ``V = −2/r₁ − 2/r₂ + 1/r₁₂``, ``E₀ = −2.903724`` (spin singlet, symmetric)."""
    nuclei, charges = torch.zeros(1, 3), torch.full((1,), 2.0)

    def potential(x: torch.Tensor) -> torch.Tensor:
        return coulomb_potential(x, 2, nuclei, charges)

    return Hamiltonian(
        name="helium",
        num_particles=2,
        dim=3,
        potential=potential,
        exact_energy=HELIUM_ENERGY,
        sampler=_hydrogenic_sampler(nuclei, 2, 27 / 16),
        nuclei=nuclei,
        charges=charges,
        interaction="coulomb",
        identical=True,
    )


def h2(bond_length: float = H2_BOND_LENGTH) -> Hamiltonian:
    """H₂ with protons at ``±R/2 ẑ``, including the proton repulsion ``1/R``.

    ``E₀ = −1.174476`` at ``R = 1.401`` (Kołos & Wolniewicz); other ``R`` have no reference here.

    Args:
        bond_length: Proton separation R (bohr).
    """
    bond_length = check_positive("bond_length", bond_length)
    nuclei = torch.tensor([[0.0, 0.0, bond_length / 2], [0.0, 0.0, -bond_length / 2]])
    charges = torch.ones(2)

    def potential(x: torch.Tensor) -> torch.Tensor:
        return coulomb_potential(x, 2, nuclei, charges)

    return Hamiltonian(
        name="h2",
        num_particles=2,
        dim=3,
        potential=potential,
        exact_energy=H2_ENERGY if abs(bond_length - H2_BOND_LENGTH) < 1e-9 else None,
        sampler=_hydrogenic_sampler(nuclei, 2, 1.0),
        nuclei=nuclei,
        charges=charges,
        interaction="coulomb",
        identical=True,
        params={"bond_length": bond_length},
    )


def gaussian_bosons(num_particles: int = 2, g: float = 3.0, s: float = 0.5) -> Hamiltonian:
    """N bosons in a 2-D harmonic trap with a Gaussian interaction.

    ``H = ½ Σ_i (−∇_i² + r_i²) + Σ_{i<j} U(r_i − r_j)``, ``U(r) = g/(π s²) e^{−r²/s²}`` (units of
    ħω and the oscillator length). Reference energies for N = 2, s = 0.5 (Mujal et al. 2017):
    ``g = 3 → 2.312``, ``g = 6 → 2.484``; ``g = 0`` is exactly ``N``.

    Args:
        num_particles: N ≥ 1.
        g: Interaction strength (≥ 0: repulsive).
        s: Interaction range > 0.
    """
    n = _positive_int("num_particles", num_particles)
    s = check_positive("s", s)
    g = check_finite("g", g)
    amplitude = g / (math.pi * s**2)

    def potential(x: torch.Tensor) -> torch.Tensor:
        r = x.reshape(*x.shape[:-1], n, 2)
        v = 0.5 * x.pow(2).sum(-1)
        for i in range(n):
            for j in range(i + 1, n):
                v = v + amplitude * torch.exp(-(r[..., i, :] - r[..., j, :]).pow(2).sum(-1) / s**2)
        return v

    exact = float(n) if g == 0 else None
    if n == 2 and s == 0.5 and g in BOSON_REFERENCE:
        exact = BOSON_REFERENCE[g]
    free = g == 0
    return Hamiltonian(
        name="bosons",
        num_particles=n,
        dim=2,
        potential=potential,
        exact_energy=exact,
        sampler=_gaussian_sampler(2 * n, math.sqrt(0.5)),
        interaction="gaussian",
        identical=True,
        log_psi=(lambda x: -0.5 * x.pow(2).sum(-1)) if free else None,
        exact_drift=(lambda x: -x) if free else None,
        exact_sampler=free,
        params={"num_particles": n, "g": g, "s": s},
    )


#: Constructors by the names the example and benchmark use.
SYSTEMS: dict[str, Callable[..., Hamiltonian]] = {
    "harmonic": harmonic_oscillator,
    "hydrogen": hydrogen,
    "helium": helium,
    "h2": h2,
    "bosons": gaussian_bosons,
}
