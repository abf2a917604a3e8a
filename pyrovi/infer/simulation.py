"""What neural posterior and likelihood estimation share: simulating a Pyro model, the map to
unconstrained parameters, and one maximum-likelihood loop for a conditional flow.

:class:`SimulationEstimator` traces the simulator once (parameter supports and sizes, data and
summary shapes), simulates ``(θ, y) ~ p(θ) p(y | θ)`` with ``Predictive``, and fits a conditional
``nflows`` flow ``q(x | c)`` on pairs by Adam with early stopping on a validation split (the best
epoch's parameters are restored). NPE fits ``x = θ`` given ``c = summary(y)``; NLE fits
``x = summary(y)`` given ``c = θ``; each subclass says which in :meth:`_training_data`.

Training uses its own short loop on ``flow.log_prob`` rather than :func:`pyrovi.infer.fit`: it
needs early stopping on a validation split with the best parameters restored (``fit`` records the
best epoch but trains all epochs), and per-step Pyro tracing would be pure overhead for a model
whose only site is observed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro.distributions import constraints
from pyro.infer import Predictive
from torch import nn
from torch.distributions import biject_to
from torch.distributions.transforms import Transform

from pyrovi._checks import check_bool, check_positive, check_probability, check_tensor
from pyrovi._progress import progress_bar
from pyrovi._validation import integer
from pyrovi._validation import positive_int as _positive_int
from pyrovi.distributions.flow_layers import FLOW_KINDS
from pyrovi.infer import checkpoint as _checkpoint
from pyrovi.infer.checkpoint import load_checkpoint, save_checkpoint
from pyrovi.infer.distributed import DistributedContext, init_distributed, shard_bounds
from pyrovi.infer.grad_buckets import overlaps_on
from pyrovi.infer.optim import default_adam

__all__ = [
    "SimulationEstimator",
    "TrainResult",
    "NotTrainedError",
    "simulate",
    "ConstrainTransform",
]


class NotTrainedError(RuntimeError):
    """An estimator (:class:`NPE`, :class:`NLE`) asked for its posterior or likelihood before
    ``train`` (or a trained ``load``): its flow is still at its random initialization."""


# --------------------------------------------------------------------------- simulation


def _check_sites(model: Any, params: Any, observed: Any) -> None:
    """A callable model, a non-empty list of parameter site names and an observed site name."""
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
    if isinstance(params, str) or not params or not all(isinstance(p, str) for p in params):
        raise ValueError(f"params must be a non-empty list of site names, got {params!r}")
    if not isinstance(observed, str):
        raise ValueError(f"observed must be a site name, got {observed!r}")


def simulate(
    model: Callable,
    params: Sequence[str],
    observed: str,
    num_simulations: int,
    *,
    batch_size: int = 1000,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(θ, y) ~ p(θ) p(y | θ)`` from a Pyro model with ``Predictive`` in vectorized batches.

    Args:
        model: Pyro model; called as ``model(*model_args, **model_kwargs)`` with the observed site
            unconditioned. Runs on the device of its tensors (move a ``PyroModule`` with ``.to``).
        params: Names of the parameter sites. Each must have event shape ``()`` or ``(k,)``.
        observed: Name of the observed (simulated-data) site.
        num_simulations: N.
        batch_size: Simulations per ``Predictive(..., parallel=True)`` call.
        model_args: Positional arguments of the model.
        model_kwargs: Keyword arguments of the model.
        progress: Show a tqdm bar over the simulations (only when stderr is a terminal).

    Returns:
        ``theta`` of shape ``(N, D)`` (the parameter sites flattened and concatenated in the order
        of ``params``) and ``y`` of shape ``(N,) + data shape``.
    """
    num_simulations = _positive_int("num_simulations", num_simulations)
    batch_size = _positive_int("batch_size", batch_size)
    check_bool("progress", progress)
    _check_sites(model, params, observed)
    kwargs = model_kwargs or {}
    sites = [*params, observed]
    thetas, ys = [], []
    done = 0
    with progress_bar(
        num_simulations, desc="simulations", progress=progress, unit="sim", leave=False
    ) as bar:
        while done < num_simulations:
            b = min(batch_size, num_simulations - done)
            out = Predictive(model, num_samples=b, parallel=True, return_sites=sites)(
                *model_args, **kwargs
            )
            missing = [s for s in sites if s not in out]
            if missing:
                raise ValueError(f"model has no sample sites {missing} (params/observed)")
            thetas.append(torch.cat([out[p].reshape(b, -1) for p in params], -1))
            ys.append(out[observed])
            done += b
            bar.update(b)
    return torch.cat(thetas), torch.cat(ys)


