"""Saving and restoring training state (safe to load with ``weights_only=True``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: to a temporary file beside ``path``, then rename.

    A crash while writing never leaves a truncated checkpoint at ``path``.

    Args:
        path: Destination file.
        state: Tensors and plain Python containers (loadable with ``weights_only=True``).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"pyrovi_checkpoint_version": CHECKPOINT_VERSION, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (on CPU).

    Args:
        path: Checkpoint file.

    Returns:
        The saved state dictionary.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a pyrovi checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "pyrovi_checkpoint_version" not in state:
        raise ValueError(f"checkpoint: {path} is not a pyrovi checkpoint")
    return state
