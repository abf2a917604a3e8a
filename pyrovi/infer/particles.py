"""Many particles at once, or one at a time: passes of
:func:`pyrovi.infer.importance.evaluate_pass`.

:func:`run_passes` evaluates ``num_samples`` particles in passes. With ``vectorize=None`` it
draws them in an outer ``pyro.plate`` first and, when the model cannot run under that plate (it
raises) or mixes the particles (particle 0 of the first pass scores differently when evaluated
alone), warns once and starts again one particle at a time. :func:`log_weights` is the common
case: the log importance weights of the draws.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyro
import torch

from pyrovi.infer.importance import (
    Layout,
    NotVectorizableError,
    SubsampleFixer,
    UnsupportedModelError,
    WeightPass,
    base_distribution,
    evaluate_pass,
)

__all__ = [
    "Passes",
    "check_vectorize",
    "fallback_warning",
    "log_weights",
    "pass_sizes",
    "resolve_vectorize",
    "run_passes",
    "weight_passes",
]


def _is_delta(fn: Any) -> bool:
    return isinstance(base_distribution(fn), pyro.distributions.Delta)


def _first_particle(site: dict[str, Any], nesting: int, ndim: int) -> torch.Tensor:
    """Particle 0 of a vectorized site value, with as many dimensions as ``ndim``."""
    value = site["value"]
    event_dim = len(getattr(site["fn"], "event_shape", ()))
    axis = value.dim() - event_dim - (nesting + 1)
    if axis >= 0:
        value = value.select(axis, 0)
    while value.dim() > ndim and value.shape[0] == 1:
        value = value.squeeze(0)
    return value


def _agree(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Equal up to rounding: relative 1e-3 in single (or lower) precision, 1e-8 in double."""
    if a is None or b is None:
        return a is None and b is None
    double = a.dtype == torch.float64 and b.dtype == torch.float64
    tol = 1e-8 if double else 1e-3
    a, b = a.double(), b.double().to(a.device)
    same = (a == b) | ((a - b).abs() <= tol * (1 + b.abs()))
    return bool(same.all())


def _check_first_particle(run: Callable, vec: WeightPass, layout: Layout) -> None:
    """Replay particle 0 of a vectorized pass one at a time: the scores must agree."""
    values = {}
    for name, s in vec.guide_sites.items():
        if s["is_observed"] or _is_delta(s["fn"]):
            continue
        ndim = layout.guide_sites[name]["value"].dim() if name in layout.guide_sites else 0
        values[name] = _first_particle(s, layout.nesting, ndim)
    seq = run(1, vectorized=False, values=values, predictive=False, observations=False)
    checks = [("log p(x, z)", vec.log_p, seq.log_p), ("log q(z)", vec.log_q, seq.log_q)]
    checks.append(("per-datapoint log weights", vec.pointwise, seq.pointwise))
    for what, v, s in checks:
        v = None if v is None else v[:1]
        if not _agree(v, s):
            raise NotVectorizableError(
                f"particle 0 of the vectorized pass has {what} {v.flatten()[:4].tolist()}, the "
                f"same draw evaluated alone {s.flatten()[:4].tolist()}: the model or guide mixes "
                "the particles of the outer plate (e.g. reshapes or reduces over all dimensions)"
            )


def pass_sizes(num_samples: int, per_pass: int) -> list[int]:
    """Particles per pass: ``num_samples`` split into passes of at most ``per_pass``."""
    per_pass = max(1, int(per_pass))
    return [min(per_pass, num_samples - s) for s in range(0, num_samples, per_pass)]


