"""``fit``: stochastic variational inference on minibatches, with checkpoints and a progress bar.

The loop, in the order a step runs: :class:`~pyrovi.infer.batches.Batches` draws a minibatch
and unpacks it into the model's arguments; :class:`~pyrovi.infer.handlers.DataScaleMessenger`
scales the per-datapoint terms to the full data; :func:`_step` evaluates the loss and its
gradients and takes the optimizer step; :func:`_end_epoch` records the history, validates, steps
the learning-rate scheduler and writes checkpoints (:class:`_Checkpoints`). Distributed training
adds two hooks around each step (:class:`~pyrovi.infer.distributed.DistributedContext`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro.infer import ELBO
from tqdm.auto import tqdm

from pyrovi.infer.batches import Data, Unpacked, apply_transform, batch_size_of
from pyrovi.infer.checkpoint import load_checkpoint, save_checkpoint
from pyrovi.infer.fit_setup import (
    Run,
    annealing_schedule,
    check_arguments,
    check_loss,
    initialize,
    is_jit,
    prepare,
)
from pyrovi.infer.grad_buckets import overlaps_on
from pyrovi.infer.handlers import DataScaleMessenger
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.parameters import load_into, module_of, module_state, restore, snapshot
from pyrovi.nn.registration import skip_param_registration

__all__ = ["fit", "FitResult", "TrainingDivergedError", "load_into"]


class TrainingDivergedError(FloatingPointError):
    """Raised when the loss becomes NaN or infinite; the last good checkpoint is kept."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: Per-epoch lists: ``train_elbo`` (training objective per datapoint, nats, with β
            and KL annealing applied), ``val_elbo`` (ELBO per validation datapoint, β = 1, when
            ``val_data`` was given), ``lr`` (learning rate of the first parameter group during
            the epoch), ``epoch_time`` (seconds).
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


# --------------------------------------------------------------------------- checkpoints


class _Checkpoints:
    """The checkpoint file and the best-epoch file beside it; saving and resuming."""

    def __init__(self, path: str | os.PathLike, writes: bool) -> None:
        self.path = Path(path)
        self.best = self.path.with_name(f"{self.path.stem}.best{self.path.suffix or '.pt'}")
        self.writes = writes

    def save(self, run: Run, result: FitResult, is_best: bool) -> None:
        if not self.writes:
            return
        cuda = run.device.type == "cuda"
        state = {
            "epoch": result.epochs,
            "params": snapshot(run.params),
            "model_state": module_state(run.model),
            "guide_state": module_state(run.guide),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "shuffle_rng": run.generator.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(run.device) if cuda else None,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "best_elbo": result.best_elbo,
            "best_state": result.best_state,
        }
        save_checkpoint(self.path, state)
        if is_best:
            save_checkpoint(self.best, state)

    def resume(self, run: Run, result: FitResult) -> int:
        """Restore the state of the last saved epoch; return that epoch (0 without a file)."""
        if not self.path.is_file():
            return 0
        state = load_checkpoint(self.path)
        for fn, key in ((run.model, "model_state"), (run.guide, "guide_state")):
            module = module_of(fn)
            if module is not None and state.get(key) is not None:
                module.load_state_dict(state[key])  # buffers (e.g. batch-norm statistics) too
        restore(run.params, state["params"], f"checkpoint {self.path}")
        run.opt.load_state_dict(state["optimizer"])
        if run.scheduler is not None and state.get("scheduler") is not None:
            run.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        run.generator.set_state(state["shuffle_rng"])
        if run.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], run.device)
        result.history = {k: list(v) for k, v in state["history"].items()}
        result.best_epoch = state.get("best_epoch")
        result.best_elbo = state.get("best_elbo")
        result.best_state = state.get("best_state")
        result.epochs = int(state["epoch"])
        return result.epochs


# --------------------------------------------------------------------------- the loop


