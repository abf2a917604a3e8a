"""Skipping Pyro's per-call parameter registration once a training loop holds the parameters.

A ``PyroModule`` issues a ``pyro.module`` statement (one ``pyro.param`` message per parameter)
every time one of its plain ``nn.Module`` children is read inside ``forward``; that is how Pyro's
``SVI`` discovers parameters. :func:`pyrovi.infer.fit` collects the parameters once, on its
first step, and then runs the remaining steps inside :func:`skip_param_registration`: pyrovi's
own models and guides read their children through :func:`submodule`, which then bypasses the
registration (about 0.25 ms per step for a VAE). Computations are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from torch import nn

__all__ = ["skip_param_registration", "registration_skipped", "submodule"]

_SKIP: ContextVar[bool] = ContextVar("pyrovi_skip_param_registration", default=False)


@contextlib.contextmanager
def skip_param_registration() -> Iterator[None]:
    """Within this context, :func:`submodule` reads children without ``pyro.module``."""
    token = _SKIP.set(True)
    try:
        yield
    finally:
        _SKIP.reset(token)


def registration_skipped() -> bool:
    """True inside :func:`skip_param_registration` (for code that calls ``pyro.module`` itself)."""
    return _SKIP.get()


def submodule(module: nn.Module, name: str) -> nn.Module:
    """``getattr(module, name)``, skipping Pyro's registration inside
    :func:`skip_param_registration`."""
    if _SKIP.get():
        return module._modules[name]  # type: ignore[return-value]
    return getattr(module, name)
