"""Everything :func:`pyrovi.infer.fit` does before its loop: argument checks, devices, batches,
the process group, and the first pass (run with Pyro's checks on) that creates lazily initialized
parameters and finds what is trained."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.autoguide import AutoGuide
from pyro.infer.elbo import ELBO as _ELBOBase
from pyro.poutine.messenger import Messenger
from torch.utils.data import DistributedSampler

from pyrovi._validation import all_finite
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.batches import Batches, Data, Unpacked, apply_transform
from pyrovi.infer.distributed import DistributedContext, init_distributed
from pyrovi.infer.evidence import _as_tensors
from pyrovi.infer.handlers import DataScaleMessenger, LatentScaleMessenger
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.optim import default_adam
from pyrovi.infer.parameters import collect_parameters, module_of

__all__ = [
    "Run",
    "annealing_schedule",
    "check_arguments",
    "check_loss",
    "initialize",
    "is_jit",
    "prepare",
]


# --------------------------------------------------------------------------- argument checks


def check_finite(tensors: tuple[torch.Tensor, ...], name: str) -> None:
    for i, t in enumerate(tensors):
        if (t.is_floating_point() or t.is_complex()) and not all_finite(t):
            bad = ~torch.isfinite(t)
            row = int(bad.reshape(t.shape[0], -1).any(dim=1).nonzero()[0, 0])
            where = f"tensor {i}, " if len(tensors) > 1 else ""
            raise ValueError(
                f"{name} contains NaN or infinite values ({where}first bad row {row}); "
                "clean or impute the data before fitting"
            )


def resolve_device(device: Any, fns: tuple[Callable, ...], data: Data) -> torch.device:
    if device is not None:
        return torch.device(device)
    for fn in fns:
        module = module_of(fn)
        if module is not None:
            for t in (*module.parameters(), *module.buffers()):
                return t.device
    if isinstance(data, torch.Tensor | tuple | list):
        return _as_tensors(data, "data")[0].device
    return torch.device("cpu")


def annealing_schedule(kl_annealing: Any) -> Callable[[float], float] | None:
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


def make_optimizer(optimizer: Any, params: list[torch.Tensor], lr: float):
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


def is_scheduler(obj: Any) -> bool:
    return callable(getattr(obj, "step", None)) and callable(getattr(obj, "state_dict", None))


def make_scheduler(scheduler: Any, opt: torch.optim.Optimizer) -> Any:
    if scheduler is None:
        return None
    if is_scheduler(scheduler) or not callable(scheduler):
        raise ValueError(
            "scheduler must be a factory optimizer -> torch LR scheduler (fit creates the "
            "optimizer), e.g. scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 10), "
            f"got {type(scheduler).__name__}"
        )
    made = scheduler(opt)
    if not is_scheduler(made):
        raise ValueError(
            "scheduler factory must return a torch.optim.lr_scheduler scheduler (with step and "
            f"state_dict), got {type(made).__name__}"
        )
    return made


def is_jit(loss: Any) -> bool:
    return "Jit" in type(loss).__name__


def check_loss(loss: ELBO | None, num_particles: int) -> ELBO:
    _positive_int("num_particles", num_particles)
    if loss is None:
        return FastTrace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1)
    if not isinstance(loss, _ELBOBase):
        raise ValueError(f"loss must be a pyro.infer.ELBO instance, got {type(loss).__name__}")
    if num_particles != 1:
        raise ValueError(
            "num_particles configures the default loss; set num_particles on the ELBO passed as "
            "loss instead"
        )
    return loss


def check_arguments(
    epochs: int, batch_size: int | None, lr: float, clip_norm: float | None, fns: dict[str, Any]
) -> None:
    _positive_int("epochs", epochs)
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
    if not (isinstance(lr, int | float) and not isinstance(lr, bool) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None, got {clip_norm!r}")
    for name, fn in fns.items():
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable, got {fn!r}")


# --------------------------------------------------------------------------- one fit's state


@dataclass
class Run:
    """What one call of :func:`fit` holds while it trains."""

    model: Callable
    guide: Callable
    loss: ELBO
    train: Batches
    val: Batches | None
    device: torch.device
    shard: DistributedContext | None
    transform: Callable | None
    beta: float
    annealing: Callable[[float], float] | None
    clip_norm: float | None
    generator: torch.Generator
    data_scaler: DataScaleMessenger
    latent_scaler: LatentScaleMessenger
    default_loss: bool = False
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    opt: Any = None
    scheduler: Any = None
    show: bool = False
    step_times: list[float] = field(default_factory=list)
    eval_s: float = 0.0

    @property
    def param_list(self) -> list[torch.Tensor]:
        return list(self.params.values())


def empty_guide(*args: Any, **kwargs: Any) -> None:
    """The guide of a model without latent sites (maximum likelihood)."""


def open_shard(distributed: bool, device: torch.device, seed: int | None):
    if not distributed:
        return None
    init_distributed(device=device)
    shard = DistributedContext.from_process_group()
    if seed is not None:
        pyro.set_rng_seed(seed + shard.rank)  # own Monte Carlo noise per process
    return shard


def check_data(model: Callable, batches: Batches, name: str) -> None:
    if not batches.tensors:
        return
    check_finite(batches.tensors, name)
    check = getattr(model, "check_data", None)
    if callable(check):
        args, kwargs = batches.whole()
        check(*args, **kwargs)


def warn_loader_sampler(train: Batches) -> None:
    if not isinstance(getattr(train.loader, "sampler", None), DistributedSampler):
        warnings.warn(
            "fit(distributed=True) with a DataLoader whose sampler is not a "
            "DistributedSampler: every process trains on every batch; give the DataLoader "
            "sampler=DistributedSampler(dataset) to split the data across processes",
            stacklevel=4,
        )


def prepare(model, guide, data, val_data, loss, opts: dict[str, Any]) -> Run:
    """Devices, process group, batches and data checks: everything before the first pass."""
    guide = empty_guide if guide is None else guide
    device = resolve_device(opts["device"], (model, guide), data)
    shard = open_shard(opts["distributed"], device, opts["seed"])
    for fn in (model, guide):
        module = module_of(fn)
        if module is not None:
            module.to(device)
    jit = is_jit(loss)
    common = {"drop_last": jit, "unpack": opts["unpack"]}
    train = Batches(data, opts["batch_size"], device, "data", shuffle=True, **common)
    val = None
    if val_data is not None:
        val = Batches(val_data, opts["batch_size"], device, "val_data", shuffle=False, **common)
    if shard is not None and train.loader is not None:
        warn_loader_sampler(train)
    check_data(model, train, "data")
    if val is not None:
        check_data(model, val, "val_data")
    seed = opts["seed"]
    shuffle_seed = seed if seed is not None else int(torch.randint(2**62, ()).item())
    if shard is not None:
        shuffle_seed = shard.broadcast_int(shuffle_seed, device)  # one permutation for all
        for batches in (train, val):
            if batches is not None:
                batches.shard = shard
    return Run(
        model=model,
        guide=guide,
        loss=loss,
        train=train,
        val=val,
        device=device,
        shard=shard,
        transform=opts["transform"],
        beta=float(getattr(model, "beta", 1.0)),
        annealing=opts["annealing"],
        clip_norm=opts["clip_norm"],
        generator=torch.Generator().manual_seed(shuffle_seed),
        data_scaler=DataScaleMessenger(plate=opts["plate"], num_data=train.n),
        latent_scaler=LatentScaleMessenger(1.0),
        show=opts["progress"] and sys.stderr.isatty() and (shard is None or shard.is_main),
    )


# --------------------------------------------------------------------------- the first pass


class EnumeratedSites(Messenger):
    """Names of the unobserved sample sites marked for enumeration."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def _postprocess_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            if msg["infer"].get("enumerate") in ("parallel", "sequential"):
                self.names.append(msg["name"])


