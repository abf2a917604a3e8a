"""``fit``: stochastic variational inference on minibatches, with checkpoints and a progress bar.

The loop, in the order a step runs: :class:`~pyrovi.infer.batches.Batches` draws a minibatch
and unpacks it into the model's arguments; :func:`_check_batch` runs the model's ``check_data``
on it when it was not checked up front; :class:`~pyrovi.infer.handlers.DataScaleMessenger`
scales the per-datapoint terms to the full data; :func:`_step` evaluates the loss and its
gradients and their norm; :func:`_check_step` stops a diverging run before the optimizer step;
:func:`_end_epoch` records the history, validates, checks that the parameters are finite before
anything is kept (the best state, a checkpoint, the end of training), steps the learning-rate
scheduler and writes checkpoints (:class:`_Checkpoints`). Distributed training
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

from pyrovi._validation import all_finite, all_finite_many
from pyrovi.infer.batches import Data, Unpacked, apply_transform, batch_size_of
from pyrovi.infer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyrovi.infer.fit_setup import (
    OffSupportError,
    Run,
    SupportCheck,
    after_transform,
    annealing_schedule,
    check_arguments,
    check_loss,
    check_writable,
    initialize,
    is_jit,
    prepare,
    support_error,
    validation_batch,
)
from pyrovi.infer.grad_buckets import overlaps_on
from pyrovi.infer.handlers import DataScaleMessenger
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.parameters import (
    load_into,
    mismatches,
    module_of,
    module_state,
    restore,
    snapshot,
)
from pyrovi.nn.registration import skip_param_registration

__all__ = ["fit", "FitResult", "TrainingDivergedError", "CheckpointError", "load_into"]

#: Entries of a checkpoint that ``fit(resume=True)`` needs.
RESUME_KEYS = ("epoch", "params", "optimizer", "torch_rng", "shuffle_rng", "history")


class TrainingDivergedError(FloatingPointError):
    """Training stopped before a bad update: a NaN or infinite loss or gradient, a loss beyond
    ``divergence_ratio``, or parameters that became NaN or infinite (then nothing is saved).
    The message names the epoch and step, and the last checkpoint written with finite
    parameters, if any."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: Per-epoch lists: ``train_elbo`` (training objective per datapoint, nats, with β
            and KL annealing applied), ``val_elbo`` (ELBO per validation datapoint, β = 1, after
            ``val_transform``, when ``val_data`` was given), ``lr`` (learning rate of the first
            parameter group during the epoch), ``epoch_time`` (seconds).
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
    """The checkpoint file and the best-epoch file beside it; saving and resuming.

    ``good`` is the last file this call wrote or resumed from: always one whose parameters are
    finite (``_end_epoch`` checks them before saving; ``resume`` refuses others).
    """

    def __init__(self, path: str | os.PathLike, writes: bool) -> None:
        self.path = Path(path)
        self.best = self.path.with_name(f"{self.path.stem}.best{self.path.suffix or '.pt'}")
        self.writes = writes
        self.good: str | None = None
        if writes:
            check_writable(self.path)

    def save(self, run: Run, result: FitResult, is_best: bool) -> None:
        good = f"{self.path} (epoch {result.epochs})"
        if not self.writes:  # rank 0 writes; every rank knows what was written
            self.good = good
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
        self.good = good

    def resume(self, run: Run, result: FitResult) -> int:
        """Restore the state of the last saved epoch; return that epoch (0 without a file).

        Raises:
            CheckpointError: The file is not a checkpoint ``fit`` can resume this model and
                guide from (see :func:`~pyrovi.infer.load_checkpoint`), was saved for other
                parameters or module states, or holds NaN/infinite parameters (all checked
                before anything is restored, so the model and guide are left as they were), or
                its optimizer, scheduler or random states cannot be restored.
        """
        if not self.path.is_file():
            return 0
        state = load_checkpoint(self.path, required=RESUME_KEYS)
        self._check_compatible(run, state)
        try:
            self._restore(run, result, state)
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(
                f"checkpoint {self.path} cannot be restored into this run: "
                f"{type(err).__name__}: {err}"
            ) from err
        self.good = f"{self.path} (epoch {result.epochs}, the one resumed from)"
        return result.epochs

    def _check_compatible(self, run: Run, state: dict[str, Any]) -> None:
        what = f"checkpoint {self.path}"
        restore(run.params, state["params"], what, dry_run=True)
        for fn, key, name in (
            (run.model, "model_state", "model"),
            (run.guide, "guide_state", "guide"),
        ):
            module = module_of(fn)
            if module is not None and state.get(key) is not None:
                problems = mismatches(module.state_dict(), state[key], strict=True)
                if problems:
                    raise CheckpointError(
                        f"{what}: the {name}'s saved state dict does not match this {name} "
                        f"({'; '.join(problems)}): was it written for another {name}?"
                    )
        bad = [k for k in run.params if not all_finite(state["params"][k])]
        if bad:
            raise CheckpointError(
                f"{what} holds NaN or infinite values in parameters {bad[:5]}: it was written by a "
                "run that diverged; resume from an earlier checkpoint or start afresh"
            )

    def _restore(self, run: Run, result: FitResult, state: dict[str, Any]) -> None:
        run.opt.load_state_dict(state["optimizer"])  # checks its groups before changing anything
        for fn, key in ((run.model, "model_state"), (run.guide, "guide_state")):
            module = module_of(fn)
            if module is not None and state.get(key) is not None:
                module.load_state_dict(state[key])  # buffers (e.g. batch-norm statistics) too
        restore(run.params, state["params"], f"checkpoint {self.path}")
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
    val_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    unpack: Callable[[Any], Unpacked] | None = None,
    plate: str = "data",
    distributed: bool = False,
    divergence_ratio: float | None = 1e6,
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
    less per-step bookkeeping.

    What is checked, and when:

    * Before training: every argument; tensor data (and ``val_data``) for NaN/infinite values
      and with the model's ``check_data(*args, **kwargs)`` if it has one (pyrovi's models check
      shapes and, for a Bernoulli likelihood, values in [0, 1]; ``val_data`` with a
      ``val_transform`` is checked batch by batch after it instead); one loss evaluation on the
      first training batch (after ``transform``) and one on the first validation batch (after
      ``val_transform``), both with Pyro's validation on (distribution shapes and supports) and
      with every observed value checked against the support of its distribution even where the
      distribution does not validate its arguments: pyrovi's Bernoulli likelihoods
      (``validate_args=False``) score grey levels in [0, 1] when called directly, but their
      ELBO is then not a bound on any likelihood of the data, so ``fit`` raises a
      ``ValueError`` naming ``data`` or ``val_data``, the site and the support, and how to
      binarize. The other training steps run with these checks off.
    * Every step: the model's ``check_data`` on the batch when the batches are not the data
      checked up front, i.e. with ``transform`` or a ``DataLoader`` (one min/max reduction
      for pyrovi's models: a transform that leaves [0, 1] later is caught); the loss and the
      gradients (one fused norm over all of them, after the all-reduce when distributed) must
      be finite, and the loss within ``divergence_ratio``, before the optimizer step. Data
      from a DataLoader is not otherwise checked: for a model without ``check_data``, a
      non-finite batch shows as a non-finite loss, a value outside a distribution's support
      only if it makes the loss non-finite.
    * Before the best state is kept, before a checkpoint is written and at the end: the
      parameters and module buffers must be finite, so no checkpoint or returned state holds NaN
      or infinite values (an epoch that keeps nothing skips this check: a non-finite parameter
      then shows as a non-finite loss or gradient at the next step). Every
      validation batch, after ``val_transform``: its observed values against their supports,
      and with the model's ``check_data`` when it was not checked up front (a
      ``val_transform`` or a ``DataLoader``).

    dtype: floating-point data whose dtype differs from that of the model's and guide's module
    parameters (when those are ``nn.Module``s whose floating parameters share one dtype) is cast
    to it, as ``model(x)`` would otherwise fail in its first layer: float64 data (NumPy's
    default) trains a float32 model in float32, rounding the data to float32's precision (about
    7 significant digits); call ``model.double()`` and ``guide.double()`` to train in float64.
    Integer and bool tensors are never cast (they may be indices, labels, counts or masks); a
    model that fails on them gets a ``ValueError`` naming ``data`` and the dtypes. Data of Pyro
    models without module parameters is passed as it is.

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
            data are moved there. A device this machine lacks (``"cuda"`` without CUDA) is a
            ``ValueError`` listing the available ones.
        kl_annealing: None, a number of warm-up epochs (the KL weight rises linearly from 0 to 1
            over them, per step), or a callable ``epoch_progress -> weight``.
        val_data: Held-out data (same forms as ``data``); its ELBO per datapoint is recorded
            after every epoch and picks the best epoch. It must lie in the support of the
            likelihood as the model sees it (after ``val_transform``): for a Bernoulli
            likelihood, binarize it once, e.g.
            ``pyrovi.data.binarize(x_test, generator=torch.Generator().manual_seed(0))``, so
            that every epoch is scored on the same binary images.
        clip_norm: Clip the global gradient norm to this value (a positive finite number).
        checkpoint: File to write after every epoch (parameters, model and guide state dicts,
            optimizer, scheduler, RNG states, epoch, history); the best epoch goes to
            ``<stem>.best<suffix>`` beside it. Written atomically (see
            :func:`~pyrovi.infer.save_checkpoint`); its directory must be writable (checked
            before training).
        resume: Continue from ``checkpoint`` if the file exists (a file that is not a checkpoint
            of this model and guide raises :class:`~pyrovi.infer.CheckpointError`).
        progress: Show tqdm bars (only when stderr is a terminal).
        seed: Seeds, when the call starts, torch's, NumPy's and Python's global generators
            (``pyro.set_rng_seed(seed)``) and the generator that shuffles tensor data. It covers
            what ``fit`` draws: the order of the minibatches, the Monte Carlo samples of the
            loss, transforms that draw from torch's global generator (``DynamicBinarization()``
            without a generator of its own), and parameters created inside the call (an
            autoguide's, lazily). It does not cover what exists before the call: the initial
            weights of networks already built (``VAE(...)``, ``AmortizedNormal(...)``) come from
            the state of the global generator when they were built, so call
            ``pyro.set_rng_seed(seed)`` before building the model and guide to make a whole run
            reproducible; nor a ``DataLoader``'s own shuffling (give it a seeded
            ``generator=``). Same seed, same initial weights, same data and arguments: the same
            history, bit for bit, on the same machine and torch build. With ``distributed=True``,
            process ``r`` draws its Monte Carlo samples from ``seed + r`` (one shuffling order
            for all). ``None``: nothing is reseeded, and the shuffling generator is seeded from
            torch's global generator, so a ``pyro.set_rng_seed`` before the call also makes the
            run reproducible. ``resume=True`` then restores the random states saved in the
            checkpoint.
        transform: Applied to the first tensor of every training batch after unpacking (the
            first tensor argument, else the first tensor keyword argument), e.g.
            :class:`pyrovi.data.DynamicBinarization`. Not applied to ``val_data``.
        val_transform: Applied in the same way to every validation batch, at every validation
            (needs ``val_data``). Prefer a deterministic one, or data transformed once, so that
            the validation ELBOs of different epochs score the same data: a random one (e.g.
            ``DynamicBinarization()``) adds its own noise to the choice of the best epoch.
        unpack: ``batch -> (args, kwargs)`` for the model and guide. Default: a tensor is one
            positional argument, a tuple or list one per element, a dict keyword arguments.
            For a DataLoader of ``(x, label)`` and ``model(x)``: ``lambda b: ((b[0],), {})``.
        plate: Name of the per-datapoint plate (a non-empty string).
        distributed: Data-parallel training over the processes of ``torch.distributed`` (see
            :mod:`pyrovi.infer.distributed`): every process calls ``fit`` with the same
            arguments and data; ``batch_size`` is the global batch, split across processes;
            gradients are averaged in one all-reduce, so the result equals a single process's
            with the same ``batch_size``. Initializes the process group from torchrun's
            environment when needed. Only rank 0 shows progress and writes checkpoints. With a
            ``DataLoader``, give it a ``DistributedSampler`` (``set_epoch`` is called). Every
            process takes the same stop decisions (they test the all-reduced loss and gradients);
            a process whose batch fails the per-step data check reports NaN to the others, so
            they stop too instead of waiting.
        divergence_ratio: Stop with :class:`TrainingDivergedError` when the magnitude of the
            training loss per datapoint exceeds this multiple of its magnitude at the first step
            of this call (taken as at least 1 nat): ``|loss_t| / N > divergence_ratio *
            max(1, |loss_1| / N)``. A heuristic for a learning rate so large that the parameters
            run away to finite but absurd values (an ELBO of -1e35 per datapoint); the default
            1e6 is far beyond the noise of the estimate and what a converging run does. None
            turns it off.

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError: Bad arguments or data (named in the message), including a device this
            machine lacks, an unwritable checkpoint path, data a per-step check rejects (with
            the epoch and step), data or validation data off the support of an observed site
            (e.g. grey levels under a Bernoulli likelihood); minibatches without a
            per-datapoint plate to scale; enumerated sites without an enumerating loss.
        TypeError: An argument of the wrong kind (``progress="no"``, ``plate=1``); the model or
            guide cannot be called with the unpacked batch.
        CheckpointError: ``resume=True`` and the checkpoint file cannot be resumed from.
        TrainingDivergedError: NaN/inf loss or gradients, a loss beyond ``divergence_ratio``,
            or NaN/inf parameters; the message names the epoch and step and the last good
            checkpoint.
    """
    opts = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "clip_norm": clip_norm,
        "divergence_ratio": divergence_ratio,
        "seed": seed,
        "resume": resume,
        "progress": progress,
        "distributed": distributed,
        "plate": plate,
        "transform": transform,
        "val_transform": val_transform,
        "has_val_data": val_data is not None,
        "unpack": unpack,
        "checkpoint": checkpoint,
        "device": device,
    }
    check_arguments(model, guide, opts)
    default_loss = loss is None
    loss = check_loss(loss, num_particles)
    opts["annealing"] = annealing_schedule(kl_annealing)
    if is_jit(loss) and opts["annealing"] is not None:
        raise ValueError(
            "kl_annealing changes the loss every step and cannot be used with a JIT-compiled loss"
        )
    if seed is not None:
        pyro.set_rng_seed(seed)
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
    checked = True
    try:
        for epoch in range(start, epochs):
            t_epoch = time.perf_counter()
            lr = float(run.opt.param_groups[0]["lr"])
            with pyro.validation_enabled(False), registration():
                train_loss = _train_epoch(run, epoch, result, ckpts)
            checked = _end_epoch(run, result, ckpts, train_loss, lr, t_epoch)
            if run.show:
                bar.set_postfix(
                    {k: f"{v[-1]:.3g}" for k, v in result.history.items() if k != "epoch_time"}
                )
            bar.update(1)
        if not checked:  # the state fit returns is finite too
            _check_parameters(run, result.epochs, ckpts)
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


def _train_epoch(run: Run, epoch: int, result: FitResult, ckpts: _Checkpoints | None) -> float:
    """One pass over the training data; the mean loss per step (full-data scale)."""
    steps = len(run.train)
    bar = (
        tqdm(total=steps, desc=f"epoch {epoch + 1}", leave=False)
        if run.show
        else _NO_BAR  # a disabled tqdm still costs ~0.1 ms per epoch: a small model's step
    )
    sampler = getattr(run.train.loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    overlap = isinstance(run.loss, FastTrace_ELBO) and overlaps_on(run.device)
    with contextlib.closing(bar):
        return _train_steps(run, epoch, result, ckpts, bar, overlap)


class _NoBar:
    """The part of tqdm's interface the epoch loop uses, doing nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


