"""The trainable parameters of a model and guide, as :func:`pyrovi.infer.fit` finds and saves them.

Parameters come from two places: the ``nn.Module`` parameters of a model or guide that is a
module (or a method of one), and the ``pyro.param`` sites that a run of the model and guide
touches (``pyro.param``, ``pyro.module``, ``PyroModule`` and autoguide parameters). Names are
``model.<name>``/``guide.<name>`` for the first and ``param.<name>`` for the second.

Pyro's param store is global, so a second model trained in one session meets the first one's
entries. Two cases are handled here:

* ``pyro.module("encoder", net)`` of a new ``net`` finds ``encoder$$$...`` entries of an earlier
  module: the new module computes with its own parameters (Pyro does not load the stored values
  into it), so those are what is trained, and the stale entries are replaced by them, as a
  cleared store would hold them.
* A ``PyroModule`` (an autoguide) or ``pyro.param`` site whose name an earlier, different model
  or guide trained with :func:`fit`: Pyro hands the new one the earlier values, so both now share
  them. This is Pyro's semantics; a warning says how to avoid it.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pyro
import torch
from pyro import poutine
from torch import nn

from pyrovi.infer.checkpoint import CheckpointError

__all__ = [
    "collect_parameters",
    "snapshot",
    "module_state",
    "module_of",
    "restore",
    "mismatches",
    "load_into",
]

# param-store name -> (weak reference to the stored tensor, weak references to the model and guide
# objects that fit trained it with); void once the store holds another tensor under that name
_OWNERS: dict[str, tuple[weakref.ref, tuple[weakref.ref, ...]]] = {}


def owner_of(fn: Callable) -> Any:
    """The object behind a model or guide: the instance of a bound method, else ``fn``."""
    return getattr(fn, "__self__", fn)


def module_of(fn: Callable) -> nn.Module | None:
    """The ``nn.Module`` that ``fn`` is, or whose method it is; else None."""
    owner = owner_of(fn)
    return owner if isinstance(owner, nn.Module) else None


def _weak(obj: Any) -> weakref.ref | None:
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


def _unconstrained(value: Any) -> torch.Tensor:
    getter = getattr(value, "unconstrained", None)
    return getter() if callable(getter) else value


def _repair_stale_module_params(trace: poutine.Trace, module_params: set[int]) -> list[str]:
    """Point ``pyro.module`` entries that an earlier module left in the store at the parameters
    the module in use computes with; return their names."""
    store = pyro.get_param_store()
    stale = []
    for name, site in trace.nodes.items():
        if site["type"] != "param" or "$$$" not in name or len(site["args"]) < 2:
            continue  # only pyro.module registrations (module$$$param names)
        own, stored = site["args"][1], _unconstrained(site["value"])
        if not isinstance(own, nn.Parameter) or own is stored or id(stored) in module_params:
            continue  # not pyro.module, or the module computes with the stored tensor
        del store[name]
        store.setdefault(name, own)
        if store._params[name] is not own:  # pragma: no cover - a constraint transformed it
            raise RuntimeError(f"could not register parameter {name!r} in Pyro's param store")
        site["value"] = own
        stale.append(name)
    return stale


def _warn_shared(names: list[str], model: Callable, guide: Callable) -> None:
    mine = {id(owner_of(model)), id(owner_of(guide))}
    store = pyro.get_param_store()
    shared = []
    for name in names:
        record = _OWNERS.get(name)
        if record is None or name not in store or record[0]() is not store._params[name]:
            continue  # not trained by fit, or the store was cleared since
        owners = [r() for r in record[1]]
        if not any(o is not None and id(o) in mine for o in owners):
            shared.append(name)
    if shared:
        listed = ", ".join(repr(n) for n in shared[:4]) + (", ..." if len(shared) > 4 else "")
        warnings.warn(
            f"Pyro's param store already holds {listed} from another model or guide trained "
            "earlier in this session (two guides of the same class, e.g. two AutoNormal, share "
            "param-store names): this one starts from, and will overwrite, those values. Call "
            "pyro.clear_param_store() before building a new model and guide, or keep module "
            "parameters local with pyro.settings.set(module_local_params=True)",
            stacklevel=5,
        )


def _claim(names: list[str], model: Callable, guide: Callable) -> None:
    refs = tuple(r for r in (_weak(owner_of(model)), _weak(owner_of(guide))) if r is not None)
    store = pyro.get_param_store()
    for name in names:
        if name in store:
            _OWNERS[name] = (weakref.ref(store._params[name]), refs)


def collect_parameters(
    model: Callable, guide: Callable, param_trace: poutine.Trace, existing: set[str]
) -> dict[str, torch.Tensor]:
    """The parameters a model and guide train with, from a trace of their ``param`` sites.

    Args:
        model: The model (a module, a method of a module, or a function).
        guide: The guide.
        param_trace: ``poutine.trace(param_only=True)`` of one loss evaluation.
        existing: Names in Pyro's param store before that evaluation.

    Returns:
        Name -> leaf tensor: ``model.*``/``guide.*`` module parameters, then ``param.*`` sites in
        name order; each tensor once.
    """
    named: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for prefix, fn in (("model", model), ("guide", guide)):
        module = module_of(fn)
        if module is None:
            continue
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in seen:
                named[f"{prefix}.{name}"] = p
                seen.add(id(p))
    stale = _repair_stale_module_params(param_trace, seen)
    used = [n for n in sorted(param_trace.nodes) if param_trace.nodes[n]["type"] == "param"]
    _warn_shared([n for n in used if n in existing and n not in stale], model, guide)
    _claim(used, model, guide)
    for name in used:
        p = _unconstrained(param_trace.nodes[name]["value"])
        if p.requires_grad and id(p) not in seen:
            named[f"param.{name}"] = p
            seen.add(id(p))
    return named


def snapshot(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of parameter values."""
    return {k: v.detach().cpu().clone() for k, v in params.items()}


