"""``fit``: stochastic variational inference on minibatches, with checkpoints and a progress bar."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.elbo import ELBO as _ELBOBase
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from pyrovi._validation import all_finite
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.checkpoint import load_checkpoint, save_checkpoint
from pyrovi.infer.distributed import DistributedContext, init_distributed, shard_bounds
from pyrovi.infer.evidence import _as_tensors
from pyrovi.infer.grad_buckets import overlaps_on
from pyrovi.infer.handlers import DataScaleMessenger, LatentScaleMessenger
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.optim import default_adam
from pyrovi.nn.registration import skip_param_registration

__all__ = ["fit", "FitResult", "TrainingDivergedError", "load_into"]

Data = torch.Tensor | Sequence[torch.Tensor] | DataLoader


class TrainingDivergedError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: Per-epoch lists: ``train_elbo`` (training objective per datapoint, nats, with β
            and KL annealing applied), ``val_elbo`` (ELBO per validation datapoint, β = 1, when
            ``val_data`` was given), ``epoch_time`` (seconds).
        epochs: Number of completed epochs (including resumed ones).
        steps: Number of optimizer steps taken in this call.
        best_epoch: Epoch (1-based) with the best validation ELBO (training objective when no
            validation data was given).
        best_elbo: The best value of that criterion.
        best_state: Parameter values at ``best_epoch`` (name -> tensor, on CPU).
        checkpoint: Path of the last checkpoint, if checkpointing.
        best_checkpoint: Path of the best checkpoint, if checkpointing.
        timings: ``total_s``, ``train_s``, ``eval_s`` and ``step_ms`` (median time per step).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs: int = 0
    steps: int = 0
    best_epoch: int | None = None
    best_elbo: float | None = None
    best_state: dict[str, torch.Tensor] | None = None
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- argument checks


def _check_finite(tensors: Sequence[torch.Tensor], name: str) -> None:
    for i, t in enumerate(tensors):
        if (t.is_floating_point() or t.is_complex()) and not all_finite(t):
            bad = ~torch.isfinite(t)
            row = int(bad.reshape(t.shape[0], -1).any(dim=1).nonzero()[0, 0])
            where = f"tensor {i}, " if len(tensors) > 1 else ""
            raise ValueError(
                f"{name} contains NaN or infinite values ({where}first bad row {row}); "
                "clean or impute the data before fitting"
            )


def _resolve_device(device: Any, modules: Sequence[Any], tensors: Sequence[torch.Tensor] | None):
    if device is not None:
        return torch.device(device)
    for m in modules:
        if isinstance(m, nn.Module):
            for p in m.parameters():
                return p.device
            for b in m.buffers():
                return b.device
    if tensors:
        return tensors[0].device
    return torch.device("cpu")


def _annealing_schedule(kl_annealing: Any) -> Callable[[float], float] | None:
    if kl_annealing is None:
        return None
    if callable(kl_annealing):
        return kl_annealing
    if isinstance(kl_annealing, int | float) and not isinstance(kl_annealing, bool):
        warmup = float(kl_annealing)
        if not warmup > 0:
            raise ValueError(
                f"kl_annealing must be a positive number of warm-up epochs or a callable, got "
                f"{kl_annealing!r}"
            )
        return lambda progress: min(1.0, progress / warmup)
    raise ValueError(
        f"kl_annealing must be None, a number of warm-up epochs or a callable "
        f"(epoch progress -> weight), got {kl_annealing!r}"
    )


def _make_optimizer(optimizer: Any, params: list[torch.Tensor], lr: float):
    if optimizer is None:
        return default_adam(params, lr)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(
            "optimizer must be an optimizer class or a factory params -> optimizer, not an "
            "instance (fit creates it once the parameters are known), e.g. "
            "optimizer=torch.optim.AdamW or optimizer=lambda p: torch.optim.SGD(p, lr=0.1)"
        )
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}"
            )
        return opt
    raise ValueError(f"optimizer must be None, a torch.optim class or a factory, got {optimizer!r}")


def _is_jit(loss: Any) -> bool:
    return "Jit" in type(loss).__name__


# --------------------------------------------------------------------------- data iteration


class _Batches:
    """Minibatches of tensor data (shuffled with a private generator) or of a DataLoader."""

    def __init__(
        self,
        data: Data,
        batch_size: int | None,
        device: torch.device,
        name: str,
        shuffle: bool,
        drop_last: bool,
    ) -> None:
        self.loader: DataLoader | None = None
        if isinstance(data, DataLoader):
            if batch_size is not None and batch_size != data.batch_size:
                raise ValueError(
                    f"batch_size={batch_size} conflicts with the DataLoader's batch_size="
                    f"{data.batch_size}; leave batch_size=None when passing a DataLoader"
                )
            self.loader = data
            self.n = len(data.dataset)  # type: ignore[arg-type]
            self.tensors: tuple = ()
            self.batch_size = data.batch_size or 1
        else:
            self.tensors = tuple(t.to(device) for t in _as_tensors(data, name))
            self.n = self.tensors[0].shape[0]
            self.batch_size = min(_positive_int("batch_size", batch_size or 128), self.n)
        if self.n == 0:
            raise ValueError(f"{name} is empty")
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.shard: DistributedContext | None = None  # set by fit(distributed=True)

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        if self.drop_last:
            return max(1, self.n // self.batch_size)
        return math.ceil(self.n / self.batch_size)

    def iterate(self, generator: torch.Generator | None) -> Iterator[tuple]:
        if self.loader is not None:
            for batch in self.loader:
                batch = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)
                yield tuple(t.to(self.device) for t in batch)
            return
        if self.shuffle:
            order = torch.randperm(self.n, generator=generator).to(self.device)
        else:
            order = None
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min(self.n, (i + 1) * self.batch_size)
            if self.shard is not None:  # this process's part of the global batch
                lo, hi = shard_bounds(lo, hi, self.shard.rank, self.shard.world)
            if order is None:
                yield tuple(t[lo:hi] for t in self.tensors)
            else:
                idx = order[lo:hi]
                yield tuple(t[idx] for t in self.tensors)


# --------------------------------------------------------------------------- parameters


def _collect_parameters(
    model: Callable, guide: Callable, param_trace: poutine.Trace
) -> dict[str, torch.Tensor]:
    named: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for prefix, fn in (("model", model), ("guide", guide)):
        if isinstance(fn, nn.Module):
            for name, p in fn.named_parameters():
                if p.requires_grad and id(p) not in seen:
                    named[f"{prefix}.{name}"] = p
                    seen.add(id(p))
    for name in sorted(param_trace.nodes):
        site = param_trace.nodes[name]
        if site["type"] != "param":
            continue
        value = site["value"]
        p = value.unconstrained() if hasattr(value, "unconstrained") else value
        if p.requires_grad and id(p) not in seen:
            named[f"param.{name}"] = p
            seen.add(id(p))
    return named


def _snapshot(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in params.items()}


def _module_state(fn: Callable) -> dict[str, torch.Tensor] | None:
    """``state_dict`` (parameters and buffers) of a module on CPU, ``None`` for a function."""
    if not isinstance(fn, nn.Module):
        return None
    return {k: v.detach().cpu().clone() for k, v in fn.state_dict().items()}


def _restore(params: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], what: str) -> None:
    missing = sorted(set(params) - set(saved))
    if missing:
        raise ValueError(f"{what} lacks parameters {missing[:5]}; was it saved for another model?")
    with torch.no_grad():
        for k, p in params.items():
            if saved[k].shape != p.shape:
                raise ValueError(
                    f"{what}: parameter {k} has shape {tuple(saved[k].shape)}, expected "
                    f"{tuple(p.shape)}"
                )
            p.copy_(saved[k])


# --------------------------------------------------------------------------- the loop


def _empty_guide(*args: Any, **kwargs: Any) -> None:
    """The guide of a model without latent sites (maximum likelihood)."""


def fit(
    model: Callable,
    guide: Callable | None,
    data: Data,
    *,
    epochs: int = 10,
    batch_size: int | None = None,
    optimizer: Any = None,
    lr: float = 1e-3,
    loss: ELBO | None = None,
    num_particles: int = 1,
    device: Any = None,
    kl_annealing: Any = None,
    val_data: Data | None = None,
    clip_norm: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    seed: int | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    plate: str = "data",
    distributed: bool = False,
) -> FitResult:
    """Fit a Pyro model and guide by stochastic variational inference on minibatches.

    Each step draws a minibatch, evaluates the negative ELBO with the per-datapoint terms (the
    sites inside ``pyro.plate(plate, ...)``) scaled by ``N / batch`` so the estimate is unbiased
    for the full data set while global latents are counted once, and takes one optimizer step
    over every parameter of the model and guide (``nn.Module`` parameters and ``pyro.param``
    sites). β (a model's ``beta`` attribute) and the KL-annealing weight multiply the log-density
    of the latent sites in both model and guide.

    The default loss is :class:`~pyrovi.infer.FastTrace_ELBO`, Pyro's Trace_ELBO estimator with
    less per-step bookkeeping. The first step runs with Pyro validation enabled (shape and
    support checks, model input checks); the others run without.

    Args:
        model: Pyro model called as ``model(*batch)``.
        guide: Pyro guide with the same signature; ``None`` for a model without latent sites
            (e.g. :class:`~pyrovi.models.FlowDensity`), which is then fitted by maximum likelihood.
        data: A tensor ``(N, ...)``, a tuple of tensors sharing N, or a ``DataLoader``.
        epochs: Total number of passes over the data (counting resumed epochs).
        batch_size: Minibatch size for tensor data (default 128); leave None for a DataLoader.
        optimizer: None (Adam, on the fused kernel where torch has it: :func:`default_adam`),
            a ``torch.optim.Optimizer`` class (built with ``lr``), or a factory
            ``params -> optimizer``.
        lr: Learning rate.
        loss: A Pyro ELBO instance (Trace_ELBO, TraceMeanField_ELBO, JitTrace_ELBO, RenyiELBO,
            ...). Default ``FastTrace_ELBO(num_particles, vectorize_particles=True)``.
        num_particles: Particles of the default loss.
        device: Device to train on (default: the model's, else the data's). Modules and tensor
            data are moved there.
        kl_annealing: None, a number of warm-up epochs (the KL weight rises linearly from 0 to 1
            over them, per step), or a callable ``epoch_progress -> weight``.
        val_data: Held-out data (same forms as ``data``); its ELBO per datapoint is recorded
            after every epoch and picks the best epoch.
        clip_norm: Clip the global gradient norm to this value.
        checkpoint: File to write after every epoch (parameters, model and guide state dicts,
            optimizer, RNG states, epoch, history); the best epoch goes to
            ``<stem>.best<suffix>`` beside it.
        resume: Continue from ``checkpoint`` if the file exists.
        progress: Show tqdm bars (only when stderr is a terminal).
        seed: Seed Pyro/torch/NumPy and the shuffling generator.
        transform: Applied to the first tensor of every training batch (e.g.
            :class:`pyrovi.data.DynamicBinarization`).
        plate: Name of the per-datapoint plate.
        distributed: Data-parallel training over the processes of ``torch.distributed`` (see
            :mod:`pyrovi.infer.distributed`): every process calls ``fit`` with the same
            arguments and data; ``batch_size`` is the global batch, split across processes;
            gradients are averaged in one all-reduce, so the result equals a single process's
            with the same ``batch_size``. Initializes the process group from torchrun's
            environment when needed. Only rank 0 shows progress and writes checkpoints. With a
            ``DataLoader``, give it a ``DistributedSampler`` (``set_epoch`` is called).

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: Bad arguments or data (named in the message).
        TrainingDivergedError: NaN/inf loss; the message names the epoch and step.
    """
    epochs = _positive_int("epochs", epochs)
    if guide is None:
        guide = _empty_guide
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
    _positive_int("num_particles", num_particles)
    if not (isinstance(lr, int | float) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
    if loss is None:
        loss = FastTrace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    elif not isinstance(loss, _ELBOBase):
        raise ValueError(f"loss must be a pyro.infer.ELBO instance, got {type(loss).__name__}")
    elif num_particles != 1:
        raise ValueError(
            "num_particles configures the default loss; set num_particles on the ELBO passed as "
            "loss instead"
        )
    jit = _is_jit(loss)
    schedule = _annealing_schedule(kl_annealing)
    if jit and schedule is not None:
        raise ValueError(
            "kl_annealing changes the loss every step and cannot be used with a JIT-compiled loss"
        )
    if transform is not None and not callable(transform):
        raise ValueError(f"transform must be callable, got {transform!r}")
    if seed is not None:
        pyro.set_rng_seed(seed)

    tensors_hint = None if isinstance(data, DataLoader) else _as_tensors(data, "data")
    device = _resolve_device(device, (model, guide), tensors_hint)
    shard: DistributedContext | None = None
    if distributed:
        init_distributed(device=device)
        shard = DistributedContext.from_process_group()
        if seed is not None:
            pyro.set_rng_seed(seed + shard.rank)  # own Monte Carlo noise per process
    for fn in (model, guide):
        if isinstance(fn, nn.Module):
            fn.to(device)
    train = _Batches(data, batch_size, device, "data", shuffle=True, drop_last=jit)
    if shard is not None and train.loader is not None:
        if not isinstance(getattr(train.loader, "sampler", None), DistributedSampler):
            warnings.warn(
                "fit(distributed=True) with a DataLoader whose sampler is not a "
                "DistributedSampler: every process trains on every batch; give the DataLoader "
                "sampler=DistributedSampler(dataset) to split the data across processes",
                stacklevel=2,
            )
    val = (
        None
        if val_data is None
        else _Batches(val_data, batch_size, device, "val_data", shuffle=False, drop_last=jit)
    )
    for batches, name in ((train, "data"), (val, "val_data")):
        if batches is not None and batches.tensors:
            _check_finite(batches.tensors, name)
            check = getattr(model, "check_data", None)
            if callable(check):
                check(*batches.tensors)

    beta = float(getattr(model, "beta", 1.0))
    generator = torch.Generator()
    shuffle_seed = seed if seed is not None else int(torch.randint(2**62, ()).item())
    if shard is not None:
        shuffle_seed = shard.broadcast_int(shuffle_seed, device)  # one permutation for all
        for batches in (train, val):
            if batches is not None:
                batches.shard = shard
    generator.manual_seed(shuffle_seed)
    data_scaler = DataScaleMessenger(1.0, plate)
    latent_scaler = LatentScaleMessenger(1.0)

    # First pass: create lazily initialized parameters, run Pyro's checks on a real batch.
    first = next(train.iterate(generator=torch.Generator().manual_seed(0)))
    if transform is not None:
        first = (transform(first[0]), *first[1:])
    with pyro.validation_enabled(True), poutine.trace(param_only=True) as param_capture:
        with torch.no_grad():
            data_scaler.factor = train.n / first[0].shape[0]
            with data_scaler:
                loss.loss(model, guide, *first)
    params = _collect_parameters(model, guide, param_capture.trace)
    if not params:
        raise ValueError("model and guide have no trainable parameters")
    param_list = list(params.values())
    if shard is not None:
        shard.broadcast_parameters(param_list)
    opt = _make_optimizer(optimizer, list(params.values()), lr)

    result = FitResult(history={"train_elbo": [], "epoch_time": []})
    if val is not None:
        result.history["val_elbo"] = []
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    best_path = (
        ckpt_path.with_name(f"{ckpt_path.stem}.best{ckpt_path.suffix or '.pt'}")
        if ckpt_path is not None
        else None
    )
    result.checkpoint, result.best_checkpoint = ckpt_path, best_path
    start_epoch = 0
    if resume and ckpt_path is not None and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        for fn, key in ((model, "model_state"), (guide, "guide_state")):
            if isinstance(fn, nn.Module) and state.get(key) is not None:
                fn.load_state_dict(state[key])  # buffers (e.g. batch-norm statistics) too
        _restore(params, state["params"], f"checkpoint {ckpt_path}")
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["shuffle_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start_epoch = int(state["epoch"])
        result.history = {k: list(v) for k, v in state["history"].items()}
        result.best_epoch = state.get("best_epoch")
        result.best_elbo = state.get("best_elbo")
        result.best_state = state.get("best_state")
    elif resume and ckpt_path is None:
        raise ValueError("resume=True needs a checkpoint path")

    # Pyro's own ELBOs only backpropagate when they see param sites; FastTrace_ELBO always does,
    # so with it the per-step re-registration of module parameters can be skipped.
    registration_context = (
        skip_param_registration if isinstance(loss, FastTrace_ELBO) else contextlib.nullcontext
    )
    # all-reduce buckets while backward runs: needs one backward pass per step (FastTrace_ELBO)
    overlap = isinstance(loss, FastTrace_ELBO) and overlaps_on(device)
    show = progress and sys.stderr.isatty() and (shard is None or shard.is_main)
    writes = shard is None or shard.is_main
    steps_per_epoch = len(train)
    step_times: list[float] = []
    t_total = time.perf_counter()
    eval_s = 0.0
    epoch_bar = tqdm(
        total=epochs, initial=start_epoch, desc="epochs", disable=not show, dynamic_ncols=True
    )
    try:
        for epoch in range(start_epoch, epochs):
            t_epoch = time.perf_counter()
            total, count = 0.0, 0
            batch_bar = tqdm(
                total=steps_per_epoch, desc=f"epoch {epoch + 1}", leave=False, disable=not show
            )
            sampler = getattr(train.loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            with pyro.validation_enabled(False), registration_context():
                for step, batch in enumerate(train.iterate(generator)):
                    t_step = time.perf_counter()
                    if transform is not None:
                        batch = (transform(batch[0]), *batch[1:])
                    b = batch[0].shape[0]
                    data_scaler.factor = train.n / b
                    weight = beta
                    if schedule is not None:
                        weight *= float(schedule(epoch + step / steps_per_epoch))
                    latent_scaler.factor = weight
                    if shard is not None:  # gradients live in the all-reduce buffer
                        shard.begin_step(param_list, b, overlap=overlap)
                    else:
                        opt.zero_grad(set_to_none=True)
                    if b:
                        value = _scaled_step(loss, model, guide, batch, data_scaler, latent_scaler)
                    else:  # an empty shard (global batch smaller than the number of processes)
                        value = 0.0
                    if shard is not None:
                        value = shard.reduce_step(param_list, value, b)
                    if not math.isfinite(value):
                        where = f"; last good checkpoint: {ckpt_path}" if ckpt_path else ""
                        raise TrainingDivergedError(
                            f"loss is {value} at epoch {epoch + 1}, step {step + 1}: training "
                            f"stopped before the parameters were updated{where}"
                        )
                    if clip_norm is not None:
                        torch.nn.utils.clip_grad_norm_(param_list, clip_norm)
                    opt.step()
                    result.steps += 1
                    total += value
                    count += 1
                    step_times.append(time.perf_counter() - t_step)
                    if show and (step % 10 == 0 or step == steps_per_epoch - 1):
                        batch_bar.set_postfix(elbo=f"{-value / train.n:.3f}")
                    batch_bar.update(1)
            batch_bar.close()
            result.history["train_elbo"].append(-total / count / train.n)
            criterion = result.history["train_elbo"][-1]
            if val is not None:
                t_eval = time.perf_counter()
                criterion = _validation_elbo(model, guide, loss, val, data_scaler, shard)
                eval_s += time.perf_counter() - t_eval
                result.history["val_elbo"].append(criterion)
            result.history["epoch_time"].append(time.perf_counter() - t_epoch)
            result.epochs = epoch + 1
            is_best = result.best_elbo is None or criterion > result.best_elbo
            if is_best:
                result.best_epoch, result.best_elbo = epoch + 1, criterion
                result.best_state = _snapshot(params)
            if ckpt_path is not None and writes:
                state = {
                    "epoch": epoch + 1,
                    "params": _snapshot(params),
                    "model_state": _module_state(model),
                    "guide_state": _module_state(guide),
                    "optimizer": opt.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "shuffle_rng": generator.get_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "history": result.history,
                    "best_epoch": result.best_epoch,
                    "best_elbo": result.best_elbo,
                    "best_state": result.best_state,
                }
                save_checkpoint(ckpt_path, state)
                if is_best and best_path is not None:
                    save_checkpoint(best_path, state)
            epoch_bar.set_postfix(
                {k: f"{v[-1]:.3f}" for k, v in result.history.items() if k != "epoch_time"}
            )
            epoch_bar.update(1)
    finally:
        epoch_bar.close()
        if shard is not None:
            shard.close()
    total_s = time.perf_counter() - t_total
    step_times.sort()
    result.timings = {
        "total_s": total_s,
        "eval_s": eval_s,
        "train_s": total_s - eval_s,
        "step_ms": 1e3 * step_times[len(step_times) // 2] if step_times else float("nan"),
    }
    if result.epochs == 0:
        result.epochs = start_epoch
    return result


def _scaled_step(
    loss: ELBO,
    model: Callable,
    guide: Callable,
    batch: tuple,
    data_scaler: DataScaleMessenger,
    latent_scaler: LatentScaleMessenger,
) -> float:
    """``loss.loss_and_grads`` under the scaling handlers whose factor is not 1 (cheaper)."""
    if data_scaler.factor != 1.0:
        if latent_scaler.factor != 1.0:
            with data_scaler, latent_scaler:
                return loss.loss_and_grads(model, guide, *batch)
        with data_scaler:
            return loss.loss_and_grads(model, guide, *batch)
    if latent_scaler.factor != 1.0:
        with latent_scaler:
            return loss.loss_and_grads(model, guide, *batch)
    return loss.loss_and_grads(model, guide, *batch)


def _validation_elbo(
    model: Callable,
    guide: Callable,
    loss: ELBO,
    val: _Batches,
    scaler: DataScaleMessenger,
    shard: DistributedContext | None = None,
) -> float:
    """ELBO per validation datapoint (β = 1, no annealing), averaged over batches."""
    total, count = 0.0, 0
    with torch.no_grad(), pyro.validation_enabled(False), skip_param_registration():
        for batch in val.iterate(None):
            b = batch[0].shape[0]
            if not b:
                continue
            scaler.factor = val.n / b
            with scaler:
                # weighted by the batch size, so that shards of a global batch add up
                total += loss.loss(model, guide, *batch) * b
            count += b
    if shard is not None:
        total, count = shard.sum_floats([total, float(count)], val.device)
    return -total / count / val.n


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
                module = model if prefix == "model" else guide
                if not isinstance(module, nn.Module):
                    raise ValueError(f"params_state has {key!r} but the {prefix} is not a module")
                target = module.get_parameter(name)
            elif prefix == "param":
                if name not in store:
                    raise ValueError(f"params_state has {key!r} but the param store lacks {name!r}")
                target = store._params[name]
            else:
                raise ValueError(f"params_state: unrecognized parameter name {key!r}")
            target.copy_(value.to(target.device))
