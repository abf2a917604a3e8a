"""``to_inference_data``: an ArviZ ``InferenceData`` from a Pyro model and an SVI guide.

``arviz.from_pyro`` reads an MCMC object only. Here the posterior draws come from the guide, are
replayed through the model, and every group is assembled with ``arviz.from_dict``, so the result
works with ``az.summary``, ``az.loo``, ``az.plot_posterior``, ``az.plot_ppc`` and netCDF files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import torch

import pyrovi
from pyrovi.diagnostics._arviz import from_dict, from_netcdf
from pyrovi.diagnostics._draws import SiteDraws, draw_posterior
from pyrovi.infer.particles import resolve_vectorize

__all__ = ["to_inference_data", "load_inference_data"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _float64(t: torch.Tensor) -> np.ndarray:
    """Log-densities for ArviZ in float64 (``az.loo`` can give NaN on float32 values)."""
    return t.detach().double().cpu().numpy()


def _site_dims(site: SiteDraws, plate: str) -> list[str]:
    """Dimension names of one value of a site: the plate's name on the data axis."""
    return [
        plate if i == site.data_axis else f"{site.name}_dim_{i}" for i in range(len(site.shape))
    ]


def _check_mapping(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (dict) or None, got {type(value).__name__}")
    return dict(value)


def to_inference_data(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 500,
    coords: Mapping[str, Sequence[Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    plate: str | None = None,
    vectorize: bool | None = None,
    parallel: bool | None = None,
    **kwargs: Any,
):
    """Posterior draws of an SVI guide as an ``arviz.InferenceData``.

    The guide is sampled ``num_samples`` times; each draw is replayed through the model. Groups
    (every sample group has one chain, ``chain`` and ``draw`` leading):

    * ``posterior``: the model's latent sites in their own shapes (global latents as they are,
      per-datapoint latents with the data dimension) and its deterministic sites;
    * ``posterior_predictive``: the observed sites drawn from the model given each draw;
    * ``log_likelihood``: for each observed site the log-density of the observation given each
      draw, one value per element of the site's batch shape (per datapoint inside the plate),
      so that ``az.loo`` and ``az.waic`` work;
    * ``observed_data``: the observed values;
    * ``sample_stats``: ``lp`` = log p(x, z) (all data), ``log_weight`` = log p(x, z) − log q(z)
      (the importance weights of the draws) and, when every latent and observed site lies inside
      plate ``plate`` (an amortized guide with local latents), ``pointwise_log_weight`` per
      datapoint;
    * ``attrs``: ``inference_library`` (pyro), its version, ``pyrovi_version``, ``guide``,
      ``num_samples``.

    Discrete sites the model enumerates (``infer={"enumerate": "parallel"}``, not sampled by the
    guide, e.g. a mixture's assignments) are summed out: they are not in ``posterior``, and the
    log-likelihood of an observation that depends on them is ``log Σ_d p(d | z) p(x_i | d, z)``
    per datapoint (what ``az.loo`` needs). The posterior predictive draws them from the model.

    The dimension of plate ``plate`` is named after the plate (``"data"``), with coordinates
    ``0..N-1`` unless ``coords`` gives others; any other axis ``i`` of a site ``name`` is called
    ``name_dim_i``, the same in every group. For the VAE of :class:`pyrovi.models.VAE` with
    ``N`` images: ``posterior.z`` is ``(chain, draw, data, z_dim_1)``, ``log_likelihood.x``
    ``(chain, draw, data)``, ``posterior_predictive.x`` ``(chain, draw, data, x_dim_1)``.

    The draws are independent, so there is one chain: summarize with
    ``az.summary(idata, kind="stats")``; ``r_hat`` needs several chains (ArviZ logs a shape
    warning for one).

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature, sampling every latent site of the model.
        *args: Model arguments (e.g. ``x`` or ``x, y``).
        num_samples: Number of posterior draws S.
        coords: Extra coordinates, dimension name -> values (passed to ``arviz.from_dict``).
        dims: Dimension names per variable, overriding the defaults above.
        plate: Name of the per-datapoint plate; None (default) means ``"data"``, and a model
            whose plates are called otherwise and hold every site must name its plate (a name
            the model and guide do not have is refused unless they have no plate at all; see
            :func:`pyrovi.infer.importance.resolve_plate`). Its size comes from the site
            values, so an unsized ``pyro.plate("data")`` works, and so does a guide whose plate
            is unsized while the model's is sized. A subsampling plate (``subsample=idx`` or
            ``subsample_size=``) gives the draws of the datapoints it holds (one subsample for
            all draws), with their indices as coordinates and pointwise log-likelihoods without
            Pyro's ``N / B`` scale; ``lp`` and ``log_weight`` keep it.
        vectorize: True: draw all S samples in vectorized passes (an outer ``pyro.plate``; the
            model must broadcast over it); False: one draw at a time (any model); None: try the
            plate and fall back to one at a time, with a ``UserWarning``, when it fails.
        parallel: Older name of ``vectorize``.
        **kwargs: Model keyword arguments.

    Returns:
        ``arviz.InferenceData`` (an ``xarray.DataTree`` on ArviZ 1.x).

    Raises:
        ValueError: ``num_samples`` is not a positive integer; the guide misses a latent site of
            the model; enumerated sites shared by several observations; with
            ``vectorize=True``, a site does not broadcast over the draws; ``plate`` is not a
            plate of the model; the data (first tensor argument) is empty or an argument holds
            NaN/inf.
        TypeError: ``coords`` or ``dims`` is not a mapping; ``plate`` not a string or None.
    """
    coords = _check_mapping("coords", coords)
    dims = _check_mapping("dims", dims)
    vectorize = resolve_vectorize(vectorize, parallel)
    draws = draw_posterior(
        model,
        guide,
        args,
        kwargs,
        num_samples,
        plate=plate,
        vectorize=vectorize,
        caller="to_inference_data",
    )
    plate = draws.plate

    posterior, predictive, log_lik, observed = {}, {}, {}, {}
    var_dims: dict[str, list[str]] = {}
    for name, site in draws.sites.items():
        var_dims[name] = _site_dims(site, plate)
        if site.kind == "observed":
            observed[name] = _numpy(site.observed)
            log_lik[name] = _float64(site.log_likelihood)[None]
            if site.predictive is not None:
                predictive[name] = _numpy(site.predictive)[None]
        else:
            posterior[name] = _numpy(site.values)[None]
    stats = {
        "lp": _float64(draws.lp)[None],
        "log_weight": _float64(draws.log_weight)[None],
    }
    if draws.pointwise_log_weight is not None:
        stats["pointwise_log_weight"] = _float64(draws.pointwise_log_weight)[None]
        var_dims["pointwise_log_weight"] = [plate]
    if draws.num_data is not None:
        index = draws.data_index
        if index is not None and index.numel() == draws.num_data:
            coords.setdefault(plate, _numpy(index))
        coords.setdefault(plate, np.arange(draws.num_data))
    var_dims.update({k: list(v) for k, v in dims.items()})
    attrs = {
        "inference_library": "pyro",
        "inference_library_version": pyro.__version__,
        "pyrovi_version": pyrovi.__version__,
        "inference": "SVI",
        "guide": getattr(guide, "__name__", None) or type(guide).__name__,
        "num_samples": int(num_samples),
    }
    return from_dict(
        {
            "posterior": posterior,
            "posterior_predictive": predictive,
            "log_likelihood": log_lik,
            "observed_data": observed,
            "sample_stats": stats,
        },
        coords=coords,
        dims=var_dims,
        attrs=attrs,
    )


def load_inference_data(path: str | os.PathLike):
    """Load an InferenceData written with ``idata.to_netcdf(path)``, on ArviZ 0.x or 1.x.

    Args:
        path: The netCDF file.

    Returns:
        ``arviz.InferenceData`` (0.x) or ``xarray.DataTree`` (1.x), loaded into memory.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no netCDF file at {os.fspath(path)!r}")
    return from_netcdf(path)
