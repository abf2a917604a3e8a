"""Draws from a guide, replayed through the model: the raw material of every SVI diagnostic.

Each pass draws latents from the guide, replays them through the model and scores both with the
engine of :mod:`pyrovi.infer.importance` (the one behind the evidence estimators and
``psis_khat``); this module records, besides the weights, the values of the latent and
deterministic sites, the pointwise log-likelihood of every observed site and, when asked, the
posterior predictive (the model run again with its observations removed). Passes draw all
particles in an outer plate when the model broadcasts over it and one at a time otherwise
(``vectorize``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pyrovi._checks import check_model_args
from pyrovi.infer.importance import (
    Layout,
    NotVectorizableError,
    SubsampleFixer,
    UnsupportedModelError,
    WeightPass,
    inspect_model,
    is_deterministic,
    plate_frame,
    site_log_prob,
)
from pyrovi.infer.particles import check_vectorize, run_passes

__all__ = ["SiteDraws", "PosteriorDraws", "draw_posterior"]


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
        log_likelihood: ``(S, *batch_shape)`` pointwise log-likelihood (observed sites), nats;
            a subsampling plate's ``N / B`` scale is divided out (one value per datapoint).
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
        lp: ``(S,)`` log joint density ``log p(x, z)`` of each draw (all data, Pyro's scales).
        log_q: ``(S,)`` guide log-density ``log q(z)`` of each draw.
        pointwise_log_weight: ``(S, N)`` per-datapoint log weights when every site is a
            per-datapoint site (local latents only), else None.
        num_data: Size N of the per-datapoint plate, or None when no site is inside it.
        data_index: Indices of the datapoints a subsampling plate used, else None.
        plate: Name of the per-datapoint plate (resolved: ``"data"`` for ``plate=None``).
    """

    sites: dict[str, SiteDraws] = field(default_factory=dict)
    lp: torch.Tensor | None = None
    log_q: torch.Tensor | None = None
    pointwise_log_weight: torch.Tensor | None = None
    num_data: int | None = None
    data_index: torch.Tensor | None = None
    plate: str = "data"

    @property
    def log_weight(self) -> torch.Tensor:
        """``(S,)`` joint log importance weights ``log p(x, z) - log q(z)``."""
        return self.lp - self.log_q


def _kind(site: dict[str, Any]) -> str:
    if is_deterministic(site):
        return "deterministic"
    return "observed" if site["is_observed"] else "latent"


def _event_dim(site: dict[str, Any]) -> int:
    return getattr(site["fn"], "event_dim", len(getattr(site["fn"], "event_shape", ())))


def _data_axis(site: dict[str, Any], plate: str, num_data: int | None) -> int | None:
    """Axis of the site's value indexed by the per-datapoint plate (None if not inside it)."""
    frame = plate_frame(site, plate)
    if frame is None or num_data is None:
        return None
    value = torch.as_tensor(site["value"])
    axis = value.dim() - _event_dim(site) + frame.dim
    if 0 <= axis < value.dim() and value.shape[axis] == num_data:
        return axis
    return None


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
    raise NotVectorizableError(
        f"site '{name}': the {what} has shape {tuple(t.shape)} when {k} draws are vectorized, "
        f"which does not reduce to {k} draws of shape {shape}; the model does not broadcast "
        "over an outer plate: pass vectorize=False"
    )


class _Collector:
    """Turns each pass into per-site draws (``consume`` of :func:`run_passes`)."""

    def __init__(self, layout: Layout, predictive: bool) -> None:
        self.layout, self.predictive = layout, predictive
        sites = [s for n, s in layout.model_sites.items() if n not in layout.enumerated]
        self.shapes = {s["name"]: tuple(torch.as_tensor(s["value"]).shape) for s in sites}
        self.batch_shapes = {
            s["name"]: tuple(site_log_prob(s).shape) for s in sites if _kind(s) == "observed"
        }

    def __call__(self, p: WeightPass) -> dict[str, Any]:
        out: dict[str, Any] = {"lp": p.log_p, "log_q": p.log_q, "pointwise": p.pointwise}
        for name, s in p.model_sites.items():
            if name not in self.shapes:
                continue
            if _kind(s) == "observed":
                out[name] = self._observed(p, name, s)
            else:
                out[name] = {"values": self._values(p, name, s)}
        return out

    def _observed(self, p: WeightPass, name: str, site: dict[str, Any]) -> dict[str, Any]:
        ll, shape = p.log_likelihood[name], self.batch_shapes[name]
        got = {"log_likelihood": _as_draws(ll, p.k, shape, name, "log-likelihood")}
        got["observed"] = _as_draws(site["value"], 1, self.shapes[name], name, "value")
        if self.predictive and name in p.predictive:
            draw = p.predictive[name]
            got["predictive"] = _as_draws(draw, p.k, self.shapes[name], name, "predictive draw")
        return got

    def _values(self, p: WeightPass, name: str, site: dict[str, Any]) -> torch.Tensor:
        try:
            return _as_draws(site["value"], p.k, self.shapes[name], name, "value")
        except NotVectorizableError:
            if p.vectorized or not self.layout.enumerated:
                raise
        raise UnsupportedModelError(
            f"deterministic site '{name}' has a value of shape {tuple(site['value'].shape)} "
            f"where one draw has shape {self.shapes[name]}: it depends on the enumerated "
            f"site(s) {self.layout.enumerated}, which have no posterior draws here; compute it "
            "from the posterior draws instead"
        )


