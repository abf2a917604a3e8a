"""Pyro's ``AutoNormal`` and ``AutoContinuous`` guides (``AutoDiagonalNormal``,
``AutoMultivariateNormal``, :class:`~pyrovi.guides.FlowGuide`, ...) evaluated without Pyro's effect
handlers: the small-model fast path of :class:`~pyrovi.infer.FastTrace_ELBO`.

On a model with a few latent sites, most of a training step is Pyro's per-site machinery: each
``pyro.sample`` goes through the handler stack, ``AutoNormal`` builds its plates and reads each
parameter through ``PyroModule.__getattr__`` and ``pyro.param``, and every latent site is a
``Delta`` distribution. :class:`FusedGuide` computes the same thing directly from the guide's
parameters: the same distributions, the same random draws in the same order, the same
transforms and log-Jacobians, the same scales, so the loss and its gradients are those of the
guide run by Pyro, bit for bit. Two steps are skipped because they compute nothing: a latent's
``Delta`` is scored at its own value as its log-Jacobian (Pyro adds ``log 1 = 0`` to it), and a
:class:`~pyrovi.guides.FlowGuide`'s flow is read without the ``pyro.module`` statement that only
registers its parameters in the param store (taken only when they are registered already).
The equality is not assumed: :func:`fused_guide` checks the draws and log-densities once per
guide against a run through Pyro from the same random state, and a guide whose fused sites
differ in any bit, or that it does not recognise (an overridden ``forward``, ``create_plates``,
subsampled plates, a nested guide), is left to Pyro. A step uses the fused form only when the
handlers around it are ones whose effect it reproduces: pyrovi's data and latent scaling (what
``fit`` uses) and ``poutine.scale``; anything else (``poutine.mask``, ``condition``, ``block``,
a particle plate) sends that step through Pyro.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.util import sum_rightmost
from pyro.infer.autoguide import AutoContinuous, AutoNormal
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.scale_messenger import ScaleMessenger
from torch.distributions import biject_to, transform_to

from pyrovi.infer.handlers import DataScaleMessenger, LatentScaleMessenger

__all__ = ["FusedGuide", "fused_guide"]

#: Handlers whose effect on a guide site (its scale) :class:`FusedGuide` reproduces.
_SCALING = (DataScaleMessenger, LatentScaleMessenger, ScaleMessenger)


class _Param:
    """One ``PyroParam`` of a guide module: its unconstrained tensor and constraint transform."""

    def __init__(self, owner: torch.nn.Module, attr: str) -> None:
        self.owner, self.attr = owner, attr
        constraint, _ = owner._pyro_params[attr]
        self.transform = transform_to(constraint)
        self.key = f"{attr}_unconstrained"
        self.tensor = owner._parameters[self.key]
        self.fullname = owner._pyro_get_fullname(attr)

    def current(self, store: dict | None) -> bool:
        """Whether the module and the param store's ``_params`` (None with module-local
        parameters) still hold the same tensor: a cleared or reloaded store, or a replaced
        parameter, makes a plan stale."""
        if self.owner._parameters.get(self.key) is not self.tensor:
            return False
        return store is None or store.get(self.fullname, self.tensor) is self.tensor

    def value(self) -> torch.Tensor:
        return self.transform(self.tensor)


def _owner(module: torch.nn.Module, name: str) -> tuple[torch.nn.Module, str]:
    """The module holding the ``PyroParam`` at dotted path ``name`` under ``module``."""
    *path, attr = name.split(".")
    for part in path:
        module = module._modules[part]
    return module, attr


class _Site:
    """A latent site of the guide: its support transform, event dims and plates."""

    def __init__(self, name: str, site: dict[str, Any], frames: tuple) -> None:
        self.name = name
        self.transform = biject_to(site["fn"].support)
        self.event_dim = site["fn"].event_dim
        self.frames = frames


class FusedGuide:
    """A recognised autoguide, evaluated directly (see the module docstring).

    Attributes:
        guide: The autoguide.
        kind: ``"normal"`` (``AutoNormal``) or ``"continuous"`` (an ``AutoContinuous``).
    """

    def __init__(self, guide: AutoNormal | AutoContinuous) -> None:
        self.guide = guide
        self.prototype = guide.prototype_trace
        self.kind = "normal" if isinstance(guide, AutoNormal) else "continuous"
        self.sites: list[_Site] = []
        self.params: list[tuple[_Param, _Param]] = []
        #: a FlowGuide's (flow module, [(param store key, parameter)] or None), else None
        self.flow: tuple[torch.nn.Module, list | None] | None = None
        if self.kind == "continuous" and _is_flow_guide(guide):
            module = guide._modules.get("flow")
            if module is not None:
                self.flow = (module, _store_keys(module))
        for name, site in guide.prototype_trace.iter_stochastic_nodes():
            if self.kind == "normal":
                frames = tuple(f for f in site["cond_indep_stack"] if f.vectorized)
            else:
                frames = tuple(guide._cond_indep_stacks[name])
            self.sites.append(_Site(name, site, frames))
            if self.kind == "normal":
                loc = _Param(*_owner(guide.locs, name))
                scale = _Param(*_owner(guide.scales, name))
                self.params.append((loc, scale))

    def _flow_posterior(self) -> Any:
        """A :class:`~pyrovi.guides.FlowGuide`'s posterior built from its flow module directly,
        skipping the ``pyro.module`` statement that reading ``guide.flow`` makes (one handler
        call per flow parameter). That statement computes nothing: it only registers the flow's
        parameters in Pyro's param store, so the shortcut is taken only where nothing is to be
        registered (module-local parameters, or every flow parameter already in the store as
        itself); None otherwise (``get_posterior`` then runs as usual)."""
        module, registered = self.flow
        if self.guide._modules.get("flow") is not module:
            return None
        if not pyro.settings.get("module_local_params") and not _in_store(registered):
            registered = _store_keys(module)  # (registered anew since the plan was made?)
            self.flow = (module, registered)
            if not _in_store(registered):
                return None
        return self.guide._posterior_of(module)

    def current(self) -> bool:
        """Whether the plan still describes the guide (same prototype, same parameters)."""
        if self.guide.prototype_trace is not self.prototype:
            return False
        if not self.params:
            return True
        local = pyro.settings.get("module_local_params")
        store = None if local else pyro.get_param_store()._params
        return all(p.current(store) for pair in self.params for p in pair)

    def run(self) -> dict[str, dict[str, Any]] | None:
        """One draw of the guide under the current handlers: its sites, by name in the order of
        Pyro's trace, as the messages Pyro would record (``fn``, ``value``, ``scale``, ``mask``,
        ``args``, ``kwargs``, ``is_observed``, ``infer``), or None when a handler around the
        call is not one whose effect this reproduces. The log-densities are left to the caller,
        to be computed when and in the order Pyro's would be (the order the autograd graph is
        built in decides the order gradients are summed in, down to the last bit)."""
        outer = _outer_scale()
        if outer is None:
            return None
        with self._context():
            if self.kind == "normal":
                return self._run_normal(outer)
            return self._run_continuous(outer)

    def _context(self) -> AbstractContextManager:
        # PyroModule.__call__ enters this: parameters read inside it are synced with the store
        context = getattr(self.guide, "_pyro_context", None)
        return context if context is not None else nullcontext()

    def _run_normal(self, outer: Callable[[tuple], float]) -> dict[str, dict[str, Any]]:
        sites: dict[str, dict[str, Any]] = {}
        for site, (loc_p, scale_p) in zip(self.sites, self.params):
            loc, scale = loc_p.value(), scale_p.value()
            event_dim = self.guide._event_dims[site.name]
            fn = dist.Normal(loc, scale).to_event(event_dim)
            unconstrained = fn()
            factor = outer(site.frames)
            sites[f"{site.name}_unconstrained"] = _message(fn, unconstrained, factor, True)
            sites[site.name] = _delta_site(site, unconstrained, factor)
        return sites

    def _run_continuous(self, outer: Callable[[tuple], float]) -> dict[str, dict[str, Any]] | None:
        guide = self.guide
        fn = self._flow_posterior() if self.flow is not None else None
        if fn is None:
            fn = guide.get_posterior()
        if not getattr(fn, "has_rsample", False):
            return None
        latent = fn()
        sites = {f"_{guide._pyro_name}_latent": _message(fn, latent, outer(()), True)}
        for site, (_, unconstrained) in zip(self.sites, guide._unpack_latent(latent)):
            sites[site.name] = _delta_site(site, unconstrained, outer(site.frames))
        return sites


def _is_flow_guide(guide: Any) -> bool:
    from pyrovi.guides.flow_guide import FlowGuide  # (pyrovi.guides imports pyrovi.infer)

    return (
        isinstance(guide, FlowGuide)
        and type(guide).get_posterior is FlowGuide.get_posterior
        and type(guide)._posterior_of is FlowGuide._posterior_of
    )


def _store_keys(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]] | None:
    """``[(name in Pyro's param store, parameter)]`` of a module's parameters that need
    gradients, or None when one of them is not in the store."""
    store = pyro.get_param_store()
    keys = []
    for p in module.parameters():
        if p.requires_grad:
            name = store._param_to_name.get(p)
            if name is None:
                return None
            keys.append((name, p))
    return keys


def _in_store(keys: list[tuple[str, torch.Tensor]] | None) -> bool:
    params = pyro.get_param_store()._params
    return keys is not None and all(params.get(k) is p for k, p in keys)


def _delta_site(site: _Site, unconstrained: torch.Tensor, factor: float) -> dict[str, Any]:
    """The ``Delta`` site of a latent, as the autoguides build it."""
    value = site.transform(unconstrained)
    log_density = site.transform.inv.log_abs_det_jacobian(value, unconstrained)
    log_density = sum_rightmost(log_density, log_density.dim() - value.dim() + site.event_dim)
    batch_shape = value.shape[: value.dim() - site.event_dim]
    if log_density.shape != batch_shape or log_density.dtype != value.dtype:
        fn = dist.Delta(value, log_density=log_density, event_dim=site.event_dim)
        return _message(fn, fn(), factor, False)
    # the draw is ``value.expand(shape)``, as ``Delta.rsample`` returns it: the node it adds to
    # the autograd graph decides the order in which gradients reach ``value``, to the last bit
    drawn = value.expand(value.shape)
    return _message(_DrawnDelta(drawn, log_density), drawn, factor, False)


class _DrawnDelta:
    """The ``Delta(value, log_density)`` of a latent site, as the loss evaluates it: at the value
    it holds, Pyro's ``Delta.log_prob`` is ``log(1) + log_density``, which is ``log_density``
    bit for bit (adding an exact zero) with the same gradient, so it is returned as is without
    building the distribution or comparing the value with itself. Elsewhere: Pyro's ``Delta``."""

    __slots__ = ("drawn", "log_density")

    def __init__(self, drawn: torch.Tensor, log_density: torch.Tensor) -> None:
        self.drawn, self.log_density = drawn, log_density

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        if x is self.drawn:
            return self.log_density
        event_dim = self.drawn.dim() - self.log_density.dim()
        return dist.Delta(self.drawn, self.log_density, event_dim=event_dim).log_prob(x)


def _message(fn: Any, value: torch.Tensor, scale: float, auxiliary: bool) -> dict[str, Any]:
    return {
        "fn": fn,
        "value": value,
        "scale": scale,
        "mask": None,
        "args": (),
        "kwargs": {},
        "is_observed": False,
        "infer": {"is_auxiliary": True} if auxiliary else {},
    }


def _outer_scale() -> Callable[[tuple], float] | None:
    """``frames -> scale`` of a guide site under the handlers now active (what they would do to
    an unobserved sample site in plates ``frames``), or None when one of them is not a scaling
    handler this module knows."""
    if not _known_handlers():
        return None
    stack = list(_PYRO_STACK)
    known: dict[tuple, float] = {}  # sites in the same plates get the same scale

    def scale(frames: tuple) -> float:
        if frames in known:
            return known[frames]
        msg = {
            "type": "sample",
            "is_observed": False,
            "scale": 1.0,
            "cond_indep_stack": frames,
            "fn": None,
            "value": None,
        }
        for messenger in reversed(stack):
            messenger._process_message(msg)
        known[frames] = msg["scale"]
        return msg["scale"]

    return scale


def _known_handlers() -> bool:
    """Whether every handler now active is a scaling handler this module reproduces."""
    return all(type(m) in _SCALING for m in _PYRO_STACK)


def _eligible(guide: Any) -> bool:
    """An ``AutoNormal`` or ``AutoContinuous`` whose ``forward`` is Pyro's, with a prototype,
    not nested in another guide, with Pyro's own plates, none subsampled or unsized."""
    if isinstance(guide, AutoNormal):
        base = AutoNormal
    elif isinstance(guide, AutoContinuous):
        base = AutoContinuous
    else:
        return False
    if type(guide).forward is not base.forward or type(guide).__call__ is not base.__call__:
        return False
    if guide.prototype_trace is None or guide.master is not None or guide.create_plates:
        return False
    if base is AutoContinuous and (
        type(guide).sample_latent is not AutoContinuous.sample_latent
        or type(guide)._unpack_latent is not AutoContinuous._unpack_latent
    ):
        return False
    for frame in guide._prototype_frames.values():
        if frame.size is None or frame.size < 0:
            return False
        if frame.full_size is not None and frame.full_size != frame.size:
            return False
    return True


#: guide -> its verified plan, or False (not eligible, or failed the check)
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fused_guide(guide: Any, reference: Callable[[], dict[str, dict] | None]) -> FusedGuide | None:
    """The verified :class:`FusedGuide` of ``guide``, or None.

    The first time a guide is seen (and again when its prototype or parameters change), the
    fused form is checked against ``reference()`` — one run of the guide through Pyro returning
    its recorded sites like :meth:`FusedGuide.run` (None if not reparameterized) — from the same
    random state (restored after both, so the step then draws what it would have): the same
    sites in the same order, and every value and log-density equal bit for bit with the same
    ``requires_grad``, else the guide stays on Pyro's path for good. None also when a handler
    around this call is not one the fused form reproduces (that step goes through Pyro).
    """
    try:
        plan = _PLANS.get(guide)
    except TypeError:  # not weak-referenceable
        return None
    if plan is False or not _known_handlers():  # unknown handlers: this step through Pyro
        return None
    if plan is not None and plan.current():
        return plan
    if not _eligible(guide):
        _PLANS[guide] = False
        return None
    plan = _verified(guide, reference)
    _PLANS[guide] = plan if plan is not None else False
    return plan


def _verified(guide: Any, reference: Callable[[], dict[str, dict] | None]) -> FusedGuide | None:
    """A plan of ``guide`` built after one run through Pyro (which syncs a ``PyroModule``'s
    parameters with the param store) and checked against that run, or None."""
    devices = _devices(guide)
    state = _rng_state(devices)
    expected = reference()
    _set_rng_state(state, devices)
    try:
        plan = FusedGuide(guide)
        sites = plan.run()
    except (AttributeError, KeyError, NotImplementedError, TypeError):
        sites = None
    finally:
        _set_rng_state(state, devices)  # the step itself then draws as if nothing had run
    if sites is None or expected is None or list(sites) != list(expected):
        return None
    for name, site in sites.items():
        ref = expected[name]
        if site["infer"].get("is_auxiliary", False) != ref["infer"].get("is_auxiliary", False):
            return None
        if ref["is_observed"] or site["scale"] != ref["scale"] or ref["mask"] is not None:
            return None
        if not _identical(site["value"], ref["value"]):
            return None
        if not _identical(_log_prob(site), _log_prob(ref)):
            return None
    return plan


def _log_prob(site: dict[str, Any]) -> torch.Tensor:
    return site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])


def _identical(a: Any, b: Any) -> bool:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and a.requires_grad == b.requires_grad
        and torch.equal(a.detach(), b.detach())
    )


def _devices(guide: Any) -> list[torch.device]:
    params: Iterator[torch.Tensor] = guide.parameters()
    return sorted({p.device for p in params if p.device.type == "cuda"}, key=str)


def _rng_state(devices: list[torch.device]) -> tuple:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_rng_state(state: tuple, devices: list[torch.device]) -> None:
    torch.set_rng_state(state[0])
    for d, s in zip(devices, state[1]):
        torch.cuda.set_rng_state(s, d)