_NO_BAR = _NoBar()


def _train_steps(
    run: Run, epoch: int, result: FitResult, ckpts: _Checkpoints | None, bar: tqdm, overlap: bool
) -> float:
    """The steps of one epoch (see :func:`_train_epoch`)."""
    steps = len(run.train)
    total, count = 0.0, 0
    for step, batch in enumerate(run.train.iterate(run.generator)):
        t_step = time.perf_counter()
        if run.transform is not None:
            batch = apply_transform(run.transform, batch)
        rejected = _check_batch(run, batch, epoch, step)
        if rejected is not None and run.shard is None:
            raise rejected
        weight = run.beta
        if run.annealing is not None:
            weight *= float(run.annealing(epoch + step / steps))
        run.latent_scaler.factor = weight
        value, grad_norm = _step(run, batch, overlap, skip=rejected is not None)
        if rejected is not None:  # the other processes saw a NaN loss and stop too
            raise rejected
        _check_step(run, value, grad_norm, f"epoch {epoch + 1}, step {step + 1}", ckpts)
        run.opt.step()
        result.steps += 1
        total, count = total + value, count + 1
        run.step_times.append(time.perf_counter() - t_step)
        if run.show and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(elbo=f"{-value / run.train.n:.3f}")
        bar.update(1)
    return total / count


