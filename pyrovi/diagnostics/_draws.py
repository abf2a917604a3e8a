"""Draws from a guide, replayed through the model: the raw material of every SVI diagnostic.

One pass draws the latent sites from the guide, replays them through the model (recording
deterministic sites and the log-likelihood of every observed site) and, when asked, runs the model
once more with its observations removed (``poutine.uncondition``) to draw the posterior
predictive. Passes run one draw at a time (any model) or all draws at once in an outer plate
(``parallel=True``, for models written with broadcasting plates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample

from pyrovi.infer.evidence import _max_plate_nesting, _per_datapoint

__all__ = ["SiteDraws", "PosteriorDraws", "draw_posterior", "probe", "Probe"]

_SAMPLE_PLATE = "_pyrovi_posterior_draws"


@dataclass
class SiteDraws:
    """Draws of one model site.

    Attributes:
        name: Site name.
        kind: ``"latent"``, ``"deterministic"`` or ``"observed"``.
        shape: Shape of one value of the site (batch + event shape).
        data_axis: Axis of ``shape`` indexed by the per-datapoint plate, or None.
        values: ``(S, *shape)``: posterior draws (latent, deterministic) or None (observed).
        observed: The observed value, ``shape`` (observed sites).
        log_likelihood: ``(S, *batch_shape)`` pointwise log-likelihood (observed sites).
        predictive: ``(S, *shape)`` posterior predictive draws (observed sites, when drawn).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    data_axis: int | None
    values: torch.Tensor | None = None
    observed: torch.Tensor | None = None
    log_likelihood: torch.Tensor | None = None
    predictive: torch.Tensor | None = None


@dataclass
class PosteriorDraws:
    """What :func:`draw_posterior` returns.

    Attributes:
        sites: Model sites in the model's order (name -> :class:`SiteDraws`).
        lp: ``(S,)`` log joint density ``log p(x, z)`` of each draw (all data).
        log_q: ``(S,)`` guide log-density ``log q(z)`` of each draw.
        pointwise_log_weight: ``(S, N)`` per-datapoint log weights when every site is a
            per-datapoint site (local latents only), else None.
        num_data: Size N of the per-datapoint plate, or None when no site is inside it.
    """

    sites: dict[str, SiteDraws] = field(default_factory=dict)
    lp: torch.Tensor | None = None
    log_q: torch.Tensor | None = None
    pointwise_log_weight: torch.Tensor | None = None
    num_data: int | None = None

    @property
    def log_weight(self) -> torch.Tensor:
        """``(S,)`` joint log importance weights ``log p(x, z) - log q(z)``."""
        return self.lp - self.log_q


