"""Finding a module's output shape by running it once on zeros."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["probe_output"]


def probe_output(module: nn.Module, in_dim: int, name: str, expected: int | None = None) -> int:
    """Run ``module`` on zeros of shape ``(2, in_dim)`` and return its output features.

    The zeros take the dtype and device of the module's first parameter.

    Args:
        module: A network mapping ``(batch, in_dim) -> (batch, F)``.
        in_dim: Input features.
        name: Argument name used in error messages (e.g. ``"decoder"``).
        expected: If given, ``F`` must equal it.

    Returns:
        ``F``.

    Raises:
        ValueError: If the call fails or the output is not ``(2, F)`` (with ``F == expected``).
    """
    want = "features" if expected is None else str(expected)
    p = next(iter(module.parameters()), None)
    dummy = torch.zeros(
        2,
        in_dim,
        dtype=p.dtype if p is not None else None,
        device=p.device if p is not None else None,
    )
    try:
        with torch.no_grad():
            out = module(dummy)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"{name} must map (batch, {in_dim}) inputs to (batch, {want}) outputs; calling it "
            f"on zeros of shape (2, {in_dim}) failed: {e}"
        ) from e
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if (
        not isinstance(out, torch.Tensor)
        or out.dim() != 2
        or out.shape[0] != 2
        or (expected is not None and out.shape[1] != expected)
    ):
        raise ValueError(f"{name} must map (batch, {in_dim}) to (batch, {want}), got {shape}")
    return int(out.shape[1])
