"""Importing ArviZ quietly and calling the parts of its API that changed between 0.x and 1.x."""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from typing import Any

__all__ = ["import_arviz", "from_dict", "from_netcdf"]


@functools.cache
def import_arviz():
    """``import arviz``, without its once-a-day FutureWarning about the coming refactor.

    The warning is silenced only for this import (``warnings.catch_warnings``), so no global
    warning filter changes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"[\s\S]*ArviZ")
        import arviz

    return arviz


def _nested_from_dict(az: Any) -> bool:
    """Whether ``az.from_dict`` takes one nested dict of groups (ArviZ 1.x, DataTree)."""
    params = inspect.signature(az.from_dict).parameters
    return "posterior_predictive" not in params


def from_dict(
    groups: dict[str, dict[str, Any]],
    *,
    coords: dict[str, Any] | None = None,
    dims: dict[str, list[str]] | None = None,
    attrs: dict[str, Any] | None = None,
):
    """``arviz.from_dict`` on ArviZ 0.17+ (keyword groups) and 1.x (nested dict, DataTree).

    Args:
        groups: Group name -> {variable name -> array}; arrays of sample groups have leading
            ``(chain, draw)`` axes, ``observed_data`` arrays have none.
        coords: Dimension name -> coordinate values.
        dims: Variable name -> names of its non-sample dimensions (shared by every group).
        attrs: Attributes of the root (``idata.attrs``) and of every sample group.

    Returns:
        ``arviz.InferenceData`` (0.x) or ``xarray.DataTree`` (1.x).
    """
    az = import_arviz()
    groups = {name: data for name, data in groups.items() if data}
    if _nested_from_dict(az):
        group_attrs = {"/": dict(attrs or {})}
        group_attrs.update({name: dict(attrs or {}) for name in groups})
        return az.from_dict(groups, coords=coords, dims=dims, attrs=group_attrs)
    group_attrs = {f"{name}_attrs": dict(attrs or {}) for name in groups if name != "observed_data"}
    return az.from_dict(**groups, coords=coords, dims=dims, attrs=dict(attrs or {}), **group_attrs)


def from_netcdf(path: str | os.PathLike):
    """Read what ``idata.to_netcdf(path)`` wrote, loaded into memory.

    ``arviz.from_netcdf`` on ArviZ 0.x; ``xarray.open_datatree`` on 1.x (where InferenceData is
    a DataTree and ArviZ itself has no reader).
    """
    az = import_arviz()
    if _nested_from_dict(az) or not hasattr(az, "from_netcdf"):
        import xarray

        with xarray.open_datatree(os.fspath(path)) as tree:
            return tree.load()
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(os.fspath(path))
