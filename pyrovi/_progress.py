"""Progress bars for pyrovi's long loops (training, simulation, coding, annealing)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar", "show_progress"]


def show_progress(progress: bool) -> bool:
    """Whether to draw a bar: asked for (``progress``) and stderr is a terminal.

    A bar in a log file or a captured stream is noise, so bars are drawn only for a person
    watching a terminal.
    """
    return bool(progress) and sys.stderr.isatty()


def progress_bar(
    total: int | None = None, *, desc: str, progress: bool = True, **kwargs: Any
) -> tqdm:
    """A tqdm bar over ``total`` units, shown when :func:`show_progress` says so.

    Args:
        total: Number of units (steps, epochs, images), or None when unknown.
        desc: The bar's label, e.g. ``"AIS"`` or ``"encode"``.
        progress: False hides the bar whatever stderr is.
        **kwargs: Passed to ``tqdm`` (``unit``, ``leave``, ``initial`` ...).
    """
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, disable=not show_progress(progress), **kwargs)