def _sample_sites(trace) -> list[dict[str, Any]]:
    return [
        site
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def _is_deterministic(site: dict[str, Any]) -> bool:
    return bool(site["infer"].get("_deterministic"))


def _kind(site: dict[str, Any]) -> str:
    if _is_deterministic(site):
        return "deterministic"
    return "observed" if site["is_observed"] else "latent"


def _frame(site: dict[str, Any], plate: str):
    for f in site["cond_indep_stack"]:
        if f.name == plate and f.vectorized:
            return f
    return None


def _event_dim(site: dict[str, Any]) -> int:
    return getattr(site["fn"], "event_dim", len(getattr(site["fn"], "event_shape", ())))


def _data_axis(site: dict[str, Any], plate: str) -> int | None:
    """Axis of the site's value indexed by the per-datapoint plate (None if not inside it)."""
    frame = _frame(site, plate)
    if frame is None:
        return None
    value = torch.as_tensor(site["value"])
    axis = value.dim() - _event_dim(site) + frame.dim
    if 0 <= axis < value.dim() and value.shape[axis] == frame.size:
        return axis
    return None


@dataclass
class Probe:
    """One unvectorized guide + model run: the sites, their shapes and the plate layout."""

    guide_sites: list[dict[str, Any]]
    model_sites: list[dict[str, Any]]
    nesting: int
    num_data: int | None
    local: bool

    @property
    def latent_names(self) -> list[str]:
        """Names of the guide's latent sites."""
        return [s["name"] for s in self.guide_sites if not s["is_observed"]]


def probe(model: Callable, guide: Callable, args: tuple, kwargs: dict, plate: str) -> Probe:
    """Run guide and model once; check that the guide covers the model's latent sites.

    Raises:
        ValueError: A latent site of the model is not sampled by the guide, or the model has no
            sample site at all.
    """
    with poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    guide_sites = _sample_sites(guide_trace)
    model_sites = _sample_sites(model_trace)
    if not model_sites:
        raise ValueError("model has no sample sites: nothing to diagnose")
    missing = [
        s["name"] for s in model_sites if _kind(s) == "latent" and s["name"] not in guide_trace
    ]
    if missing:
        raise ValueError(
            f"model latent site(s) {missing} are not sampled by the guide: the guide must sample "
            "every latent site of the model (importance weights need q(z) for all of z)"
        )
    nesting = _max_plate_nesting(model, guide, args, kwargs)
    frames = [_frame(s, plate) for s in guide_sites + model_sites]
    sizes = {f.size for f in frames if f is not None}
    if len(sizes) > 1:
        raise ValueError(f"plate '{plate}' has different sizes at different sites: {sizes}")
    num_data = sizes.pop() if sizes else None
    scored = [s for s in model_sites if not _is_deterministic(s)]
    scored += [s for s in guide_sites if not s["is_observed"]]
    local = num_data is not None and all(_frame(s, plate) is not None for s in scored)
    return Probe(guide_sites, model_sites, nesting, num_data, local)


def _strip_ones(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _as_draws(t: Any, k: int, shape: tuple[int, ...], name: str, what: str) -> torch.Tensor:
    """A value of one pass -> ``(k, *shape)``: the k draws of the pass, in the site's shape."""
    t = torch.as_tensor(t)
    if _strip_ones(t.shape) == _strip_ones(shape):  # the same for every draw of the pass
        return t.reshape(shape).unsqueeze(0).expand(k, *shape)
    if t.dim() and t.shape[0] == k and _strip_ones(t.shape[1:]) == _strip_ones(shape):
        return t.reshape(k, *shape)
    raise ValueError(
        f"site '{name}': the {what} has shape {tuple(t.shape)} when {k} draws are vectorized, "
        f"which does not reduce to {k} draws of shape {shape}; the model does not broadcast "
        "over an outer plate: use parallel=False"
    )


def _log_prob(site: dict[str, Any]) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    log_p = scale_and_mask(log_p, site["scale"], site["mask"])
    return torch.as_tensor(log_p)


def _per_draw_sum(log_p: torch.Tensor, k: int, nesting: int) -> torch.Tensor:
    """Sum of a log-density over everything but the draws: ``(k,)``."""
    total = nesting + 1
    log_p = log_p.reshape((1,) * max(0, total - log_p.dim()) + tuple(log_p.shape))
    return log_p.reshape(log_p.shape[0], -1).sum(1).expand(k)


def _total(sites: list[dict[str, Any]], k: int, nesting: int) -> torch.Tensor:
    """Summed log-density of ``sites`` for each of the k draws of a pass: ``(k,)``."""
    total = None
    for site in sites:
        term = _per_draw_sum(_log_prob(site), k, nesting)
        total = term if total is None else total + term
    return torch.zeros(k) if total is None else total


def draw_posterior(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_samples: int,
    *,
    plate: str = "data",
    parallel: bool = False,
    predictive: bool = True,
    probed: Probe | None = None,
) -> PosteriorDraws:
    """Draw ``num_samples`` latents from the guide and evaluate them under the model.

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature, sampling every latent site of the model.
        args: Model arguments.
        kwargs: Model keyword arguments.
        num_samples: Number of draws S.
        plate: Name of the per-datapoint plate.
        parallel: Draw all S at once in an outer plate (the model must broadcast over it).
        predictive: Also draw the observed sites from the model (posterior predictive).
        probed: A :func:`probe` of the same model, guide and arguments (saves one run).

    Returns:
        :class:`PosteriorDraws` with tensors on the device the model computes on.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    p = probed if probed is not None else probe(model, guide, args, kwargs, plate)
    shapes = {s["name"]: tuple(torch.as_tensor(s["value"]).shape) for s in p.model_sites}
    batch_shapes = {
        s["name"]: tuple(_log_prob(s).shape) for s in p.model_sites if _kind(s) == "observed"
    }
    collected: dict[str, dict[str, list[torch.Tensor]]] = {
        s["name"]: {"values": [], "log_likelihood": [], "predictive": []} for s in p.model_sites
    }
    lp, log_q, pointwise = [], [], []
    passes = [num_samples] if parallel else [1] * num_samples
    with torch.no_grad(), poutine.block():
        for k in passes:
            wrap = (
                (lambda fn, k=k: pyro.plate(_SAMPLE_PLATE, k, dim=-(p.nesting + 1))(fn))
                if parallel
                else (lambda fn: fn)
            )
            guide_trace = poutine.trace(wrap(guide)).get_trace(*args, **kwargs)
            model_trace = poutine.trace(wrap(poutine.replay(model, trace=guide_trace))).get_trace(
                *args, **kwargs
            )
            g_sites = [s for s in _sample_sites(guide_trace) if not s["is_observed"]]
            m_sites = _sample_sites(model_trace)
            lp.append(_total(m_sites, k, p.nesting))
            log_q.append(_total(g_sites, k, p.nesting))
            if p.local:
                scored = [s for s in m_sites if not _is_deterministic(s)]
                w = sum(_per_datapoint(s, p.nesting, plate) for s in scored)
                w = w - sum(_per_datapoint(s, p.nesting, plate) for s in g_sites)
                pointwise.append(w.expand(k, p.num_data))
            for s in m_sites:
                name, kind = s["name"], _kind(s)
                if kind == "observed":
                    ll = _as_draws(_log_prob(s), k, batch_shapes[name], name, "log-likelihood")
                    collected[name]["log_likelihood"].append(ll)
                else:
                    v = _as_draws(s["value"], k, shapes[name], name, "value")
                    collected[name]["values"].append(v)
            if predictive:
                pred_trace = poutine.trace(
                    wrap(poutine.uncondition(poutine.replay(model, trace=guide_trace)))
                ).get_trace(*args, **kwargs)
                for s in _sample_sites(pred_trace):
                    name = s["name"]
                    if name in batch_shapes:
                        v = _as_draws(s["value"], k, shapes[name], name, "predictive draw")
                        collected[name]["predictive"].append(v)

    out = PosteriorDraws(num_data=p.num_data)
    out.lp = torch.cat(lp)
    out.log_q = torch.cat(log_q).to(out.lp)
    if p.local:
        out.pointwise_log_weight = torch.cat(pointwise)
    for s in p.model_sites:
        name, kind = s["name"], _kind(s)
        got = collected[name]
        key = "log_likelihood" if kind == "observed" else "values"
        count = sum(t.shape[0] for t in got[key])
        if count != num_samples:
            raise ValueError(
                f"site '{name}' appeared in {count} of {num_samples} draws: models whose sites "
                "change from draw to draw (stochastic control flow) are not supported"
            )
        draws = SiteDraws(name, kind, shapes[name], _data_axis(s, plate))
        if kind == "observed":
            draws.observed = torch.as_tensor(s["value"])
            draws.log_likelihood = torch.cat(got["log_likelihood"])
            if predictive:
                draws.predictive = torch.cat(got["predictive"])
        else:
            draws.values = torch.cat(got["values"])
        out.sites[name] = draws
    return out
