"""Per-datapoint evidence estimates: the ELBO and the importance-weighted bound (IWAE)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

from pyrovi.infer.losses import _GuideRecorder, _ModelReplayer

__all__ = ["log_importance_weights", "log_marginal_likelihood", "elbo"]

_PARTICLE_PLATE = "_pyrovi_importance_samples"


def _as_tensors(data: torch.Tensor | Sequence[torch.Tensor], name: str = "data") -> tuple:
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{name} must be a tensor or a tuple of tensors, got {type(data).__name__}")
    n = tensors[0].shape[0] if tensors[0].dim() else None
    if n is None or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            f"{name}: every tensor needs the same leading (datapoint) dimension, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return tensors


def _max_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        f.dim
        for trace in (guide_trace, model_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    ]
    return -min(dims) if dims else 0


def _per_datapoint(site: dict[str, Any], nesting: int, plate: str) -> torch.Tensor:
    """Log-density of one site reduced to shape ``(K, B)`` (K particles, B datapoints)."""
    frames = [f for f in site["cond_indep_stack"] if f.name == plate]
    if not frames:
        kind = "observed" if site["is_observed"] else "latent"
        raise ValueError(
            f"{kind} site '{site['name']}' is outside the plate '{plate}': per-datapoint evidence "
            f"needs every site to be a per-datapoint site inside pyro.plate('{plate}', ...) "
            "(global latents have no per-datapoint log-density)"
        )
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    log_p = scale_and_mask(log_p, site["scale"], site["mask"])
    total = nesting + 1
    if not isinstance(log_p, torch.Tensor):
        log_p = torch.as_tensor(log_p)
    log_p = log_p.reshape((1,) * (total - log_p.dim()) + tuple(log_p.shape))
    data_axis = total + frames[0].dim
    other = [a for a in range(1, total) if a != data_axis]
    if other:
        log_p = log_p.sum(dim=other, keepdim=True)
    return log_p.reshape(log_p.shape[0], log_p.shape[data_axis])


def _is_deterministic(site: dict[str, Any]) -> bool:
    """``pyro.deterministic`` sites: log-density 0 wherever they are (even outside the plate)."""
    return bool(site.get("infer", {}).get("_deterministic"))


def _is_auxiliary(site: dict[str, Any]) -> bool:
    """Auxiliary guide sites (``infer={"is_auxiliary": True}``) are not latents of the model."""
    return bool(site.get("infer", {}).get("is_auxiliary"))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _log_weights_batch(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, k: int, nesting: int, plate: str
) -> torch.Tensor:
    particle_plate = pyro.plate(_PARTICLE_PLATE, k, dim=-(nesting + 1))
    recorder = _GuideRecorder()
    with recorder:
        particle_plate(guide)(*args, **kwargs)
    replayer = _ModelReplayer(recorder.sites)
    with replayer:
        particle_plate(model)(*args, **kwargs)
    batch = args[0].shape[0]
    log_w: Any = 0.0
    for site in replayer.sites:
        if not _is_deterministic(site):
            log_w = log_w + _per_datapoint(site, nesting, plate)
    for site in recorder.sites.values():
        if not site["is_observed"] and not _is_deterministic(site) and not _is_auxiliary(site):
            log_w = log_w - _per_datapoint(site, nesting, plate)
    if not isinstance(log_w, torch.Tensor):
        return args[0].new_zeros((k, batch), dtype=torch.get_default_dtype())
    return log_w.expand(k, batch)


def _check_common(num_samples: int, batch_size: int | None, max_samples_per_pass: int) -> None:
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if int(max_samples_per_pass) < 1:
        raise ValueError(
            f"max_samples_per_pass must be a positive integer, got {max_samples_per_pass!r}"
        )


def _reduce_log_weights(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int,
    batch_size: int | None,
    max_samples_per_pass: int,
    plate: str,
    reduce: str,
    kwargs: dict,
) -> torch.Tensor:
    _check_common(num_samples, batch_size, max_samples_per_pass)
    tensors = _as_tensors(data)
    n = tensors[0].shape[0]
    batch_size = min(n, int(batch_size) if batch_size else 256)
    out = []
    with torch.no_grad():
        nesting = _max_plate_nesting(model, guide, tuple(t[:1] for t in tensors), kwargs)
        for rows in _chunks(n, batch_size):
            args = tuple(t[rows] for t in tensors)
            b = args[0].shape[0]
            k_pass = max(1, min(int(num_samples), int(max_samples_per_pass) // b))
            acc = None
            for ks in _chunks(int(num_samples), k_pass):
                log_w = _log_weights_batch(
                    model, guide, args, kwargs, ks.stop - ks.start, nesting, plate
                )
                if reduce == "logsumexp":
                    part = torch.logsumexp(log_w, dim=0)
                    acc = part if acc is None else torch.logaddexp(acc, part)
                else:
                    part = log_w.sum(dim=0)
                    acc = part if acc is None else acc + part
            if reduce == "logsumexp":
                out.append(acc - math.log(int(num_samples)))
            else:
                out.append(acc / int(num_samples))
    return torch.cat(out)


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1,
    plate: str = "data",
    **kwargs: Any,
) -> torch.Tensor:
    """Per-datapoint log importance weights ``log p(x, z_k) - log q(z_k | x)``.

    The ``num_samples`` draws are vectorized in an outer plate. Every sample site must lie
    inside the per-datapoint plate ``plate``.

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        *args: Model arguments; ``args[0]`` has the datapoints along its first dimension.
        num_samples: Number of draws K from the guide.
        plate: Name of the per-datapoint plate.

    Returns:
        Tensor of shape ``(K, B)`` in nats.
    """
    _check_common(num_samples, None, 1)
    with torch.no_grad():
        nesting = _max_plate_nesting(model, guide, args, kwargs)
        return _log_weights_batch(model, guide, args, kwargs, int(num_samples), nesting, plate)


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 1000,
    batch_size: int | None = None,
    *,
    max_samples_per_pass: int = 16384,
    plate: str = "data",
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-weighted estimate of ``log p(x)`` for each datapoint (the IWAE bound).

    ``log (1/K) Σ_k p(x, z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)``: a lower bound in
    expectation that tightens to ``log p(x)`` as K grows, and equals it for every K when the guide
    is the exact posterior. Draws are vectorized and chunked so that at most
    ``max_samples_per_pass`` (datapoints × draws) are in memory at once; computed on the data's
    device without gradients.

    Args:
        model: Pyro model ``model(*batch, **kwargs)`` with per-datapoint sites in plate ``plate``.
        guide: Amortized guide with the same signature.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing the leading dimension N.
        num_samples: Number of importance samples K per datapoint.
        batch_size: Datapoints per pass (default ``min(N, 256)``).
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass.
        plate: Name of the per-datapoint plate.

    Returns:
        Tensor ``(N,)``: log p(x) estimates in nats.
    """
    return _reduce_log_weights(
        model,
        guide,
        data,
        num_samples,
        batch_size,
        max_samples_per_pass,
        plate,
        "logsumexp",
        kwargs,
    )


def elbo(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 1,
    batch_size: int | None = None,
    *,
    max_samples_per_pass: int = 16384,
    plate: str = "data",
    **kwargs: Any,
) -> torch.Tensor:
    """Monte Carlo ELBO ``E_q[log p(x, z) - log q(z | x)]`` for each datapoint.

    Args:
        model: Pyro model ``model(*batch, **kwargs)`` with per-datapoint sites in plate ``plate``.
        guide: Amortized guide with the same signature.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing the leading dimension N.
        num_samples: Number of draws averaged per datapoint.
        batch_size: Datapoints per pass (default ``min(N, 256)``).
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass.
        plate: Name of the per-datapoint plate.

    Returns:
        Tensor ``(N,)``: ELBO estimates in nats.
    """
    return _reduce_log_weights(
        model, guide, data, num_samples, batch_size, max_samples_per_pass, plate, "mean", kwargs
    )
