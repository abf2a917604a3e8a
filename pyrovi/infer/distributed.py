"""Data-parallel SVI on ``torch.distributed``: what :func:`pyrovi.infer.fit` uses with
``distributed=True``.

Every process holds the same model, guide and data set and runs ``fit`` with the same arguments
(launched by ``torchrun``, or by ``torch.multiprocessing`` after ``init_process_group``). Each
optimizer step takes one *global* minibatch of ``batch_size`` datapoints, the same on every
process (one shared shuffling seed), and splits it into contiguous shards of near-equal size, one
per process. Each process computes the ELBO gradient of its shard with the per-datapoint terms
scaled by ``N / b_r`` (``b_r`` its shard size) and the global terms unscaled; the gradients are
then averaged with weights ``b_r / Σ b``. That weighted average is exactly the gradient a single
process computes on the whole global batch, so training is the same as ``fit`` on one process
with the same ``batch_size`` — up to floating point and to the Monte Carlo noise, which each
process draws from its own stream (``seed + rank``).

The gradients live in one flat buffer (:mod:`pyrovi.infer.grad_buckets`): on CPU one all-reduce
of it (with the loss packed in) follows each backward pass; on CUDA it is cut into buckets in the
order backward produces them, each all-reduced as soon as it is complete while backward goes on,
as PyTorch's DDP does (needs one backward pass per step, as :class:`~pyrovi.infer.FastTrace_ELBO`,
fit's default loss, makes; other losses reduce after backward).

Parameters are broadcast from rank 0 after the first pass, so every process starts from the same
values; optimizer states stay equal because the reduced gradients are. Only rank 0 shows progress
bars and writes checkpoints. A collective that fails (a peer died, the timeout passed) raises
:class:`DistributedError` naming the rank; checkpoints are written atomically, so the last one
on disk stays loadable.

Backends: NCCL for CUDA tensors, gloo on CPU (chosen from the device when ``fit`` initializes the
process group itself from torchrun's environment variables).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from pyrovi.infer.grad_buckets import GradientBuckets

__all__ = [
    "DistributedError",
    "DistributedContext",
    "init_distributed",
    "shard_bounds",
]


class DistributedError(RuntimeError):
    """A collective operation failed: another process died or the timeout passed."""


def shard_bounds(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """The part ``[a, b)`` of ``[lo, hi)`` that process ``rank`` of ``world`` takes.

    Contiguous shards whose sizes differ by at most one, in rank order.
    """
    n = hi - lo
    return lo + n * rank // world, lo + n * (rank + 1) // world


def init_distributed(
    backend: str | None = None, timeout_s: float = 300.0, device: torch.device | None = None
) -> None:
    """Initialize the default process group from torchrun's environment, if not yet done.

    Args:
        backend: ``"nccl"`` or ``"gloo"`` (default: NCCL for a CUDA ``device``, else gloo).
        timeout_s: Seconds a collective waits for the other processes before failing.
        device: The training device (picks the default backend).

    Raises:
        RuntimeError: If torch.distributed is unavailable, or the environment lacks
            ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` (not launched by torchrun).
    """
    if not dist.is_available():
        raise RuntimeError("distributed=True needs a torch build with torch.distributed")
    if dist.is_initialized():
        return
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"distributed=True: no process group is initialized and the environment lacks "
            f"{missing}; launch with `torchrun --nproc_per_node=N script.py` or call "
            "torch.distributed.init_process_group first"
        )
    if backend is None:
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


@dataclass
class DistributedContext:
    """Rank, world size and the collectives ``fit`` needs."""

    rank: int
    world: int
    _grads: GradientBuckets | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_process_group(cls) -> DistributedContext:
        """The context of the initialized default process group."""
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        """True on rank 0 (progress bars, checkpoints, logging)."""
        return self.rank == 0

    def _fail(self, what: str, err: Exception) -> DistributedError:
        return DistributedError(
            f"rank {self.rank}/{self.world}: {what} failed ({err}); another process probably "
            "died or the timeout passed"
        )

    def broadcast_parameters(self, params: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values into every process's ``params``."""
        try:
            with torch.no_grad():
                for p in params:
                    dist.broadcast(p.data, src=0)
        except RuntimeError as err:
            raise self._fail("broadcasting the parameters", err) from err

    def broadcast_int(self, value: int, device: torch.device) -> int:
        """Rank 0's ``value`` on every process."""
        t = torch.tensor([value], dtype=torch.int64, device=device)
        try:
            dist.broadcast(t, src=0)
        except RuntimeError as err:
            raise self._fail("broadcasting the shuffling seed", err) from err
        return int(t.item())

    def _grads_of(self, params: list[torch.Tensor]) -> GradientBuckets:
        if self._grads is None or not self._grads.matches(params):
            self.close()
            self._grads = GradientBuckets(params, self.world, self._fail)
        return self._grads

    def begin_step(self, params: list[torch.Tensor], size: int, overlap: bool = False) -> None:
        """Clear the gradients and start a step whose shard holds ``size`` datapoints.

        Call it instead of ``optimizer.zero_grad`` before the step's backward pass. The
        gradients of ``params`` are views into one flat buffer (see
        :mod:`pyrovi.infer.grad_buckets`) that backward accumulates into in place, so clearing
        them is one fill of that buffer. With ``overlap``, each bucket of gradients starts its
        all-reduce as soon as backward has produced it (from the second step on); the loss must
        then run exactly one backward pass per step (as :class:`~pyrovi.infer.FastTrace_ELBO`
        does). Without it, everything is reduced at once in :meth:`reduce_step`.
        """
        grads = self._grads_of(params)
        grads.zero()
        grads.begin(size, overlap)

    def reduce_step(self, params: list[torch.Tensor], loss: float, size: int) -> float:
        """Average the gradients (weights ``size / Σ size``) in place; returns the combined loss.

        The weighted average of the shard gradients is the gradient of the whole global batch.
        Without a preceding :meth:`begin_step` this is one all-reduce of one flat buffer holding
        every gradient and the loss; after ``begin_step(..., overlap=True)`` it sends the buckets
        backward has not started yet and waits for all of them.

        Args:
            params: Parameters whose ``.grad`` holds this process's shard gradient (``None``
                counts as zero), all of one dtype on one device.
            loss: This process's loss estimate for the step (scaled to the full data set).
            size: Datapoints in this process's shard (0 allowed).

        Raises:
            ValueError: If the parameters differ in dtype or device.
            DistributedError: If the all-reduce fails (a peer died, the timeout passed).
        """
        return self._grads_of(params).reduce(loss, size)

    def close(self) -> None:
        """Remove the gradient hooks this context put on the parameters."""
        if self._grads is not None:
            self._grads.close()
            self._grads = None

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``x`` along dim 0, in rank order (sizes may differ by 1)."""
        sizes = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(self.world)]
        try:
            dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device))
            n = int(max(int(s) for s in sizes))
            padded = torch.zeros((n, *x.shape[1:]), dtype=x.dtype, device=x.device)
            padded[: x.shape[0]] = x
            parts = [torch.empty_like(padded) for _ in range(self.world)]
            dist.all_gather(parts, padded)
        except RuntimeError as err:
            raise self._fail("gathering the simulations", err) from err
        return torch.cat([p[: int(k)] for p, k in zip(parts, sizes)])

    def sum_floats(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over processes."""
        t = torch.tensor(values, dtype=torch.float64, device=device)
        try:
            dist.all_reduce(t)
        except RuntimeError as err:
            raise self._fail("an all-reduce of the metrics", err) from err
        return t.tolist()

    def barrier(self) -> None:
        """Wait for every process."""
        try:
            dist.barrier()
        except RuntimeError as err:
            raise self._fail("a barrier", err) from err
