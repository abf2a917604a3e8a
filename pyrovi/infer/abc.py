"""Rejection approximate Bayesian computation (ABC) with standardized summary statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from pyrovi._checks import check_callable, check_int, check_real, check_tensor
from pyrovi.infer.npe import simulate

__all__ = ["abc_rejection", "ABCResult"]

SCALES = ("mad", "std")


@dataclass
class ABCResult:
    """What :func:`abc_rejection` returns.

    Attributes:
        samples: Accepted parameters ``(K, D)`` (sites concatenated in the order of ``params``).
        distances: Their distances to the observed summaries ``(K,)``, ascending.
        threshold: Acceptance distance ε (the ``quantile`` of all distances).
        scale: Per-summary scale used for standardization ``(S,)``.
        num_simulations: Simulations drawn.
        num_dropped: Simulations with non-finite summaries (never accepted).
        timings: ``simulation_s``, ``summary_s``, ``total_s`` (wall seconds).
    """

    samples: torch.Tensor
    distances: torch.Tensor
    threshold: float
    scale: torch.Tensor
    num_simulations: int
    num_dropped: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _mad(s: torch.Tensor) -> torch.Tensor:
    """Median absolute deviation per column, scaled to the sd of a normal (× 1.4826)."""
    med = s.median(0).values
    return 1.4826 * (s - med).abs().median(0).values


def abc_rejection(
    model: Callable,
    params: Sequence[str],
    observed: str,
    y_obs: torch.Tensor,
    *,
    num_simulations: int | None = None,
    quantile: float = 0.01,
    summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scale: str = "mad",
    theta: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    summaries: torch.Tensor | None = None,
    batch_size: int = 1000,
    model_args: tuple = (),
) -> ABCResult:
    """Rejection ABC: keep the prior draws whose simulated summaries are nearest to the data's.

    Simulates ``(θ_i, y_i) ~ p(θ) p(y | θ)`` (or takes them), computes summaries ``s_i``, divides
    every summary by its scale over the simulations (median absolute deviation by default, robust
    to the heavy tails of count statistics; the standard deviation with ``scale="std"``), and
    accepts the ``quantile`` fraction of draws with the smallest Euclidean distance
    ``‖(s_i − s_obs) / scale‖``. Summaries with zero scale are left unscaled.

    Args:
        model: Pyro simulator model (as for :class:`~pyrovi.infer.NPE`).
        params: Parameter site names.
        observed: Observed site name.
        y_obs: Observed data (the observed site's shape).
        num_simulations: Prior simulations to draw (or pass ``theta`` and ``y``).
        quantile: Fraction accepted, in (0, 1]; at least one draw is kept.
        summary: Map ``(..., *data shape) -> (..., S)``; default: the data as a vector.
        scale: ``"mad"`` or ``"std"``.
        theta: Precomputed parameters ``(N, D)`` (with ``y``), e.g. to share simulations with NPE.
        y: Precomputed data ``(N,) + data shape``.
        summaries: ``summary(y)`` of the precomputed data ``(N, S)``, to skip recomputing it
            when the same simulations serve many observed data sets.
        batch_size: Simulations per ``Predictive`` call.
        model_args: Model arguments.

    Returns:
        :class:`ABCResult`.

    Raises:
        ValueError: ``quantile`` not in (0, 1]; a count that is not a positive integer; ``theta``
            and ``y`` with different numbers of rows, empty, or ``theta`` with NaN/inf;
            ``y_obs`` not shaped like one simulation; ``summaries`` without one row per
            simulation.
        TypeError: ``y_obs``, ``theta``, ``y`` or ``summaries`` not tensors; ``summary`` or
            ``model`` not callable.
    """
    quantile = check_real("quantile", quantile, low=0.0, high=1.0, low_open=True, kind="in (0, 1]")
    batch_size = check_int("batch_size", batch_size)
    if summary is not None:
        check_callable("summary", summary, "a callable (..., *data shape) -> (..., S) or None")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if (theta is None) != (y is None):
        raise ValueError("theta and y must be given together")
    if (theta is None) == (num_simulations is None):
        raise ValueError("pass either num_simulations, or theta and y")
    if not isinstance(y_obs, torch.Tensor):
        raise TypeError(f"y_obs must be a tensor, got {type(y_obs).__name__}")
    t0 = time.perf_counter()
    if theta is None:
        check_callable("model", model, "a Pyro model (a callable)")
        theta, y = simulate(
            model, params, observed, num_simulations, batch_size=batch_size, model_args=model_args
        )
    else:
        check_tensor("theta", theta, dim=2, nonempty=True, finite=True)
        check_tensor("y", y)
        if y.dim() == 0 or y.shape[0] != theta.shape[0]:
            raise ValueError(
                f"theta and y must hold the same simulations: theta has {theta.shape[0]} rows, "
                f"y has shape {tuple(y.shape)}"
            )
    if y.shape[1:] != y_obs.shape:
        raise ValueError(
            f"y_obs must have the shape of one simulation {tuple(y.shape[1:])}, got "
            f"{tuple(y_obs.shape)}"
        )
    t_sim = time.perf_counter() - t0
    t1 = time.perf_counter()
    summarize = summary if summary is not None else (lambda v: v)
    with torch.no_grad():
        if summaries is not None:
            check_tensor("summaries", summaries)
            if summaries.dim() == 0 or summaries.shape[0] != y.shape[0]:
                raise ValueError(
                    f"summaries must have one row per simulation ({y.shape[0]}), got "
                    f"{tuple(summaries.shape)}"
                )
            s = summaries.double()
        else:
            s = torch.cat([summarize(y[i : i + 10_000]) for i in range(0, len(y), 10_000)])
            s = s.double()
        s_obs = summarize(y_obs.unsqueeze(0).to(y.device)).double().reshape(1, -1)
    if s.dim() != 2:
        raise ValueError(f"summary must return a vector per simulation, got {tuple(s.shape[1:])}")
    if not torch.isfinite(s_obs).all():
        raise ValueError("y_obs gives non-finite summary statistics")
    finite = torch.isfinite(s).all(-1)
    ref = s[finite]
    if len(ref) == 0:
        raise ValueError("no simulation gave finite summary statistics")
    sc = _mad(ref) if scale == "mad" else ref.std(0)
    sc = torch.where(sc > 0, sc, torch.ones_like(sc))
    d = ((s - s_obs) / sc).pow(2).sum(-1).sqrt()
    d = torch.where(finite, d, torch.full_like(d, float("inf")))
    k = max(1, int(round(quantile * len(d))))
    dist, idx = torch.topk(d, k, largest=False, sorted=True)
    t_sum = time.perf_counter() - t1
    return ABCResult(
        samples=theta[idx],
        distances=dist,
        threshold=float(dist[-1]),
        scale=sc,
        num_simulations=len(d),
        num_dropped=int((~finite).sum()),
        timings={"simulation_s": t_sim, "summary_s": t_sum, "total_s": time.perf_counter() - t0},
    )
