"""The one engine behind every importance-weight estimate: ``log p(x, z) - log q(z)``.

:func:`pyrovi.infer.elbo`, :func:`pyrovi.infer.log_marginal_likelihood`,
:func:`pyrovi.infer.log_importance_weights`, :func:`pyrovi.diagnostics.psis_khat` and
:func:`pyrovi.diagnostics.to_inference_data` all draw latents from the guide, replay them
through the model and score both with this module:

* :func:`inspect_model` runs guide and model once and finds the layout: the plate nesting, the
  guide's latents, the model's enumerated discrete sites and whether every scored site is a
  per-datapoint site of plate ``plate`` (``local``: one weight per datapoint) or not (one joint
  weight over all latents and all data).
* :func:`evaluate_pass` draws ``k`` particles, all at once in an outer particle plate
  (``vectorized``) or one (sequential), and returns the joint log-densities ``(k,)`` and, for
  local layouts, the per-datapoint log weights ``(k, B)``. Each site's scale and mask are applied
  as Pyro does; discrete sites the model enumerates (``infer={"enumerate": "parallel"}``) are
  summed out exactly with Pyro's tensor variable elimination (what ``TraceEnum_ELBO`` does).
* :mod:`pyrovi.infer.particles` evaluates ``num_samples`` particles in passes of this kind and,
  with ``vectorize=None``, tries the vectorized particle plate first and falls back to one
  particle at a time (with a ``UserWarning``) when the model cannot run under it or the shapes
  come out wrong.

Per-datapoint values are for the datapoints the plate holds in the call. When the plate
subsamples (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``), Pyro scales its
sites by ``N / B``: joint values keep that scale (an estimate for the full data set), per-datapoint
values divide it out (each is the value of one datapoint of the subsample). A random subsample
(``subsample_size=``) is drawn once per pass sequence and shared by every particle, guide and
model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer.traceenum_elbo import _compute_model_factors
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import prune_subsample_sites

from pyrovi._checks import check_plate_name

__all__ = [
    "Layout",
    "NotVectorizableError",
    "UnsupportedModelError",
    "SubsampleFixer",
    "WeightPass",
    "base_distribution",
    "evaluate_pass",
    "inspect_model",
    "is_deterministic",
    "plate_frame",
    "site_log_prob",
    "subsample_factor",
    "pointwise_log_likelihood",
    "plate_names",
    "resolve_plate",
    "DEFAULT_PLATE",
]

#: The per-datapoint plate's name when the caller does not name one (``plate=None``).
DEFAULT_PLATE = "data"

_PARTICLE_PLATE = "_pyrovi_particles"


class NotVectorizableError(ValueError):
    """The particles of a vectorized pass did not come out as ``k`` separate particles."""


class UnsupportedModelError(ValueError):
    """The model is not supported however the particles are drawn (no fallback helps)."""


class SubsampleFixer(Messenger):
    """Draws each random plate subsample (``subsample_size=``) once and replays it afterwards.

    Pyro draws a fresh subsample every time a subsampling plate is entered; here the first draw
    of each plate is kept, so the guide and the model of every pass see the same datapoints.
    Subsamples the model passes itself (``subsample=idx``) are left alone.

    Attributes:
        indices: Plate name -> the subsample indices it used.
    """

    def __init__(self) -> None:
        super().__init__()
        self.indices: dict[str, torch.Tensor] = {}

    def _process_message(self, msg: dict[str, Any]) -> None:
        if _is_random_subsample(msg) and msg["value"] is None and msg["name"] in self.indices:
            msg["value"] = self.indices[msg["name"]]
            msg["done"] = True

    def _postprocess_message(self, msg: dict[str, Any]) -> None:
        if _is_subsample(msg) and msg["value"] is not None and msg["name"] != _PARTICLE_PLATE:
            self.indices.setdefault(msg["name"], msg["value"])


class _Recorder(Messenger):
    """Records sample sites (name -> message); replays ``values`` at unobserved sites."""

    def __init__(self, values: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.values = values or {}
        self.sites: dict[str, dict[str, Any]] = {}

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
            msg["done"] = True

    def _postprocess_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not _is_subsample(msg):
            self.sites[msg["name"]] = msg


def _is_subsample(msg: dict[str, Any]) -> bool:
    return msg["type"] == "sample" and isinstance(msg["fn"], _Subsample)


def _is_random_subsample(msg: dict[str, Any]) -> bool:
    """A plate drawing ``subsample_size`` of its ``size`` indices at random."""
    if not _is_subsample(msg):
        return False
    size, sub = msg["fn"].size, msg["fn"].subsample_size
    return sub is not None and 0 < sub < size


def is_deterministic(site: dict[str, Any]) -> bool:
    """``pyro.deterministic`` sites: recorded values, no log-density."""
    return bool((site.get("infer") or {}).get("_deterministic"))


def _enumerate(site: dict[str, Any]) -> str | None:
    return (site.get("infer") or {}).get("enumerate")


def base_distribution(fn: Any) -> Any:
    """``fn`` without its wrappers (``Independent``, masks, expansions): the innermost
    ``base_dist``."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def plate_frame(site: dict[str, Any], plate: str):
    """The site's vectorized frame of plate ``plate``, or None when it is not inside it."""
    for f in site["cond_indep_stack"]:
        if f.name == plate and f.vectorized:
            return f
    return None


