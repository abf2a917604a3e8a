"""Everything :func:`pyrovi.infer.fit` does before its loop: argument checks, devices, batches,
the process group, and the first pass (run with Pyro's checks on) that creates lazily initialized
parameters and finds what is trained."""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.torch_distribution import MaskedDistribution
from pyro.infer import ELBO
from pyro.infer.autoguide import AutoGuide
from pyro.infer.elbo import ELBO as _ELBOBase
from pyro.poutine.messenger import Messenger
from torch.distributions import Independent, constraints
from torch.utils.data import DistributedSampler

from pyrovi._progress import show_progress
from pyrovi._validation import all_finite, as_tensors, boolean, integer_in, positive_float
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.batches import Batches, Data, Unpacked, apply_transform, batch_size_of
from pyrovi.infer.distributed import DistributedContext, init_distributed
from pyrovi.infer.handlers import DataScaleMessenger, LatentScaleMessenger
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.optim import default_adam
from pyrovi.infer.parameters import collect_parameters, module_of
from pyrovi.infer.particles import fallback_warning

__all__ = [
    "OffSupportError",
    "Run",
    "after_transform",
    "SupportCheck",
    "support_error",
    "validation_batch",
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


def parse_device(device: Any) -> torch.device:
    """``torch.device(device)``, checked to exist on this machine.

    Raises:
        ValueError: ``device`` is not a device (``"cud"``, ``3.5``) or not available here
            (``"cuda"`` without CUDA, ``"cuda:7"`` with one GPU); the message lists what is.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        text = str(err).strip()
        reason = text.splitlines()[0] if text and not isinstance(err, TypeError) else "wrong type"
        raise ValueError(
            f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', got "
            f"{device!r} ({reason}); available here: {available_devices()}"
        ) from None
    problem = device_problem(parsed)
    if problem:
        raise ValueError(
            f"device={device!r} is not available: {problem}; available here: {available_devices()}"
        )
    return parsed


def device_problem(device: torch.device) -> str | None:
    """Why ``device`` cannot be used here (None if it can, or if torch has no way to tell)."""
    if device.type == "cpu":
        return None
    if device.type == "meta":
        return "the meta device holds no data to train on"
    backend = getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available):
        return None  # an out-of-tree backend (xla, privateuseone, ...): let torch decide
    if device.type == "cuda" and torch.version.cuda is None and torch.version.hip is None:
        return "this torch build has no CUDA support"
    if not available():
        return f"no {device.type} device is visible to torch"
    count = backend.device_count() if hasattr(backend, "device_count") else None
    if device.index is not None and count is not None and device.index >= count:
        return f"there are {count} {device.type} device(s), numbered from 0"
    return None


def available_devices() -> list[str]:
    """``"cpu"`` and the accelerators torch sees, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    found = ["cpu"]
    for kind in ("cuda", "xpu", "mps", "mtia"):
        backend = getattr(torch, kind, None)
        try:
            if backend is not None and backend.is_available():
                found += [f"{kind}:{i}" for i in range(backend.device_count())] or [kind]
        except (RuntimeError, AttributeError):  # pragma: no cover - a broken backend
            continue
    return found


def resolve_device(device: Any, fns: tuple[Callable, ...], data: Data) -> torch.device:
    if device is not None:
        return parse_device(device)
    for fn in fns:
        module = module_of(fn)
        if module is not None:
            for t in (*module.parameters(), *module.buffers()):
                return t.device
    if isinstance(data, torch.Tensor | tuple | list):
        return as_tensors(data, "data")[0].device
    return torch.device("cpu")


def floating_dtype(fns: tuple[Callable, ...]) -> torch.dtype | None:
    """The floating dtype shared by every floating module parameter of the model and guide;
    None if they have none (e.g. Pyro functions with ``pyro.param``) or several."""
    dtypes = set()
    for fn in fns:
        module = module_of(fn)
        if module is not None:
            dtypes |= {p.dtype for p in module.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def annealing_schedule(kl_annealing: Any) -> Callable[[float], float] | None:
    if kl_annealing is None:
        return None
    if callable(kl_annealing):
        return kl_annealing
    if isinstance(kl_annealing, numbers.Real) and not isinstance(kl_annealing, bool):
        warmup = float(kl_annealing)
        if not (warmup > 0 and math.isfinite(warmup)):
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


def check_arguments(model: Callable, guide: Callable | None, opts: dict[str, Any]) -> None:
    """Check ``fit``'s options (all but the data, the loss and the factories, checked where they
    are used); raise ``ValueError`` or ``TypeError`` naming the argument."""
    for name, fn in (("model", model), ("guide", guide)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable (a Pyro model or guide), got {fn!r}")
    if model is None:
        raise TypeError("model must be callable (a Pyro model), got None")
    _positive_int("epochs", opts["epochs"])
    if opts["batch_size"] is not None:
        _positive_int("batch_size", opts["batch_size"])
    positive_float("lr", opts["lr"])
    positive_float("clip_norm", opts["clip_norm"], allow_none=True)
    ratio = opts["divergence_ratio"]
    if ratio is not None and not (positive_float("divergence_ratio", ratio) > 1):
        raise ValueError(f"divergence_ratio must be a number > 1 or None, got {ratio!r}")
    if opts["seed"] is not None:
        integer_in("seed", opts["seed"], 0, 2**32 - 1)  # what NumPy's seed accepts
    for name in ("resume", "progress", "distributed"):
        boolean(name, opts[name])
    plate = opts["plate"]
    if not isinstance(plate, str) or not plate:
        raise TypeError(f"plate must be the name of a pyro.plate (a non-empty str), got {plate!r}")
    for name in ("transform", "val_transform", "unpack"):
        if opts[name] is not None and not callable(opts[name]):
            raise ValueError(f"{name} must be callable, got {opts[name]!r}")
    if opts["val_transform"] is not None and not opts["has_val_data"]:
        raise ValueError(
            "val_transform is applied to the batches of val_data, but val_data is None"
        )
    check_checkpoint_path(opts["checkpoint"], opts["resume"])


def check_checkpoint_path(checkpoint: Any, resume: bool) -> None:
    """``checkpoint`` is None or a path that is not a directory (``resume`` needs one)."""
    if checkpoint is None:
        if resume:
            raise ValueError("resume=True needs a checkpoint path (checkpoint=...)")
        return
    if not isinstance(checkpoint, str | os.PathLike) or not str(checkpoint):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got {checkpoint!r}")
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(
            f"checkpoint={str(checkpoint)!r} is a directory; give a file path, e.g. "
            f"{str(path / 'fit.pt')!r}"
        )


def check_writable(path: Path) -> None:
    """Create ``path``'s directory and check that a file can be written there (before training
    rather than after the first epoch).

    Raises:
        ValueError: The directory cannot be created or written to.
    """
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ValueError(
            f"checkpoint={str(path)!r}: {str(blocker)!r} is a file, not a directory, so the "
            "checkpoint cannot be written there"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.probe-"):
            pass
    except OSError as err:
        raise ValueError(
            f"checkpoint={str(path)!r}: cannot write in {str(path.parent)!r} "
            f"({type(err).__name__}: {err.strerror or err})"
        ) from None


# --------------------------------------------------------------------------- one fit's state


@dataclass
class Run:
    """What one call of :func:`fit` holds while it trains.

    ``check_batch`` is the model's ``check_data``, run on every training batch when the batches
    were not all checked up front (a ``transform``, or a ``DataLoader``); ``check_val_batch`` is
    the same for validation batches (a ``val_transform``, or a ``DataLoader``); ``loss_ref`` is
    the magnitude of the first step's loss per datapoint, the scale of the divergence check.
    """

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
    check_batch: Callable | None = None
    val_transform: Callable | None = None
    check_val_batch: Callable | None = None
    divergence_ratio: float | None = None
    loss_ref: float | None = None
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

    @property
    def param_groups(self) -> list[list[torch.Tensor]]:
        """The parameters grouped by device and dtype (as their gradients are), computed once
        (``params`` does not change during a call of ``fit``)."""
        cached = self.__dict__.get("_param_groups")
        if cached is None or cached[0] != len(self.params):
            groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in self.params.values():
                groups.setdefault((p.device, p.dtype), []).append(p)
            cached = (len(self.params), list(groups.values()))
            self.__dict__["_param_groups"] = cached
        return cached[1]


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


def make_batches(data, val_data, device: torch.device, loss: ELBO, opts: dict[str, Any]):
    """Training and validation batches on ``device``, floating-point data cast to ``dtype``."""
    common = {"drop_last": is_jit(loss), "unpack": opts["unpack"], "dtype": opts["dtype"]}
    train = Batches(data, opts["batch_size"], device, "data", shuffle=True, **common)
    val = None
    if val_data is not None:
        val = Batches(val_data, opts["batch_size"], device, "val_data", shuffle=False, **common)
    return train, val


def batch_check(model: Callable, batches: Batches | None, transform: Callable | None):
    """The model's ``check_data`` when the batches are not the data checked up front."""
    check = getattr(model, "check_data", None)
    if batches is None or not callable(check) or (transform is None and batches.loader is None):
        return None
    return check


def prepare(model, guide, data, val_data, loss, opts: dict[str, Any]) -> Run:
    """Devices, process group, batches and data checks: everything before the first pass."""
    guide = empty_guide if guide is None else guide
    device = resolve_device(opts["device"], (model, guide), data)
    shard = open_shard(opts["distributed"], device, opts["seed"])
    for fn in (model, guide):
        module = module_of(fn)
        if module is not None:
            module.to(device)
    opts = {**opts, "dtype": floating_dtype((model, guide))}
    train, val = make_batches(data, val_data, device, loss, opts)
    if shard is not None and train.loader is not None:
        warn_loader_sampler(train)
    check_data(model, train, "data")
    if val is not None:
        if opts["val_transform"] is None:
            check_data(model, val, "val_data")
        else:  # checked batch by batch, after val_transform
            check_finite(val.tensors, "val_data")
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
        check_batch=batch_check(model, train, opts["transform"]),
        val_transform=opts["val_transform"],
        check_val_batch=batch_check(model, val, opts["val_transform"]),
        divergence_ratio=opts["divergence_ratio"],
        show=show_progress(opts["progress"]) and (shard is None or shard.is_main),
    )


# --------------------------------------------------------------------------- supports


class OffSupportError(ValueError):
    """An observed value outside the support of its site's distribution (see
    :class:`SupportCheck`); :func:`support_error` turns it into the message ``fit`` raises.

    Pyro's trace handler re-raises errors as a new instance of their class with the message
    alone (and the site shapes appended), so the fields are optional; :meth:`original` finds
    the instance that has them."""

    def __init__(
        self,
        message: str,
        *,
        site: str | None = None,
        distribution: str | None = None,
        support: str | None = None,
    ) -> None:
        super().__init__(message)
        self.site, self.distribution, self.support = site, distribution, support
        self.binary = support == "{0, 1}"

    def original(self) -> OffSupportError:
        """The error :class:`SupportCheck` raised (this one, or one it was raised from)."""
        err: BaseException | None = self
        while err is not None:
            if isinstance(err, OffSupportError) and err.site is not None:
                return err
            err = err.__cause__ or err.__context__
        return self


def _unwrapped(fn: Any) -> tuple[Any, bool]:
    """The distribution inside ``Independent``/``MaskedDistribution``/``expand`` wrappers, and
    whether a mask was among them."""
    masked = False
    while True:
        if isinstance(fn, MaskedDistribution):
            masked = True
        if not isinstance(
            fn, Independent | MaskedDistribution | pyro.distributions.ExpandedDistribution
        ):
            return fn, masked
        fn = fn.base_dist


def _in_support(fn: Any, value: torch.Tensor) -> torch.Tensor | None:
    """Which values lie in ``fn``'s support (a bool tensor broadcastable to its batch shape),
    whatever the distribution's ``validate_args``; masked-out values count as in it; None when
    the support cannot be checked (a dependent or unknown support)."""
    if isinstance(fn, Independent):
        ok = _in_support(fn.base_dist, value)
        n = fn.reinterpreted_batch_ndims
        if ok is None or not n:
            return ok
        return ok.all() if ok.dim() <= n else ok.flatten(-n).all(-1)
    if isinstance(fn, MaskedDistribution):
        ok = _in_support(fn.base_dist, value)
        return None if ok is None else _unmasked(ok, fn._mask)
    try:
        support = fn.support
        if constraints.is_dependent(support):
            return None
        ok = support.check(value)
    except (NotImplementedError, AttributeError, RuntimeError, TypeError, ValueError):
        return None
    return ok if isinstance(ok, torch.Tensor) else None


def _unmasked(ok: torch.Tensor, mask: Any) -> torch.Tensor:
    """``ok`` where ``mask`` is True, True elsewhere (``ok`` unchanged if they do not broadcast)."""
    if mask is None or mask is True:
        return ok
    if mask is False:
        return torch.ones_like(ok)
    try:
        return ok | ~mask.bool()
    except RuntimeError:
        return ok


def _describe_support(fn: Any) -> str:
    try:
        support = fn.support
    except (NotImplementedError, AttributeError):  # pragma: no cover - checked before
        return "unknown support"
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if isinstance(support, type(constraints.boolean)):
        return "{0, 1}"
    return str(support)


class SupportCheck(Messenger):
    """Raise :class:`OffSupportError` at an observed sample site whose value is outside its
    distribution's support, whether or not the distribution validates its arguments (pyrovi's
    Bernoulli likelihoods use ``validate_args=False``, so grey levels in [0, 1] would otherwise
    be scored as if they were pixels in {0, 1}). Masked-out values are not checked. One
    elementwise comparison and one reduction per observed site."""

    def _process_message(self, msg: dict[str, Any]) -> None:
        value = msg.get("value")
        if msg["type"] != "sample" or not msg["is_observed"] or not isinstance(value, torch.Tensor):
            return
        if not value.numel():
            return
        ok = _in_support(msg["fn"], value)
        if ok is None:
            return
        ok = _unmasked(ok, msg.get("mask"))
        if bool(ok.all()):
            return
        base, masked = _unwrapped(msg["fn"])
        example = None
        if not masked and not isinstance(msg.get("mask"), torch.Tensor):
            try:
                bad = ~base.support.check(value)
                if bad.shape == value.shape and bool(bad.any()):
                    example = float(value[bad][0])
            except (NotImplementedError, AttributeError, RuntimeError, TypeError, ValueError):
                example = None
        support = _describe_support(msg["fn"])
        e = f", e.g. {example:.4g}" if example is not None else ""
        raise OffSupportError(
            f"site '{msg['name']}' has values outside the support of its "
            f"{type(base).__name__} distribution, {support}{e}",
            site=msg["name"],
            distribution=type(base).__name__,
            support=support,
        )


def support_error(err: OffSupportError, name: str, where: str) -> ValueError:
    """The ``ValueError`` for data (``name``: ``"data"`` or ``"val_data"``) off the support of a
    site, with a way out."""
    err = err.original()
    if err.binary and name == "val_data":
        fix = (
            "binarize the validation data once, e.g. val_data=pyrovi.data.binarize(x, "
            "generator=torch.Generator().manual_seed(0)), or pass val_transform= (e.g. "
            "pyrovi.data.DynamicBinarization(), a fresh binary sample every epoch)"
        )
    elif err.binary:
        fix = (
            "pass transform=pyrovi.data.DynamicBinarization() (a fresh binary sample of every "
            "batch), or binarize the data once with pyrovi.data.binarize(x, "
            "generator=torch.Generator().manual_seed(0))"
        )
    else:
        option = "val_transform=" if name == "val_data" else "transform="
        fix = (
            f"map the data onto the support (e.g. with {option}), or use a distribution whose "
            "support holds the data"
        )
    error = ValueError(
        f"{name}, {where}: {err}. Such values have no probability under it, so an ELBO computed "
        f"from them is not a bound on the log-likelihood of the data; {fix}"
    )
    error.__cause__ = err
    return error


def after_transform(transform: Callable | None, name: str) -> str:
    """`` after <name>`` when ``transform`` is set (for the place an error names), else ``""``."""
    return f" after {name}" if transform is not None else ""


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
    where = f"first batch{after_transform(run.transform, 'transform')}"
    try:
        return checked_pass(run, batch)
    except OffSupportError as err:
        raise support_error(err, "data", where) from None
    except Exception as err:
        explain_autoguide_failure(run.guide, err)
        if not vectorized or getattr(err, "_pyrovi_call_error", False):
            explain_dtype_failure(run, batch, err, "data")
            raise
        n = run.loss.num_particles
        fallback_warning(
            "fit",
            n,
            err,
            f"Pass loss=FastTrace_ELBO(num_particles={n}) to skip the vectorized attempt.",
        )
    run.loss = FastTrace_ELBO(num_particles=n, vectorize_particles=False)
    try:
        return checked_pass(run, batch)
    except OffSupportError as err:
        raise support_error(err, "data", where) from None
    except Exception as err:
        explain_dtype_failure(run, batch, err, "data")
        raise


_DTYPE_ERROR = re.compile(r"dtype|scalar type|result type|not implemented for '", re.IGNORECASE)


def explain_dtype_failure(run: Run, batch: Unpacked, err: Exception, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` when the model failed on a dtype mismatch and the
    batch holds integer or bool tensors (fit casts only floating-point data)."""
    if not isinstance(err, RuntimeError | TypeError) or not _DTYPE_ERROR.search(str(err)):
        return
    args, kwargs = batch
    named = [(f"argument {i}", v) for i, v in enumerate(args)]
    named += [(f"keyword {k!r}", v) for k, v in kwargs.items()]
    odd = [
        f"{where} is {v.dtype}"
        for where, v in named
        if isinstance(v, torch.Tensor) and not (v.is_floating_point() or v.is_complex())
    ]
    if not odd:
        return
    dtype = floating_dtype((run.model, run.guide)) or torch.get_default_dtype()
    raise ValueError(
        f"{name}: the model failed on a dtype mismatch ({type(err).__name__}: "
        f"{str(err).splitlines()[0]}); in the batch, {', '.join(odd)}. fit casts floating-point "
        f"data to the parameters' dtype ({dtype}) but leaves integer and bool tensors as they are "
        "(they may be indices, labels or masks): convert the data, e.g. x.float()"
    ) from err


def validation_batch(run: Run, batch: Unpacked, where: str) -> Unpacked:
    """A validation batch after ``val_transform``, checked with the model's ``check_data`` when
    the batches were not checked up front; a ``ValueError`` or ``TypeError`` naming ``val_data``
    and ``where`` if it fails."""
    if run.val_transform is not None:
        try:
            batch = apply_transform(run.val_transform, batch)
        except (ValueError, TypeError, RuntimeError) as err:
            kind = TypeError if isinstance(err, TypeError) else ValueError
            raise kind(f"val_data, {where}: val_transform failed: {err}") from err
    if run.check_val_batch is not None:
        args, kwargs = batch
        try:
            run.check_val_batch(*args, **kwargs)
        except (ValueError, TypeError) as err:
            kind = TypeError if isinstance(err, TypeError) else ValueError
            after = after_transform(run.val_transform, "val_transform")
            raise kind(f"val_data, {where}{after}: {err}") from err
    return batch


def check_validation_pass(run: Run) -> None:
    """Evaluate the loss on the first validation batch, after ``val_transform`` (Pyro's checks
    and :class:`SupportCheck` on, no gradients, random state restored after), so that
    ``val_data`` the model cannot take fails now, named, rather than after the first epoch."""
    if run.val is None:
        return
    batch = next(run.val.iterate(None), None)
    if batch is None or not batch_size_of(batch):
        return
    state = pyro.util.get_rng_state()
    scaler = DataScaleMessenger(plate=run.data_scaler.plate, num_data=run.val.n)
    cuda = [run.device] if run.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            batch = validation_batch(run, batch, "first batch")
            _first_validation_loss(run, batch, scaler)
    finally:
        pyro.util.set_rng_state(state)


def _first_validation_loss(run: Run, batch: Unpacked, scaler: DataScaleMessenger) -> None:
    args, kwargs = batch
    try:
        with torch.no_grad(), scaler, pyro.validation_enabled(True), SupportCheck():
            run.loss.loss(run.model, run.guide, *args, **kwargs)
    except OffSupportError as err:
        where = f"first batch{after_transform(run.val_transform, 'val_transform')}"
        raise support_error(err, "val_data", where) from None
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        explain_dtype_failure(run, batch, err, "val_data")
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(f"val_data: the model and guide fail on its first batch: {err}") from err


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
    # Pyro's warnings of this pass wait for check_first_pass: when it refuses the run (e.g. a
    # site marked for enumeration under a loss that does not enumerate, for which Pyro warns
    # "Found vars in model but not guide"), its error says more; otherwise they are re-issued.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pyro.validation_enabled(True), poutine.trace(param_only=True) as capture, enumerated:
            with torch.no_grad(), run.data_scaler, SupportCheck():
                try:
                    run.loss.loss(run.model, run.guide, *args, **kwargs)
                except TypeError as err:
                    if any(s in str(err) for s in ARGUMENT_ERRORS):
                        raise call_error(err) from err
                    raise
    check_first_pass(run, enumerated.names)
    for w in caught:
        warnings.warn_explicit(
            w.message, w.category, w.filename, w.lineno, module=_module_named(w.filename)
        )
    return capture.trace


def _module_named(filename: str) -> str | None:
    """The dotted name of the loaded module defined in ``filename`` (for warning filters)."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


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
    """First pass, then the validation check, the parameters, optimizer and scheduler."""
    existing = set(pyro.get_param_store().keys())
    trace = first_pass(run)
    check_validation_pass(run)
    run.params = collect_parameters(run.model, run.guide, trace, existing)
    if not run.params:
        raise ValueError("model and guide have no trainable parameters")
    if run.shard is not None:
        run.shard.broadcast_parameters(run.param_list)
    run.opt = make_optimizer(optimizer, run.param_list, lr)
    run.scheduler = make_scheduler(scheduler, run.opt)
