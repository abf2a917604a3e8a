"""``FlowGuide``: a normalizing-flow autoguide over all continuous latent sites of a model."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_feasible
from torch.distributions.transforms import IndependentTransform, Transform

from pyrovi._checks import check_callable
from pyrovi._validation import positive_int
from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers

__all__ = ["FlowGuide"]

# torch.quantile refuses inputs with more elements than this
_QUANTILE_MAX_ELEMENTS = 2**24 - 1


class FlowGuide(AutoContinuous):
    """A non-amortized autoguide: all continuous latents, flattened and unconstrained (through
    ``biject_to`` of each site's support), follow one nflows flow on top of a learned diagonal
    Gaussian. Like Pyro's ``AutoNormalizingFlow``, on nflows flows, with ``median``,
    ``quantiles`` and posterior sampling.

    Summaries have the shapes of Pyro's :class:`~pyro.infer.autoguide.AutoMultivariateNormal`,
    with ``site_shape`` the shape of the site's value in the model (plate dimensions included,
    e.g. ``(8,)`` for a latent in ``pyro.plate("schools", 8)``), in the constrained space:

    * :meth:`sample_posterior` ``(n)``: site -> ``(n, *site_shape)``;
    * :meth:`quantiles` ``(q)``: site -> ``(len(q), *site_shape)``;
    * :meth:`median`: site -> ``site_shape``.

    The flow has no closed-form quantiles, so :meth:`quantiles` and :meth:`median` are Monte
    Carlo estimates from ``num_quantile_samples`` fresh draws (the standard error of a median is
    about ``1.25 sd / sqrt(num_quantile_samples)``). Sites whose bijection to the support acts
    elementwise (real, positive, interval, bounded sites) get the marginal quantiles of their
    constrained values, exact for increasing and decreasing maps alike. Sites whose bijection
    couples coordinates (a simplex, a correlation Cholesky factor, ...) get, as in Pyro's
    ``AutoContinuous``, the bijection applied to the elementwise quantiles of their unconstrained
    coordinates, so every returned value lies in the support (e.g. sums to one).

    Args:
        model: A Pyro model.
        flow: One of ``"iaf"``, ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"planar"``, ``"radial"``.
        num_layers: Number of flow layers.
        hidden_features: Width of the conditioner networks.
        init_loc_fn: Initialization of the latents (the Gaussian's mean starts there).
        num_quantile_samples: Samples used by :meth:`median` and :meth:`quantiles`.

    Raises:
        ValueError: Unknown ``flow``; ``num_layers``, ``hidden_features`` or
            ``num_quantile_samples`` not a positive integer.
        TypeError: ``model`` is not callable.
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
        check_callable("model", model, "a Pyro model (a callable)")
        if flow not in FLOW_KINDS:
            raise ValueError(f"flow must be one of {FLOW_KINDS}, got {flow!r}")
        self.kind = flow
        self.num_layers = positive_int("num_layers", num_layers)
        self.hidden_features = positive_int("hidden_features", hidden_features)
        self.num_quantile_samples = positive_int("num_quantile_samples", num_quantile_samples)
        super().__init__(model, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        super()._setup_prototype(*args, **kwargs)
        d = self.latent_dim
        loc = self._init_loc()
        base = ElementwiseAffine(d)
        with torch.no_grad():
            base.shift.copy_(loc)
        # the flow lives on the latents' device and in their dtype (a float64 model under a
        # float32 default dtype gets a float64 flow)
        self.flow = Flow(
            CompositeTransform(
                [flow_layers(self.kind, d, self.num_layers, self.hidden_features), base]
            ),
            StandardNormal([d]),
        ).to(device=loc.device, dtype=loc.dtype)

    def get_posterior(self, *args: Any, **kwargs: Any) -> NFlowsDistribution:
        """The flow over the flattened unconstrained latents: event shape ``(latent_dim,)``."""
        return self._posterior_of(self.flow)

    def _posterior_of(self, flow: Flow) -> NFlowsDistribution:
        # (also called by pyrovi.infer.fused_guides with the flow read without Pyro's
        # ``pyro.module`` statement, which costs a handler call per flow parameter)
        return NFlowsDistribution(flow, features=self.latent_dim)

    # ----------------------------------------------------------------------------- summaries

    def _unpack_draws(self, latent: torch.Tensor) -> Iterator[tuple[dict, torch.Tensor]]:
        """Split draws ``(*batch, latent_dim)`` into ``(site, (*batch, *unconstrained_shape))``.

        Unlike Pyro's ``_unpack_latent``, which broadcasts the batch against the plate
        dimensions of each site (right for the particle and prediction plates that
        ``forward`` runs under), the batch dimensions here are always new leading dimensions.
        """
        batch = latent.shape[:-1]
        pos = 0
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            shape = self._unconstrained_shapes[name]
            size = math.prod(shape)
            yield site, latent[..., pos : pos + size].reshape(batch + shape)
            pos += size

    def _draw_latent(self, num_samples: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``num_samples`` draws of the flattened unconstrained latent: ``(num_samples, D)``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        with torch.no_grad():
            return self.get_posterior(*args, **kwargs).sample((num_samples,))

    def sample_posterior(
        self, num_samples: int, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Joint posterior draws of every latent site, in the constrained space.

        Args:
            num_samples: Number of draws n (a positive integer).
            *args: The model's arguments (needed only before the guide has first run).
            **kwargs: The model's keyword arguments.

        Returns:
            site name -> tensor ``(n, *site_shape)``; row i of every site is one joint draw.

        Raises:
            ValueError: ``num_samples`` is not a positive integer.
        """
        n = positive_int("num_samples", num_samples)
        latent = self._draw_latent(n, *args, **kwargs)
        return {
            site["name"]: biject_to(site["fn"].support)(unconstrained)
            for site, unconstrained in self._unpack_draws(latent)
        }

    def quantiles(
        self, quantiles: Sequence[float] | torch.Tensor, *args: Any, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Monte Carlo posterior quantiles of each latent site, in the constrained space.

        Args:
            quantiles: 1-D sequence or tensor of Q probabilities in ``[0, 1]``.
            *args: The model's arguments (needed only before the guide has first run).
            **kwargs: The model's keyword arguments.

        Returns:
            site name -> tensor ``(Q, *site_shape)``.

        Raises:
            ValueError: ``quantiles`` is not a non-empty 1-D collection of numbers in
                ``[0, 1]``.
        """
        q = _check_quantiles(quantiles)
        latent = self._draw_latent(self.num_quantile_samples, *args, **kwargs)
        q = q.to(dtype=latent.dtype, device=latent.device)
        result = {}
        for site, unconstrained in self._unpack_draws(latent):
            transform = biject_to(site["fn"].support)
            if _is_elementwise(transform):
                result[site["name"]] = _sample_quantiles(transform(unconstrained), q)
            else:
                result[site["name"]] = transform(_sample_quantiles(unconstrained, q))
        return result

    def median(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Monte Carlo posterior median of each latent site (see :meth:`quantiles`).

        Returns:
            site name -> tensor ``site_shape``, in the constrained space.
        """
        return {k: v[0] for k, v in self.quantiles([0.5], *args, **kwargs).items()}


def _check_quantiles(quantiles: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``quantiles`` as a 1-D float64 tensor, or a ``ValueError`` naming the argument."""
    try:
        q = torch.as_tensor(quantiles, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"quantiles must be a 1-D sequence of probabilities in [0, 1], got {quantiles!r}"
        ) from None
    if q.dim() != 1 or q.numel() == 0:
        raise ValueError(
            "quantiles must be a non-empty 1-D sequence of probabilities in [0, 1], got shape "
            f"{tuple(q.shape)}"
        )
    if not bool(((q >= 0) & (q <= 1)).all()):  # also catches NaN
        raise ValueError(f"quantiles must lie in [0, 1], got {q.tolist()}")
    return q


def _is_elementwise(transform: Transform) -> bool:
    """Whether ``transform`` maps each coordinate on its own (so it is monotone in each)."""
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return transform.domain.event_dim == 0 and transform.codomain.event_dim == 0


def _sample_quantiles(draws: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quantiles over the first dimension: ``(n, *shape)`` and ``(Q,)`` -> ``(Q, *shape)``."""
    n, shape = draws.shape[0], draws.shape[1:]
    flat = draws.reshape(n, -1)
    if flat.shape[1] == 0:
        return draws.new_empty((q.numel(), *shape))
    width = max(1, _QUANTILE_MAX_ELEMENTS // n)
    parts = [
        torch.quantile(flat[:, i : i + width], q, dim=0) for i in range(0, flat.shape[1], width)
    ]
    return torch.cat(parts, dim=1).reshape(q.numel(), *shape)