def site_log_prob(site: dict[str, Any]) -> torch.Tensor:
    """Log-density of a sample site with its scale and mask applied, as Pyro scores it."""
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return torch.as_tensor(scale_and_mask(log_p, site["scale"], site["mask"]))


@dataclass
class Layout:
    """What one unvectorized run of guide and model shows (see :func:`inspect_model`).

    Attributes:
        plate: Name of the per-datapoint plate.
        nesting: Batch dimensions the model and guide use (plates and broadcasting); the
            particle plate goes at dimension ``-(nesting + 1)``.
        local: Every scored site (model sites except deterministic ones, guide latents) is
            inside plate ``plate``: the weights factorize over its datapoints.
        guide_latents: Names of the guide's unobserved sites (auxiliary ones included).
        enumerated: Model sites the guide does not sample and the model enumerates.
        num_data: Size of plate ``plate`` from the site values, or None when no site is in it.
        guide_sites: The guide's sample sites of that run (name -> message).
        model_sites: The model's sample sites of that run (name -> message), subsample sites
            excluded.
    """

    plate: str
    nesting: int
    local: bool
    guide_latents: list[str]
    enumerated: list[str]
    num_data: int | None
    guide_sites: dict[str, dict[str, Any]] = field(repr=False)
    model_sites: dict[str, dict[str, Any]] = field(repr=False)


def _run(model, guide, args, kwargs, fixer, values=None, wrap=None):
    """Guide then model (replaying the guide's latents): their sample sites, name -> message."""
    wrap = wrap or (lambda fn: fn)
    guide_rec = _Recorder(values)
    with fixer, guide_rec:
        wrap(guide)(*args, **kwargs)
    latents = {n: s["value"] for n, s in guide_rec.sites.items() if not s["is_observed"]}
    model_rec = _Recorder(latents)
    with fixer, model_rec:
        wrap(model)(*args, **kwargs)
    return guide_rec.sites, model_rec.sites


def _nesting(sites: list[dict[str, Any]]) -> int:
    dims = [-f.dim for s in sites for f in s["cond_indep_stack"] if f.vectorized]
    batch = [site_log_prob(s).dim() for s in sites if not is_deterministic(s)]
    return max(dims + batch + [0])


def _data_size(sites: list[dict[str, Any]], plate: str) -> int | None:
    sizes = []
    for s in sites:
        frame = plate_frame(s, plate)
        if frame is None or is_deterministic(s):
            continue
        shape = site_log_prob(s).shape
        if len(shape) >= -frame.dim:
            sizes.append(int(shape[frame.dim]))
    return max(sizes) if sizes else None


def _check_guide_covers(model_sites, guide_sites, caller: str) -> list[str]:
    """Enumerated model sites; raises for other model latents the guide does not sample."""
    missing, enumerated = [], []
    for name, s in model_sites.items():
        if s["is_observed"] or is_deterministic(s) or name in guide_sites:
            continue
        (enumerated if _enumerate(s) == "parallel" else missing).append(name)
    if missing:
        raise ValueError(
            f"model latent site(s) {missing} are not sampled by the guide: the guide must sample "
            "every latent site of the model (importance weights need q(z) for all of z), "
            "except discrete sites the model enumerates with infer={'enumerate': 'parallel'} "
            "(e.g. @pyro.infer.config_enumerate), which are summed out exactly"
        )
    enumerated_in_guide = [n for n, s in guide_sites.items() if _enumerate(s)]
    if enumerated_in_guide:
        raise ValueError(
            f"{caller}: guide site(s) {enumerated_in_guide} are marked for enumeration; "
            "importance weights need the guide to sample its sites: remove "
            "infer={'enumerate': ...} from the guide (enumerate discrete sites in the model)"
        )
    return enumerated