def _check_batch(run: Run, batch: Unpacked, epoch: int, step: int) -> Exception | None:
    """The model's ``check_data`` on a training batch (see ``Run.check_batch``): the error it
    raises, with the epoch and step, or None."""
    if run.check_batch is None:
        return None
    args, kwargs = batch
    try:
        run.check_batch(*args, **kwargs)
    except (ValueError, TypeError) as err:
        after = after_transform(run.transform, "transform")
        kind = TypeError if isinstance(err, TypeError) else ValueError
        error = kind(f"data: the batch of epoch {epoch + 1}, step {step + 1}{after}: {err}")
        error.__cause__ = err
        return error
    return None


def _check_step(run: Run, value: float, grad_norm: float, where: str, ckpts) -> None:
    """Raise :class:`TrainingDivergedError` unless the (all-reduced) loss of a step is finite
    and within ``divergence_ratio`` of the first step's, and its gradients are finite."""
    if not math.isfinite(value):
        distributed = " (or another process's batch failed its data check)" if run.shard else ""
        raise TrainingDivergedError(
            f"loss is {value} at {where}{distributed}: training stopped before the parameters "
            f"were updated{_last_good(ckpts)}"
        )
    per_datapoint = abs(value) / run.train.n
    if run.loss_ref is None:
        run.loss_ref = per_datapoint
    elif run.divergence_ratio is not None:
        if per_datapoint > run.divergence_ratio * max(1.0, run.loss_ref):
            raise TrainingDivergedError(
                f"training diverged at {where}: the loss per datapoint, {value / run.train.n:.4g} "
                f"nats, exceeds divergence_ratio={run.divergence_ratio:g} times its magnitude at "
                f"this call's first step ({run.loss_ref:.4g}); stopped before the parameters were "
                f"updated{_last_good(ckpts)}. Lower lr or set clip_norm; divergence_ratio=None "
                "turns this check off"
            )
    if not math.isfinite(grad_norm):
        raise TrainingDivergedError(
            f"{_bad_gradients(run)} at {where} (the loss, {value:.6g}, is finite): training "
            f"stopped before the parameters were updated{_last_good(ckpts)}"
        )


