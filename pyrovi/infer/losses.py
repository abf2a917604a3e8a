"""A lean implementation of Pyro's ``Trace_ELBO`` estimator for reparameterized guides."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoContinuous, AutoNormal
from pyro.infer.elbo import ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from pyro.poutine.util import is_validation_enabled

from pyrovi.infer.fused_guides import fused_guide

__all__ = ["FastTrace_ELBO"]


def _is_subsample(msg: dict[str, Any]) -> bool:
    return isinstance(msg["fn"], _Subsample)


class _GuideRecorder(Messenger):
    """Records the guide's sample sites (name -> message)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: dict[str, dict[str, Any]] = {}
        self.reparameterized = True

    def _postprocess_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample" or _is_subsample(msg):
            return
        if not msg["is_observed"]:
            fn = msg["fn"]
            if not getattr(fn, "has_rsample", False) or msg["infer"].get("enumerate"):
                self.reparameterized = False
        self.sites[msg["name"]] = msg


class _ModelReplayer(Messenger):
    """Replays the guide's values at the model's latent sites and records the model's sites."""

    def __init__(self, guide_sites: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.guide_sites = guide_sites
        self.sites: list[dict[str, Any]] = []

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            site = self.guide_sites.get(msg["name"])
            if site is not None:
                msg["value"] = site["value"]
                msg["done"] = True

    def _postprocess_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not _is_subsample(msg):
            self.sites.append(msg)


def _log_prob_sum(site: dict[str, Any]) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


def _quiet_plate_guess(elbo: ELBO) -> AbstractContextManager:
    """Hide Pyro's INFO line "Guessed max_plate_nesting = N", which ``elbo`` logs to stderr when
    it still has to guess (vectorized particles, no ``max_plate_nesting``): Pyro's guess is what
    the user wants, so the line is noise. Once guessed, nothing is done."""
    if not (elbo.vectorize_particles and elbo.max_plate_nesting == float("inf")):
        return nullcontext()
    return _log_level(logging.getLogger("pyro.infer.elbo"), logging.WARNING)


@contextmanager
def _log_level(log: logging.Logger, level: int) -> Iterator[None]:
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)


class FastTrace_ELBO(ELBO):
    """Pyro's ``Trace_ELBO`` estimator with less bookkeeping per step.

    For guides whose latent sites are all reparameterized, the loss is exactly Trace_ELBO's:
    ``-(Σ_model log p - Σ_guide log q)`` with each site's scale and mask, averaged over
    ``num_particles`` (vectorized over an outer plate when ``vectorize_particles=True``). The
    same random draws give the same loss and gradients as ``Trace_ELBO``; only Pyro's trace data
    structure and per-site checks are skipped. When Pyro validation is enabled, or a guide site is
    not reparameterized (score-function gradients), the computation is delegated to
    ``pyro.infer.Trace_ELBO`` itself, so checks and semantics are never lost. ``fit`` runs its
    first step with validation enabled and the rest on this fast path.

    Args:
        num_particles: Number of samples per ELBO estimate.
        vectorize_particles: Draw the particles in one vectorized pass.
        max_plate_nesting: As in Pyro (guessed on the first call when left infinite).
        fused: Evaluate Pyro's ``AutoNormal`` and ``AutoContinuous`` guides (``AutoDiagonalNormal``,
            :class:`~pyrovi.guides.FlowGuide`, ...) without Pyro's handlers
            (:mod:`pyrovi.infer.fused_guides`): the same draws, loss and gradients, checked bit
            for bit against Pyro once per guide, at a fraction of the per-site cost. False
            always runs the guide through Pyro.
    """

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool = False,
        max_plate_nesting: float = float("inf"),
        fused: bool = True,
        **kwargs: Any,
    ) -> None:
        if not isinstance(fused, bool):
            raise TypeError(f"fused must be True or False, got {fused!r}")
        self.fused = fused
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        super().__init__(
            num_particles=int(num_particles),
            vectorize_particles=vectorize_particles,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )
        self._fallback = Trace_ELBO(
            num_particles=int(num_particles),
            vectorize_particles=vectorize_particles,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        return self._fallback._get_trace(model, guide, args, kwargs)

    def _particle_loss(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> torch.Tensor | None:
        guide_sites = self._run_guide(guide, args, kwargs)
        if guide_sites is None:
            return None
        replayer = _ModelReplayer(guide_sites)
        with replayer:
            model(*args, **kwargs)
        elbo = None  # (not 0.0: ``0.0 + t`` is one more op to run and to differentiate)
        for site in replayer.sites:
            term = _log_prob_sum(site)
            elbo = term if elbo is None else elbo + term
        for site in guide_sites.values():
            if not site["is_observed"]:
                term = _log_prob_sum(site)
                elbo = -term if elbo is None else elbo - term
        return torch.zeros(()) if elbo is None else -elbo

    def _run_guide(self, guide: Callable, args: tuple, kwargs: dict):
        """The guide's sites by name, in trace order (None when a site is not reparameterized).
        A recognised autoguide is evaluated without Pyro's handlers
        (:mod:`pyrovi.infer.fused_guides`)."""

        def through_pyro():
            recorder = _GuideRecorder()
            with recorder:
                guide(*args, **kwargs)
            return recorder.sites if recorder.reparameterized else None

        if self.fused and isinstance(guide, (AutoNormal, AutoContinuous)):
            plan = fused_guide(guide, through_pyro)
            if plan is not None:
                sites = plan.run()
                if sites is not None:
                    return sites
        return through_pyro()

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        """Differentiable negative ELBO (a scalar tensor)."""
        if is_validation_enabled():
            with _quiet_plate_guess(self._fallback):
                return self._fallback.differentiable_loss(model, guide, *args, **kwargs)
        if self.vectorize_particles and self.num_particles > 1:
            if self.max_plate_nesting == float("inf"):
                with _quiet_plate_guess(self):
                    self._guess_max_plate_nesting(model, guide, args, kwargs)
            losses = [
                self._particle_loss(
                    self._vectorized_num_particles(model),
                    self._vectorized_num_particles(guide),
                    args,
                    kwargs,
                )
            ]
        else:
            losses = [
                self._particle_loss(model, guide, args, kwargs) for _ in range(self.num_particles)
            ]
        if any(loss is None for loss in losses):
            return self._fallback.differentiable_loss(model, guide, *args, **kwargs)
        if self.num_particles == 1:
            return losses[0]
        return sum(losses) / self.num_particles

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Negative ELBO as a float (no gradients)."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Negative ELBO as a float; gradients are accumulated into the parameters."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return float(loss.detach())
