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

import torch
from pyro.poutine.handlers import _make_handler
from pyro.poutine.messenger import Messenger

__all__ = ["DataScaleMessenger", "LatentScaleMessenger", "data_scale", "latent_scale"]


def _check_factor(factor: float) -> float:
    factor = float(factor)
    if not factor >= 0.0 or factor == float("inf"):
        raise ValueError(f"factor must be a finite non-negative number, got {factor!r}")
    return factor


class DataScaleMessenger(Messenger):
    """Scale sample sites inside the plate ``plate`` (see :func:`data_scale`).

    With a fixed ``factor``, every site inside the plate is multiplied by it. With ``num_data``
    (what :func:`pyrovi.infer.fit` uses), each site is scaled by ``num_data / M``, where ``M`` is
    the plate's full size as the model declares it: the batch size for ``pyro.plate("data",
    len(x))`` or an unsized ``pyro.plate("data")``, and the full size ``N`` for a plate that
    subsamples itself (``pyro.plate("data", N, subsample=idx)`` or ``subsample_size=``), which
    Pyro already scales by ``N / B``. Either way the scaled log-density counts ``num_data``
    datapoints, and a model that subsamples itself is not scaled twice.

    Attributes:
        seen: Whether a site inside the plate was scaled since it was last reset.
    """

    def __init__(self, factor: float = 1.0, plate: str = "data", num_data: int | None = None):
        super().__init__()
        self.factor = _check_factor(factor)
        self.plate = plate
        self.num_data = num_data
        self.seen = False

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] != "sample":
            return
        for frame in msg["cond_indep_stack"]:
            if frame.name == self.plate:
                self.seen = True
                factor = self.factor if self.num_data is None else self._factor(msg, frame)
                msg["scale"] = factor * msg["scale"]
                return

    def _factor(self, msg: dict[str, Any], frame: Any) -> float:
        size = frame.full_size if frame.full_size is not None else frame.size
        if size is None or size < 0:  # an unsized plate: its size is the site's batch size
            size = _broadcast_size(msg, frame.dim)
        return self.num_data / size


def _broadcast_size(msg: dict[str, Any], dim: int | None) -> int:
    """Size at plate dimension ``dim`` of a site's batch shape (distribution and value)."""
    fn, value = msg["fn"], msg["value"]
    shape = tuple(getattr(fn, "batch_shape", ()))
    if isinstance(value, torch.Tensor):
        event_dim = len(getattr(fn, "event_shape", ()))
        value_batch = value.shape[: value.dim() - event_dim]
        shape = tuple(torch.broadcast_shapes(torch.Size(shape), value_batch))
    if dim is None or len(shape) < -dim:
        return 1
    return int(shape[dim]) or 1


class LatentScaleMessenger(Messenger):
    """Scale unobserved sample sites by ``factor`` (see :func:`latent_scale`)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = _check_factor(factor)

    def _process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.factor * msg["scale"]


@_make_handler(DataScaleMessenger)
def data_scale(  # type: ignore[empty-body]
    fn: Callable | None = None,
    factor: float = 1.0,
    plate: str = "data",
    num_data: int | None = None,
):
    """Multiply the log-density of sample sites inside plate ``plate`` by ``factor``.

    Use with ``factor = N / batch_size`` on both model and guide to train on minibatches, or
    give ``num_data = N`` instead: each site is then scaled by ``N / M`` with ``M`` the plate's
    declared full size (the batch size for ``pyro.plate("data", len(x))``, ``N`` for a plate that
    subsamples itself), so models that use Pyro's own subsampling are not scaled twice.

    Args:
        fn: A model or guide (or ``None`` to use as a context manager).
        factor: Non-negative multiplier (ignored when ``num_data`` is given).
        plate: Name of the per-datapoint plate.
        num_data: Number of datapoints N of the full data set.
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