def _bad_gradients(run: Run) -> str:
    """Which gradients made the norm non-finite (computed only when it is)."""
    bad, largest = [], (0.0, "")
    for name, p in run.params.items():
        if p.grad is None:
            continue
        g = _dense(p.grad)
        if not all_finite(g):
            bad.append(name)
        else:
            largest = max(largest, (float(g.double().norm()), name))
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        return f"the gradients of {bad[:5]}{more} are NaN or infinite"
    return (
        f"the gradients are finite but too large for their norm to be computed in their dtype "
        f"(it overflows; largest: {largest[1]}, norm {largest[0]:.3g})"
    )


def _last_good(ckpts: _Checkpoints | None) -> str:
    if ckpts is None:
        return ""
    if ckpts.good is None:
        return "; no checkpoint was written in this call"
    return f"; last good checkpoint: {ckpts.good}"


def _step(run: Run, batch: Unpacked, overlap: bool, skip: bool = False) -> tuple[float, float]:
    """Loss and gradients of one minibatch (all-reduced across processes when distributed),
    gradients clipped to ``clip_norm``; returns the loss and the gradient norm before clipping
    (NaN when the loss is not finite). ``skip``: contribute no gradient and a NaN loss."""
    b = 0 if skip else batch_size_of(batch)
    if run.shard is not None:  # gradients live in the all-reduce buffer
        run.shard.begin_step(run.param_list, b, overlap=overlap)
    else:
        run.opt.zero_grad(set_to_none=True)
    value = _scaled_loss_and_grads(run, batch) if b else 0.0  # b = 0: an empty shard
    if skip:
        value = math.nan
    if run.shard is not None:
        value = run.shard.reduce_step(run.param_list, value, b)
    if not math.isfinite(value):
        return value, math.nan
    return value, _gradient_norm(run)


