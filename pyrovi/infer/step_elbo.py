"""``StochasticStep_ELBO``: an unbiased ELBO for chain models that evaluates one step per datapoint.

A model whose log-density is a sum over the ``T`` steps of a chain (a diffusion model, see
:class:`~pyrovi.models.DDPM`) can be trained on one uniformly drawn step ``t`` per datapoint,
weighted by ``T``: ``E_t[T · L_t] = Σ_t L_t``. Pyro's ``Trace_ELBO`` cannot know that, so the
model and guide ask for the step themselves through :func:`chain_steps`::

    with pyro.plate("data", B):
        t = chain_steps((B,), T, x.device)
        if t is None:
            ...  # outside StochasticStep_ELBO: the full chain, as before
        else:
            ...  # only the sites of step t (scaled by T), the unscaled end terms

Outside the loss :func:`chain_steps` returns None, so the same model and guide still run their
full chain under any other estimator.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.elbo import ELBO

from pyrovi._validation import describe
from pyrovi.infer.losses import FastTrace_ELBO

__all__ = ["StochasticStep_ELBO", "chain_steps"]

#: Keyword arguments of ``pyro.infer.ELBO`` (those passed on to the Trace_ELBO fallback).
_ELBO_OPTIONS = frozenset(inspect.signature(ELBO.__init__).parameters) - {"self"}


class _StepDraws:
    """The steps drawn for one particle evaluation, keyed by (shape, num_steps, device), and
    which of the model and the guide asked for them."""

    __slots__ = ("steps", "role", "asked")

    def __init__(self) -> None:
        self.steps: dict[tuple, torch.Tensor] = {}
        self.role: str | None = None  # None: a call from outside the loss's wrappers
        self.asked: set[str | None] = set()

    def draw(self, shape: tuple[int, ...], num_steps: int, device: Any) -> torch.Tensor:
        self.asked.add(self.role)
        key = (shape, num_steps, _device(device))
        t = self.steps.get(key)
        if t is None:
            t = torch.randint(1, num_steps + 1, shape, device=key[2])
            self.steps[key] = t
        return t

    def wrap(self, fn: Callable, role: str) -> Callable:
        """``fn`` recording that calls to :func:`chain_steps` come from ``role``."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before, self.role = self.role, role
            try:
                return fn(*args, **kwargs)
            finally:
                self.role = before

        return wrapped


def _device(device: torch.device | str | None) -> torch.device:
    """``device`` with an index where it has one (``"cuda"`` -> ``cuda:0``), so that a model and
    a guide asking for the same device share the steps; None is torch's default device."""
    device = torch.get_default_device() if device is None else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


_ACTIVE: ContextVar[_StepDraws | None] = ContextVar("pyrovi_chain_steps", default=None)


def _batch_shape(batch_shape: Any) -> tuple[int, ...]:
    if isinstance(batch_shape, torch.Size):
        return tuple(batch_shape)
    ok = isinstance(batch_shape, Sequence) and not isinstance(batch_shape, str | bytes)
    if ok:
        ok = all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool | np.bool_) and n >= 0
            for n in batch_shape
        )
    if not ok:
        raise ValueError(
            "batch_shape must be a torch.Size or a tuple of non-negative integers, e.g. (B,), "
            f"got {describe(batch_shape)}"
        )
    return tuple(int(n) for n in batch_shape)


