"""Gradients in one flat buffer, all-reduced in buckets while the backward pass still runs.

The engine behind :meth:`pyrovi.infer.distributed.DistributedContext.reduce_step`. Every
parameter's ``.grad`` is a view into one flat buffer, so backward accumulates straight into it and
a step's communication needs no copies. The buffer is split into buckets (the first about 1 MiB,
the rest up to 25 MiB, as PyTorch's DDP does) laid out in the order in which backward produces
the gradients (learned on the first step and taken from rank 0, so every process agrees). When
overlapping, a hook on each parameter counts the gradients that are ready; once a bucket is
complete (and every bucket before it has been sent) its asynchronous all-reduce starts, while
backward goes on computing the gradients of the layers before it.

Buckets always start in the same order on every process, whatever order the hooks fire in, so the
collectives match; a parameter without a gradient in a step (unused, or an empty shard) counts as
zero and its bucket is sent when the step's reduction starts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.distributed as dist

__all__ = ["GradientBuckets", "overlaps_on", "FIRST_BUCKET_BYTES", "BUCKET_BYTES", "OVERLAP_ON_CPU"]

FIRST_BUCKET_BYTES = 1 << 20
BUCKET_BYTES = 25 << 20
#: Overlap on CPU too. Off by default: there the communication threads take the cores from the
#: backward pass, and one all-reduce after it was faster (benchmarks/distributed_throughput.py).
OVERLAP_ON_CPU = False


def _held_in(g: torch.Tensor, view: torch.Tensor) -> bool:
    """True if the gradient ``g`` is the buffer's ``view`` itself (backward wrote there)."""
    return not g.is_sparse and g.data_ptr() == view.data_ptr() and g.shape == view.shape


def _dense(g: torch.Tensor) -> torch.Tensor:
    """A gradient as a dense tensor (sparse ones come from e.g. ``nn.Embedding(sparse=True)``)."""
    return g.to_dense() if g.is_sparse else g


def overlaps_on(device: torch.device) -> bool:
    """Whether training on ``device`` sends buckets during backward: on CUDA (NCCL runs the
    communication beside the computation), and on CPU only if :data:`OVERLAP_ON_CPU` is set."""
    return device.type == "cuda" or OVERLAP_ON_CPU