def _gradient_norm(run: Run) -> float:
    """A norm of the gradients, finite iff every gradient is (barring overflow at absurd sizes);
    clips the gradients to ``clip_norm`` when set.

    Without ``clip_norm`` it is the sum of the per-parameter 2-norms: one fused reduction
    (``torch._foreach_norm``, in float32 at least) and one sync per device and dtype, about
    1.5% of a VAE step on one CPU thread (``benchmarks/vae_overhead.py``). With it, the global
    2-norm that clipping needs anyway (as ``torch.nn.utils.clip_grad_norm_`` computes it)."""
    if run.clip_norm is not None:
        params = [p for p in run.param_list if p.grad is not None]
        if not params:
            return 0.0
        grads = [_dense(p.grad) for p in params]
        total = torch.nn.utils.get_total_norm(grads, 2.0)
        norm = float(total)
        if math.isfinite(norm):
            torch.nn.utils.clip_grads_with_norm_(params, run.clip_norm, total)
        return norm
    total = 0.0
    for group in run.param_groups:  # a gradient has its parameter's device and dtype
        grads = [_dense(p.grad) for p in group if p.grad is not None]
        if grads:
            half = grads[0].dtype in (torch.float16, torch.bfloat16)
            wide = torch.float32 if half else None  # summed in float32: no overflow
            total += float(torch.stack(torch._foreach_norm(grads, 2, dtype=wide)).sum())
    return total


