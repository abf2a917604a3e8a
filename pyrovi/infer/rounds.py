"""Sequential rounds of simulation-based inference: simulate, train further on everything so far,
narrow where the next round's parameters come from.

:func:`run_rounds` is the loop shared by truncated sequential NPE (later rounds draw from the prior
truncated to a high-posterior region, :func:`truncated_prior_draws`) and sequential NLE (later
rounds draw parameters from the current posterior).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch

from pyrovi._progress import progress_bar
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.simulation import SimulationEstimator, TrainResult, _check_seed

__all__ = ["RoundsResult", "run_rounds", "truncated_prior_draws"]


@dataclass
class RoundsResult:
    """What sequential training returns.

    Attributes:
        rounds: One :class:`~pyrovi.infer.simulation.TrainResult` per round (each trained on all
            pairs simulated so far).
        num_simulations: Simulations used for training after each round (cumulative).
        num_proposed: Parameter draws made in each round (for truncation: prior draws before
            rejection; the simulator ran for each of them).
        acceptance: Fraction of the round's draws kept (1 where nothing is rejected).
        timings: Per-round ``draw_s`` and ``train_s`` lists (wall seconds).
    """

    rounds: list[TrainResult] = field(default_factory=list)
    num_simulations: list[int] = field(default_factory=list)
    num_proposed: list[int] = field(default_factory=list)
    acceptance: list[float] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=lambda: {"draw_s": [], "train_s": []})


def truncated_prior_draws(
    estimator: SimulationEstimator,
    num_simulations: int,
    accept: Callable[[torch.Tensor], torch.Tensor],
    *,
    max_proposals: int,
    batch_size: int = 1000,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pairs from the prior predictive whose parameters ``accept`` keeps: the prior truncated to a
    region, with the data simulated at the kept parameters.

    Args:
        estimator: Gives the model and how to simulate from it.
        num_simulations: Pairs to keep.
        accept: ``(B, D) -> (B,)`` booleans, True inside the region.
        max_proposals: Prior draws allowed before giving up.
        batch_size: Prior draws per batch (grows with the rejection rate).
        progress: Progress bar over the kept pairs.

    Returns:
        ``theta (N, D)``, ``y (N,) + data shape`` and the number of prior draws made.

    Raises:
        RuntimeError: Fewer than ``num_simulations`` kept within ``max_proposals`` draws.
    """
    kept_theta, kept_y, kept, proposed = [], [], 0, 0
    with progress_bar(
        num_simulations, desc="truncated-prior simulations", progress=progress, unit="sim"
    ) as bar:
        while kept < num_simulations:
            if proposed >= max_proposals:
                raise RuntimeError(
                    f"the truncated prior kept {kept} of {proposed} prior draws, fewer than the "
                    f"{num_simulations} asked for within max_proposals={max_proposals}: the "
                    "posterior's region is too small a part of the prior; raise max_proposals or "
                    "the quantile"
                )
            rate = kept / proposed if proposed else 1.0
            want = (num_simulations - kept) / max(rate, 1e-3)
            b = int(min(max(batch_size, 1.2 * want), 50 * batch_size, max_proposals - proposed))
            theta, y = estimator.simulate(max(b, 1), batch_size=max(b, 1), progress=False)
            with torch.no_grad():
                ok = accept(theta).to(theta.device)
            proposed += theta.shape[0]
            take = min(int(ok.sum()), num_simulations - kept)
            idx = ok.nonzero().squeeze(-1)[:take]
            kept_theta.append(theta[idx])
            kept_y.append(y[idx])
            kept += take
            bar.update(take)
    return torch.cat(kept_theta), torch.cat(kept_y), proposed


def run_rounds(
    estimator: SimulationEstimator,
    num_rounds: int,
    num_simulations: int,
    draw: Callable[[int], tuple[torch.Tensor, torch.Tensor, int]],
    *,
    progress: bool = True,
    seed: int | None = None,
    train_kwargs: dict[str, Any] | None = None,
) -> RoundsResult:
    """Round 1 simulates from the prior; round ``r > 1`` asks ``draw(num_simulations)`` for new
    pairs (``theta, y, num_proposed``); after each round the estimator is trained further on all
    pairs so far.

    Args:
        estimator: An :class:`~pyrovi.infer.NPE` or :class:`~pyrovi.infer.NLE`.
        num_rounds: Rounds.
        num_simulations: New pairs per round.
        draw: Where later rounds' pairs come from (called after the previous round's training).
        progress: Progress bars.
        seed: Round ``r`` (from 0) seeds simulation and training with ``seed + r``.
        train_kwargs: Passed to ``estimator.train``.

    Returns:
        :class:`RoundsResult`.
    """
    num_rounds = _positive_int("num_rounds", num_rounds)
    num_simulations = _positive_int("num_simulations", num_simulations)
    seed = _check_seed(seed)
    kwargs = dict(train_kwargs or {})
    for key in ("num_simulations", "theta", "y", "seed", "progress"):
        if key in kwargs:
            raise ValueError(f"{key} is set by the rounds; do not pass it in train_kwargs")
    out = RoundsResult()
    thetas, ys = [], []
    for r in range(num_rounds):
        if seed is not None:
            pyro.set_rng_seed(seed + r)
        t0 = time.perf_counter()
        if r == 0:
            theta, y = estimator.simulate(num_simulations, progress=progress)
            proposed = num_simulations
        else:
            theta, y, proposed = draw(num_simulations)
        thetas.append(theta.to(estimator.device))
        ys.append(y.to(estimator.device))
        out.timings["draw_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        result = estimator.train(
            theta=torch.cat(thetas),
            y=torch.cat(ys),
            seed=None if seed is None else seed + r,
            progress=progress,
            **kwargs,
        )
        out.timings["train_s"].append(time.perf_counter() - t0)
        out.rounds.append(result)
        out.num_simulations.append(sum(t.shape[0] for t in thetas))
        out.num_proposed.append(proposed)
        out.acceptance.append(theta.shape[0] / max(proposed, 1))
    return out
