"""The variational energy ``⟨ψ|H|ψ⟩/⟨ψ|ψ⟩`` of a trial wave function, sampled exactly.

Walkers move by Metropolis-adjusted Langevin steps (:func:`~pyrovi.models.langevin.langevin_move`:
the drift ``∇ log ψ`` as the proposal, the Metropolis test on ``|ψ|²``), so they sample ``|ψ|²``
without time-step bias, and the average of the local energy ``E_L`` over them is the variational
energy, an upper bound on ``E₀`` equal to it (with zero variance) for the exact ground state. The
standard error comes from blocking the walker-averaged ``E_L`` series over steps
(:func:`~pyrovi.diagnostics.blocking`), which accounts for its autocorrelation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pyrovi._checks import check_bool
from pyrovi._progress import progress_bar
from pyrovi.diagnostics.blocking import blocking
from pyrovi.models.hamiltonians import Hamiltonian
from pyrovi.models.langevin import (
    WalkerEstimate,
    check_steps,
    evaluate_walkers,
    initial_walkers,
    langevin_move,
)

__all__ = ["VariationalEstimate", "variational_energy"]


@dataclass(repr=False)
class VariationalEstimate(WalkerEstimate):
    """The variational energy of ``ψ`` from MALA walkers (fields of
    :class:`~pyrovi.models.langevin.WalkerEstimate`; ``energy`` is the mean local energy over
    walkers and steps, ``walkers`` are distributed as ``|ψ|²``), and:

    Attributes:
        variance: Variance of the local energy over ``|ψ|²`` (0 for an eigenfunction).
    """

    variance: float

    def __repr__(self) -> str:
        return self._describe(f"variance={self.variance:.3g}")


def variational_energy(
    hamiltonian: Hamiltonian,
    log_psi: Callable[[torch.Tensor], torch.Tensor],
    walkers: torch.Tensor | int = 1000,
    *,
    steps: int = 1000,
    dt: float = 0.05,
    burn_in: int = 200,
    progress: bool = True,
) -> VariationalEstimate:
    """Variational energy of ``ψ`` by Metropolis-adjusted Langevin sampling of ``|ψ|²``.

    Cost: ``(burn_in + steps) × M`` evaluations of ``log ψ`` with its gradient and Laplacian.

    Args:
        hamiltonian: The system.
        log_psi: ``log ψ``: ``(..., d) -> (...)``: a :class:`~pyrovi.nn.NeuralLogPsi`, a
            :class:`~pyrovi.nn.GradientDrift` (its ``log_psi``), or any differentiable callable
            (e.g. ``hamiltonian.log_psi``; its Laplacian is then taken by autograd).
        walkers: Initial positions ``(M, d)`` or a number of walkers drawn from
            ``hamiltonian.sample_init``.
        steps: Steps per walker that enter the estimate (≥ 2).
        dt: Langevin time step (larger moves further but is accepted less often; aim for an
            acceptance of 0.5–0.9).
        burn_in: Steps run first and discarded (the walkers relax to ``|ψ|²``).
        progress: Show a tqdm bar over the steps (only when stderr is a terminal).

    Returns:
        A :class:`VariationalEstimate`.

    Raises:
        ValueError: Bad counts or step, walkers of the wrong shape, or ``log ψ`` / the local
            energy NaN or infinite at some walker.
    """
    dt, steps, burn_in = check_steps(dt, steps, burn_in)
    check_bool("progress", progress)
    start = time.perf_counter()
    state = evaluate_walkers(hamiltonian, log_psi, initial_walkers(hamiltonian, log_psi, walkers))
    num = len(state.x)
    series, squares = [], []
    shift = state.local_energy.mean()  # centre the squares: no cancellation for tiny variances
    accepted = torch.zeros((), dtype=torch.long, device=state.x.device)
    with progress_bar(burn_in + steps, desc="variational", progress=progress, unit="step") as bar:
        for k in range(burn_in + steps):
            proposal, prob, _ = langevin_move(hamiltonian, log_psi, state, dt)
            accept = torch.rand_like(prob) < prob
            state = state.where(accept, proposal)
            if k >= burn_in:
                accepted += accept.sum()
                series.append(state.local_energy.mean())
                squares.append(((state.local_energy - shift) ** 2).mean())
            bar.update(1)
    series_t = torch.stack(series)
    stats = blocking(series_t)
    variance = float(torch.stack(squares).mean()) - float(series_t.mean() - shift) ** 2
    return VariationalEstimate(
        energy=stats.mean,
        stderr=stats.stderr,
        variance=max(variance, 0.0),
        acceptance=float(accepted) / (num * steps),
        inefficiency=stats.inefficiency,
        num_walkers=num,
        steps=steps,
        burn_in=burn_in,
        dt=dt,
        seconds=time.perf_counter() - start,
        walkers=state.x,
    )