class GradientBuckets:
    """The gradients of a fixed list of parameters, in one buffer, all-reduced bucket by bucket.

    Args:
        params: The parameters (one dtype, one device).
        world: Number of processes.
        fail: Turns a collective's ``RuntimeError`` and a description into the error to raise.
        first_bucket_bytes: Size of the first bucket (the last layers' gradients, ready first);
            default :data:`FIRST_BUCKET_BYTES`.
        bucket_bytes: Size of the other buckets; default :data:`BUCKET_BYTES`.

    Raises:
        ValueError: If the parameters differ in dtype or device.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        world: int,
        fail: Callable[[str, Exception], Exception],
        first_bucket_bytes: int | None = None,
        bucket_bytes: int | None = None,
    ) -> None:
        ref = params[0]
        if any(p.dtype != ref.dtype or p.device != ref.device for p in params):
            raise ValueError(
                "distributed training needs every parameter in one dtype on one device; "
                f"got {sorted({(str(p.dtype), str(p.device)) for p in params})}"
            )
        self.params = list(params)
        self.ids = [id(p) for p in params]
        self.world = world
        self._fail = fail
        self._bucket_sizes = (
            FIRST_BUCKET_BYTES if first_bucket_bytes is None else first_bucket_bytes,
            BUCKET_BYTES if bucket_bytes is None else bucket_bytes,
        )
        self._layout(list(range(len(params))))
        self.bucket_of: list[int] | None = None  # known after the first step
        self.ranges: list[tuple[int, int]] = []
        self._recording: list[int] | None = None
        self.overlapping = False
        self._size = 0
        self._handles = []
        if world > 1:
            self._handles = [
                p.register_post_accumulate_grad_hook(functools.partial(self._on_grad, i))
                for i, p in enumerate(self.params)
            ]

    # ------------------------------------------------------------------ layout

    def _layout(self, order: list[int]) -> None:
        """Lay the gradients out in ``order`` (copying the current values) and bind the views."""
        ref = self.params[0]
        n = sum(p.numel() for p in self.params)
        flat = torch.zeros(n + 2, dtype=ref.dtype, device=ref.device)  # + loss, count
        views: list[torch.Tensor] = [None] * len(self.params)  # type: ignore[list-item]
        offset = 0
        for i in order:
            p = self.params[i]
            views[i] = flat[offset : offset + p.numel()].view_as(p)
            if p.grad is not None:
                views[i].copy_(_dense(p.grad))
            p.grad = views[i]
            offset += p.numel()
        self.flat, self.views, self.order = flat, views, order

    def _make_buckets(self, order: list[int]) -> None:
        self._layout(order)
        first, rest = self._bucket_sizes
        item = self.flat.element_size()
        self.ranges, self.bucket_of = [], [0] * len(self.params)
        start = end = 0
        for i in order:  # a bucket closes once it reaches its size (as DDP's do)
            self.bucket_of[i] = len(self.ranges)
            end += self.params[i].numel()
            if (end - start) * item >= (first if not self.ranges else rest):
                self.ranges.append((start, end))
                start = end
        if end > start:
            self.ranges.append((start, end))
        self._counts = [0] * len(self.ranges)
        for i in order:
            self._counts[self.bucket_of[i]] += 1

    def matches(self, params: list[torch.Tensor]) -> bool:
        """True if these are the parameters the buffer was made for, in the same order."""
        return [id(p) for p in params] == self.ids

    def close(self) -> None:
        """Remove the hooks from the parameters (the gradients stay as they are)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.overlapping = False
        self._works = []

    # ------------------------------------------------------------------ a step

    def zero(self) -> None:
        """Zero every gradient (one fill of the buffer) and re-bind views replaced from outside."""
        self.flat.zero_()
        for p, view in zip(self.params, self.views):
            if p.grad is None or not _held_in(p.grad, view):
                p.grad = view

    def begin(self, size: int, overlap: bool) -> None:
        """Start a step whose shard holds ``size`` datapoints; call before the backward pass."""
        self._size = size
        self.overlapping = False
        if self.world == 1 or not overlap:
            return
        if self.bucket_of is None:
            self._recording = []  # this step learns the order in which gradients arrive
            return
        self.overlapping = True
        self._seen = [False] * len(self.params)
        self._missing = list(self._counts)
        self._sent = 0
        self._works: list = []
        self._late = False

    def _on_grad(self, i: int, param: torch.Tensor) -> None:
        if self._recording is not None:
            self._recording.append(i)
            return
        if not self.overlapping:
            return
        view = self.views[i]
        if not _held_in(param.grad, view):
            view.copy_(_dense(param.grad))  # the grad was replaced from outside: take it in
            param.grad = view
        if self._seen[i]:  # a second backward pass in one step
            if self.bucket_of[i] < self._sent:
                self._late = True
            return
        self._seen[i] = True
        self._missing[self.bucket_of[i]] -= 1
        while self._sent < len(self.ranges) and self._missing[self._sent] == 0:
            self._send()

    def _send(self) -> None:
        lo, hi = self.ranges[self._sent]
        part = self.flat[lo:hi]
        part.mul_(float(self._size))
        try:
            self._works.append(dist.all_reduce(part, async_op=True))
        except RuntimeError as err:
            raise self._fail("the gradient all-reduce", err) from err
        self._sent += 1

    def _bind_missing(self) -> None:
        for p, view in zip(self.params, self.views):
            g = p.grad
            if g is None:
                view.zero_()
            elif not _held_in(g, view):
                view.copy_(_dense(g))
            else:
                continue
            p.grad = view

    def reduce(self, loss: float, size: int) -> float:
        """Average the gradients over processes (weights ``size / Σ size``); the combined loss.

        Args:
            loss: This process's loss for the step.
            size: Datapoints in this process's shard (as given to :meth:`begin`, if called).
        """
        if self.overlapping and size != self._size:
            self.overlapping = False
            raise ValueError(f"size {size} differs from the {self._size} the step began with")
        self._size = size
        if self.world == 1:
            self._bind_missing()
            return loss
        if self.overlapping:
            return self._finish_overlapped(loss)
        self._bind_missing()
        flat = self.flat
        flat[-2] = loss
        flat[-1] = 1.0
        flat.mul_(float(self._size))
        try:
            dist.all_reduce(flat)
        except RuntimeError as err:
            raise self._fail("the gradient all-reduce", err) from err
        total = float(flat[-1])
        if total > 0:
            flat.div_(total)
        value = float(flat[-2])
        if self._recording is not None:
            self._learn_order()
        return value

    def _finish_overlapped(self, loss: float) -> float:
        self.overlapping = False
        if self._late:
            raise RuntimeError(
                "a parameter received a gradient after its bucket was sent: the loss ran more "
                "than one backward pass in a step, which overlapped all-reduce does not support"
            )
        for i, seen in enumerate(self._seen):
            if not seen:  # unused this step: a zero gradient (or one set from outside)
                g, view = self.params[i].grad, self.views[i]
                if g is None:
                    view.zero_()
                elif not _held_in(g, view):
                    view.copy_(_dense(g))
                self.params[i].grad = view
        while self._sent < len(self.ranges):
            self._send()
        stats = torch.tensor(
            [loss * self._size, float(self._size)], dtype=torch.float64, device=self.flat.device
        )
        try:
            dist.all_reduce(stats)
            for work in self._works:
                work.wait()
        except RuntimeError as err:
            raise self._fail("the gradient all-reduce", err) from err
        finally:
            self._works = []  # hold no finished work objects (they keep tensors alive)
        total = float(stats[1])
        if total > 0:
            self.flat[:-2].div_(total)
            return float(stats[0]) / total
        return 0.0

    def _learn_order(self) -> None:
        """Buckets in rank 0's order of arrival (then the parameters that got no gradient)."""
        seen: dict[int, None] = dict.fromkeys(self._recording or [])
        order = list(seen) + [i for i in range(len(self.params)) if i not in seen]
        self._recording = None
        t = torch.tensor(order, dtype=torch.int64, device=self.flat.device)
        try:
            dist.broadcast(t, src=0)
        except RuntimeError as err:
            raise self._fail("broadcasting the gradient order", err) from err
        self._make_buckets([int(i) for i in t.tolist()])
