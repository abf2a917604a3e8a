"""Effect handlers that rescale log-densities of chosen sample sites.

Two rescalings are needed to train on minibatches and to weight the KL term:

* :func:`data_scale` multiplies the log-density of every sample site inside the plate named
  ``plate`` (per-datapoint terms) by ``N / B``; sites outside it (global latents) are left alone,
  so the minibatch ELBO is an unbiased estimate of the full-data ELBO.
* :func:`latent_scale` multiplies the log-density of every *unobserved* sample site by a factor
  (β of a β-VAE, or a KL-annealing weight). Applied to both model and guide, it scales
  ``log p(z) - log q(z|x)``, i.e. the single-sample KL estimate, and leaves ``log p(x|z)`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro.poutine.handlers import _make_handler
from pyro.poutine.messenger import Messenger

__all__ = ["DataScaleMessenger", "LatentScaleMessenger", "data_scale", "latent_scale"]


def _check_factor(factor: float) -> float:
    factor = float(factor)
    if not factor >= 0.0 or factor == float("inf"):
        raise ValueError(f"factor must be a finite non-negative number, got {factor!r}")
    return factor


class DataScaleMessenger(Messenger):
    """Scale sample sites inside the plate ``plate`` by ``factor`` (see :func:`data_scale`)."""

    def __init__(self, factor: float, plate: str = "data") -> None:
        super().__init__()
        self.factor = _check_factor(factor)
        self.plate = plate

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and any(f.name == self.plate for f in msg["cond_indep_stack"]):
            msg["scale"] = self.factor * msg["scale"]


class LatentScaleMessenger(Messenger):
    """Scale unobserved sample sites by ``factor`` (see :func:`latent_scale`)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = _check_factor(factor)

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.factor * msg["scale"]


@_make_handler(DataScaleMessenger)
def data_scale(fn: Callable | None = None, factor: float = 1.0, plate: str = "data"):  # type: ignore[empty-body]
    """Multiply the log-density of sample sites inside plate ``plate`` by ``factor``.

    Use with ``factor = N / batch_size`` on both model and guide to train on minibatches.

    Args:
        fn: A model or guide (or ``None`` to use as a context manager).
        factor: Non-negative multiplier.
        plate: Name of the per-datapoint plate.
    """
    ...


@_make_handler(LatentScaleMessenger)
def latent_scale(fn: Callable | None = None, factor: float = 1.0):  # type: ignore[empty-body]
    """Multiply the log-density of unobserved sample sites by ``factor``.

    Applied to both model and guide this weights the KL term of the ELBO: ``factor = beta`` gives
    the β-VAE objective, a factor rising from 0 to 1 gives KL annealing. With stock Pyro ``SVI``
    write ``SVI(latent_scale(model, beta), latent_scale(guide, beta), ...)``.

    Args:
        fn: A model or guide (or ``None`` to use as a context manager).
        factor: Non-negative multiplier.
    """
    ...