def plate_names(*site_groups: dict[str, dict[str, Any]]) -> list[str]:
    """Names of the plates (vectorized or not) the sites lie in, in order of appearance."""
    names: list[str] = []
    for sites in site_groups:
        for s in sites.values():
            for f in s["cond_indep_stack"]:
                if f.name != _PARTICLE_PLATE and f.name not in names:
                    names.append(f.name)
    return names


def resolve_plate(
    plate: str | None,
    model_sites: dict[str, dict[str, Any]],
    guide_sites: dict[str, dict[str, Any]],
    scored: list[dict[str, Any]],
    caller: str,
) -> str:
    """The per-datapoint plate's name, checked against the plates of the model and guide.

    * A named plate (``plate="schools"``) must be one of their plates, unless they have no
      plate at all (then everything is global whatever the name).
    * ``plate=None`` means :data:`DEFAULT_PLATE` (``"data"``). When the model and guide have
      plates but none is called ``"data"``, the default is refused only if it would hide
      per-datapoint structure: some other plate holds every scored site (so naming it would
      give per-datapoint estimates instead of one joint value). Otherwise (e.g. eight schools:
      global ``mu``, ``tau`` beside a plate ``"schools"``) the estimate is the joint one anyway
      and the default is kept.

    Raises:
        TypeError: ``plate`` is not a non-empty string or None.
        ValueError: See above.
    """
    check_plate_name(plate)
    names = plate_names(model_sites, guide_sites)
    if plate is not None:
        if names and plate not in names:
            raise ValueError(
                f"{caller}: plate={plate!r} is not a plate of the model or the guide; their "
                f"plates are {names}. Pass plate=<the plate over the datapoints> (one of those); "
                "for a model whose latents are all global the name does not matter"
            )
        return plate
    if names and DEFAULT_PLATE not in names:
        holding = [n for n in names if all(plate_frame(s, n) is not None for s in scored)]
        if holding:
            raise ValueError(
                f"{caller}: the model has no plate {DEFAULT_PLATE!r} (the default of plate=); "
                f"its plates are {names} and every site lies inside plate {holding[0]!r}: pass "
                f"plate={holding[0]!r} for per-datapoint estimates (the default would silently "
                "treat the latents as global and give one joint value)"
            )
    return DEFAULT_PLATE


def inspect_model(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    plate: str | None,
    *,
    caller: str = "importance weights",
) -> Layout:
    """Run guide and model once, unvectorized, and describe the layout (see :class:`Layout`).

    ``plate`` names the per-datapoint plate; None means ``"data"`` with the leniency described
    in :func:`resolve_plate`. :attr:`Layout.plate` holds the resolved name.

    Raises:
        ValueError: The model has no sample site, or a model latent is not sampled by the
            guide (and is not enumerated by the model), or the guide enumerates a site; a
            ``plate`` that the model and guide do not have (see :func:`resolve_plate`).
        TypeError: ``plate`` is not a string or None.
    """
    check_plate_name(plate)
    with poutine.block(), torch.no_grad():
        guide_sites, model_sites = _run(model, guide, args, kwargs, SubsampleFixer())
    scored = [s for s in model_sites.values() if not is_deterministic(s)]
    if not scored:
        raise ValueError(f"{caller}: the model has no sample sites: nothing to evaluate")
    enumerated = _check_guide_covers(model_sites, guide_sites, caller)
    latents = [n for n, s in guide_sites.items() if not s["is_observed"]]
    scored += [guide_sites[n] for n in latents]
    plate = resolve_plate(plate, model_sites, guide_sites, scored, caller)
    num_data = _data_size(scored, plate)
    local = num_data is not None and all(plate_frame(s, plate) is not None for s in scored)
    return Layout(
        plate=plate,
        nesting=_nesting(scored),
        local=local,
        guide_latents=latents,
        enumerated=enumerated,
        num_data=num_data,
        guide_sites=guide_sites,
        model_sites=model_sites,
    )


