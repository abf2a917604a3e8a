"""``FlowDensity``: a normalizing-flow density model of observed data, ``x ~ flow``."""

from __future__ import annotations

import pyro
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled

from pyrovi._validation import positive_int
from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers
from pyrovi.models._checks import check_features, check_values
from pyrovi.nn import submodule

__all__ = ["FlowDensity"]


class FlowDensity(PyroModule):
    """A flow density ``p(x)`` (or ``p(x | c)``) as a Pyro model with observed site ``"x"``.

    Flows are the deterministic limit of an autoencoder: no latent site, so the model is trained
    by maximum likelihood — ``fit(model, None, x)`` (an empty guide) maximizes
    ``Σ log p(x_i)``. A learned elementwise affine layer (a per-feature shift and scale,
    conditional on ``c`` when there is a context) sits between the base ``N(0, I)`` and the flow
    layers.

    Args:
        x_dim: Dimension D of the data.
        flow: One of ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"iaf"``, ``"planar"``, ``"radial"``.
            ``maf``/``nsf``/``realnvp`` evaluate densities in one network pass per layer (the
            usual choice here; ``nsf`` fitted 2-D densities best in ``benchmarks/``); ``iaf``
            needs D passes per layer; ``planar`` (per-row Newton solve) and ``radial`` (closed
            form) are cheap but have few parameters per layer.
        num_layers: Number of flow layers.
        hidden_features: Width of the conditioner networks.
        context_dim: Features of a conditioning input ``c`` (``forward(x, c)``), or None.
    """

    def __init__(
        self,
        x_dim: int,
        flow: str = "maf",
        num_layers: int = 5,
        hidden_features: int = 64,
        context_dim: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise ValueError(f"x_dim must be a positive integer, got {x_dim!r}")
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        if context_dim is not None and (
            isinstance(context_dim, bool) or not isinstance(context_dim, int) or context_dim < 1
        ):
            raise ValueError(f"context_dim must be a positive integer or None, got {context_dim!r}")
        self.x_dim, self.context_dim, self.kind = x_dim, context_dim, flow
        layers = flow_layers(flow, x_dim, num_layers, hidden_features, context_dim)
        affine = ElementwiseAffine(x_dim, context_dim)
        self.flow = Flow(CompositeTransform([layers, affine]), StandardNormal([x_dim]))

    def _context(self, x_batch: int, c: torch.Tensor | None) -> torch.Tensor | None:
        if self.context_dim is None:
            if c is not None:
                raise ValueError("this FlowDensity has no context: call it as model(x)")
            return None
        if c is None:
            raise ValueError(
                f"this FlowDensity has context_dim={self.context_dim}: call it as model(x, c)"
            )
        check_features("c", c, self.context_dim)
        if c.shape[0] != x_batch:
            raise ValueError(f"c must have the batch size of x ({x_batch}), got {c.shape[0]}")
        return c

    def distribution(self, c: torch.Tensor | None = None, batch: int | None = None):
        """``p(x)`` (batch shape ``()``) or ``p(x | c)`` (batch shape ``(batch,)``)."""
        ctx = self._context(c.shape[0] if c is not None else (batch or 0), c)
        return NFlowsDistribution(submodule(self, "flow"), ctx, features=self.x_dim)

    def check_data(self, x: torch.Tensor, c: torch.Tensor | None = None, *args) -> None:
        """Raise ``ValueError`` on wrong shapes or non-finite values."""
        check_features("x", x, self.x_dim)
        check_values("x", x)
        self._context(x.shape[0], c)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> None:
        """The model: ``x`` ``(batch, x_dim)`` observed under the flow (given ``c``)."""
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)
        q = NFlowsDistribution(
            submodule(self, "flow"), self._context(x.shape[0], c), features=self.x_dim
        )
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", q, obs=x)

    def log_prob(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x)`` (or ``log p(x | c)``) per row, shape ``(batch,)``, nats."""
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)
        return self.distribution(c, x.shape[0]).log_prob(x)

    def sample(self, num_samples: int, c: torch.Tensor | None = None) -> torch.Tensor:
        """Samples ``(num_samples, x_dim)``, or ``(num_samples, batch, x_dim)`` given ``c``."""
        num_samples = positive_int("num_samples", num_samples)
        with torch.no_grad():
            return self.distribution(c).sample((num_samples,))