def chain_steps(
    batch_shape: Sequence[int] | torch.Size,
    num_steps: int,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """The chain step to evaluate per datapoint, or None for the whole chain.

    Models and guides call it to support :class:`StochasticStep_ELBO`. Outside that loss's
    evaluation it returns None (nothing is drawn): run the full chain. Inside, it returns integer
    steps ``t`` drawn uniformly from ``1..num_steps`` with torch's global generator (so
    ``pyro.set_rng_seed`` and ``fit(seed=...)`` reproduce them) at the first request of a
    particle evaluation: the guide (which runs first) and the model get the very same tensor
    when they ask with the same ``batch_shape``, ``num_steps`` and ``device``. The model and
    guide must then emit only the sites of step ``t``, with the log-densities of the per-step
    terms scaled by ``num_steps`` (e.g. ``pyro.poutine.scale(scale=T)``), so that the loss stays
    unbiased for the full chain's. Vectorized particles (an outer particle plate) share the
    steps: ``batch_shape`` does not include the particle dimension.

    Args:
        batch_shape: Shape of the steps, usually ``(B,)`` for the datapoints of
            ``pyro.plate("data", B)``.
        num_steps: Number of steps T of the chain (steps are 1-based).
        device: Device of the steps (that of the data; None: torch's default device).

    Returns:
        None outside :class:`StochasticStep_ELBO`; else an int64 tensor of shape
        ``batch_shape`` with values in ``1..num_steps``.

    Raises:
        ValueError: ``batch_shape`` is not a sequence of non-negative integers, or
            ``num_steps`` is not a positive integer.
    """
    shape = _batch_shape(batch_shape)
    if (
        not isinstance(num_steps, numbers.Integral)
        or isinstance(num_steps, bool | np.bool_)
        or num_steps < 1
    ):
        raise ValueError(f"num_steps must be a positive integer, got {describe(num_steps)}")
    draws = _ACTIVE.get()
    if draws is None:
        return None
    return draws.draw(shape, int(num_steps), device)


@contextmanager
def _step_draws() -> Iterator[_StepDraws]:
    """One particle evaluation: :func:`chain_steps` draws its steps (once) inside."""
    draws = _StepDraws()
    token = _ACTIVE.set(draws)
    try:
        yield draws
    finally:
        _ACTIVE.reset(token)


def _check_asked(draws: _StepDraws, loss_name: str) -> None:
    """Raise ``ValueError`` unless both the model and the guide asked for steps."""
    if len(draws.asked) == 2 or None in draws.asked:
        return
    if not draws.asked:
        raise ValueError(
            f"{loss_name}: neither the model nor the guide asked for chain steps "
            "(pyrovi.infer.chain_steps), so they do not support stochastic steps. The loss needs "
            "a model and guide that evaluate one random step of their chain per datapoint when "
            "chain_steps returns steps, such as pyrovi.models.DDPM with DDPM.guide; train other "
            "models with FastTrace_ELBO or Trace_ELBO"
        )
    asked, other = ("guide", "model") if "guide" in draws.asked else ("model", "guide")
    raise ValueError(
        f"{loss_name}: the {asked} asked for chain steps (pyrovi.infer.chain_steps) but the "
        f"{other} did not, so their sites do not match; both must evaluate the same random step "
        "of the chain (e.g. pyrovi.models.DDPM with DDPM.guide)"
    )


def _with_steps(
    evaluate: Callable, model: Callable, guide: Callable, args: tuple, kwargs: dict, *, ran=True
):
    """``evaluate(model, guide, args, kwargs)`` inside one :func:`_step_draws` context (the model
    and guide wrapped to record who asks), then :func:`_check_asked` unless it returned None
    (``ran=False``: it returns None also when both ran)."""
    with _step_draws() as draws:
        out = evaluate(draws.wrap(model, "model"), draws.wrap(guide, "guide"), args, kwargs)
    if out is not None or not ran:
        _check_asked(draws, StochasticStep_ELBO.__name__)
    return out


class _StepTrace_ELBO(Trace_ELBO):
    """Pyro's ``Trace_ELBO`` with each particle (and the plate-nesting guess) evaluated inside
    :func:`_step_draws`: the path :class:`StochasticStep_ELBO` takes under Pyro validation."""

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
        return _with_steps(super()._get_trace, model, guide, args, kwargs)

    def _guess_max_plate_nesting(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> None:
        _with_steps(super()._guess_max_plate_nesting, model, guide, args, kwargs, ran=False)


class StochasticStep_ELBO(FastTrace_ELBO):
    """``Trace_ELBO`` for chain models on one random step per datapoint (unbiased).

    For a model/guide pair whose log-densities sum over the ``T`` steps of a chain, each
    particle evaluates a single step ``t ~ U{1..T}`` per datapoint instead of all of them: the
    model and guide ask for it with :func:`chain_steps` and emit only that step's sites, scaled
    by ``T`` (plus unscaled terms at the ends of the chain, such as a prior KL). ``−loss`` is then
    an unbiased Monte Carlo estimate of the full-chain ELBO, and for a reparameterized guide its
    gradient is unbiased for the full-chain ELBO's gradient; each step costs one step of the
    chain (about ``T`` times less than ``Trace_ELBO``) at the price of more variance. This is the
    estimator of :meth:`pyrovi.models.DDPM.loss` (``kind="elbo"``) made usable as ``fit``'s
    loss::

        fit(ddpm, ddpm.guide, x, loss=StochasticStep_ELBO())

    Otherwise as :class:`~pyrovi.infer.FastTrace_ELBO`: sites' scales and masks (``fit``'s
    minibatch scaling, β) are honoured, and under Pyro validation (``fit``'s first step) the
    evaluation goes through ``pyro.infer.Trace_ELBO`` with its checks, on the same single step.

    With ``vectorize_particles=True`` the particles share the steps ``t`` (the model and guide
    ask for steps of shape ``(B,)``, not ``(num_particles, B)``); each particle is still
    unbiased, so is their mean, but the variance of ``t`` is not averaged down. Sequential
    particles draw their own steps.

    Args:
        num_particles: Number of samples per ELBO estimate (each with its own steps, unless
            vectorized).
        vectorize_particles: Draw the particles in one vectorized pass (sharing the steps).
        max_plate_nesting: As in Pyro (guessed on the first call when left infinite).
        **kwargs: Further arguments of :class:`~pyrovi.infer.FastTrace_ELBO` (Pyro's
            ``ELBO`` options also go to the ``Trace_ELBO`` used under validation).

    Raises:
        ValueError: From a loss evaluation, when the model and guide do not both ask for steps
            with :func:`chain_steps` (they do not support stochastic steps, e.g.
            :class:`~pyrovi.models.MarkovChainVAE`, whose learned guide cannot skip to step t).
    """

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool = False,
        max_plate_nesting: float = float("inf"),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            num_particles=num_particles,
            vectorize_particles=vectorize_particles,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )
        # FastTrace_ELBO delegates to self._fallback (Trace_ELBO) under validation: the same
        # with each particle inside a chain_steps context. Only Pyro's own ELBO options go to it.
        self._fallback = _StepTrace_ELBO(
            num_particles=int(num_particles),
            vectorize_particles=vectorize_particles,
            max_plate_nesting=max_plate_nesting,
            **{k: v for k, v in kwargs.items() if k in _ELBO_OPTIONS},
        )

    def _particle_loss(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> torch.Tensor | None:
        # None: a guide site is not reparameterized, the model did not run (nothing to check)
        return _with_steps(super()._particle_loss, model, guide, args, kwargs)

    def _guess_max_plate_nesting(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> None:
        _with_steps(super()._guess_max_plate_nesting, model, guide, args, kwargs, ran=False)