@dataclass
class WeightPass:
    """The particles of one pass, scored.

    Attributes:
        k: Number of particles.
        vectorized: Whether they were drawn in an outer particle plate.
        log_p: ``(k,)`` joint ``log p(x, z)`` (enumerated sites summed out), nats.
        log_q: ``(k,)`` joint ``log q(z)``, nats.
        pointwise: ``(k, B)`` per-datapoint log weights (local layouts, when asked), else None.
        guide_sites: The guide's sample sites (name -> message).
        model_sites: The model's sample sites (name -> message).
        predictive: Observed site name -> value drawn from the model (when asked), else None.
        log_likelihood: Observed site name -> its pointwise log-density (when asked; see
            :func:`pointwise_log_likelihood`; enumerated sites summed out), else None.
    """

    k: int
    vectorized: bool
    log_p: torch.Tensor | None
    log_q: torch.Tensor | None
    pointwise: torch.Tensor | None
    guide_sites: dict[str, dict[str, Any]]
    model_sites: dict[str, dict[str, Any]]
    predictive: dict[str, torch.Tensor] | None = None
    log_likelihood: dict[str, torch.Tensor] | None = None

    @property
    def log_weight(self) -> torch.Tensor:
        """``(k, B)`` per-datapoint log weights when computed, else ``(k,)`` joint ones."""
        return self.pointwise if self.pointwise is not None else self.log_p - self.log_q


def _lift(log_p: torch.Tensor, k: int, ndim: int, vectorized: bool, name: str) -> torch.Tensor:
    """A site's log-density as ``(1 or k, *batch)`` with ``ndim`` batch dimensions."""
    if vectorized:
        if log_p.dim() > ndim + 1:
            raise NotVectorizableError(
                f"site '{name}': log-density of shape {tuple(log_p.shape)} has more batch "
                f"dimensions than the {ndim} plates plus the particle plate"
            )
        log_p = log_p.reshape((1,) * (ndim + 1 - log_p.dim()) + tuple(log_p.shape))
        if log_p.shape[0] not in (1, k):
            raise NotVectorizableError(
                f"site '{name}': log-density of shape {tuple(log_p.shape)} has size "
                f"{log_p.shape[0]} at the particle dimension, expected {k}"
            )
        return log_p
    if log_p.dim() > ndim:  # batch dimensions beyond the probe's: fold them in
        log_p = log_p.reshape((-1,) + tuple(log_p.shape[log_p.dim() - ndim :])).sum(0)
    return log_p.reshape((1,) * (ndim - log_p.dim()) + tuple(log_p.shape)).unsqueeze(0)


def _joint(log_p: torch.Tensor, k: int) -> torch.Tensor:
    return log_p.reshape(log_p.shape[0], -1).sum(1).expand(k)


def _pointwise(log_p: torch.Tensor, frame, name: str, plate: str) -> torch.Tensor:
    """``(1 or k, *batch)`` -> ``(1 or k, 1 or B)`` summed over all but the data dimension."""
    if frame is None:
        raise ValueError(f"site '{name}' is outside the plate '{plate}'")
    axis = log_p.dim() + frame.dim
    other = [a for a in range(1, log_p.dim()) if a != axis]
    if other:
        log_p = log_p.sum(dim=other, keepdim=True)
    return log_p.reshape(log_p.shape[0], log_p.shape[axis])


def _plate_factor(frame) -> float:
    """``N / B`` of a plate frame that subsamples B of N datapoints, else 1."""
    if frame is None or not frame.full_size or not frame.size:
        return 1.0
    if frame.full_size > 0 and frame.size > 0:
        return frame.full_size / frame.size
    return 1.0


def subsample_factor(sites: list[dict[str, Any]], plate: str) -> float:
    """``N / B`` of plate ``plate`` when it subsamples B of N datapoints, else 1."""
    for s in sites:
        frame = plate_frame(s, plate)
        if frame is not None:
            return _plate_factor(frame)
    return 1.0


def pointwise_log_likelihood(site: dict[str, Any], plate: str) -> torch.Tensor:
    """Log-density of an observed site with the subsampling ``N / B`` of ``plate`` divided out
    (one value per datapoint of the call; other scales and the mask applied)."""
    return site_log_prob(site) / _plate_factor(plate_frame(site, plate))