# --------------------------------------------------------------------------- constrained space


class _StackedSupport(constraints.Constraint):
    """The product of per-slice supports of a concatenated parameter vector."""

    event_dim = 1

    def __init__(self, supports: Sequence[constraints.Constraint], sizes: Sequence[int]) -> None:
        self.supports, self.sizes = list(supports), list(sizes)
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ok = []
        for support, part in zip(self.supports, value.split(self.sizes, -1), strict=True):
            c = support.check(part)
            ok.append(c.reshape(*part.shape[:-1], -1).all(-1) if c.dim() == part.dim() else c)
        return torch.stack(ok, -1).all(-1)


class ConstrainTransform(Transform):
    """Maps a concatenated unconstrained vector to the parameters' supports, slice by slice.

    Slice ``i`` (``sizes[i]`` entries) goes through ``biject_to(supports[i])``; the log-det is
    summed over the vector (``event_dim = 1``).

    Args:
        supports: Support of each parameter site.
        sizes: Number of entries of each site.
    """

    bijective = True
    domain = constraints.real_vector

    def __init__(self, supports: Sequence[constraints.Constraint], sizes: Sequence[int]) -> None:
        super().__init__(cache_size=1)
        self.supports, self.sizes = list(supports), [int(s) for s in sizes]
        self.transforms = [biject_to(s) for s in self.supports]
        self._codomain = _StackedSupport(self.supports, self.sizes)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def codomain(self) -> constraints.Constraint:  # noqa: D102
        return self._codomain

    def _call(self, u: torch.Tensor) -> torch.Tensor:
        parts = u.split(self.sizes, -1)
        return torch.cat([t(p) for t, p in zip(self.transforms, parts, strict=True)], -1)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.sizes, -1)
        return torch.cat([t.inv(p) for t, p in zip(self.transforms, parts, strict=True)], -1)

    def log_abs_det_jacobian(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        total = torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        for t, a, b in zip(
            self.transforms, u.split(self.sizes, -1), x.split(self.sizes, -1), strict=True
        ):
            ld = t.log_abs_det_jacobian(a, b)
            if ld.dim() == a.dim():
                ld = ld.sum(-1)
            total = total + ld
        return total

    def with_cache(self, cache_size: int = 1) -> ConstrainTransform:  # noqa: D102
        return (
            self
            if cache_size == self._cache_size
            else ConstrainTransform(self.supports, self.sizes)
        )


# --------------------------------------------------------------------------- training result


@dataclass
class TrainResult:
    """What :meth:`NPE.train` and :meth:`NLE.train` return.

    Attributes:
        history: Per-epoch ``train_loss`` and ``val_loss`` (mean negative log-density of the
            flow's standardized variable, nats: the parameters for NPE, the summaries for NLE).
        epochs: Epochs run.
        best_epoch: Epoch (1-based) with the lowest validation loss (its parameters are kept).
        best_val_loss: That loss.
        num_simulations: Simulations used (after dropping non-finite ones).
        num_dropped: Simulations dropped for non-finite parameters or summaries.
        timings: ``simulation_s``, ``summary_s``, ``train_s`` (wall seconds).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    best_epoch: int = 0
    best_val_loss: float = math.inf
    num_simulations: int = 0
    num_dropped: int = 0
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- the shared estimator

#: Entries every checkpoint written by :meth:`SimulationEstimator.save` has.
_ENTRIES = ("config", "state", "trained", "theta_dim", "summary_dim")


def _differences(state: dict, est: SimulationEstimator) -> list[str]:
    """What a checkpoint was saved for that the rebuilt estimator does not match."""
    out = []
    if state["theta_dim"] != est.theta_dim:
        out.append(f"saved for {state['theta_dim']} parameters, the model has {est.theta_dim}")
    if state["summary_dim"] != est.summary_dim:
        out.append(
            f"saved for {state['summary_dim']} summaries, the model (and summary) give "
            f"{est.summary_dim}"
        )
    if "sizes" in state and list(state["sizes"]) != list(est.sizes):
        out.append(f"parameter sizes {list(state['sizes'])} saved, {list(est.sizes)} now")
    if "data_shape" in state and list(state["data_shape"]) != list(est.data_shape):
        out.append(f"data shape {tuple(state['data_shape'])} saved, {tuple(est.data_shape)} now")
    if "supports" in state and list(state["supports"]) != [str(c) for c in est.supports]:
        out.append(
            f"parameter supports {list(state['supports'])} saved, "
            f"{[str(c) for c in est.supports]} now"
        )
    return out


def _check_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    return seed


class SimulationEstimator:
    """The part of :class:`~pyrovi.infer.NPE` and :class:`~pyrovi.infer.NLE` that does not depend
    on which way the flow is conditioned: the model's sites, simulation, summaries, the training
    loop, saving and loading. Subclasses build ``self.net`` (an ``nn.ModuleDict`` with a
    ``"flow"``) and say in :meth:`_training_data` what the flow models given what.

    Args:
        model: Pyro model function (or ``PyroModule``) sampling the parameter sites and the observed
            site; called with ``model_args`` for simulation.
        params: Names of the parameter sites (event shape ``()`` or ``(k,)``).
        observed: Name of the observed site.
        summary: Optional fixed map ``(..., *data shape) -> (..., S)``; default: the data itself,
            which must then be a vector ``(S,)`` per simulation.
        device: Device for simulation and training (default: the model's, else CPU).
        model_args: Positional arguments for ``model``.
    """

    #: Name used in messages and progress bars.
    name = "estimator"

    def __init__(
        self,
        model: Callable,
        params: Sequence[str],
        observed: str,
        *,
        summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: Any = None,
        model_args: tuple = (),
    ) -> None:
        _check_sites(model, params, observed)
        if summary is not None and not callable(summary):
            raise ValueError(f"summary must be callable or None, got {summary!r}")
        self.model, self.params, self.observed = model, list(params), observed
        self.summary, self.model_args = summary, tuple(model_args)
        self.device = torch.device(device) if device is not None else self._model_device()
        if isinstance(model, nn.Module):
            model.to(self.device)
        if isinstance(summary, nn.Module):
            summary.to(self.device)

        with torch.no_grad(), pyro.poutine.block():
            trace = pyro.poutine.trace(model).get_trace(*self.model_args)
        missing = [
            n
            for n in [*self.params, observed]
            if n not in trace.nodes or trace.nodes[n]["type"] != "sample"
        ]
        if missing:
            raise ValueError(f"params/observed: the model has no sample sites {missing}")
        self.supports, self.sizes, self.priors, self.site_shapes = [], [], [], []
        for name in self.params:
            site = trace.nodes[name]
            shape = site["value"].shape
            if len(shape) > 1:
                raise ValueError(
                    f"params: site {name!r} has shape {tuple(shape)}; only () or (k,) are supported"
                )
            self.supports.append(site["fn"].support)
            self.priors.append(site["fn"])
            self.site_shapes.append(tuple(shape))
            self.sizes.append(int(math.prod(shape)))
        self.theta_dim = sum(self.sizes)
        self.data_shape = tuple(trace.nodes[observed]["value"].shape)
        s = self._summarize(trace.nodes[observed]["value"].unsqueeze(0).float())
        if s.dim() != 2:
            raise ValueError(
                f"summary(y) must be a vector per simulation, got shape {tuple(s.shape[1:])} for "
                f"data of shape {self.data_shape}; pass a summary function or flatten the data"
            )
        self.summary_dim = int(s.shape[-1])
        self.constrain = ConstrainTransform(self.supports, self.sizes)
        self.trained = False
        self.net: nn.ModuleDict

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _flow_settings(
        flow: str, num_layers: int, hidden_features: int, num_bins: int
    ) -> dict[str, Any]:
        """Checked flow options, as saved in the configuration."""
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        return {
            "flow": flow,
            "num_layers": _positive_int("num_layers", num_layers),
            "hidden_features": _positive_int("hidden_features", hidden_features),
            "num_bins": _positive_int("num_bins", num_bins),
        }

    def _model_device(self) -> torch.device:
        if isinstance(self.model, nn.Module):
            for t in (*self.model.parameters(), *self.model.buffers()):
                return t.device
        return torch.device("cpu")

    def _summarize(self, y: torch.Tensor) -> torch.Tensor:
        s = y if self.summary is None else self.summary(y)
        return s.to(torch.get_default_dtype()) if not s.is_floating_point() else s

    def summarize(self, y: torch.Tensor, batch_size: int = 10_000) -> torch.Tensor:
        """``summary(y)`` for ``y`` of shape ``(N,) + data shape``, in chunks: ``(N, S)``."""
        batch_size = _positive_int("batch_size", batch_size)
        with torch.no_grad():
            parts = [
                self._summarize(y[i : i + batch_size].to(self.device))
                for i in range(0, len(y), batch_size)
            ]
        return torch.cat(parts).float()

    def unconstrain(self, theta: torch.Tensor) -> torch.Tensor:
        """Constrained ``(..., D)`` parameters to unconstrained space (inverse ``biject_to``)."""
        return self.constrain.inv(theta)

    def _split_sites(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{site: value}`` from concatenated ``(..., D)`` parameters, each in its site shape."""
        return {
            n: part.reshape(*part.shape[:-1], *shape)
            for n, part, shape in zip(
                self.params, theta.split(self.sizes, -1), self.site_shapes, strict=True
            )
        }

    def prior_log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """``log p(θ)`` of concatenated parameters ``(..., D)`` under the model's priors.

        The prior of each parameter site is the distribution the model drew it from in one trace
        (so a site's prior must not depend on the values of other sites). Outside the support the
        result is ``−inf``.
        """
        batch = theta.shape[:-1]
        total = torch.zeros(batch, dtype=theta.dtype, device=theta.device)
        for prior, value in zip(self.priors, self._split_sites(theta).values(), strict=True):
            inside = prior.support.check(value).reshape(*batch, -1).all(-1)
            anchor = biject_to(prior.support)(torch.zeros_like(value))
            mask = inside.reshape(batch + (1,) * (value.dim() - len(batch)))
            lp = prior.log_prob(torch.where(mask, value, anchor)).reshape(*batch, -1).sum(-1)
            total = total + torch.where(inside, lp, torch.full_like(lp, -math.inf))
        return total

    def simulate(
        self, num_simulations: int, batch_size: int = 1000, *, progress: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(θ, y)`` from the model's prior predictive: ``(N, D)`` and ``(N,) + data shape``.

        Args:
            num_simulations: N.
            batch_size: Simulations per ``Predictive`` call.
            progress: Show a tqdm bar (only when stderr is a terminal).
        """
        return simulate(
            self.model,
            self.params,
            self.observed,
            num_simulations,
            batch_size=batch_size,
            model_args=self.model_args,
            progress=progress,
        )

    def simulate_at(self, theta: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Data ``(N,) + data shape`` simulated at given parameters ``(N, D)`` (constrained).

        Runs the model with the parameter sites conditioned on the rows of ``theta``
        (``Predictive`` with ``posterior_samples``), in batches of ``batch_size``.
        """
        check_tensor("theta", theta)
        if theta.dim() != 2 or theta.shape[-1] != self.theta_dim:
            raise ValueError(
                f"theta must have shape (N, {self.theta_dim}), got {tuple(theta.shape)}"
            )
        batch_size = _positive_int("batch_size", batch_size)
        out = []
        for i in range(0, theta.shape[0], batch_size):
            rows = theta[i : i + batch_size].to(self.device)
            values = self._split_sites(rows)
            pred = Predictive(
                self.model, posterior_samples=values, parallel=True, return_sites=[self.observed]
            )
            out.append(
                pred(*self.model_args)[self.observed].reshape(rows.shape[0], *self.data_shape)
            )
        return torch.cat(out)

    def _check_trained(self, what: str) -> None:
        if not self.trained:
            raise NotTrainedError(
                f"{self.name}.{what}: the estimator is not trained (its flow is at its random "
                f"initialization); call train() or {self.name}.load(...) first"
            )

    # ------------------------------------------------------------------ training

    def _training_data(
        self, theta: torch.Tensor, u: torch.Tensor, s: torch.Tensor, train_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, context)`` rows the flow is fitted on; fits the standardizations on the training
        rows ``train_idx`` when the estimator is not yet trained."""
        raise NotImplementedError

    def train(
        self,
        num_simulations: int | None = None,
        *,
        theta: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        simulation_batch_size: int = 1000,
        validation_fraction: float = 0.1,
        batch_size: int = 200,
        lr: float = 5e-4,
        max_epochs: int = 1000,
        patience: int = 20,
        lr_drops: int = 0,
        clip_norm: float | None = 5.0,
        progress: bool = True,
        seed: int | None = None,
        distributed: bool = False,
    ) -> TrainResult:
        """Simulate (or take) training pairs and fit the flow by maximum likelihood.

        The pairs are split at random into training and validation sets; after each epoch the
        validation loss (mean negative log-density of the flow's variable) is computed and
        training stops once it has not improved for ``patience`` epochs; the parameters of the
        best epoch are restored. Calling ``train`` again continues from the current parameters on
        the pairs it is given (the standardizations are refitted only on the first call).

        Args:
            num_simulations: Simulations to draw from the model (or pass ``theta`` and ``y``).
            theta: Precomputed parameters ``(N, D)`` in the constrained space.
            y: Precomputed data ``(N,) + data shape``.
            simulation_batch_size: Simulations per ``Predictive`` call.
            validation_fraction: Fraction held out for early stopping (at least one pair).
            batch_size: Minibatch size.
            lr: Adam learning rate.
            max_epochs: Upper bound on epochs.
            patience: Epochs without validation improvement before stopping.
            lr_drops: Times training goes on past such a stop instead: from the best epoch's
                parameters, with the learning rate divided by 5 (0: plain early stopping). Lets
                large simulation budgets train to a lower validation loss.
            clip_norm: Gradient-norm clipping (None: off).
            progress: Show tqdm bars over the simulations and the epochs (only when stderr is a
                terminal; on rank 0 only when ``distributed``).
            seed: Seeds simulation, the split, initialization order and shuffling.
            distributed: Data-parallel over the processes of ``torch.distributed`` (as
                :func:`pyrovi.infer.fit` with ``distributed=True``): each process simulates its
                share of ``num_simulations`` (seed ``seed + rank``) and all processes gather the
                whole set; every minibatch is split across processes and the gradients are
                averaged, so all processes hold the same flow. Call on every process with the
                same arguments.

        Returns:
            :class:`TrainResult`.
        """
        if (theta is None) != (y is None):
            raise ValueError("theta and y must be given together")
        if theta is None and num_simulations is None:
            raise ValueError("pass num_simulations, or theta and y")
        if theta is not None and num_simulations is not None:
            raise ValueError("pass either num_simulations or theta and y, not both")
        validation_fraction = check_probability("validation_fraction", validation_fraction)
        batch_size = _positive_int("batch_size", batch_size)
        max_epochs = _positive_int("max_epochs", max_epochs)
        patience = _positive_int("patience", patience)
        lr_drops = integer("lr_drops", lr_drops, 0)
        simulation_batch_size = _positive_int("simulation_batch_size", simulation_batch_size)
        check_bool("progress", progress)
        check_bool("distributed", distributed)
        lr = check_positive("lr", lr)
        clip_norm = check_positive("clip_norm", clip_norm, allow_none=True)
        seed = _check_seed(seed)
        if num_simulations is not None:
            num_simulations = _positive_int("num_simulations", num_simulations)
        if theta is not None:
            check_tensor("theta", theta)
            check_tensor("y", y)
            if theta.dim() == 0 or y.dim() == 0 or theta.shape[0] != y.shape[0]:
                raise ValueError(
                    f"theta and y must hold the same simulations (one row each): theta has shape "
                    f"{tuple(theta.shape)}, y {tuple(y.shape)}"
                )
        shard = None
        if distributed:
            init_distributed(device=self.device)
            shard = DistributedContext.from_process_group()
        if seed is not None:
            pyro.set_rng_seed(seed if shard is None else seed + shard.rank)
        result = TrainResult(history={"train_loss": [], "val_loss": []})
        t0 = time.perf_counter()
        if theta is None:
            if shard is None:
                theta, y = self.simulate(num_simulations, simulation_batch_size, progress=progress)
            else:
                lo, hi = shard_bounds(0, num_simulations, shard.rank, shard.world)
                theta, y = self.simulate(
                    max(hi - lo, 1), simulation_batch_size, progress=progress and shard.is_main
                )
                theta, y = shard.gather_rows(theta[: hi - lo]), shard.gather_rows(y[: hi - lo])
        theta = theta.to(self.device)
        if theta.dim() != 2 or theta.shape[-1] != self.theta_dim:
            raise ValueError(
                f"theta must have shape (N, {self.theta_dim}), got {tuple(theta.shape)}"
            )
        if tuple(y.shape[1:]) != self.data_shape or y.shape[0] != theta.shape[0]:
            raise ValueError(
                f"y must have shape ({theta.shape[0]}, *{self.data_shape}), got {tuple(y.shape)}"
            )
        result.timings["simulation_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        s = self.summarize(y)
        theta = theta.float()
        u = self.unconstrain(theta)
        ok = torch.isfinite(s).all(-1) & torch.isfinite(u).all(-1)
        result.num_dropped = int((~ok).sum())
        s, u, theta = s[ok], u[ok], theta[ok]
        n = s.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 simulations with finite summaries, got {n}")
        result.num_simulations = n
        result.timings["summary_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        split_seed = seed if seed is not None else int(torch.randint(2**62, ()).item())
        if shard is not None:
            split_seed = shard.broadcast_int(split_seed, self.device)
        generator = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(n, generator=generator).to(self.device)
        n_val = max(1, int(round(validation_fraction * n)))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        x, c = self._training_data(theta, u, s, train_idx)
        try:
            self._fit(
                x[train_idx],
                c[train_idx],
                x[val_idx],
                c[val_idx],
                result,
                generator=generator,
                shard=shard,
                batch_size=batch_size,
                lr=lr,
                max_epochs=max_epochs,
                patience=patience,
                lr_drops=lr_drops,
                clip_norm=clip_norm,
                progress=progress,
            )
        finally:
            if shard is not None:
                shard.close()
        self.trained = True
        result.timings["train_s"] = time.perf_counter() - t0
        return result

    def _fit(
        self,
        x_train: torch.Tensor,
        c_train: torch.Tensor,
        x_val: torch.Tensor,
        c_val: torch.Tensor,
        result: TrainResult,
        *,
        generator: torch.Generator,
        shard: DistributedContext | None,
        batch_size: int,
        lr: float,
        max_epochs: int,
        patience: int,
        clip_norm: float | None,
        progress: bool,
        lr_drops: int = 0,
    ) -> None:
        """Adam on ``−mean log q(x | c)`` with early stopping (and ``lr_drops`` restarts from
        the best epoch at a fifth of the learning rate); restores the best epoch."""
        flow = self.net["flow"]
        params = [p for p in flow.parameters() if p.requires_grad]
        if shard is not None:
            shard.broadcast_parameters(params)
        opt = default_adam(params, lr)
        best_state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
        best, since = math.inf, 0
        show = progress and (shard is None or shard.is_main)
        bar = progress_bar(max_epochs, desc=f"{self.name} epochs", progress=show, unit="epoch")
        n_train, n_val = len(x_train), len(x_val)
        try:
            for epoch in range(max_epochs):
                flow.train()
                order = torch.randperm(n_train, generator=generator).to(self.device)
                total = 0.0
                for i in range(0, n_train, batch_size):
                    idx = order[i : i + batch_size]
                    if shard is not None:  # this process's part of the minibatch
                        full = len(idx)
                        a, b = shard_bounds(0, full, shard.rank, shard.world)
                        idx = idx[a:b]
                        shard.begin_step(params, len(idx), overlap=overlaps_on(self.device))
                    else:
                        opt.zero_grad(set_to_none=True)
                    if len(idx):
                        loss = -flow.log_prob(x_train[idx], context=c_train[idx]).mean()
                        loss.backward()
                        value = loss.item()
                    else:
                        value = 0.0
                    if shard is not None:
                        value = shard.reduce_step(params, value, len(idx))
                        idx = order[i : i + full]
                    if clip_norm is not None:
                        torch.nn.utils.clip_grad_norm_(flow.parameters(), clip_norm)
                    opt.step()
                    total += value * len(idx)
                flow.eval()
                with torch.no_grad():
                    val = (
                        -sum(
                            float(
                                flow.log_prob(
                                    x_val[i : i + 4096], context=c_val[i : i + 4096]
                                ).sum()
                            )
                            for i in range(0, n_val, 4096)
                        )
                        / n_val
                    )
                train_loss = total / n_train
                if not math.isfinite(train_loss):
                    raise FloatingPointError(
                        f"{self.name} training loss is {train_loss} at epoch {epoch + 1}"
                    )
                result.history["train_loss"].append(train_loss)
                result.history["val_loss"].append(val)
                result.epochs = epoch + 1
                if val < best:
                    best, since = val, 0
                    result.best_epoch, result.best_val_loss = epoch + 1, val
                    best_state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
                else:
                    since += 1
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val:.3f}", best=f"{best:.3f}")
                bar.update(1)
                if since >= patience:
                    if lr_drops == 0:
                        break
                    lr_drops, since = lr_drops - 1, 0
                    flow.load_state_dict(best_state)
                    for group in opt.param_groups:
                        group["lr"] = group["lr"] / 5
        finally:
            bar.close()
            flow.load_state_dict(best_state)
            flow.eval()

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> None:
        """Write the configuration and the networks' state (standardizations included)."""
        save_checkpoint(
            path,
            {
                "config": self.config,
                "kind": self.name,
                "state": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "trained": self.trained,
                "theta_dim": self.theta_dim,
                "summary_dim": self.summary_dim,
                "sizes": list(self.sizes),
                "data_shape": list(self.data_shape),
                "supports": [str(c) for c in self.supports],
            },
        )

    @classmethod
    def _rebuild(
        cls, model: Callable, params: list, observed: str, cfg: dict, **kwargs: Any
    ) -> SimulationEstimator:
        """The estimator a saved configuration describes (before its state is loaded)."""
        return cls(model, params, observed, **kwargs, **cfg)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: Callable,
        *,
        summary: Callable | None = None,
        device: Any = None,
        model_args: tuple = (),
        **kwargs: Any,
    ) -> SimulationEstimator:
        """Rebuild an estimator saved by :meth:`save` for the same model.

        Args:
            path: File written by :meth:`save`.
            model: The simulator model it was trained for.
            summary: The same summary function, if one was used.
            device: Device to load onto.
            model_args: Model arguments.
            **kwargs: What the subclass needs besides (NPE: a custom ``embedding`` module).

        Raises:
            FileNotFoundError: No file at ``path``.
            CheckpointError: (a ``ValueError``, from :mod:`pyrovi.infer.checkpoint`) The file is
                empty, truncated or corrupt, not a checkpoint of this kind of estimator, or saved
                for another model or summary (the message names the file and what differs).
        """
        error = getattr(_checkpoint, "CheckpointError", ValueError)
        where = f"{cls.name}.load"
        try:
            state = load_checkpoint(path)
        except (FileNotFoundError, error):
            raise
        except Exception as err:  # a reader without CheckpointError: say which file
            raise error(
                f"{where}: cannot read the checkpoint {os.fspath(path)}: "
                f"{type(err).__name__}: {err}"
            ) from err
        missing = [k for k in _ENTRIES if k not in state]
        if missing:
            raise error(
                f"{where}: {os.fspath(path)} is not an {cls.name} checkpoint (written by "
                f"{cls.name}.save): it lacks {missing}"
            )
        if state.get("kind", "NPE") != cls.name:
            raise error(
                f"{where}: {os.fspath(path)} holds an {state['kind']} checkpoint, not an "
                f"{cls.name} one; load it with {state['kind']}.load"
            )
        cfg = dict(state["config"])
        params, observed = cfg.pop("params"), cfg.pop("observed")
        try:
            est = cls._rebuild(
                model,
                params,
                observed,
                cfg,
                summary=summary,
                device=device,
                model_args=model_args,
                **kwargs,
            )
        except ValueError as err:
            if str(err).startswith("embedding:"):
                raise
            raise error(
                f"{where}: the checkpoint {os.fspath(path)} was saved for parameter sites "
                f"{params} and observed site {observed!r}, which do not fit this model: {err}"
            ) from err
        differ = _differences(state, est)
        if differ:
            raise error(
                f"{where}: the checkpoint {os.fspath(path)} was saved for another model or "
                f"summary: {'; '.join(differ)}"
            )
        try:
            est.net.load_state_dict(state["state"])
        except RuntimeError as err:
            raise error(
                f"{where}: the networks saved in {os.fspath(path)} do not fit the rebuilt "
                f"estimator (another embedding module, or another pyrovi version?): "
                f"{str(err).splitlines()[0]}"
            ) from err
        est.net.eval()
        est.trained = bool(state["trained"])
        return est
