"""Batched ensemble MCMC for small parameter spaces: differential-evolution moves between the two
halves of a population of chains (ter Braak 2006; the halves' split as in Foreman-Mackey et al.
2013), mixed with adaptive Gaussian random-walk moves.

Each step updates one half of the chains given the other: a chain ``x`` proposes
``x + γ (x_a − x_b) + ε`` with ``x_a, x_b`` drawn from the other half (symmetric given that half,
so the Metropolis ratio is the density ratio), ``γ = 2.38 / √(2D)`` and every tenth step ``γ = 1``
(jumps between modes); otherwise a random walk with per-coordinate scales adapted during warmup
to an acceptance rate of about 0.3. Densities are evaluated for all chains and all independent
problems (a leading batch of data sets) in one call, which is what makes this fast for learned
likelihoods, whose cost is one network pass per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pyrovi._checks import check_tensor
from pyrovi._progress import progress_bar
from pyrovi._validation import integer
from pyrovi._validation import positive_int as _positive_int

__all__ = ["ensemble_mcmc"]


def _metropolis(
    x: torch.Tensor,
    log_p: torch.Tensor,
    proposal: torch.Tensor,
    log_density: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accept ``proposal`` (symmetric) against ``x`` chain by chain: new states, log-densities and
    the accepted mask."""
    log_q = log_density(proposal)
    log_q = torch.where(torch.isnan(log_q), torch.full_like(log_q, -math.inf), log_q)
    accept = torch.rand_like(log_q).log() < (log_q - log_p)
    x = torch.where(accept.unsqueeze(-1), proposal, x)
    return x, torch.where(accept, log_q, log_p), accept


def ensemble_mcmc(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    num_samples: int,
    *,
    warmup: int = 300,
    thin: int = 10,
    progress: bool = True,
) -> torch.Tensor:
    """Draws from ``exp(log_density)`` by an ensemble of chains.

    Args:
        log_density: ``(C, *batch, D) -> (C, *batch)`` unnormalized log-density (``−inf`` outside
            the support; NaN counts as ``−inf``), for ``C`` chains of each problem in ``batch``.
        init: Initial states ``(C, *batch, D)``, ``C ≥ 4`` (spread them over the target's bulk,
            e.g. by resampling prior draws by their likelihood); each must have a finite density.
        num_samples: Draws per problem; the chains are run ``warmup + thin ⌈num_samples / C⌉``
            steps.
        warmup: Steps discarded (the random-walk scales adapt during them).
        thin: Steps between kept states.
        progress: Progress bar over the steps (only when stderr is a terminal).

    Returns:
        ``(num_samples, *batch, D)`` draws (chains interleaved: draw ``k`` comes from chain
        ``k mod C``).

    Raises:
        ValueError: Too few chains, wrong counts, or an initial state with a non-finite density.
    """
    check_tensor("init", init, floating=True, finite=True)
    if init.dim() < 2 or init.shape[0] < 4:
        raise ValueError(
            f"init must be (C, *batch, D) with at least 4 chains, got {tuple(init.shape)}"
        )
    num_samples = _positive_int("num_samples", num_samples)
    warmup = integer("warmup", warmup, 0)
    thin = _positive_int("thin", thin)
    x = init.clone()
    with torch.no_grad():
        log_p = log_density(x)
    if log_p.shape != x.shape[:-1]:
        raise ValueError(
            f"log_density must map (C, *batch, D) {tuple(x.shape)} to {tuple(x.shape[:-1])}, got "
            f"{tuple(log_p.shape)}"
        )
    if not torch.isfinite(log_p).all():
        bad = int((~torch.isfinite(log_p)).sum())
        raise ValueError(f"init: {bad} initial states have a non-finite log-density")
    c, d = x.shape[0], x.shape[-1]
    half = [torch.arange(0, c // 2, device=x.device), torch.arange(c // 2, c, device=x.device)]
    gamma = 2.38 / math.sqrt(2 * d)
    scale = x.std(0, keepdim=True).clamp_min(1e-3) * (2.38 / math.sqrt(d)) * 0.5
    per_chain = math.ceil(num_samples / c)
    steps = warmup + thin * per_chain
    kept = []
    with torch.no_grad(), progress_bar(steps, desc="ensemble MCMC", progress=progress) as bar:
        for step in range(steps):
            for move, other in (half, half[::-1]):
                xs, lp = x[move], log_p[move]
                if step % 2 == 0:
                    pick = torch.randint(len(other), (2, *xs.shape[:-1]), device=x.device)
                    xa = x[other].gather(0, pick[0].unsqueeze(-1).expand_as(xs))
                    xb = x[other].gather(0, pick[1].unsqueeze(-1).expand_as(xs))
                    g = 1.0 if step % 20 == 10 else gamma
                    noise = 1e-4 * scale * torch.randn_like(xs)
                    proposal = xs + g * (xa - xb) + noise
                else:
                    proposal = xs + scale * torch.randn_like(xs)
                new, new_lp, acc = _metropolis(xs, lp, proposal, log_density)
                x[move], log_p[move] = new, new_lp
                if step % 2 == 1 and step < warmup:  # adapt the random walk to ~0.3
                    rate = acc.float().mean(0, keepdim=True).unsqueeze(-1)
                    scale = scale * torch.exp(0.5 * (rate - 0.3))
            if step >= warmup and (step - warmup + 1) % thin == 0:
                kept.append(x.clone())
            bar.update(1)
    draws = torch.stack(kept, 0)  # (per_chain, C, *batch, D)
    return draws.reshape(-1, *x.shape[1:])[:num_samples]