def _add(total: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    return term if total is None else total + term


@dataclass
class _Spec:
    """Everything one pass needs (see :func:`evaluate_pass`)."""

    model: Callable
    guide: Callable
    args: tuple
    kwargs: dict
    layout: Layout
    k: int
    vectorized: bool
    fixer: SubsampleFixer
    values: dict[str, torch.Tensor] | None
    joint: bool
    pointwise: bool
    observations: bool = False

    @property
    def ndim(self) -> int:
        return self.layout.nesting

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` inside the particle plate (vectorized passes) or as it is."""
        if not self.vectorized:
            return fn
        return pyro.plate(_PARTICLE_PLATE, self.k, dim=-(self.layout.nesting + 1))(fn)


def _score_sites(spec: _Spec, sites: list[dict[str, Any]], guide: bool):
    """Sum the log-densities of ``sites``: ``(k,)`` joint and ``(1 or k, 1 or B)`` pointwise."""
    total_joint = total_point = None
    k, plate = spec.k, spec.layout.plate
    for s in sites:
        log_p = _lift(site_log_prob(s), k, spec.ndim, spec.vectorized, s["name"])
        if guide and spec.vectorized and k > 1 and log_p.shape[0] != k:
            raise NotVectorizableError(
                f"guide site '{s['name']}' did not draw one value per particle: its log-density "
                f"has shape {tuple(log_p.shape)}, without the particle dimension of size {k}"
            )
        if spec.joint:
            total_joint = _add(total_joint, _joint(log_p, k))
        if spec.pointwise:  # per datapoint of the call: a subsampling plate's N / B removed
            frame = plate_frame(s, plate)
            point = _pointwise(log_p, frame, s["name"], plate) / _plate_factor(frame)
            total_point = _add(total_point, point)
    return total_joint, total_point


def _combine(spec: _Spec, p_joint, q_joint, p_point, q_point, guide_sites, model_sites):
    """A :class:`WeightPass` from the model's and the guide's sums (None: no such site)."""
    like = next(t for t in (p_joint, q_joint, p_point, q_point) if t is not None)
    zeros = like.new_zeros(spec.k)
    log_p = log_q = pointwise = None
    if spec.joint:
        log_p = p_joint if p_joint is not None else zeros
        log_q = q_joint if q_joint is not None else zeros
    if spec.pointwise:
        terms = [t for t in (p_point, None if q_point is None else -q_point) if t is not None]
        pointwise = _expand_pointwise(terms, spec.k)
    return WeightPass(spec.k, spec.vectorized, log_p, log_q, pointwise, guide_sites, model_sites)


def _expand_pointwise(terms: list[torch.Tensor], k: int) -> torch.Tensor:
    sizes = {t.shape[1] for t in terms} - {1}
    if len(sizes) > 1:
        raise NotVectorizableError(f"per-datapoint log-densities disagree on the data size {sizes}")
    b = sizes.pop() if sizes else 1
    out = terms[0].expand(k, b)
    for t in terms[1:]:
        out = out + t
    return out


def _guide_scored(sites: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in sites.values() if not s["is_observed"]]


def _model_scored(sites: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in sites.values() if not is_deterministic(s)]


def _observed(sites: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in sites.values() if s["is_observed"] and not is_deterministic(s)]


def _plain_pass(spec: _Spec) -> WeightPass:
    guide_sites, model_sites = _run(
        spec.model, spec.guide, spec.args, spec.kwargs, spec.fixer, spec.values, spec.wrap
    )
    p_joint, p_point = _score_sites(spec, _model_scored(model_sites), guide=False)
    q_joint, q_point = _score_sites(spec, _guide_scored(guide_sites), guide=True)
    out = _combine(spec, p_joint, q_joint, p_point, q_point, guide_sites, model_sites)
    if spec.observations:
        plate = spec.layout.plate
        out.log_likelihood = {
            s["name"]: pointwise_log_likelihood(s, plate) for s in _observed(model_sites)
        }
    return out


def evaluate_pass(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    layout: Layout,
    k: int,
    *,
    vectorized: bool,
    fixer: SubsampleFixer,
    joint: bool = True,
    pointwise: bool = False,
    values: dict[str, torch.Tensor] | None = None,
    predictive: bool = False,
    observations: bool = False,
) -> WeightPass:
    """Draw ``k`` particles (one when not ``vectorized``) and score them (no gradients).

    Args:
        model: Pyro model ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        args: Positional arguments.
        kwargs: Keyword arguments.
        layout: From :func:`inspect_model` on the same model and guide.
        k: Particles of the pass (1 unless ``vectorized``).
        vectorized: Draw them in an outer ``pyro.plate`` at dimension ``-(nesting + 1)``.
        fixer: Holds the plate subsamples shared by every pass.
        joint: Compute ``log_p`` and ``log_q`` ``(k,)``.
        pointwise: Compute the per-datapoint log weights ``(k, B)`` (local layouts only).
        values: Replay these guide values instead of drawing them.
        predictive: Also draw the observed sites from the model given the particles.
        observations: Also compute the pointwise log-likelihood of every observed site.

    Returns:
        :class:`WeightPass`.

    Raises:
        NotVectorizableError: ``vectorized`` and a site's log-density does not come out with
            one value per particle.
    """
    if pointwise and not layout.local:
        raise ValueError("per-datapoint log weights need every scored site inside the plate")
    if not vectorized and k != 1:
        raise ValueError(f"a pass that is not vectorized draws one particle, got k={k}")
    spec = _Spec(
        model,
        guide,
        args,
        kwargs,
        layout,
        k,
        vectorized,
        fixer,
        values,
        joint,
        pointwise,
        observations,
    )
    with torch.no_grad(), poutine.block():
        out = _enumerated_pass(spec) if layout.enumerated else _plain_pass(spec)
        if predictive:
            out.predictive = _predict(spec, out)
    return out


class _Predict(Messenger):
    """Replaces each observation by a draw of the same shape from its distribution.

    Like ``poutine.uncondition``, but the draw has the observation's batch shape even where the
    distribution's is smaller (an unsized ``pyro.plate`` takes its size from the data).
    """

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or not msg["is_observed"] or is_deterministic(msg):
            return
        if _is_subsample(msg):
            return
        fn, value = msg["fn"], torch.as_tensor(msg["value"])
        batch = value.shape[: max(0, value.dim() - len(fn.event_shape))]
        shape = torch.broadcast_shapes(fn.batch_shape, batch)
        msg["value"] = (fn.expand(shape) if shape != fn.batch_shape else fn).sample()
        msg["is_observed"] = False
        msg["done"] = True


def _predict(spec: _Spec, out: WeightPass) -> dict[str, torch.Tensor]:
    """Observed sites drawn from the model given the pass's latents (posterior predictive)."""
    latents = {n: s["value"] for n, s in out.guide_sites.items() if not s["is_observed"]}
    rec = _Recorder(latents)
    with spec.fixer, rec, _Predict():
        spec.wrap(spec.model)(*spec.args, **spec.kwargs)
    observed = [
        n for n, s in out.model_sites.items() if s["is_observed"] and not is_deterministic(s)
    ]
    return {n: rec.sites[n]["value"] for n in observed if n in rec.sites}


# --------------------------------------------------------------------------- enumeration


def _packed_to(term: torch.Tensor, target: list[str]) -> torch.Tensor:
    """A packed tensor (Pyro's ``_pyro_dims``) summed over all but ``target`` symbols, arranged
    as one axis per target symbol (size 1 where it has none)."""
    term = torch.as_tensor(term)
    dims = getattr(term, "_pyro_dims", "")
    keep = [s for s in dims if s in target]
    drop = [i for i, s in enumerate(dims) if s not in target]
    out = term.sum(drop) if drop else term
    out = out.permute([keep.index(s) for s in target if s in keep]) if keep else out
    for i, s in enumerate(target):
        if s not in keep:
            out = out.unsqueeze(i)
    return out


def _enum_traces(spec: _Spec):
    """Guide trace and enumerated model trace of a pass, packed (Pyro's ``TraceEnum_ELBO`` way)."""
    ndim = spec.ndim + (1 if spec.vectorized else 0)
    with spec.fixer:
        guide_fn = spec.wrap(_replaying(spec.guide, spec.values) if spec.values else spec.guide)
        guide_trace = poutine.trace(guide_fn).get_trace(*spec.args, **spec.kwargs)
        enum_model = poutine.enum(spec.wrap(spec.model), first_available_dim=-(ndim + 1))
        model_trace = poutine.trace(poutine.replay(enum_model, trace=guide_trace)).get_trace(
            *spec.args, **spec.kwargs
        )
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    deterministic = {n: s for n, s in model_trace.nodes.items() if is_deterministic(s)}
    for name in deterministic:
        model_trace.remove_node(name)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    guide_trace.pack_tensors()
    model_trace.pack_tensors(guide_trace.plate_to_symbol)
    return model_trace, guide_trace, deterministic


def _replaying(fn: Callable, values: dict[str, torch.Tensor]) -> Callable:
    def replayed(*args: Any, **kwargs: Any) -> Any:
        with _Recorder(values):
            return fn(*args, **kwargs)

    return replayed


def _marginal(costs, log_factors, sum_dims, scale, target: list[str]) -> torch.Tensor:
    """``log Σ_enumerated p`` reduced to the ``target`` plate symbols (one axis each)."""
    total = None
    for terms in costs.values():
        for term in terms:
            total = _add(total, _packed_to(term, target))
    if log_factors:
        summed = contract_to_tensor(log_factors, sum_dims, target_ordinal=frozenset(target))
        total = _add(total, scale * _packed_to(summed, target))
    return total


def _enumerated_pass(spec: _Spec) -> WeightPass:
    """A pass whose model enumerates discrete sites: they are summed out exactly."""
    model_trace, guide_trace, deterministic = _enum_traces(spec)
    costs, log_factors, _, sum_dims, scale = _compute_model_factors(model_trace, guide_trace)
    symbols = model_trace.plate_to_symbol
    particle = [symbols[_PARTICLE_PLATE]] if spec.vectorized else []
    guide_sites = {n: s for n, s in guide_trace.nodes.items() if s["type"] == "sample"}
    model_sites = {n: s for n, s in model_trace.nodes.items() if s["type"] == "sample"}
    q_joint, q_point = _score_sites(spec, _guide_scored(guide_sites), guide=True)
    p_joint = p_point = None
    if spec.joint:
        p_joint = _marginal(costs, log_factors, sum_dims, scale, particle).reshape(-1)
        p_joint = p_joint.expand(spec.k)
    if spec.pointwise:
        target = particle + [symbols[spec.layout.plate]]
        p_point = _marginal(costs, log_factors, sum_dims, scale, target)
        p_point = p_point if spec.vectorized else p_point.unsqueeze(0)
        p_point = p_point / subsample_factor(list(model_sites.values()), spec.layout.plate)
    out = _combine(spec, p_joint, q_joint, p_point, q_point, guide_sites, model_sites)
    out.model_sites.update(deterministic)
    if spec.observations:
        out.log_likelihood = _enum_log_likelihood(spec, model_trace, log_factors, sum_dims, scale)
    return out


def _ordinal(trace, site: dict[str, Any]) -> frozenset:
    return frozenset(
        trace.plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized
    )


def _enum_log_likelihood(spec: _Spec, trace, log_factors, sum_dims, scale) -> dict:
    """Pointwise log-likelihood of each observed site, enumerated sites summed out.

    An observation that depends on enumerated sites gets ``log Σ_d p(d | z) p(x | d, z)`` per
    element of its plates: well defined when it is the only observation depending on them and
    they are enumerated in the same plates (e.g. a mixture's assignment per datapoint).
    """
    plate = spec.layout.plate
    observed = _observed({n: s for n, s in trace.nodes.items() if s["type"] == "sample"})
    enum_sites = [trace.nodes[n] for n in spec.layout.enumerated if n in trace.nodes]
    dependent = [s for s in observed if sum_dims & set(s["packed"]["log_prob"]._pyro_dims)]
    out = {s["name"]: pointwise_log_likelihood(s, plate) for s in observed if s not in dependent}
    for s in dependent:
        ordinal = _ordinal(trace, s)
        if len(dependent) > 1 or any(_ordinal(trace, e) != ordinal for e in enum_sites):
            raise UnsupportedModelError(
                f"observed site(s) {[d['name'] for d in dependent]} depend on the enumerated "
                f"site(s) {spec.layout.enumerated}, which are not enumerated in exactly the "
                "observation's plates (or several observations share them): the pointwise "
                "log-likelihood does not separate per observation. Sample the discrete sites in "
                "the guide, or use log_marginal_likelihood / psis_khat for this model"
            )
        summed = contract_to_tensor(log_factors, sum_dims, target_ordinal=ordinal)
        log_p = scale * packed.unpack(summed, trace.symbol_to_dim)
        out[s["name"]] = log_p / _plate_factor(plate_frame(s, plate))
    return out
