"""Evidence estimates: the ELBO and the importance-weighted bound (IWAE).

Two layouts (see :mod:`pyrovi.infer.importance`, which computes the weights):

* **local latents**: every scored site (the model's sample sites and the guide's latents) is a
  per-datapoint site of plate ``plate`` (an amortized guide, e.g. a VAE). The weights factorize
  over datapoints and the estimates are per datapoint, ``(N,)``.
* **global latents** (anything else: a latent outside the plate, a model with no plate at all):
  there is one evidence for the whole data set. The estimates are 0-d tensors: IWAE over the
  joint draw of all latents, all data at once.

Each site's scale and mask are applied as Pyro does; discrete sites the model enumerates
(``infer={"enumerate": "parallel"}``, not sampled by the guide) are summed out exactly. With a
subsampling plate (``pyro.plate("data", N, subsample=idx)``) the global estimates keep Pyro's
``N / B`` scale (an estimate for all N datapoints) and the per-datapoint ones are for the B
datapoints of the call (the ``N / B`` is divided out).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from pyrovi._checks import check_data, check_model_args
from pyrovi._progress import progress_bar
from pyrovi._validation import as_tensors, boolean, data_names, integer
from pyrovi.infer.importance import inspect_model
from pyrovi.infer.particles import check_vectorize, log_weights, weight_passes

__all__ = ["log_importance_weights", "log_marginal_likelihood", "elbo"]


def _reduce(parts: list[torch.Tensor], num_samples: int, reduce: str) -> torch.Tensor:
    """``parts``: log weights ``(k_i, ...)`` of every pass -> IWAE or mean over all particles."""
    if reduce == "logsumexp":
        lse = torch.stack([torch.logsumexp(p, 0) for p in parts])
        return torch.logsumexp(lse, 0) - math.log(num_samples)
    return torch.stack([p.sum(0) for p in parts]).sum(0) / num_samples


def _estimate(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int,
    batch_size: int | None,
    max_samples_per_pass: int,
    plate: str | None,
    vectorize: bool | None,
    reduce: str,
    kwargs: dict,
    progress: bool,
) -> torch.Tensor:
    caller = "log_marginal_likelihood" if reduce == "logsumexp" else "elbo"
    progress = boolean("progress", progress)
    num_samples = integer("num_samples", num_samples)
    batch_size = None if batch_size is None else integer("batch_size", batch_size)
    max_samples_per_pass = integer("max_samples_per_pass", max_samples_per_pass)
    check_vectorize(vectorize)
    tensors = as_tensors(data)
    check_data(tensors, data_names(tensors), caller)
    n = tensors[0].shape[0]
    size = min(n, batch_size or 256)
    with torch.no_grad():
        layout = inspect_model(
            model, guide, tuple(t[:size] for t in tensors), kwargs, plate, caller=caller
        )
        chunks = range(0, n, size) if layout.local else [0]
        out = []
        bar = progress_bar(
            n if layout.local and len(chunks) > 1 else None,
            desc=caller,
            progress=progress and layout.local and len(chunks) > 1,
            unit="datapoint",
            leave=False,
        )
        for start in chunks:
            args = tuple(t[start : start + size] for t in tensors) if layout.local else tensors
            passes = weight_passes(
                model,
                guide,
                args,
                kwargs,
                layout,
                num_samples,
                max_samples_per_pass // args[0].shape[0],
                vectorize=vectorize,
                caller=caller,
                check=start == 0,  # particle 0 is checked on the first chunk only
            )
            if not passes.vectorized:  # fell back: no more vectorized attempts in this call
                vectorize = False
            out.append(_reduce(passes.results, num_samples, reduce))
            bar.update(args[0].shape[0])
        bar.close()
    return torch.cat(out) if layout.local else out[0]


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1,
    plate: str | None = None,
    vectorize: bool | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Log importance weights ``log p(x, z_k) - log q(z_k | x)`` of K draws from the guide.

    Each site's scale and mask are applied as Pyro does. A subsampling plate
    (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``) scales its sites by
    ``N / B``: global estimates keep that (an estimate for all N datapoints); per-datapoint ones
    are for the B datapoints in the call (the ``N / B`` divided out). Discrete sites the model
    enumerates (``infer={"enumerate": "parallel"}``) are summed out exactly.

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        *args: Model arguments.
        num_samples: Number of draws K from the guide.
        plate: Name of the per-datapoint plate. None (default) means ``"data"``; a model whose
            plates are called otherwise and hold every site must name its plate (else a
            ``ValueError`` says which one), while a model with no plate, or with global latents
            beside other plates, gives the joint estimate. A name the model and guide do not
            have is refused (unless they have no plate at all).
        vectorize: True: draw the K particles in one outer ``pyro.plate`` (the model must
            broadcast over it; errors propagate); False: one particle at a time (any model);
            None: try the plate and fall back to one at a time, with a ``UserWarning``, when
            the model raises under it or the shapes come out wrong.
        **kwargs: Model keyword arguments.

    Returns:
        ``(K, B)`` per-datapoint weights (B datapoints in plate ``plate``) when every scored
        site is inside the plate; else ``(K,)`` joint weights of all latents given all the data.
        Nats.
    """
    num_samples = integer("num_samples", num_samples)
    check_vectorize(vectorize)
    caller = "log_importance_weights"
    check_model_args(args, kwargs, caller)
    with torch.no_grad():
        layout = inspect_model(model, guide, args, kwargs, plate, caller=caller)
        return log_weights(
            model,
            guide,
            args,
            kwargs,
            layout,
            num_samples,
            num_samples,
            vectorize=vectorize,
            caller=caller,
        )


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 1000,
    batch_size: int | None = None,
    *,
    max_samples_per_pass: int = 16384,
    plate: str | None = None,
    vectorize: bool | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-weighted estimate of ``log p(x)`` (the IWAE bound).

    ``log (1/K) Σ_k p(x, z_k) / q(z_k | x)`` with ``z_k ~ q``: a lower bound in expectation
    that tightens to ``log p(x)`` as K grows, and equals it for every K when the guide is the
    exact posterior. Computed on the data's device without gradients.

    Each site's scale and mask are applied as Pyro does. A subsampling plate
    (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``) scales its sites by
    ``N / B``: global estimates keep that (an estimate for all N datapoints); per-datapoint ones
    are for the B datapoints in the call (the ``N / B`` divided out). Discrete sites the model
    enumerates (``infer={"enumerate": "parallel"}``) are summed out exactly.

    Args:
        model: Pyro model ``model(*data, **kwargs)``.
        guide: Pyro guide with the same signature, sampling every latent site of the model
            (discrete sites the model enumerates excepted).
        data: Tensor ``(N, ...)`` or tuple of tensors sharing the leading dimension N.
        num_samples: Number of draws K from the guide (per datapoint for local latents).
        batch_size: Local latents: datapoints per pass (default ``min(N, 256)``); global
            latents: ignored (all data at once).
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass
            (global latents: N × draws).
        plate: Name of the per-datapoint plate. None (default) means ``"data"``; a model whose
            plates are called otherwise and hold every site must name its plate (else a
            ``ValueError`` says which one), while a model with no plate, or with global latents
            beside other plates, gives the joint estimate. A name the model and guide do not
            have is refused (unless they have no plate at all).
        vectorize: True: draw the particles in an outer ``pyro.plate`` (the model must
            broadcast over it; errors propagate); False: one particle at a time (any model, e.g.
            one that reshapes by the batch size); None: try the plate and fall back to one at a
            time, with a ``UserWarning``, when the model raises under it or particle 0 scores
            differently when evaluated alone.
        progress: Show a tqdm bar over the datapoints (local latents with more than one pass,
            when stderr is a terminal).
        **kwargs: Model keyword arguments.

    Returns:
        Local latents: ``(N,)``, log p(x_i) of each datapoint. Global latents: a 0-d tensor,
        log p(x) of the whole data set. Nats.

    Raises:
        ValueError: A count is not a positive integer; the guide misses a latent of the model;
            ``data`` is empty or holds NaN/inf; ``plate`` is not a plate of the model.
        TypeError: ``data`` is not a tensor or tuple of tensors; ``vectorize`` not a bool/None;
            ``plate`` not a string or None.
    """
    return _estimate(
        model,
        guide,
        data,
        num_samples,
        batch_size,
        max_samples_per_pass,
        plate,
        vectorize,
        "logsumexp",
        kwargs,
        progress,
    )


def elbo(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 1,
    batch_size: int | None = None,
    *,
    max_samples_per_pass: int = 16384,
    plate: str | None = None,
    vectorize: bool | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> torch.Tensor:
    """Monte Carlo ELBO ``E_q[log p(x, z) - log q(z | x)]``, averaged over ``num_samples`` draws.

    Each site's scale and mask are applied as Pyro does. A subsampling plate
    (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``) scales its sites by
    ``N / B``: global estimates keep that (an estimate for all N datapoints); per-datapoint ones
    are for the B datapoints in the call (the ``N / B`` divided out). Discrete sites the model
    enumerates (``infer={"enumerate": "parallel"}``) are summed out exactly.

    Args:
        model: Pyro model ``model(*data, **kwargs)``.
        guide: Pyro guide with the same signature, sampling every latent site of the model
            (discrete sites the model enumerates excepted).
        data: Tensor ``(N, ...)`` or tuple of tensors sharing the leading dimension N.
        num_samples: Number of draws K from the guide (per datapoint for local latents).
        batch_size: Local latents: datapoints per pass (default ``min(N, 256)``); global
            latents: ignored (all data at once).
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass
            (global latents: N × draws).
        plate: Name of the per-datapoint plate. None (default) means ``"data"``; a model whose
            plates are called otherwise and hold every site must name its plate (else a
            ``ValueError`` says which one), while a model with no plate, or with global latents
            beside other plates, gives the joint estimate. A name the model and guide do not
            have is refused (unless they have no plate at all).
        vectorize: True: draw the particles in an outer ``pyro.plate`` (the model must
            broadcast over it; errors propagate); False: one particle at a time (any model, e.g.
            one that reshapes by the batch size); None: try the plate and fall back to one at a
            time, with a ``UserWarning``, when the model raises under it or particle 0 scores
            differently when evaluated alone.
        progress: Show a tqdm bar over the datapoints (local latents with more than one pass,
            when stderr is a terminal).
        **kwargs: Model keyword arguments.

    Returns:
        Local latents: ``(N,)``, the ELBO of each datapoint. Global latents: a 0-d tensor, the
        ELBO of the whole data set. Nats.

    Raises:
        ValueError: A count is not a positive integer; the guide misses a latent of the model;
            ``data`` is empty or holds NaN/inf; ``plate`` is not a plate of the model.
        TypeError: ``data`` is not a tensor or tuple of tensors; ``vectorize`` not a bool/None;
            ``plate`` not a string or None.
    """
    return _estimate(
        model,
        guide,
        data,
        num_samples,
        batch_size,
        max_samples_per_pass,
        plate,
        vectorize,
        "mean",
        kwargs,
        progress,
    )
