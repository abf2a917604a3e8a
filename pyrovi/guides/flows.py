"""``AmortizedFlow``: ``q(z | x)`` as a conditional normalizing flow on an amortized Gaussian."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform
from torch import nn

from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers
from pyrovi.guides.encoders import _AmortizedGuide
from pyrovi.nn import submodule

__all__ = ["AmortizedFlow"]


class AmortizedFlow(_AmortizedGuide):
    """Amortized flow guide: ``z = f_K ∘ … ∘ f_1(μ(x) + σ(x) ⊙ ε; h(x))``, ``ε ~ N(0, I)``.

    The encoder maps ``x`` (and a context ``c``, if any) to features ``h``; a linear head gives the
    Gaussian ``N(μ(h), diag σ(h)²)`` and ``h`` is also the context of every flow layer, so the
    posterior's shape, not just its location and scale, depends on ``x``. The log-density
    includes the flow's log-determinants (the lectures' "normalising flow as VAE encoder"), and
    the guide scores its own samples from a cache, without inverting the flow. A drop-in
    replacement for :class:`~pyrovi.guides.AmortizedNormal` (same site, plate and signature).

    Args:
        x_dim: Observed features D.
        z_dim: Latent dimension.
        flow: One of ``"iaf"``, ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"planar"``, ``"radial"``
            (``iaf`` samples in one pass per layer and is the usual choice for a guide; ``maf``
            samples sequentially, z_dim passes per layer).
        num_layers: Number of flow layers.
        hidden_features: Width of the flow's conditioner networks.
        hidden_dims: Widths of the default MLP encoder trunk.
        encoder: Optional trunk module ``(batch, x_dim + context_dim) -> (batch, F)``.
        context_dim: Features of a conditioning input ``c`` (guide called as ``guide(x, c)``).
        site: Name of the latent sample site.
        plate: Name of the per-datapoint plate.
        min_scale: Floor of σ.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        flow: str = "iaf",
        num_layers: int = 2,
        hidden_features: int = 64,
        hidden_dims: Sequence[int] = (512, 256),
        encoder: nn.Module | None = None,
        context_dim: int = 0,
        site: str = "z",
        plate: str = "data",
        min_scale: float = 1e-4,
    ) -> None:
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        super().__init__(x_dim, z_dim, hidden_dims, encoder, context_dim, site, plate, min_scale)
        self.kind = flow
        layers = flow_layers(flow, z_dim, num_layers, hidden_features, self.features)
        base = ElementwiseAffine(z_dim, self.features, min_scale=min_scale)
        # density direction: flow layers first, then the Gaussian's standardization
        self.flow = Flow(CompositeTransform([layers, base]), StandardNormal([z_dim]))

    @staticmethod
    def head_size(z_dim: int) -> int:
        """No separate head: the Gaussian's shift and scale live inside the flow."""
        return 0

    def distribution(self, x: torch.Tensor, *args: torch.Tensor) -> NFlowsDistribution:
        """``q(z | x, c)`` with batch shape ``(batch,)`` and event shape ``(z_dim,)``."""
        features = submodule(self, "encoder")(self._inputs(x, args))
        return NFlowsDistribution(submodule(self, "flow"), features, features=self.z_dim)