def fit(
    model: Callable,
    guide: Callable | None,
    data: Data,
    *,
    epochs: int = 10,
    batch_size: int | None = None,
    optimizer: Any = None,
    lr: float = 1e-3,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
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
    unpack: Callable[[Any], Unpacked] | None = None,
    plate: str = "data",
    distributed: bool = False,
) -> FitResult:
    """Fit a Pyro model and guide by stochastic variational inference on minibatches.

    Each step draws a minibatch, unpacks it into ``model(*args, **kwargs)``, evaluates the
    negative ELBO with the per-datapoint terms (the sites inside ``pyro.plate(plate, ...)``)
    scaled to the N datapoints of the data set, so the estimate is unbiased for the full data
    while global latents are counted once, and takes one optimizer step over every parameter of
    the model and guide (``nn.Module`` parameters and ``pyro.param`` sites). A plate that
    subsamples itself (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``) is
    already scaled by Pyro and is not scaled again. β (a model's ``beta`` attribute) and the
    KL-annealing weight multiply the log-density of the latent sites in both model and guide.

    The default loss is :class:`~pyrovi.infer.FastTrace_ELBO`, Pyro's Trace_ELBO estimator with
    less per-step bookkeeping. The first step runs with Pyro validation enabled (shape and
    support checks, model input checks); the others run without.

    Args:
        model: Pyro model called as ``model(*args, **kwargs)`` with each unpacked batch.
        guide: Pyro guide with the same signature; ``None`` for a model without latent sites
            (e.g. :class:`~pyrovi.models.FlowDensity`), which is then fitted by maximum likelihood.
        data: A tensor ``(N, ...)``, a tuple of tensors sharing N, or a ``DataLoader`` (whose
            batches may be tensors, tuples or dicts).
        epochs: Total number of passes over the data (counting resumed epochs).
        batch_size: Minibatch size for tensor data (default 128); leave None for a DataLoader.
        optimizer: None (Adam, on the fused kernel where torch has it: :func:`default_adam`),
            a ``torch.optim.Optimizer`` class (built with ``lr``), or a factory
            ``params -> optimizer``.
        lr: Learning rate.
        scheduler: A factory ``optimizer -> torch.optim.lr_scheduler`` scheduler, stepped once
            after every epoch (``ReduceLROnPlateau`` with the epoch's negative validation ELBO,
            or training objective without validation data); saved in and restored from
            checkpoints.
        loss: A Pyro ELBO instance (Trace_ELBO, TraceMeanField_ELBO, TraceEnum_ELBO for models
            with enumerated discrete sites, JitTrace_ELBO, RenyiELBO, ...). Default
            ``FastTrace_ELBO(num_particles, vectorize_particles=True)``.
        num_particles: Particles of the default loss.
        device: Device to train on (default: the model's, else the data's). Modules and tensor
            data are moved there.
        kl_annealing: None, a number of warm-up epochs (the KL weight rises linearly from 0 to 1
            over them, per step), or a callable ``epoch_progress -> weight``.
        val_data: Held-out data (same forms as ``data``); its ELBO per datapoint is recorded
            after every epoch and picks the best epoch.
        clip_norm: Clip the global gradient norm to this value.
        checkpoint: File to write after every epoch (parameters, model and guide state dicts,
            optimizer, scheduler, RNG states, epoch, history); the best epoch goes to
            ``<stem>.best<suffix>`` beside it.
        resume: Continue from ``checkpoint`` if the file exists.
        progress: Show tqdm bars (only when stderr is a terminal).
        seed: Seed Pyro/torch/NumPy and the shuffling generator (parameters created after the
            call starts, such as an autoguide's, are covered; networks built before are not).
        transform: Applied to the first tensor of every training batch after unpacking (the
            first tensor argument, else the first tensor keyword argument), e.g.
            :class:`pyrovi.data.DynamicBinarization`.
        unpack: ``batch -> (args, kwargs)`` for the model and guide. Default: a tensor is one
            positional argument, a tuple or list one per element, a dict keyword arguments.
            For a DataLoader of ``(x, label)`` and ``model(x)``: ``lambda b: ((b[0],), {})``.
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
        ValueError: Bad arguments or data (named in the message); minibatches without a
            per-datapoint plate to scale; enumerated sites without an enumerating loss.
        TypeError: The model or guide cannot be called with the unpacked batch.
        TrainingDivergedError: NaN/inf loss; the message names the epoch and step.
    """
    check_arguments(epochs, batch_size, lr, clip_norm, {"transform": transform, "unpack": unpack})
    default_loss = loss is None
    loss = check_loss(loss, num_particles)
    annealing = annealing_schedule(kl_annealing)
    if is_jit(loss) and annealing is not None:
        raise ValueError(
            "kl_annealing changes the loss every step and cannot be used with a JIT-compiled loss"
        )
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    if seed is not None:
        pyro.set_rng_seed(seed)
    opts = {
        "device": device,
        "distributed": distributed,
        "seed": seed,
        "batch_size": batch_size,
        "unpack": unpack,
        "transform": transform,
        "annealing": annealing,
        "clip_norm": clip_norm,
        "plate": plate,
        "progress": progress,
    }
    run = prepare(model, guide, data, val_data, loss, opts)
    run.default_loss = default_loss
    try:
        initialize(run, optimizer, lr, scheduler)
        ckpts = None
        if checkpoint is not None:
            ckpts = _Checkpoints(checkpoint, writes=run.shard is None or run.shard.is_main)
        result = FitResult(history={"train_elbo": [], "lr": [], "epoch_time": []})
        if run.val is not None:
            result.history["val_elbo"] = []
        if ckpts is not None:
            result.checkpoint, result.best_checkpoint = ckpts.path, ckpts.best
        start = ckpts.resume(run, result) if resume and ckpts is not None else 0
        _train(run, result, ckpts, start, epochs)
    finally:
        if run.shard is not None:
            run.shard.close()
    return result