def fallback_warning(
    caller: str,
    num_samples: int,
    err: Exception,
    hint: str = "Pass vectorize=False to skip the vectorized attempt.",
) -> None:
    """Warn (at the user's call) that ``caller`` draws its particles one at a time because the
    model failed under the particle plate with ``err``; ``hint`` says how to skip the attempt."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if len(reason) > 300:
        reason = reason[:297] + "..."
    warnings.warn(
        f"{caller}: the model and guide could not be evaluated with the particles vectorized in "
        f"an outer plate ({reason}); evaluating the {num_samples} particles one at a time "
        f"instead (slower).{' ' + hint if hint else ''}",
        UserWarning,
        stacklevel=_outside_pyrovi(),
    )


def _outside_pyrovi() -> int:
    """The ``stacklevel`` of the first caller outside the pyrovi package (the user's call)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def check_vectorize(vectorize: Any) -> bool | None:
    """``vectorize`` must be True, False or None."""
    if vectorize is not None and not isinstance(vectorize, bool):
        raise TypeError(f"vectorize must be True, False or None, got {vectorize!r}")
    return vectorize


def resolve_vectorize(vectorize: bool | None, parallel: bool | None) -> bool | None:
    """``parallel`` is the older name of ``vectorize``."""
    check_vectorize(vectorize)
    if parallel is None:
        return vectorize
    if not isinstance(parallel, bool):
        raise TypeError(f"parallel must be True, False or None, got {parallel!r}")
    if vectorize is not None and vectorize != parallel:
        raise ValueError(
            f"vectorize={vectorize!r} and parallel={parallel!r} disagree: parallel is the older "
            "name of vectorize, pass only vectorize"
        )
    return parallel


@dataclass
class Passes:
    """What :func:`run_passes` returns.

    Attributes:
        results: ``consume(pass)`` of every pass, in order.
        vectorized: Whether the passes were vectorized (False after a fallback).
    """

    results: list[Any]
    vectorized: bool


def run_passes(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    layout: Layout,
    num_samples: int,
    per_pass: int,
    consume: Callable[[WeightPass], Any],
    *,
    vectorize: bool | None,
    caller: str,
    joint: bool = True,
    pointwise: bool = False,
    predictive: bool = False,
    observations: bool = False,
    fixer: SubsampleFixer | None = None,
    check: bool = True,
) -> Passes:
    """Evaluate ``num_samples`` particles in passes and ``consume`` each pass.

    Args:
        model: Pyro model ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        args: Positional arguments.
        kwargs: Keyword arguments.
        layout: From :func:`inspect_model` on the same model and guide.
        num_samples: Particles in all.
        per_pass: Most particles of one vectorized pass.
        consume: Called on every :class:`WeightPass`; may raise
            :class:`NotVectorizableError` for what it records.
        vectorize: True: vectorized passes only (errors propagate); False: one particle per
            pass; None: vectorized, and if that raises or particle 0 scores differently when
            evaluated alone, warn once and start again one particle at a time.
        caller: Name of the public function, for the warning.
        joint: Compute the joint ``log_p`` and ``log_q`` of each pass.
        pointwise: Compute the per-datapoint log weights (local layouts).
        predictive: Draw the observed sites from the model too.
        observations: Compute the pointwise log-likelihood of the observed sites too.
        fixer: Shared plate subsamples (a new one by default).
        check: With ``vectorize=None``, evaluate particle 0 of the first pass alone too and
            compare the scores (catches models that mix the particles without failing).

    Returns:
        :class:`Passes`.
    """
    fixer = fixer if fixer is not None else SubsampleFixer()

    def run(k: int, **overrides: Any) -> WeightPass:
        options = {
            "joint": joint,
            "pointwise": pointwise,
            "predictive": predictive,
            "observations": observations,
        }
        options.update(overrides)
        return evaluate_pass(model, guide, args, kwargs, layout, k, fixer=fixer, **options)

    if vectorize is not False:
        try:
            out = []
            for i, k in enumerate(pass_sizes(num_samples, per_pass)):
                vec = run(k, vectorized=True)
                if i == 0 and vectorize is None and check:
                    _check_first_particle(run, vec, layout)
                out.append(consume(vec))
            return Passes(out, True)
        except UnsupportedModelError:
            raise
        except Exception as err:  # any other failure of the vectorized attempt
            if vectorize:
                raise
            fallback_warning(caller, num_samples, err)
    return Passes([consume(run(1, vectorized=False)) for _ in range(num_samples)], False)


def weight_passes(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    layout: Layout,
    num_samples: int,
    per_pass: int,
    *,
    vectorize: bool | None,
    caller: str,
    check: bool = True,
) -> Passes:
    """The log weights of ``num_samples`` draws, one tensor per pass: ``(k, B)`` per datapoint
    for local layouts, else ``(k,)`` joint ones (see :func:`run_passes` for the arguments)."""
    return run_passes(
        model,
        guide,
        args,
        kwargs,
        layout,
        num_samples,
        per_pass,
        _log_weight,
        vectorize=vectorize,
        caller=caller,
        joint=not layout.local,
        pointwise=layout.local,
        check=check,
    )


def log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    layout: Layout,
    num_samples: int,
    per_pass: int,
    *,
    vectorize: bool | None,
    caller: str,
) -> torch.Tensor:
    """``(S, B)`` per-datapoint log weights for local layouts, else ``(S,)`` joint ones.

    Args:
        model: Pyro model ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        args: Positional arguments.
        kwargs: Keyword arguments.
        layout: From :func:`inspect_model` on the same model and guide.
        num_samples: Draws S.
        per_pass: Most draws of one vectorized pass.
        vectorize: As for :func:`run_passes`.
        caller: Name of the public function, for the warning.

    Returns:
        The log weights in nats.
    """
    passes = weight_passes(
        model,
        guide,
        args,
        kwargs,
        layout,
        num_samples,
        per_pass,
        vectorize=vectorize,
        caller=caller,
    )
    return torch.cat(passes.results)


def _log_weight(p: WeightPass) -> torch.Tensor:
    return p.log_weight
