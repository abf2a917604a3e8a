"""Free bits (Kingma et al. 2016): a KL floor per latent group against posterior collapse.

The objective replaces each group's KL term by ``max(λ, E_batch KL_group)``: once a group's KL,
averaged over the minibatch, falls below λ nats, it is no longer pushed down, so the encoder can
keep using those latents instead of collapsing them onto the prior.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.distributions import Independent, Normal
from pyro.infer.elbo import ELBO
from pyro.poutine.subsample_messenger import _Subsample
from torch.distributions import kl_divergence

__all__ = ["FreeBitsELBO"]

_GROUPS = ("dimension", "site")


def _scale(site: dict[str, Any]) -> torch.Tensor | float:
    return site["scale"]


def _normal_parts(fn: Any) -> tuple[Normal, int] | None:
    """The Normal inside ``Normal(...).to_event(k)`` and ``k``; None for other distributions."""
    if isinstance(fn, Independent) and isinstance(fn.base_dist, Normal):
        return fn.base_dist, fn.reinterpreted_batch_ndims
    if isinstance(fn, Normal):
        return fn, 0
    return None


class FreeBitsELBO(ELBO):
    """Negative ELBO with a free-bits floor on the KL of every latent site in plate ``plate``.

    For every latent site ``s`` shared by model and guide the KL term is
    ``KL_s = log q(z_s | ·) - log p(z_s | ·)``, computed analytically per dimension when both are
    diagonal Gaussians (``Normal(...).to_event(1)``) given the sampled parents, else by the
    single-sample Monte Carlo estimate of the whole site. Each group's KL (per latent dimension,
    or per site) is averaged over the datapoints of the minibatch and replaced by
    ``max(free_bits, mean)``; the result is multiplied by the batch size and by the site's scale
    (``N / batch`` under :func:`pyrovi.infer.fit`, times β and the KL-annealing weight).
    With ``free_bits=0`` and Gaussian sites this is the ELBO with analytic KL terms.

    ``loss_and_grads``/``differentiable_loss`` give the free-bits objective (what is trained);
    ``loss`` gives the plain negative ELBO (Monte Carlo KL, no floor), so the validation ELBO of
    :func:`pyrovi.infer.fit` stays comparable across settings.

    Works with :func:`pyrovi.infer.fit` (``loss=FreeBitsELBO(0.25)``) and with Pyro's ``SVI``.
    Guides must be reparameterized.

    Args:
        free_bits: λ in nats per group (≥ 0).
        group: ``"dimension"`` (one floor per latent dimension, Kingma et al.) or ``"site"``.
        num_particles: Samples averaged per step (run sequentially).
        plate: Name of the per-datapoint plate (the batch axis is found from it).
    """

    def __init__(
        self,
        free_bits: float,
        group: str = "dimension",
        num_particles: int = 1,
        plate: str = "data",
    ) -> None:
        if not (isinstance(free_bits, int | float) and free_bits >= 0):
            raise ValueError(f"free_bits must be a non-negative number, got {free_bits!r}")
        if group not in _GROUPS:
            raise ValueError(f"group must be one of {_GROUPS}, got {group!r}")
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, int)
            or num_particles < 1
        ):
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        super().__init__(num_particles=num_particles)
        self.free_bits, self.group, self.plate = float(free_bits), group, plate

    def _get_trace(self, model, guide, args, kwargs):  # noqa: D102 - required by ELBO
        return self._traces(model, guide, args, kwargs)

    def _traces(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        return model_trace, guide_trace

    def _batch_dim(self, site: dict[str, Any]) -> int | None:
        for frame in site["cond_indep_stack"]:
            if frame.name == self.plate:
                return frame.dim
        return None

    def _site_kl(self, p_site: dict, q_site: dict) -> torch.Tensor:
        """KL per datapoint and group, summed over everything but the groups and the batch."""
        q_parts, p_parts = _normal_parts(q_site["fn"]), _normal_parts(p_site["fn"])
        dim = self._batch_dim(q_site)
        if dim is None:
            raise ValueError(
                f"latent site '{q_site['name']}' is outside the plate '{self.plate}': free bits "
                "need per-datapoint latent sites"
            )
        if q_parts and p_parts and q_parts[1] == p_parts[1] and q_parts[1] <= 1:
            kl = kl_divergence(q_parts[0], p_parts[0])  # (..., batch, [dim])
            event = q_parts[1]
            if self.group == "site" and event:
                kl = kl.sum(-1)
                event = 0
        else:
            value = q_site["value"]
            kl = q_site["fn"].log_prob(value) - p_site["fn"].log_prob(value)  # (..., batch)
            event = 0
        # move the batch axis first, keep the group axis last (if any), sum the rest
        batch_axis = kl.dim() - event + dim
        kl = kl.movedim(batch_axis, 0)
        if kl.dim() > 1 + event:
            kl = kl.sum(dim=tuple(range(1, kl.dim() - event)))
        return kl  # (batch,) or (batch, dim)

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any):
        """Differentiable negative free-bits objective (scalar tensor)."""
        total: Any = 0.0
        for _ in range(self.num_particles):
            model_trace, guide_trace = self._traces(model, guide, args, kwargs)
            objective: Any = 0.0
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample" or isinstance(site["fn"], _Subsample):
                    continue
                if site["is_observed"]:
                    log_p = site["fn"].log_prob(site["value"])
                    objective = objective + (_scale(site) * log_p).sum()
                    continue
                q_site = guide_trace.nodes.get(name)
                if q_site is None or q_site["type"] != "sample":
                    raise ValueError(f"latent site '{name}' of the model is missing in the guide")
                kl = self._site_kl(site, q_site)
                batch = kl.shape[0]
                floored = torch.clamp(kl.mean(0), min=self.free_bits).sum()
                objective = objective - _scale(site) * batch * floored
            for name, q_site in guide_trace.nodes.items():
                if (
                    q_site["type"] == "sample"
                    and not q_site["is_observed"]
                    and not isinstance(q_site["fn"], _Subsample)
                    and name not in model_trace.nodes
                ):  # auxiliary guide sites
                    log_q = q_site["fn"].log_prob(q_site["value"])
                    objective = objective - (_scale(q_site) * log_q).sum()
            total = total - objective
        return total / self.num_particles

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Negative free-bits objective as a float; accumulates gradients."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
        return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """Plain negative ELBO (no free-bits floor), averaged over ``num_particles``."""
        with torch.no_grad():
            total = 0.0
            for _ in range(self.num_particles):
                model_trace, guide_trace = self._traces(model, guide, args, kwargs)
                total -= float(model_trace.log_prob_sum()) - float(
                    sum(
                        (s["scale"] * s["fn"].log_prob(s["value"])).sum()
                        for s in guide_trace.nodes.values()
                        if s["type"] == "sample"
                        and not s["is_observed"]
                        and not isinstance(s["fn"], _Subsample)
                    )
                )
            return total / self.num_particles
