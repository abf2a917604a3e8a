"""Projected energies by importance-sampled diffusion Monte Carlo (DMC).

The Feynman–Kac formula weights a Brownian path by ``exp(−∫ V dt)``. Drifting the paths with
``v = ∇ log ψ`` (the guide of :class:`~pyrovi.models.GroundState`) and importance-sampling the
weight turns it into ``exp(−∫ (E_L − E_T) dt)`` with the local energy ``E_L`` of ``ψ``: a
population of weighted walkers then projects ``ψ`` onto the ground state,
``ψ φ₀ = lim_{t→∞} ψ e^{−(H−E_T)t} ψ``, and the weighted average of ``E_L`` over it (the mixed
estimator) converges to ``E₀`` for a nodeless ``φ₀`` (bosons, the H₂ and helium singlets),
whatever ``ψ``, up to the two errors below; a better ``ψ`` only lowers the variance.

Each step (Umrigar, Nightingale & Runge 1993): a Langevin move accepted by the Metropolis test on
``|ψ|²`` (:func:`~pyrovi.models.langevin.langevin_move`; for the exact ``ψ`` every step is then
exact), the weight ``w ← w exp(−τ_eff[½(E_L(x) + Ē_L(x')) − E_T])`` with the expected new local
energy ``Ē_L(x') = p E_L(x') + (1 − p) E_L(x)`` and the effective step
``τ_eff = dt ⟨p Δx²⟩/⟨Δx²⟩``, and, when the effective sample size of the weights falls below a
fraction of the walkers, branching: systematic resampling to a population of the same size with
equal weights. What remains is a time-step error ``O(dt)`` (zero for the exact ``ψ``), removed by
:func:`projected_extrapolation` from three steps, and a population-control bias ``O(1/M)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pyrovi._checks import check_bool, check_positive, check_probability
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

__all__ = [
    "ProjectedEstimate",
    "ProjectedExtrapolation",
    "projected_energy",
    "projected_extrapolation",
]


@dataclass(repr=False)
class ProjectedEstimate(WalkerEstimate):
    """A DMC energy at one time step (fields of :class:`~pyrovi.models.langevin.WalkerEstimate`;
    ``energy`` is the mixed estimator ``Σ w E_L / Σ w`` averaged over steps, ``burn_in × dt`` the
    projection time before it), and:

    Attributes:
        effective_dt: ``τ_eff``: ``dt`` times the accepted fraction of the squared moves.
        branchings: Resampling events during the measured steps.
    """

    effective_dt: float
    branchings: int

    def __repr__(self) -> str:
        return self._describe(f"branchings={self.branchings}")


class ProjectedExtrapolation(dict):
    """What :func:`projected_extrapolation` returns: a ``dict`` (JSON-serializable through
    :meth:`as_dict`) with keys ``"energy"`` and ``"stderr"`` (the ``dt → 0`` intercept),
    ``"slope"`` and ``"slope_stderr"`` (``dE/d dt``), ``"chi2"`` (of the fit, with
    ``len(estimates) − 2`` degrees of freedom) and ``"estimates"`` (the
    :class:`ProjectedEstimate` at each step); it prints as a table.
    """

    def as_dict(self) -> dict:
        """Plain ``dict`` with the estimates as dicts."""
        out = dict(self)
        out["estimates"] = [e.as_dict() for e in self["estimates"]]
        return out

    def __repr__(self) -> str:
        from pyrovi.models.ground_state import format_estimate

        lines = [
            f"E(dt={e.dt:g}) = {format_estimate(e.energy, e.stderr)}" for e in self["estimates"]
        ]
        lines.append(f"dt -> 0:  {format_estimate(self['energy'], self['stderr'])}")
        return "\n".join(lines)

    __str__ = __repr__


def _systematic_resample(weights: torch.Tensor) -> torch.Tensor:
    """Indices ``(M,)`` drawn with probabilities ``weights / Σ weights`` by one uniform."""
    m = len(weights)
    cdf = torch.cumsum(weights / weights.sum(), 0)
    u = (
        torch.rand((), dtype=weights.dtype, device=weights.device)
        + torch.arange(m, dtype=weights.dtype, device=weights.device)
    ) / m
    return torch.searchsorted(cdf, u, right=True).clamp_max(m - 1)


def projected_energy(
    hamiltonian: Hamiltonian,
    log_psi: Callable[[torch.Tensor], torch.Tensor],
    walkers: torch.Tensor | int = 1000,
    *,
    dt: float = 0.01,
    steps: int = 2000,
    burn_in: int = 500,
    resample_below: float = 0.5,
    progress: bool = True,
) -> ProjectedEstimate:
    """DMC energy at one time step, importance-sampled with ``ψ`` (see the module docstring).

    Start the walkers from ``|ψ|²`` (e.g. ``variational_energy(...).walkers``) and give
    ``burn_in × dt`` a few units of imaginary time (inverse energy gaps) to project.

    Args:
        hamiltonian: The system.
        log_psi: ``log ψ`` (see :func:`~pyrovi.models.variational_energy`). Its ground state must
            be nodeless (no fixed-node treatment here).
        walkers: Initial positions ``(M, d)``, or a number drawn from ``hamiltonian.sample_init``.
        dt: Time step.
        steps: Steps that enter the estimate (≥ 2).
        burn_in: Steps run first and discarded.
        resample_below: Branch when the effective sample size of the weights falls below this
            fraction of the walkers (in ``(0, 1]``; 1 branches every step).
        progress: Show a tqdm bar over the steps (only when stderr is a terminal).

    Returns:
        A :class:`ProjectedEstimate`.

    Raises:
        ValueError: Bad counts, step or threshold; walkers of the wrong shape; ``log ψ`` or the
            local energy NaN or infinite at some walker.
    """
    dt, steps, burn_in = check_steps(dt, steps, burn_in)
    resample_below = check_probability("resample_below", resample_below, open_high=False)
    check_bool("progress", progress)
    start = time.perf_counter()
    state = evaluate_walkers(hamiltonian, log_psi, initial_walkers(hamiltonian, log_psi, walkers))
    num = len(state.x)
    log_w = state.x.new_zeros(num)
    moved = state.x.new_zeros(())
    moved_accepted = state.x.new_zeros(())
    accepted = torch.zeros((), dtype=torch.long, device=state.x.device)
    series = []
    branchings = 0
    with progress_bar(
        burn_in + steps, desc=f"DMC dt={dt:g}", progress=progress, unit="step"
    ) as bar:
        for k in range(burn_in + steps):
            proposal, prob, d2 = langevin_move(hamiltonian, log_psi, state, dt)
            moved += d2.sum()
            moved_accepted += (prob * d2).sum()
            tau = dt * moved_accepted / moved
            expected = prob * proposal.local_energy + (1 - prob) * state.local_energy
            accept = torch.rand_like(prob) < prob
            log_w = log_w - tau * 0.5 * (state.local_energy + expected)
            state = state.where(accept, proposal)
            log_w = log_w - log_w.max()
            w = torch.exp(log_w)
            if k >= burn_in:
                series.append((w * expected).sum() / w.sum())
                accepted += accept.sum()
            ess = w.sum() ** 2 / (w * w).sum()
            if float(ess) < resample_below * num:
                state = state.take(_systematic_resample(w))
                log_w = torch.zeros_like(log_w)
                branchings += k >= burn_in
            bar.update(1)
    stats = blocking(torch.stack(series))
    return ProjectedEstimate(
        energy=stats.mean,
        stderr=stats.stderr,
        dt=dt,
        effective_dt=dt * float(moved_accepted / moved),
        acceptance=float(accepted) / (num * steps),
        inefficiency=stats.inefficiency,
        num_walkers=num,
        steps=steps,
        burn_in=burn_in,
        branchings=int(branchings),
        seconds=time.perf_counter() - start,
        walkers=state.x,
    )


def projected_extrapolation(
    hamiltonian: Hamiltonian,
    log_psi: Callable[[torch.Tensor], torch.Tensor],
    walkers: torch.Tensor | int = 1000,
    *,
    dts: Sequence[float] = (0.04, 0.02, 0.01),
    time_per_dt: float = 20.0,
    burn_in_time: float = 2.0,
    resample_below: float = 0.5,
    progress: bool = True,
) -> ProjectedExtrapolation:
    """DMC at several time steps and the weighted least-squares line ``E(dt) = E₀ + a dt``.

    Each step runs ``burn_in_time/dt`` discarded and ``time_per_dt/dt`` measured steps from
    ``walkers`` (so every run covers the same imaginary time and costs ``∝ 1/dt``).

    Args:
        hamiltonian: The system.
        log_psi: ``log ψ``.
        walkers: Initial positions ``(M, d)`` (from ``|ψ|²``) or a number of walkers.
        dts: At least two distinct time steps (three in the usual use).
        time_per_dt: Measured imaginary time per step (``ħ``/energy).
        burn_in_time: Discarded imaginary time per step.
        resample_below: See :func:`projected_energy`.
        progress: Show tqdm bars (only when stderr is a terminal).

    Returns:
        A :class:`ProjectedExtrapolation`; its standard error propagates the per-step errors
        through the fit (the runs are independent).
    """
    try:
        dts = [float(d) for d in dts]
    except (TypeError, ValueError) as err:
        raise TypeError(f"dts: expected a sequence of time steps, got {dts!r}") from err
    if len(set(dts)) < 2 or not all(math.isfinite(d) and d > 0 for d in dts):
        raise ValueError(f"dts: expected at least two distinct positive time steps, got {dts}")
    time_per_dt = check_positive("time_per_dt", time_per_dt)
    burn_in_time = check_positive("burn_in_time", burn_in_time)
    start = initial_walkers(hamiltonian, log_psi, walkers)
    estimates = [
        projected_energy(
            hamiltonian,
            log_psi,
            start,
            dt=dt,
            steps=max(2, round(time_per_dt / dt)),
            burn_in=round(burn_in_time / dt),
            resample_below=resample_below,
            progress=progress,
        )
        for dt in dts
    ]
    return _fit_line(estimates)


def _fit_line(estimates: list[ProjectedEstimate]) -> ProjectedExtrapolation:
    x = torch.tensor([e.dt for e in estimates], dtype=torch.float64)
    y = torch.tensor([e.energy for e in estimates], dtype=torch.float64)
    se = torch.tensor([e.stderr for e in estimates], dtype=torch.float64)
    weights = 1 / se**2 if bool((se > 0).all()) else torch.ones_like(se)
    design = torch.stack([torch.ones_like(x), x], -1)  # (K, 2)
    normal = design.T @ (weights[:, None] * design)
    coef_map = torch.linalg.solve(normal, (weights[:, None] * design).T)  # (2, K)
    intercept, slope = coef_map @ y
    var = (coef_map**2 * se**2).sum(-1)
    resid = y - design @ torch.stack([intercept, slope])
    if bool((se > 0).all()):
        chi2 = float((resid**2 / se**2).sum())
    else:  # an exact trial state (all errors 0) fits exactly; a mix has no χ²
        chi2 = 0.0 if bool((se == 0).all()) else math.nan
    return ProjectedExtrapolation(
        energy=float(intercept),
        stderr=math.sqrt(float(var[0])),
        slope=float(slope),
        slope_stderr=math.sqrt(float(var[1])),
        chi2=chi2,
        estimates=estimates,
    )