def _train(
    run: Run, result: FitResult, ckpts: _Checkpoints | None, start: int, epochs: int
) -> None:
    """Epochs ``start + 1 .. epochs`` with a progress bar; fills ``result``."""
    t_total = time.perf_counter()
    bar = tqdm(total=epochs, initial=start, desc="epochs", disable=not run.show, dynamic_ncols=True)
    # Pyro's own ELBOs only backpropagate when they see param sites; FastTrace_ELBO always does,
    # so with it the per-step re-registration of module parameters can be skipped.
    fast = isinstance(run.loss, FastTrace_ELBO)
    registration = skip_param_registration if fast else contextlib.nullcontext
    try:
        for epoch in range(start, epochs):
            t_epoch = time.perf_counter()
            lr = float(run.opt.param_groups[0]["lr"])
            with pyro.validation_enabled(False), registration():
                train_loss = _train_epoch(run, epoch, result)
            _end_epoch(run, result, ckpts, train_loss, lr, t_epoch)
            bar.set_postfix(
                {k: f"{v[-1]:.3g}" for k, v in result.history.items() if k != "epoch_time"}
            )
            bar.update(1)
    finally:
        bar.close()
    total_s = time.perf_counter() - t_total
    times = sorted(run.step_times)
    result.timings = {
        "total_s": total_s,
        "eval_s": run.eval_s,
        "train_s": total_s - run.eval_s,
        "step_ms": 1e3 * times[len(times) // 2] if times else float("nan"),
    }
    result.epochs = max(result.epochs, start)


def _train_epoch(run: Run, epoch: int, result: FitResult) -> float:
    """One pass over the training data; the mean loss per step (full-data scale)."""
    steps = len(run.train)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}", leave=False, disable=not run.show)
    sampler = getattr(run.train.loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    overlap = isinstance(run.loss, FastTrace_ELBO) and overlaps_on(run.device)
    total, count = 0.0, 0
    for step, batch in enumerate(run.train.iterate(run.generator)):
        t_step = time.perf_counter()
        if run.transform is not None:
            batch = apply_transform(run.transform, batch)
        weight = run.beta
        if run.annealing is not None:
            weight *= float(run.annealing(epoch + step / steps))
        run.latent_scaler.factor = weight
        value = _step(run, batch, overlap)
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"loss is {value} at epoch {epoch + 1}, step {step + 1}: training stopped before "
                f"the parameters were updated{_last_good(result)}"
            )
        run.opt.step()
        result.steps += 1
        total, count = total + value, count + 1
        run.step_times.append(time.perf_counter() - t_step)
        if run.show and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(elbo=f"{-value / run.train.n:.3f}")
        bar.update(1)
    bar.close()
    return total / count