def _assemble(layout: Layout, parts: list[dict], num_samples: int, predictive: bool, plate: str):
    out = PosteriorDraws(num_data=layout.num_data)
    out.lp = torch.cat([p["lp"] for p in parts])
    out.log_q = torch.cat([p["log_q"] for p in parts]).to(out.lp)
    if layout.local:
        out.pointwise_log_weight = torch.cat([p["pointwise"] for p in parts])
    for name, s in layout.model_sites.items():
        if name in layout.enumerated:
            continue
        kind = _kind(s)
        got = [p[name] for p in parts if name in p]
        key = "log_likelihood" if kind == "observed" else "values"
        count = sum(g[key].shape[0] for g in got)
        if count != num_samples:
            raise ValueError(
                f"site '{name}' appeared in {count} of {num_samples} draws: models whose sites "
                "change from draw to draw (stochastic control flow) are not supported"
            )
        shape = tuple(torch.as_tensor(s["value"]).shape)
        draws = SiteDraws(name, kind, shape, _data_axis(s, plate, layout.num_data))
        if kind == "observed":
            draws.observed = got[0]["observed"][0]
            draws.log_likelihood = torch.cat([g["log_likelihood"] for g in got])
            if predictive:
                draws.predictive = torch.cat([g["predictive"] for g in got])
        else:
            draws.values = torch.cat([g["values"] for g in got])
        out.sites[name] = draws
    return out


def draw_posterior(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_samples: int,
    *,
    plate: str | None = None,
    vectorize: bool | None = None,
    predictive: bool = True,
    max_samples_per_pass: int = 16384,
    caller: str = "draw_posterior",
) -> PosteriorDraws:
    """Draw ``num_samples`` latents from the guide and evaluate them under the model.

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature, sampling every latent site of the model.
        args: Model arguments.
        kwargs: Model keyword arguments.
        num_samples: Number of draws S.
        plate: Name of the per-datapoint plate (None: ``"data"``, see
            :func:`pyrovi.infer.importance.resolve_plate`).
        vectorize: Draw in an outer plate (True), one at a time (False) or try the plate and
            fall back to one at a time (None); see :func:`pyrovi.infer.particles.run_passes`.
        predictive: Also draw the observed sites from the model (posterior predictive).
        max_samples_per_pass: Bound on datapoints × draws of one vectorized pass.
        caller: Name of the public entry point (for messages).

    Returns:
        :class:`PosteriorDraws` with tensors on the device the model computes on.

    Discrete sites the model enumerates (not sampled by the guide) are summed out: they have
    no draws, ``lp`` is ``log Σ_d p(x, z, d)`` and an observation that depends on them gets the
    pointwise log-likelihood ``log Σ_d p(d | z) p(x | d, z)``.

    Raises:
        ValueError: ``num_samples`` is not a positive integer; the guide misses a latent site.
        UnsupportedModelError: Enumerated sites shared by several observations or enumerated
            outside their plates (no pointwise log-likelihood), or a deterministic site that
            depends on them.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    check_vectorize(vectorize)
    check_model_args(args, kwargs, caller)
    layout = inspect_model(model, guide, args, kwargs, plate, caller=caller)
    plate = layout.plate
    fixer = SubsampleFixer()
    passes = run_passes(
        model,
        guide,
        args,
        kwargs,
        layout,
        num_samples,
        max(1, max_samples_per_pass // (layout.num_data or 1)),
        _Collector(layout, predictive),
        vectorize=vectorize,
        caller=caller,
        pointwise=layout.local,
        predictive=predictive,
        observations=True,
        fixer=fixer,
    )
    out = _assemble(layout, passes.results, num_samples, predictive, plate)
    out.data_index = fixer.indices.get(plate)
    out.plate = plate
    return out
