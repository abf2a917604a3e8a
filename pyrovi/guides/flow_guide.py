"""``FlowGuide``: a normalizing-flow autoguide over all continuous latent sites of a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_feasible

from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers

__all__ = ["FlowGuide"]


class FlowGuide(AutoContinuous):
    """A non-amortized autoguide: all continuous latents, flattened and unconstrained (through
    ``biject_to`` of each site's support), follow one nflows flow on top of a learned diagonal
    Gaussian. Like Pyro's ``AutoNormalizingFlow``, on nflows flows, with ``median``,
    ``quantiles`` and posterior sampling.

    Args:
        model: A Pyro model.
        flow: One of ``"iaf"``, ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"planar"``, ``"radial"``.
        num_layers: Number of flow layers.
        hidden_features: Width of the conditioner networks.
        init_loc_fn: Initialization of the latents (the Gaussian's mean starts there).
        num_quantile_samples: Samples used by :meth:`median` and :meth:`quantiles`.
    """

    def __init__(
        self,
        model: Callable,
        flow: str = "iaf",
        num_layers: int = 2,
        hidden_features: int = 32,
        init_loc_fn: Callable = init_to_feasible,
        num_quantile_samples: int = 2000,
    ) -> None:
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        self.kind = flow
        self.num_layers = num_layers
        self.hidden_features = hidden_features
        self.num_quantile_samples = int(num_quantile_samples)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        d = self.latent_dim
        base = ElementwiseAffine(d)
        with torch.no_grad():
            base.shift.copy_(self._init_loc())
        self.flow = Flow(
            CompositeTransform(
                [flow_layers(self.kind, d, self.num_layers, self.hidden_features), base]
            ),
            StandardNormal([d]),
        ).to(self._init_loc().device)

    def get_posterior(self, *args: Any, **kwargs: Any) -> NFlowsDistribution:
        """The flow over the flattened unconstrained latents: event shape ``(latent_dim,)``."""
        return NFlowsDistribution(self.flow, features=self.latent_dim)

    def _site_samples(self, num_samples: int, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            latent = self.get_posterior(*args, **kwargs).sample((num_samples,))
        out = {}
        for site, unconstrained in self._unpack_latent(latent):
            out[site["name"]] = biject_to(site["fn"].support)(unconstrained)
        return out

    def sample_posterior(
        self, num_samples: int, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """``num_samples`` joint posterior draws, site name -> ``(num_samples, *site_shape)``."""
        return self._site_samples(int(num_samples), *args, **kwargs)

    def quantiles(
        self, quantiles: Sequence[float] | torch.Tensor, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Monte Carlo quantiles of each site in its constrained space.

        Returns:
            site name -> tensor ``(len(quantiles), *site_shape)``.
        """
        samples = self._site_samples(self.num_quantile_samples, *args, **kwargs)
        q = torch.as_tensor(quantiles, dtype=torch.get_default_dtype())
        return {
            name: torch.quantile(v.to(q.dtype), q.to(v.device), dim=0).to(v.dtype)
            for name, v in samples.items()
        }

    def median(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Monte Carlo posterior median of each site (constrained space)."""
        return {k: v[0] for k, v in self.quantiles([0.5], *args, **kwargs).items()}