def _last_good(result: FitResult) -> str:
    return f"; last good checkpoint: {result.checkpoint}" if result.checkpoint else ""


def _step(run: Run, batch: Unpacked, overlap: bool) -> float:
    """Gradients of one minibatch's loss (all-reduced across processes when distributed)."""
    b = batch_size_of(batch)
    if run.shard is not None:  # gradients live in the all-reduce buffer
        run.shard.begin_step(run.param_list, b, overlap=overlap)
    else:
        run.opt.zero_grad(set_to_none=True)
    value = _scaled_loss_and_grads(run, batch) if b else 0.0  # b = 0: an empty shard
    if run.shard is not None:
        value = run.shard.reduce_step(run.param_list, value, b)
    if run.clip_norm is not None and math.isfinite(value):
        torch.nn.utils.clip_grad_norm_(run.param_list, run.clip_norm)
    return value


def _scaled_loss_and_grads(run: Run, batch: Unpacked) -> float:
    """``loss.loss_and_grads`` under the scaling handlers (the latent one only when not 1)."""
    args, kwargs = batch
    with run.data_scaler:
        if run.latent_scaler.factor != 1.0:
            with run.latent_scaler:
                return run.loss.loss_and_grads(run.model, run.guide, *args, **kwargs)
        return run.loss.loss_and_grads(run.model, run.guide, *args, **kwargs)


def _end_epoch(
    run: Run, result: FitResult, ckpts: _Checkpoints | None, loss: float, lr: float, t0: float
) -> None:
    """History, validation, best epoch, scheduler step and checkpoints after one epoch that
    started at ``time.perf_counter() == t0``."""
    result.history["train_elbo"].append(-loss / run.train.n)
    result.history.setdefault("lr", []).append(lr)
    criterion = result.history["train_elbo"][-1]
    if run.val is not None:
        t_eval = time.perf_counter()
        criterion = _validation_elbo(run)
        run.eval_s += time.perf_counter() - t_eval
        result.history["val_elbo"].append(criterion)
    result.history["epoch_time"].append(time.perf_counter() - t0)
    result.epochs += 1
    is_best = result.best_elbo is None or criterion > result.best_elbo
    if is_best:
        result.best_epoch, result.best_elbo = result.epochs, criterion
        result.best_state = snapshot(run.params)
    if run.scheduler is not None:
        if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            run.scheduler.step(-criterion)
        else:
            run.scheduler.step()
    if ckpts is not None:
        ckpts.save(run, result, is_best)


def _validation_elbo(run: Run) -> float:
    """ELBO per validation datapoint (β = 1, no annealing), averaged over batches."""
    val = run.val
    scaler = DataScaleMessenger(plate=run.data_scaler.plate, num_data=val.n)
    total, count = 0.0, 0
    with torch.no_grad(), pyro.validation_enabled(False), skip_param_registration(), scaler:
        for args, kwargs in val.iterate(None):
            b = batch_size_of((args, kwargs))
            if not b:
                continue
            # weighted by the batch size, so that shards of a global batch add up
            total += run.loss.loss(run.model, run.guide, *args, **kwargs) * b
            count += b
    if run.shard is not None:
        total, count = run.shard.sum_floats([total, float(count)], val.device)
    return -total / count / val.n
