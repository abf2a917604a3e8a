"""Local energies and Metropolis-adjusted Langevin moves of walkers under ``|ψ|²``.

For a trial wave function ``ψ`` of ``H = −½∇² + V`` the local energy is

``E_L(x) = (Hψ)(x)/ψ(x) = V(x) − ½(∇² log ψ(x) + |∇ log ψ(x)|²)``,

constant (``= E₀``) exactly when ``ψ`` is an eigenfunction. A Langevin move is one
Euler–Maruyama step of the drift SDE ``dX = ∇ log ψ dt + dW`` (the drift of
:class:`~pyrovi.models.GroundState` with ``v = ∇ log ψ``), ``x' = x + dt ∇ log ψ(x) + √dt ξ``,
followed by a Metropolis test on ``|ψ|²`` with the Gaussian proposal densities
``T(x'|x) = N(x'; x + dt ∇ log ψ(x), dt I)``: the walkers then sample ``|ψ|²`` exactly, whatever
``dt``. Both the variational (:mod:`pyrovi.models.vmc`) and the projected
(:mod:`pyrovi.models.dmc`) estimators are built from these moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from pyrovi._checks import check_output, check_positive
from pyrovi.models.hamiltonians import Hamiltonian
from pyrovi.nn.wavefunctions import log_psi_terms

__all__ = [
    "Walkers",
    "WalkerEstimate",
    "local_energy",
    "evaluate_walkers",
    "langevin_move",
    "initial_walkers",
]

LogPsi = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Walkers:
    """Walker positions with ``log ψ``, ``∇ log ψ`` and ``E_L`` there.

    Attributes:
        x: Positions ``(M, d)``.
        log_psi: ``(M,)``.
        grad: ``(M, d)``.
        local_energy: ``(M,)``.
    """

    x: torch.Tensor
    log_psi: torch.Tensor
    grad: torch.Tensor
    local_energy: torch.Tensor

    def where(self, mask: torch.Tensor, other: Walkers) -> Walkers:
        """``other`` where ``mask`` ``(M,)`` is true, ``self`` elsewhere."""
        m = mask[:, None]
        return Walkers(
            torch.where(m, other.x, self.x),
            torch.where(mask, other.log_psi, self.log_psi),
            torch.where(m, other.grad, self.grad),
            torch.where(mask, other.local_energy, self.local_energy),
        )

    def take(self, index: torch.Tensor) -> Walkers:
        """Walkers ``index`` ``(M',)`` (with repeats: branching)."""
        return Walkers(
            self.x[index], self.log_psi[index], self.grad[index], self.local_energy[index]
        )


@dataclass(repr=False)
class WalkerEstimate:
    """What the walker estimators share (energy units of ``H``).

    Attributes:
        energy: The estimate.
        stderr: Its blocking standard error (:func:`~pyrovi.diagnostics.blocking`).
        acceptance: Fraction of accepted Langevin moves (after burn-in).
        inefficiency: ``(stderr / naive stderr)²`` of the step series (about twice its
            integrated autocorrelation time in steps).
        num_walkers: Walkers.
        steps: Steps that enter the estimate.
        burn_in: Steps run first and discarded.
        dt: Time step.
        seconds: Wall time.
        walkers: Final positions ``(M, d)`` (keyword only; not in :meth:`as_dict`).
    """

    energy: float
    stderr: float
    acceptance: float
    inefficiency: float
    num_walkers: int
    steps: int
    burn_in: int
    dt: float
    seconds: float
    walkers: torch.Tensor = field(default_factory=lambda: torch.zeros(0), kw_only=True)

    def as_dict(self) -> dict:
        """Plain ``dict`` without the walkers (for JSON)."""
        out = asdict(self)
        del out["walkers"]
        return out

    def _describe(self, details: str) -> str:
        from pyrovi.models.ground_state import format_estimate  # (it imports this module)

        return (
            f"{type(self).__name__}({format_estimate(self.energy, self.stderr)}, {details}, "
            f"acceptance={self.acceptance:.4f}, dt={self.dt:g}, walkers={self.num_walkers}, "
            f"steps={self.steps}, seconds={self.seconds:.1f})"
        )


def local_energy(hamiltonian: Hamiltonian, log_psi: LogPsi, x: torch.Tensor) -> torch.Tensor:
    """``E_L = V − ½(∇² log ψ + |∇ log ψ|²)`` at states ``x`` ``(..., d)``; returns ``(...)``.

    Args:
        hamiltonian: The system (its potential ``V``).
        log_psi: ``log ψ``: ``(..., d) -> (...)`` (a :class:`~pyrovi.nn.NeuralLogPsi`, a
            :class:`~pyrovi.nn.GradientDrift`, or any differentiable callable such as
            ``hamiltonian.log_psi``).
        x: States.
    """
    _, grad, lap = log_psi_terms(log_psi, x)
    return _energy(hamiltonian, x, grad, lap)


def _energy(
    hamiltonian: Hamiltonian, x: torch.Tensor, grad: torch.Tensor, lap: torch.Tensor
) -> torch.Tensor:
    v = hamiltonian.potential(x)
    v = check_output("potential", v, tuple(x.shape[:-1]), allow_scalar=True, finite=False)
    return v - 0.5 * (lap + (grad * grad).sum(-1))


def evaluate_walkers(hamiltonian: Hamiltonian, log_psi: LogPsi, x: torch.Tensor) -> Walkers:
    """:class:`Walkers` at positions ``x`` ``(M, d)`` (no gradients kept).

    Raises:
        ValueError: ``log ψ``, its derivatives or the local energy are NaN or infinite at some
            walker (the message says how many).
    """
    with torch.no_grad():
        value, grad, lap = log_psi_terms(log_psi, x)
        energy = _energy(hamiltonian, x, grad, lap)
    bad = ~(torch.isfinite(value) & torch.isfinite(energy) & torch.isfinite(grad).all(-1))
    if bool(bad.any()):
        raise ValueError(
            f"log_psi: log ψ, its gradient or the local energy is NaN or infinite at "
            f"{int(bad.sum())} of {len(x)} walkers (is ψ zero there, or the state off its "
            f"domain?)"
        )
    return Walkers(x, value, grad, energy)


def langevin_move(
    hamiltonian: Hamiltonian, log_psi: LogPsi, walkers: Walkers, dt: float
) -> tuple[Walkers, torch.Tensor, torch.Tensor]:
    """Propose a Langevin step for every walker and its Metropolis acceptance probability.

    Args:
        hamiltonian: The system.
        log_psi: ``log ψ``.
        walkers: Current walkers.
        dt: Time step (``ħ``/energy).

    Returns:
        ``(proposal, acceptance probability (M,), squared proposal displacement (M,))``. The
        caller accepts ``proposal`` where ``uniform < probability``.
    """
    x = walkers.x
    noise = torch.randn_like(x)
    xp = x + dt * walkers.grad + math.sqrt(dt) * noise
    proposal = evaluate_walkers(hamiltonian, log_psi, xp)
    back = x - xp - dt * proposal.grad
    log_ratio = (
        2 * (proposal.log_psi - walkers.log_psi)
        - (back * back).sum(-1) / (2 * dt)
        + 0.5 * (noise * noise).sum(-1)
    )
    prob = torch.exp(log_ratio.clamp(max=0.0))
    return proposal, prob, ((xp - x) ** 2).sum(-1)


def initial_walkers(
    hamiltonian: Hamiltonian, log_psi: LogPsi, walkers: torch.Tensor | int
) -> torch.Tensor:
    """Walker positions ``(M, d)``: a copy of ``walkers``, or that many from the Hamiltonian's
    sampler; in the dtype and on the device of ``log_psi``'s parameters when it has any.

    Raises:
        ValueError: A count below 2, or positions of the wrong shape or not finite.
    """
    module = getattr(log_psi, "log_psi", log_psi)
    param = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    device = param.device if param is not None else None
    if isinstance(walkers, int) and not isinstance(walkers, bool):
        if walkers < 2:
            raise ValueError(f"walkers must be at least 2, got {walkers}")
        return hamiltonian.sample_init(walkers, dtype=dtype, device=device)
    if not isinstance(walkers, torch.Tensor):
        raise TypeError(
            f"walkers must be a number of walkers or a tensor (M, {hamiltonian.state_dim}), "
            f"got {type(walkers).__name__}"
        )
    if walkers.dim() != 2 or walkers.shape[-1] != hamiltonian.state_dim or len(walkers) < 2:
        raise ValueError(
            f"walkers: expected shape (M, {hamiltonian.state_dim}) with M >= 2, got "
            f"{tuple(walkers.shape)}"
        )
    if not walkers.is_floating_point() or not bool(torch.isfinite(walkers).all()):
        raise ValueError("walkers: expected finite floating-point positions")
    if param is not None:  # follow the trial state's dtype and device
        return walkers.detach().to(dtype=dtype, device=device, copy=True)
    return walkers.detach().clone()


def check_steps(dt: float, steps: int, burn_in: int) -> tuple[float, int, int]:
    """Validate a time step and step counts (shared by the estimators)."""
    dt = check_positive("dt", dt)
    for name, value, low in (("steps", steps, 2), ("burn_in", burn_in, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return dt, steps, burn_in
