"""Posterior collapse: which latent dimensions a VAE actually uses.

* **Active units** (Burda, Grosse & Salakhutdinov 2015): dimension ``d`` is active when the
  posterior mean moves with the data, ``A_d = Cov_x(E_{q(z|x)}[z_d]) > 0.01``.
* **KL per dimension**: ``KL(q(z_d | x) ‖ p(z_d))`` averaged over the data. A collapsed
  dimension has ``q(z_d | x) = p(z_d)`` for every x: zero KL and no information about x.

For a diagonal Gaussian guide and a factorized prior the per-dimension KLs add up to the KL term
of the ELBO; for a full-covariance guide they are the KLs of its marginals, whose sum is at most
the full KL (the rest is the guide's total correlation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from torch.distributions import Independent, LowRankMultivariateNormal, MultivariateNormal, Normal

from pyrovi._checks import check_data, check_nonnegative
from pyrovi._validation import as_tensors, data_names, positive_int

__all__ = [
    "ACTIVE_UNIT_THRESHOLD",
    "check_amortized",
    "posterior_means",
    "active_units",
    "kl_per_dimension",
    "posterior_collapse",
    "ActiveUnits",
    "CollapseReport",
]

ACTIVE_UNIT_THRESHOLD = 0.01
"""Burda et al. (2015): a unit is active when its posterior mean varies more than this."""

_GAUSSIANS = (Normal, MultivariateNormal, LowRankMultivariateNormal)


def _unwrap(fn: Any) -> Any:
    while True:
        if isinstance(fn, Independent | dist.MaskedDistribution):
            fn = fn.base_dist
        elif isinstance(fn, dist.ExpandedDistribution):
            fn = fn.base_dist
        else:
            return fn


def _site(trace, site: str, role: str) -> dict[str, Any]:
    node = trace.nodes.get(site)
    if node is None or node["type"] != "sample":
        names = [
            n["name"]
            for n in trace.nodes.values()
            if n["type"] == "sample" and not n["is_observed"]
        ]
        raise ValueError(
            f"site: the {role} has no latent site '{site}' (its latent sites: {names})"
        )
    return node


def _per_row(t: torch.Tensor, b: int, site: str, what: str) -> torch.Tensor:
    """``(B, d)`` from a ``(B, d)`` or ``(B,)`` tensor of one batch."""
    if t.dim() == 1 and t.shape[0] == b:
        return t[:, None]
    if t.dim() == 2 and t.shape[0] == b:
        return t
    raise ValueError(
        f"site '{site}': expected a {what} of shape ({b}, z_dim) (one latent vector per datapoint "
        f"in the data plate), got {tuple(t.shape)}. Posterior collapse concerns the "
        "per-datapoint latents of an amortized guide (e.g. a VAE's encoder); a global latent "
        "(one value for the whole data set) has no activity over datapoints: judge it with "
        "pyrovi.diagnostics.psis_khat or pyrovi.infer.log_marginal_likelihood"
    )


def check_amortized(guide: Any, caller: str) -> None:
    """Refuse Pyro autoguides: they learn fixed parameters for one data set, not an encoder.

    Raises:
        TypeError: ``guide`` is a ``pyro.infer.autoguide.AutoGuide``.
    """
    if isinstance(guide, AutoGuide):
        raise TypeError(
            f"{caller} needs an amortized guide (an encoder q(z | x) with one latent vector per "
            f"datapoint, e.g. pyrovi.guides.AmortizedNormal or a function guide using "
            f"pyro.module), got the Pyro autoguide {type(guide).__name__}, which learns fixed "
            "parameters for one data set; judge it with pyrovi.diagnostics.psis_khat or "
            "pyrovi.infer.log_marginal_likelihood / elbo"
        )


def _batches(data: torch.Tensor | Sequence[torch.Tensor], batch_size: int, caller: str):
    tensors = as_tensors(data, "data")
    check_data(tensors, data_names(tensors), caller)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = tensors[0].shape[0]
    for start in range(0, n, batch_size):
        yield tuple(t[start : start + batch_size] for t in tensors)


def _check_input(data: torch.Tensor | Sequence[torch.Tensor], caller: str) -> None:
    tensors = as_tensors(data, "data")
    check_data(tensors, data_names(tensors), caller)


def _nesting(trace) -> int:
    dims = [
        f.dim
        for node in trace.nodes.values()
        if node["type"] == "sample"
        for f in node["cond_indep_stack"]
        if f.vectorized
    ]
    return -min(dims) if dims else 0


def _monte_carlo_mean(
    guide: Callable, batch: tuple, site: str, num_samples: int, nesting: int
) -> torch.Tensor:
    with pyro.plate("_pyrovi_mean_draws", num_samples, dim=-(nesting + 1)):
        trace = poutine.trace(guide).get_trace(*batch)
    value = _site(trace, site, "guide")["value"]
    return value.reshape(num_samples, batch[0].shape[0], -1).mean(0)


def posterior_means(
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    site: str = "z",
    num_samples: int = 100,
    batch_size: int = 256,
) -> torch.Tensor:
    """``E_q[z | x]`` for every datapoint: ``(N, d)``.

    Exact when the guide's distribution at ``site`` has a ``mean`` (Gaussian guides), else the
    average of ``num_samples`` draws (e.g. flow guides).

    Args:
        guide: Amortized guide ``guide(*batch)`` sampling ``site`` once per datapoint.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing N.
        site: Latent site.
        num_samples: Draws for the Monte Carlo mean.
        batch_size: Datapoints per pass.

    Returns:
        ``(N, d)`` posterior means.

    Raises:
        TypeError: ``guide`` is a Pyro autoguide (not amortized).
        ValueError: The guide has no latent ``site``, or it is not one vector per datapoint
            (e.g. a global latent).
    """
    check_amortized(guide, "posterior_means")
    num_samples = positive_int("num_samples", num_samples)
    out = []
    with torch.no_grad(), poutine.block():
        for batch in _batches(data, batch_size, "posterior_means"):
            b = batch[0].shape[0]
            trace = poutine.trace(guide).get_trace(*batch)
            node = _site(trace, site, "guide")
            try:
                mean = node["fn"].mean
            except NotImplementedError:
                mean = _monte_carlo_mean(guide, batch, site, num_samples, _nesting(trace))
            out.append(_per_row(mean, b, site, "posterior mean"))
    return torch.cat(out)


@dataclass
class ActiveUnits:
    """What :func:`active_units` returns.

    Attributes:
        activity: ``(d,)`` variance over the data of each posterior-mean coordinate.
        threshold: The activity above which a unit counts as active.
    """

    activity: torch.Tensor
    threshold: float = ACTIVE_UNIT_THRESHOLD

    @property
    def active(self) -> torch.Tensor:
        """``(d,)`` boolean mask of the active units."""
        return self.activity > self.threshold

    @property
    def num_active(self) -> int:
        """Number of active units."""
        return int(self.active.sum())

    def __int__(self) -> int:
        return self.num_active


def _check_threshold(threshold: Any) -> float:
    return check_nonnegative("threshold", threshold)


def active_units(
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    threshold: float = ACTIVE_UNIT_THRESHOLD,
    *,
    site: str = "z",
    num_samples: int = 100,
    batch_size: int = 256,
) -> ActiveUnits:
    """Active units of an amortized guide (Burda et al. 2015).

    ``A_d = Cov_x(E_{q(z|x)}[z_d])`` (the unbiased variance over the N datapoints); unit d is
    active when ``A_d > threshold``.

    Args:
        guide: Amortized guide ``guide(*batch)`` with a per-datapoint latent site ``site``.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing N (N >= 2).
        threshold: Activity threshold (0.01 in Burda et al.).
        site: Latent site.
        num_samples: Draws for the posterior mean when the guide's distribution has no ``mean``.
        batch_size: Datapoints per pass.

    Returns:
        :class:`ActiveUnits`.
    """
    threshold = _check_threshold(threshold)
    _check_input(data, "active_units")
    means = posterior_means(
        guide, data, site=site, num_samples=num_samples, batch_size=batch_size
    ).double()
    if means.shape[0] < 2:
        raise ValueError(f"data: active units need at least 2 datapoints, got {means.shape[0]}")
    return ActiveUnits(activity=means.var(dim=0), threshold=threshold)


def _marginals(fn: Any, b: int, site: str, role: str) -> tuple[torch.Tensor, torch.Tensor]:
    base = _unwrap(fn)
    if not isinstance(base, _GAUSSIANS):
        raise ValueError(
            f"site '{site}': per-dimension KL needs Gaussian marginals, but the {role} uses "
            f"{type(base).__name__} (supported: Normal, MultivariateNormal, "
            "LowRankMultivariateNormal, possibly expanded or .to_event)"
        )
    return _per_row(fn.mean, b, site, f"{role} mean"), _per_row(
        fn.variance, b, site, f"{role} variance"
    )


def kl_per_dimension(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    *,
    site: str = "z",
    batch_size: int = 256,
) -> torch.Tensor:
    """``KL(q(z_d | x) ‖ p(z_d))`` for each latent dimension d, averaged over the data.

    Closed form between the Gaussian marginals of the guide and of the model's prior at
    ``site`` (the prior may depend on the datapoint, as in a conditional VAE).

    Args:
        model: Pyro model ``model(*batch)``.
        guide: Guide ``guide(*batch)``; both Gaussian at ``site``.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing N.
        site: Latent site.
        batch_size: Datapoints per pass.

    Returns:
        ``(d,)`` float64 tensor, nats.

    Raises:
        TypeError: ``guide`` is a Pyro autoguide (not amortized).
        ValueError: ``site`` is missing, not Gaussian, or not one vector per datapoint.
    """
    check_amortized(guide, "kl_per_dimension")
    total, n = None, 0
    with torch.no_grad(), poutine.block():
        for batch in _batches(data, batch_size, "kl_per_dimension"):
            b = batch[0].shape[0]
            guide_trace = poutine.trace(guide).get_trace(*batch)
            q = _site(guide_trace, site, "guide")
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)
            p = _site(model_trace, site, "model")
            mq, vq = (t.double() for t in _marginals(q["fn"], b, site, "guide"))
            mp, vp = (t.double() for t in _marginals(p["fn"], b, site, "model's prior"))
            mp, vp = mp.expand_as(mq), vp.expand_as(vq)
            kl = 0.5 * (torch.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1.0)
            part = kl.sum(0)
            total = part if total is None else total + part
            n += b
    return total / n


@dataclass
class CollapseReport:
    """What :func:`posterior_collapse` returns.

    Attributes:
        activity: ``(d,)`` ``Cov_x(E_q[z_d])`` per dimension.
        kl: ``(d,)`` ``KL(q(z_d|x) ‖ p(z_d))`` averaged over the data, nats.
        threshold: Activity threshold of an active unit.
    """

    activity: torch.Tensor
    kl: torch.Tensor
    threshold: float = ACTIVE_UNIT_THRESHOLD

    @property
    def active(self) -> torch.Tensor:
        """``(d,)`` boolean mask of the active units."""
        return self.activity > self.threshold

    @property
    def num_active(self) -> int:
        """Number of active units."""
        return int(self.active.sum())

    @property
    def total_kl(self) -> float:
        """Sum of the per-dimension KLs (nats)."""
        return self.kl.sum().item()

    def summary(self) -> str:
        """A small table: activity and KL per dimension, active marked."""
        d = self.kl.numel()
        lines = [
            f"active units: {self.num_active} of {d} (Cov_x E_q[z_d] > {self.threshold:g}); "
            f"KL(q(z|x) || p(z)) over dimensions {self.total_kl:.3f} nats",
            "  dim  activity    KL (nats)",
        ]
        for i in range(d):
            mark = " *" if self.active[i] else ""
            activity, kl = self.activity[i].item(), self.kl[i].item()
            lines.append(f"  {i:3d}  {activity:8.4f}  {kl:9.4f}{mark}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def posterior_collapse(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Sequence[torch.Tensor],
    threshold: float = ACTIVE_UNIT_THRESHOLD,
    *,
    site: str = "z",
    batch_size: int = 256,
) -> CollapseReport:
    """Active units and KL per dimension together (see :func:`active_units`,
    :func:`kl_per_dimension`).

    Args:
        model: Pyro model ``model(*batch)`` with a Gaussian prior at ``site``.
        guide: Amortized Gaussian guide at ``site``.
        data: Tensor ``(N, ...)`` or tuple of tensors sharing N.
        threshold: Activity threshold of an active unit.
        site: Latent site.
        batch_size: Datapoints per pass.

    Returns:
        :class:`CollapseReport`.

    Raises:
        TypeError: ``guide`` is a Pyro autoguide (not amortized).
        ValueError: ``site`` is missing, not Gaussian, or not one vector per datapoint (e.g. a
            global latent).
    """
    check_amortized(guide, "posterior_collapse")
    _check_input(data, "posterior_collapse")
    units = active_units(guide, data, threshold, site=site, batch_size=batch_size)
    kl = kl_per_dimension(model, guide, data, site=site, batch_size=batch_size)
    return CollapseReport(activity=units.activity, kl=kl, threshold=units.threshold)