ARGUMENT_ERRORS = ("positional argument", "keyword argument", "unexpected keyword")


def call_error(err: TypeError) -> TypeError:
    error = TypeError(
        f"calling the model or guide with a batch failed: {err}. fit calls "
        "model(*args, **kwargs) with each batch unpacked by unpack= (default: a tensor is one "
        "argument, a tuple one argument per element, a dict keyword arguments); for "
        "(x, label) batches and model(x) pass unpack=lambda b: ((b[0],), {})"
    )
    error._pyrovi_call_error = True  # type: ignore[attr-defined]
    return error


def first_pass(run: Run) -> poutine.Trace:
    """One loss evaluation with Pyro's checks on: creates lazily initialized parameters and
    returns their trace. The default loss falls back to drawing its particles one at a time
    when the model does not broadcast over a particle plate."""
    batch = next(run.train.iterate(generator=torch.Generator().manual_seed(0)))
    if run.transform is not None:
        batch = apply_transform(run.transform, batch)
    vectorized = run.default_loss and run.loss.vectorize_particles
    try:
        return checked_pass(run, batch)
    except Exception as err:
        explain_autoguide_failure(run.guide, err)
        if not vectorized or getattr(err, "_pyrovi_call_error", False):
            raise
        n = run.loss.num_particles
        warnings.warn(
            f"the model does not run under fit's vectorized particle plate ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}); drawing the {n} particles one at a time (pass "
            f"loss=FastTrace_ELBO(num_particles={n}) to skip this attempt)",
            stacklevel=4,
        )
        run.loss = FastTrace_ELBO(num_particles=n, vectorize_particles=False)
        return checked_pass(run, batch)