def module_state(fn: Callable) -> dict[str, torch.Tensor] | None:
    """``state_dict`` (parameters and buffers) on CPU of a module or of the module whose method
    ``fn`` is; ``None`` for a function."""
    module = module_of(fn)
    if module is None:
        return None
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def mismatches(
    expected: dict[str, torch.Tensor], saved: Any, limit: int = 5, strict: bool = False
) -> list[str]:
    """What keeps ``saved`` (name -> tensor) from being copied into ``expected``: missing names,
    entries that are not tensors, other shapes (at most ``limit`` of each); with any of those,
    or with ``strict``, the names ``saved`` holds beyond ``expected`` too."""
    if not isinstance(saved, dict):
        return [f"it holds a {type(saved).__name__}, not a dict of tensors"]
    problems = []
    missing = [k for k in expected if k not in saved]
    if missing:
        problems.append(f"missing {_listed(missing, limit)}")
    bad = [k for k in expected if k in saved and not isinstance(saved[k], torch.Tensor)]
    if bad:
        problems.append(f"not tensors: {_listed(bad, limit)}")
    shapes = [
        f"{k} {tuple(saved[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if isinstance(saved.get(k), torch.Tensor) and saved[k].shape != v.shape
    ]
    if shapes:
        more = f" and {len(shapes) - limit} more" if len(shapes) > limit else ""
        problems.append(f"other shapes: {', '.join(shapes[:limit])}{more}")
    unexpected = [k for k in saved if k not in expected]
    if unexpected and (problems or strict):
        problems.append(f"not in this model and guide: {_listed(unexpected, limit)}")
    return problems


def _listed(names: list[str], limit: int) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{names[:limit]}{more}"


def restore(params: dict[str, torch.Tensor], saved: Any, what: str, dry_run: bool = False) -> None:
    """Copy ``saved`` values into ``params`` (same names and shapes), in place.

    Everything is checked before anything is copied, so a mismatch leaves ``params`` unchanged;
    with ``dry_run`` nothing is copied at all (only the check).

    Raises:
        CheckpointError: (a ``ValueError``) ``saved`` lacks a parameter or holds one of another
            shape; the message lists them.
    """
    problems = mismatches(params, saved)
    if problems:
        raise CheckpointError(
            f"{what} was saved for other parameters ({'; '.join(problems)}): was it written for "
            "another model or guide?"
        )
    if dry_run:
        return
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(saved[k])


def load_into(model: Callable, guide: Callable, params_state: dict[str, torch.Tensor]) -> None:
    """Copy a parameter snapshot (``FitResult.best_state`` or a checkpoint's ``params``) back.

    Names follow :func:`fit`: ``model.<name>``/``guide.<name>`` for module parameters and
    ``param.<name>`` for ``pyro.param`` sites (which must already exist in the param store).
    """
    store = pyro.get_param_store()
    with torch.no_grad():
        for key, value in params_state.items():
            prefix, _, name = key.partition(".")
            if prefix in ("model", "guide"):
                module = module_of(model if prefix == "model" else guide)
                if module is None:
                    raise ValueError(f"params_state has {key!r} but the {prefix} is not a module")
                target = module.get_parameter(name)
            elif prefix == "param":
                if name not in store:
                    raise ValueError(f"params_state has {key!r} but the param store lacks {name!r}")
                target = store._params[name]
            else:
                raise ValueError(f"params_state: unrecognized parameter name {key!r}")
            target.copy_(value.to(target.device))