def _dense(grad: torch.Tensor) -> torch.Tensor:
    """A gradient's values (a sparse gradient's non-zero entries)."""
    return grad.coalesce().values() if grad.is_sparse else grad


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
) -> bool:
    """History, validation, best epoch, scheduler step and checkpoints after one epoch that
    started at ``time.perf_counter() == t0``; returns whether the parameters were checked.

    The parameters are checked (:func:`_check_parameters`) before they are kept as the best
    state or written to a checkpoint; other epochs skip the check, which on a small model costs
    as much as a step (one reduction over every parameter and buffer), since the next step would
    see a non-finite parameter as a non-finite loss or gradient, and ``_train`` checks the
    final state."""
    result.history["train_elbo"].append(-loss / run.train.n)
    result.history.setdefault("lr", []).append(lr)
    criterion = result.history["train_elbo"][-1]
    if run.val is not None:
        t_eval = time.perf_counter()
        criterion = _validation_elbo(run, result.epochs + 1)
        run.eval_s += time.perf_counter() - t_eval
        result.history["val_elbo"].append(criterion)
    result.history["epoch_time"].append(time.perf_counter() - t0)
    result.epochs += 1
    is_best = result.best_elbo is None or criterion > result.best_elbo
    checked = is_best or ckpts is not None
    if checked:
        _check_parameters(run, result.epochs, ckpts)
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
    return checked


def _check_parameters(run: Run, epoch: int, ckpts: _Checkpoints | None) -> None:
    """Raise :class:`TrainingDivergedError` if a parameter or a floating module buffer is NaN or
    infinite (before it could be kept as the best state or written to a checkpoint)."""
    tensors = dict(run.params)
    for prefix, fn in (("model", run.model), ("guide", run.guide)):
        module = module_of(fn)
        if module is not None:
            tensors.update({f"{prefix}.{k}": b for k, b in module.named_buffers()})
    floating = {k: t.detach() for k, t in tensors.items() if t.is_floating_point()}
    if all_finite_many(list(floating.values())):
        return
    bad = [k for k, t in floating.items() if not all_finite(t)]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise TrainingDivergedError(
            f"parameters or buffers {bad[:5]}{more} are NaN or infinite after epoch {epoch} (the "
            f"losses and gradients were finite); nothing was saved{_last_good(ckpts)}"
        )


def _validation_elbo(run: Run, epoch: int) -> float:
    """ELBO per validation datapoint (β = 1, no annealing), averaged over batches, after
    ``val_transform``; every batch is checked (:func:`~pyrovi.infer.fit_setup.validation_batch`,
    :class:`~pyrovi.infer.fit_setup.SupportCheck`). When distributed, a process whose batch
    fails tells the others (through the metrics' all-reduce), so that all of them stop."""
    val = run.val
    scaler = DataScaleMessenger(plate=run.data_scaler.plate, num_data=val.n)
    total, count, failed = 0.0, 0, None
    with torch.no_grad(), pyro.validation_enabled(False), skip_param_registration(), scaler:
        for i, batch in enumerate(val.iterate(None)):
            b = batch_size_of(batch)
            if not b:
                continue
            where = f"batch {i + 1} in the validation after epoch {epoch}"
            try:
                args, kwargs = validation_batch(run, batch, where)
                with SupportCheck():
                    value = run.loss.loss(run.model, run.guide, *args, **kwargs)
            except OffSupportError as err:
                after = after_transform(run.val_transform, "val_transform")
                failed = support_error(err, "val_data", where + after)
            except (ValueError, TypeError) as err:
                if run.shard is None:
                    raise
                failed = err
            if failed is not None:
                if run.shard is None:
                    raise failed
                break
            # weighted by the batch size, so that shards of a global batch add up
            total += value * b
            count += b
    if run.shard is not None:
        total, count, bad = run.shard.sum_floats(
            [total, float(count), float(failed is not None)], val.device
        )
        if bad:
            raise failed or ValueError(
                f"val_data: the validation after epoch {epoch} failed in another process (see "
                "its error); stopped"
            )
    return -total / count / val.n
