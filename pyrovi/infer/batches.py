"""Minibatches for :func:`pyrovi.infer.fit`: tensors or a ``DataLoader``, unpacked into the
positional and keyword arguments of a Pyro model and guide.

A batch from the data (a tensor, a tuple or list of tensors, or a dict of tensors, as a
``DataLoader`` yields them) becomes ``(args, kwargs)`` for ``model(*args, **kwargs)``: by default
a tensor is one positional argument, a tuple or list gives one positional argument per element,
and a dict gives keyword arguments. ``unpack=`` replaces that rule, e.g.
``unpack=lambda b: ((b[0],), {})`` for ``(image, label)`` batches fed to ``model(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from pyrovi._validation import as_tensors, positive_int
from pyrovi.infer.distributed import DistributedContext, shard_bounds

__all__ = ["Batches", "Unpacked", "default_unpack", "unpack_batch", "batch_size_of"]

Unpacked = tuple[tuple[Any, ...], dict[str, Any]]
"""A batch as the model sees it: ``(args, kwargs)``."""

Data = torch.Tensor | Sequence[torch.Tensor] | DataLoader


def default_unpack(batch: Any) -> Unpacked:
    """The default rule: tensor -> ``((t,), {})``; tuple or list -> one positional argument per
    element; dict -> keyword arguments.

    Raises:
        TypeError: Any other kind of batch.
    """
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, tuple | list):
        return tuple(batch), {}
    raise TypeError(
        f"batch: expected a tensor, a tuple or list, or a dict of tensors, got "
        f"{type(batch).__name__}; pass unpack= (a callable batch -> (args, kwargs))"
    )


def unpack_batch(unpack: Callable[[Any], Unpacked] | None, batch: Any) -> Unpacked:
    """``unpack(batch)`` (or :func:`default_unpack`), checked to be ``(args, kwargs)``."""
    if unpack is None:
        return default_unpack(batch)
    out = unpack(batch)
    if not (
        isinstance(out, tuple)
        and len(out) == 2
        and isinstance(out[0], tuple | list)
        and isinstance(out[1], Mapping)
    ):
        raise TypeError(
            "unpack must return (args, kwargs): a tuple of positional arguments and a dict of "
            f"keyword arguments, e.g. lambda b: ((b[0],), {{}}); got {type(out).__name__} "
            f"{_describe(out)}"
        )
    return tuple(out[0]), dict(out[1])


def _describe(out: Any) -> str:
    if isinstance(out, tuple | list):
        return "of " + ", ".join(type(o).__name__ for o in out)
    return ""


def to_device(obj: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """``obj`` with every tensor inside tuples, lists and dicts moved to ``device``, and its
    floating-point tensors cast to ``dtype`` if given (integer and bool tensors keep theirs)."""
    if isinstance(obj, torch.Tensor):
        if dtype is not None and obj.is_floating_point():
            return obj.to(device=device, dtype=dtype)
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device, dtype) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(v, device, dtype) for v in obj)
    return obj


def _tensors_of(batch: Unpacked) -> Iterator[torch.Tensor]:
    args, kwargs = batch
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value


def batch_size_of(batch: Unpacked) -> int:
    """Number of datapoints in an unpacked batch: the leading size of its first tensor (the first
    positional argument that is a tensor, else the first keyword argument that is one).

    Raises:
        ValueError: The batch holds no tensor with a leading dimension.
    """
    for t in _tensors_of(batch):
        if t.dim():
            return t.shape[0]
    raise ValueError(
        "the unpacked batch holds no tensor with a datapoint dimension, so its size is unknown; "
        "make unpack= return the data tensors among the model's arguments"
    )


def apply_transform(transform: Callable[[torch.Tensor], torch.Tensor], batch: Unpacked) -> Unpacked:
    """``transform`` applied to the first tensor of the batch (see :func:`batch_size_of`)."""
    args, kwargs = batch
    for i, value in enumerate(args):
        if isinstance(value, torch.Tensor):
            return (*args[:i], transform(value), *args[i + 1 :]), kwargs
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            return args, {**kwargs, key: transform(value)}
    return batch


class Batches:
    """Minibatches of tensor data (shuffled with a private generator) or of a ``DataLoader``.

    Args:
        data: A tensor ``(N, ...)``, a tuple of tensors sharing N, or a ``DataLoader``.
        batch_size: Minibatch size for tensor data (default 128); None for a DataLoader.
        device: Where batches are moved.
        name: Argument name for error messages.
        shuffle: Shuffle tensor data every pass.
        drop_last: Drop a last, smaller batch of tensor data.
        unpack: ``batch -> (args, kwargs)``; default :func:`default_unpack`.
        dtype: Cast floating-point tensors to this dtype (None: keep theirs).

    Raises:
        TypeError: ``data`` is not a tensor, a sequence of tensors or a ``DataLoader``.
        ValueError: ``data`` is empty, holds a 0-d tensor, tensors of different lengths, or is a
            ``DataLoader`` without batches (``batch_size=None``) or without a length.
    """

    def __init__(
        self,
        data: Data,
        batch_size: int | None,
        device: torch.device,
        name: str,
        *,
        shuffle: bool,
        drop_last: bool,
        unpack: Callable[[Any], Unpacked] | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.loader: DataLoader | None = None
        self.tensors: tuple[torch.Tensor, ...] = ()
        self.dtype = dtype
        if isinstance(data, DataLoader):
            if batch_size is not None and batch_size != data.batch_size:
                raise ValueError(
                    f"batch_size={batch_size} conflicts with the DataLoader's batch_size="
                    f"{data.batch_size}; leave batch_size=None when passing a DataLoader"
                )
            self.loader = data
            self.n = _dataset_length(data, name)
            _check_batching(data, self.n, name)
            self.batch_size = data.batch_size or 1
        else:
            self.tensors = tuple(to_device(t, device, dtype) for t in _checked_tensors(data, name))
            self.single = isinstance(data, torch.Tensor)  # unpack gets a tensor, not a tuple
            self.n = self.tensors[0].shape[0]
            self.batch_size = min(positive_int("batch_size", batch_size or 128), self.n)
        if self.n == 0:
            raise ValueError(f"{name} is empty")
        self.device = device
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.unpack = unpack
        self.shard: DistributedContext | None = None  # set by fit(distributed=True)

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        if self.drop_last:
            return max(1, self.n // self.batch_size)
        return math.ceil(self.n / self.batch_size)

    def whole(self) -> Unpacked | None:
        """All tensor data as one unpacked batch (None for a DataLoader)."""
        if self.loader is not None:
            return None
        return self._unpack(self.tensors)

    def _unpack(self, part: tuple[torch.Tensor, ...]) -> Unpacked:
        return unpack_batch(self.unpack, part[0] if self.single else part)

    def iterate(self, generator: torch.Generator | None) -> Iterator[Unpacked]:
        """Unpacked batches on ``device``; tensor data is shuffled with ``generator``."""
        if self.loader is not None:
            for batch in self.loader:
                yield unpack_batch(self.unpack, to_device(batch, self.device, self.dtype))
            return
        # one batch holding all the data keeps its order (non-amortized local latents need it)
        shuffle = self.shuffle and self.batch_size < self.n
        order = torch.randperm(self.n, generator=generator).to(self.device) if shuffle else None
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min(self.n, (i + 1) * self.batch_size)
            if self.shard is not None:  # this process's part of the global batch
                lo, hi = shard_bounds(lo, hi, self.shard.rank, self.shard.world)
            rows = slice(lo, hi) if order is None else order[lo:hi]
            yield self._unpack(tuple(t[rows] for t in self.tensors))


def _checked_tensors(data: Any, name: str) -> tuple[torch.Tensor, ...]:
    """The tensors of tensor data, each with a leading datapoint dimension of one length."""
    if isinstance(data, tuple | list) and not data:
        raise ValueError(f"{name} is an empty {type(data).__name__}; give a tensor (N, ...)")
    if isinstance(data, tuple | list) and all(isinstance(t, torch.Tensor) for t in data):
        scalars = [i for i, t in enumerate(data) if t.dim() == 0]
        if scalars:
            raise ValueError(
                f"{name}: tensor(s) {scalars} are 0-d (scalars); every tensor needs a leading "
                "datapoint dimension, (N, ...); pass a constant as a model argument instead"
            )
    elif isinstance(data, torch.Tensor) and data.dim() == 0:
        raise ValueError(
            f"{name} is a 0-d tensor (a scalar); fit needs a leading datapoint dimension, (N, ...)"
        )
    return as_tensors(data, name)


def _check_batching(loader: DataLoader, n: int, name: str) -> None:
    """A DataLoader with automatic batching off yields single datapoints; fit needs batches."""
    if loader.batch_size is not None or loader.batch_sampler is not None:
        return
    try:
        steps = len(loader)
    except TypeError:  # a sampler without a length
        return
    if steps == n:
        raise ValueError(
            f"{name}: the DataLoader has batch_size=None (automatic batching off), so it yields "
            f"the {n} datapoints one at a time, without a batch dimension; give it "
            "batch_size=... (or a batch_sampler)"
        )


def _dataset_length(loader: DataLoader, name: str) -> int:
    try:
        return len(loader.dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"{name}: the DataLoader's dataset has no length (an IterableDataset?); fit needs the "
            "number of datapoints N to scale minibatches to the full data: give the dataset a "
            "__len__"
        ) from None
