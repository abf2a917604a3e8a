"""Saving and restoring training state (safe to load with ``weights_only=True``).

:func:`save_checkpoint` writes atomically: to ``.<name>.tmp-<pid>`` beside the destination, which
is flushed to disk and then renamed over it, so a crash or a kill while saving leaves the previous
checkpoint intact. The temporary file is removed if the save itself fails; one left behind by a
process that was killed while saving is removed by the next save to the same path (on POSIX
systems, once no process with that id runs on this machine).

:func:`load_checkpoint` raises :class:`CheckpointError` for any file it cannot use (empty,
truncated or corrupt, not a pyrovi checkpoint, lacking entries the caller needs), with a message
naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "read_torch_file",
    "describe_contents",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "remove_stale_temporaries",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_VERSION = 1
_VERSION_KEY = "pyrovi_checkpoint_version"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_LEGACY_MAGIC = b"\x80\x02\x8a\n"  # torch.save(..., _use_new_zipfile_serialization=False)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, truncated or corrupt, not a pyrovi
    checkpoint, lacking entries, or saved for other parameters. The message names the file."""


# --------------------------------------------------------------------------- saving


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: to a temporary file beside ``path``, then rename.

    A crash or kill while writing never leaves a truncated checkpoint at ``path``. The temporary
    file is deleted when writing fails; temporary files of earlier saves to ``path`` by processes
    that no longer run (killed while saving) are deleted first.

    Args:
        path: Destination file.
        state: Tensors and plain Python containers (loadable with ``weights_only=True``).

    Returns:
        The destination path.

    Raises:
        OSError: The directory cannot be created or written to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({_VERSION_KEY: CHECKPOINT_VERSION, **state}, f)
            f.flush()
            _fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def _fsync(fd: int) -> None:
    """Flush the file to disk; a file system without fsync (EINVAL, ENOTSUP) is let be."""
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp-<pid>`` files beside ``path`` whose process no longer runs.

    Only on POSIX systems (where ``os.kill(pid, 0)`` tests a process id without touching it);
    elsewhere nothing is deleted. A process id reused by another, live process keeps its file.

    Returns:
        The deleted files.
    """
    if os.name != "posix":
        return []
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or _is_running(int(pid)):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs under another user
        return True
    return True


# --------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True`` (on CPU).

    Args:
        path: Checkpoint file.
        required: Entries the caller needs (e.g. ``fit`` needs ``"params"``, ``"optimizer"``,
            ...); a checkpoint lacking one is refused.

    Returns:
        The saved state dictionary.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        CheckpointError: (a ``ValueError``) If ``path`` is a directory, an empty file, a
            truncated or corrupt file, a file not written by ``torch.save``, a ``torch.save``
            file that is not a pyrovi checkpoint (or was written by a newer pyrovi), or a
            checkpoint lacking one of ``required``. The message names the file and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    state = _read(path)
    if not isinstance(state, dict) or _VERSION_KEY not in state:
        raise CheckpointError(
            f"checkpoint {path} is not a pyrovi checkpoint: it holds {describe_contents(state)}, "
            f"without the {_VERSION_KEY!r} entry that save_checkpoint writes"
        )
    version = state[_VERSION_KEY]
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this pyrovi reads versions up to "
            f"{CHECKPOINT_VERSION} (was it written by a newer pyrovi?)"
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks the entries {missing} needed here (it holds "
            f"{sorted(k for k in state if k != _VERSION_KEY)}): it was written for something else"
        )
    return state


def _read(path: Path) -> Any:
    """``torch.load`` of ``path``, with a :class:`CheckpointError` saying why it fails."""
    return read_torch_file(path, "checkpoint", CheckpointError, "is not a pyrovi checkpoint")


def read_torch_file(path: Path, what: str, error: type[Exception], foreign: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, or ``error`` naming ``what`` and ``path``
    and why the file cannot be read: empty, not written by ``torch.save``, truncated or corrupt,
    or holding Python objects that a weights-only load refuses (then the message says
    ``foreign``, e.g. ``"is not a pyrovi checkpoint"``). Shared by every pyrovi file loader."""
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    size = path.stat().st_size
    if not head:
        raise error(
            f"{what} {path} is empty (0 bytes): it was created but never written, e.g. by a "
            "program killed while saving without an atomic save"
        )
    if head not in (_ZIP_MAGIC, _LEGACY_MAGIC):
        raise error(
            f"{what} {path} ({size} bytes) is not a file written by torch.save (it starts "
            f"with {head!r}, not {_ZIP_MAGIC!r})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as err:
        if isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err):
            raise error(
                f"{what} {path} {foreign}: it holds Python objects that loading with "
                "weights_only=True refuses (pyrovi files hold only tensors and plain containers)"
            ) from err
        text = str(err).strip().split(". ")[0][:160] or "(no message)"
        raise error(
            f"{what} {path} ({size} bytes) is truncated or corrupt: torch.load fails with "
            f"{type(err).__name__}: {text}"
        ) from err


def describe_contents(obj: Any) -> str:
    """What a loaded file holds, for error messages: a dict's keys, else the type."""
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return f"a dict with keys {keys[:8]}{' ...' if len(keys) > 8 else ''}"
    return f"a {type(obj).__name__}"
