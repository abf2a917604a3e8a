"""Annealed importance sampling (Neal 2001) of a normalizing constant.

Given unnormalized densities ``f_β`` on a path ``0 = β_0 < β_1 < … < β_T = 1`` from a base
``f_0`` with known ``Z_0`` to the target ``f_1``, and Markov transitions ``T_β`` that leave
``f_β`` invariant, each chain starts at ``x_0 ~ f_0 / Z_0`` and accumulates

``log w = Σ_t [log f_{β_t}(x_{t-1}) − log f_{β_{t-1}}(x_{t-1})]``, ``x_t ~ T_{β_t}(x_{t-1} → ·)``.

``E[w] = Z_1 / Z_0``, so ``log Z_1 ≈ log Z_0 + log mean w`` (an estimate whose expectation is a
lower bound on ``log Z_1`` by Jensen; unbiased in Z, not in log Z). :meth:`pyrovi.models.RBM.
log_partition_ais` applies it to restricted Boltzmann machines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pyrovi._checks import check_bool, check_callable, check_finite, check_positive
from pyrovi._progress import progress_bar

__all__ = ["AISResult", "annealed_importance_sampling", "ais_schedule"]


@dataclass
class AISResult:
    """What :func:`annealed_importance_sampling` returns.

    Attributes:
        log_z: Estimate of ``log Z_1`` (nats): ``log_z0 + logmeanexp(log_weights)``.
        log_z0: ``log Z_0`` of the base distribution.
        log_weights: ``(num_chains,)`` final log importance weights.
        log_z_std: Delta-method standard error of ``log_z``: ``std(w) / (mean(w) sqrt(n))``.
        ess: Effective sample size of the weights, ``(Σ w)² / Σ w²``.
        samples: Final chain states (approximate samples of the target).
        num_betas: Number of temperatures T + 1.
        seconds: Wall time.
    """

    log_z: float
    log_z0: float
    log_weights: torch.Tensor
    log_z_std: float
    ess: float
    samples: torch.Tensor
    num_betas: int
    seconds: float


def _shape_of(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def ais_schedule(num_betas: int, kind: str = "sigmoid", sharpness: float = 4.0) -> torch.Tensor:
    """Inverse temperatures from 0 to 1 (float64).

    Args:
        num_betas: Number of temperatures including both ends (≥ 2).
        kind: ``"linear"`` or ``"sigmoid"`` (denser near both ends, Grosse et al. 2013 style:
            ``β_t ∝ σ(s (2t/T − 1))`` rescaled to [0, 1]).
        sharpness: ``s`` of the sigmoid schedule.

    Returns:
        ``(num_betas,)`` increasing, ``β_0 = 0``, ``β_T = 1``.
    """
    if isinstance(num_betas, bool) or not isinstance(num_betas, int) or num_betas < 2:
        raise ValueError(f"num_betas must be an integer >= 2, got {num_betas!r}")
    t = torch.linspace(0.0, 1.0, num_betas, dtype=torch.float64)
    if kind == "linear":
        return t
    if kind != "sigmoid":
        raise ValueError(f"kind must be 'linear' or 'sigmoid', got {kind!r}")
    sharpness = check_positive("sharpness", sharpness)
    s = torch.sigmoid(sharpness * (2 * t - 1))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def annealed_importance_sampling(
    init: torch.Tensor,
    log_z0: float,
    log_density: Callable[[torch.Tensor, float], torch.Tensor],
    transition: Callable[[torch.Tensor, float], torch.Tensor],
    betas: torch.Tensor | int = 1000,
    *,
    progress: bool = True,
) -> AISResult:
    """Estimate ``log Z_1`` by annealed importance sampling.

    Args:
        init: ``(num_chains, ...)`` exact samples of the base ``f_0 / Z_0``.
        log_z0: ``log Z_0`` (nats).
        log_density: ``(x, β) -> log f_β(x)``, shape ``(num_chains,)``.
        transition: ``(x, β) -> x'``, one Markov step leaving ``f_β`` invariant.
        betas: Increasing inverse temperatures from 0 to 1, or their number (sigmoid schedule,
            :func:`ais_schedule`).
        progress: Show a tqdm bar over the temperatures (only when stderr is a terminal).

    Returns:
        An :class:`AISResult`.

    Raises:
        ValueError: ``init`` without chains or with NaN/inf; ``log_z0`` not finite; ``betas``
            not increasing from 0 to 1 (NaN included); ``log_density`` returning a shape other
            than ``(num_chains,)`` or NaN; ``transition`` changing the shape of the states.
        TypeError: ``log_density`` or ``transition`` not callable.
    """
    if not isinstance(init, torch.Tensor) or init.dim() < 1 or init.shape[0] < 1:
        raise ValueError("init must be a tensor (num_chains, ...) with at least one chain")
    if init.is_floating_point() and not bool(torch.isfinite(init).all()):
        raise ValueError("init contains NaN or infinite values")
    log_z0 = check_finite("log_z0", log_z0)
    check_callable("log_density", log_density, "a callable (x, beta) -> (num_chains,)")
    check_callable("transition", transition, "a callable (x, beta) -> x'")
    check_bool("progress", progress)
    if isinstance(betas, int) and not isinstance(betas, bool):
        if betas < 2:
            raise ValueError(
                f"betas must be the number of temperatures (an int >= 2) or a 1-D tensor of "
                f"them from 0 to 1, got {betas!r}"
            )
        betas = ais_schedule(betas)
    if not isinstance(betas, torch.Tensor) or betas.dim() != 1 or betas.numel() < 2:
        raise ValueError(f"betas must be an int >= 2 or a 1-D tensor of >= 2 values, got {betas!r}")
    b = [float(v) for v in betas]
    if (
        any(not math.isfinite(v) for v in b)
        or b[0] != 0.0
        or b[-1] != 1.0
        or any(y < x for x, y in zip(b[:-1], b[1:]))
    ):
        raise ValueError("betas must increase from 0 to 1 (finite values)")
    t0 = time.perf_counter()
    x = init
    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    n = log_w.shape[0]
    bar = progress_bar(len(b) - 1, desc="AIS", progress=progress, unit="temp", leave=False)
    with torch.no_grad(), bar:
        for step, (prev, cur) in enumerate(zip(b[:-1], b[1:])):
            new, old = log_density(x, cur), log_density(x, prev)
            if step == 0:
                for value in (new, old):
                    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,):
                        raise ValueError(
                            f"log_density must return one value per chain ({n},), got "
                            f"{_shape_of(value)}"
                        )
            log_w += (new - old).double()
            moved = transition(x, cur)
            if step == 0 and (not isinstance(moved, torch.Tensor) or moved.shape != x.shape):
                got = (
                    tuple(moved.shape) if isinstance(moved, torch.Tensor) else type(moved).__name__
                )
                raise ValueError(
                    f"transition must return states of the shape of init {tuple(x.shape)}, "
                    f"got {got}"
                )
            x = moved
            bar.update(1)
    if bool(torch.isnan(log_w).any()):
        raise ValueError(
            "log_density returned NaN (the log importance weights are NaN): it must be finite "
            "or -inf for every chain and temperature"
        )
    log_mean = torch.logsumexp(log_w, 0) - math.log(n)
    w = torch.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / (w**2).sum())
    rel = w / w.mean()
    std = float(rel.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("inf")
    return AISResult(
        log_z=float(log_z0 + log_mean),
        log_z0=float(log_z0),
        log_weights=log_w,
        log_z_std=std,
        ess=ess,
        samples=x,
        num_betas=len(b),
        seconds=time.perf_counter() - t0,
    )