def explain_autoguide_failure(guide: Callable, err: Exception) -> None:
    """Raise a clear error for an autoguide over a model with an unsized plate (Pyro's
    autoguides need every plate's size to create their own plates)."""
    prototype = getattr(guide, "prototype_trace", None)
    if not isinstance(guide, AutoGuide) or prototype is None:
        return
    for name, site in prototype.iter_stochastic_nodes():
        for f in site["cond_indep_stack"]:
            if f.vectorized and f.size == -1:
                raise ValueError(
                    f"{type(guide).__name__} cannot create pyro.plate('{f.name}') for site "
                    f"'{name}': the model's plate has no size (pyro.plate('{f.name}')); give it "
                    f"one, e.g. pyro.plate('{f.name}', len(x)), or use a guide written by hand"
                ) from err


def checked_pass(run: Run, batch: Unpacked) -> poutine.Trace:
    args, kwargs = batch
    enumerated = EnumeratedSites()
    run.data_scaler.seen = False
    with pyro.validation_enabled(True), poutine.trace(param_only=True) as capture, enumerated:
        with torch.no_grad(), run.data_scaler:
            try:
                run.loss.loss(run.model, run.guide, *args, **kwargs)
            except TypeError as err:
                if any(s in str(err) for s in ARGUMENT_ERRORS):
                    raise call_error(err) from err
                raise
    check_first_pass(run, enumerated.names)
    return capture.trace


def check_first_pass(run: Run, enumerated: list[str]) -> None:
    loss_name = type(run.loss).__name__
    if enumerated and not isinstance(run.loss, pyro.infer.TraceEnum_ELBO):
        raise ValueError(
            f"site(s) {sorted(set(enumerated))} are marked for enumeration "
            f"(infer={{'enumerate': ...}}) but the loss {loss_name} does not enumerate; pass "
            "loss=pyro.infer.TraceEnum_ELBO(max_plate_nesting=...)"
        )
    plate = run.data_scaler.plate
    if run.train.batch_size >= run.train.n:
        return
    check_autoguide_locals(run.guide, plate, run.train)
    if not run.data_scaler.seen:
        raise ValueError(
            f"no sample site is inside pyro.plate('{plate}'), so fit cannot scale minibatches of "
            f"{run.train.batch_size} out of {run.train.n} datapoints to the full data; name the "
            "model's per-datapoint plate with plate='...', or train on all the data at once with "
            f"batch_size={run.train.n}"
        )


def check_autoguide_locals(guide: Callable, plate: str, train: Batches) -> None:
    """An autoguide's parameters for latents inside an unsubsampled data plate are per position
    in the batch, not per datapoint: minibatches would mix them up."""
    prototype = getattr(guide, "prototype_trace", None)
    if not isinstance(guide, AutoGuide) or prototype is None:
        return
    for name, site in prototype.iter_stochastic_nodes():
        for f in site["cond_indep_stack"]:
            if f.name == plate and (f.full_size is None or f.full_size in (f.size, -1)):
                raise ValueError(
                    f"{type(guide).__name__} has per-datapoint parameters for site '{name}' inside "
                    f"pyro.plate('{plate}'), but fit passes minibatches of {train.batch_size} out "
                    f"of {train.n} datapoints in shuffled order, so they would not stay with their "
                    f"datapoints; write the plate as pyro.plate('{plate}', N, subsample=idx) with "
                    "the indices among the data (the autoguide then subsamples its parameters), "
                    f"use an amortized guide, or pass batch_size={train.n}"
                )


def initialize(run: Run, optimizer: Any, lr: float, scheduler: Any) -> None:
    """First pass, then the parameters, optimizer and scheduler."""
    existing = set(pyro.get_param_store().keys())
    trace = first_pass(run)
    run.params = collect_parameters(run.model, run.guide, trace, existing)
    if not run.params:
        raise ValueError("model and guide have no trainable parameters")
    if run.shard is not None:
        run.shard.broadcast_parameters(run.param_list)
    run.opt = make_optimizer(optimizer, run.param_list, lr)
    run.scheduler = make_scheduler(scheduler, run.opt)
