"""``NFlowsDistribution``: an nflows ``Flow`` as a reparameterized Pyro distribution."""

from __future__ import annotations

import math
from typing import Any

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import Transform
from pyro.distributions import TorchDistribution, constraints
from torch import nn

from pyrovi._checks import check_int
from pyrovi._validation import all_finite

__all__ = ["NFlowsDistribution"]


def _flow_features(flow: Flow) -> int:
    shape = getattr(flow._distribution, "_shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(
            "flow: cannot infer the number of features from its base distribution; pass "
            "features=D (NFlowsDistribution supports flows over vectors in R^D)"
        )
    return int(shape[0])


class NFlowsDistribution(TorchDistribution):
    """A normalizing flow from ``nflows`` as a Pyro distribution over ``R^D``.

    Samples go through the flow's sampling direction (base noise -> ``transform.inverse``), which
    is differentiable in the flow's parameters and the context, so ``has_rsample`` is True and
    Pyro's ELBOs use pathwise gradients. ``rsample`` also computes the log-density of what it
    drew and caches it: ``log_prob`` of that very tensor returns the cached value without running
    the (possibly slow or iterative) density direction. Any other value is scored by
    ``flow.log_prob``.

    Shapes:
        * unconditional (``context=None``): ``batch_shape = ()``;
        * conditional: ``context`` of shape ``batch_shape + (C,)`` gives one distribution per
          context row;
        * ``event_shape = (D,)``; ``sample(sample_shape)`` has shape
          ``sample_shape + batch_shape + (D,)``.

    ``expand`` adds leading batch dimensions of i.i.d. copies (what ``pyro.plate`` and
    ``Trace_ELBO(vectorize_particles=True)`` ask for). The device is the flow's.

    Args:
        flow: An ``nflows.flows.Flow`` over vectors (its embedding net, if any, is applied to
            ``context`` by nflows).
        context: Tensor ``batch_shape + (C,)`` or ``None``.
        features: D, when it cannot be read from the flow's base distribution.
        batch_shape: Expanded batch shape (must end with the context's batch shape).
        validate_args: As in torch distributions.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        flow: Flow,
        context: torch.Tensor | None = None,
        *,
        features: int | None = None,
        batch_shape: torch.Size | tuple = None,  # type: ignore[assignment]
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be an nflows.flows.Flow, got {type(flow).__name__}")
        if context is not None and (not isinstance(context, torch.Tensor) or context.dim() < 1):
            raise ValueError(
                "context must be a tensor of shape batch_shape + (C,) or None, got "
                f"{tuple(context.shape) if isinstance(context, torch.Tensor) else context!r}"
            )
        self.flow = flow
        self.context = context
        if features is None:
            self.features = _flow_features(flow)
        else:
            self.features = check_int("features", features)
            shape = getattr(flow._distribution, "_shape", None)
            if shape is not None and len(shape) == 1 and int(shape[0]) != self.features:
                raise ValueError(
                    f"features={self.features} does not match the flow, whose base distribution "
                    f"is over R^{int(shape[0])}"
                )
        self._context_batch = torch.Size(context.shape[:-1]) if context is not None else ()
        if batch_shape is None:
            batch_shape = self._context_batch
        batch_shape = torch.Size(batch_shape)
        n = len(self._context_batch)
        if n and tuple(batch_shape[len(batch_shape) - n :]) != tuple(self._context_batch):
            raise ValueError(
                f"batch_shape {tuple(batch_shape)} must end with the context's batch shape "
                f"{tuple(self._context_batch)}"
            )
        self._extra = batch_shape[: len(batch_shape) - n]
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(batch_shape, torch.Size([self.features]), validate_args=validate_args)

    @classmethod
    def from_transform(
        cls,
        transform: Transform,
        features: int,
        context: torch.Tensor | None = None,
        base: Any = None,
        embedding_net: nn.Module | None = None,
    ) -> NFlowsDistribution:
        """Build from an nflows ``Transform`` (density direction) and a base distribution.

        Args:
            transform: ``nflows`` transform mapping data to base noise.
            features: Dimension D.
            context: Optional context ``batch_shape + (C,)``.
            base: nflows base distribution (default ``StandardNormal([D])``).
            embedding_net: Optional network applied to the context first.
        """
        features = check_int("features", features)
        base = StandardNormal([features]) if base is None else base
        return cls(Flow(transform, base, embedding_net), context, features=features)

    # ------------------------------------------------------------------ shapes

    def expand(self, batch_shape, _instance=None) -> NFlowsDistribution:  # noqa: D102
        return NFlowsDistribution(
            self.flow,
            self.context,
            features=self.features,
            batch_shape=torch.Size(batch_shape),
            validate_args=self._validate_args,
        )

    def _flat_context(self) -> torch.Tensor | None:
        if self.context is None:
            return None
        return self.context.reshape(-1, self.context.shape[-1])

    # ------------------------------------------------------------------ sampling

    def sample_and_log_prob(
        self, sample_shape: torch.Size | tuple = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized samples and their log-density in one pass through the flow.

        Returns:
            ``x`` of shape ``sample_shape + batch_shape + (D,)`` and ``log_prob`` of shape
            ``sample_shape + batch_shape``. ``log_prob(x)`` afterwards returns the cached value.
        """
        sample_shape = torch.Size(sample_shape)
        reps = math.prod(sample_shape) * math.prod(self._extra)
        ctx = self._flat_context()
        x, log_p = self._sample_flat(reps, ctx)
        if ctx is not None:
            x, log_p = x.transpose(0, 1), log_p.transpose(0, 1)  # (reps, B, ...)
        shape = sample_shape + self.batch_shape
        x = x.reshape(shape + (self.features,))
        log_p = log_p.reshape(shape)
        self._cache = (x, log_p)
        return x, log_p

    def _sample_flat(
        self, reps: int, ctx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, reps, D)`` samples and ``(B, reps)`` log-densities (no B without a context).

        Like ``Flow.sample_and_log_prob``, except that a ``StandardNormal`` base draws its noise
        in the flow's dtype (nflows draws it in the default dtype, which breaks float64 flows).
        """
        flow = self.flow
        embedded = None if ctx is None else flow._embedding_net(ctx)
        base = flow._distribution
        if type(base) is StandardNormal:
            p = next(iter(flow.parameters()), None)
            ref = p if p is not None else (ctx if ctx is not None else base._log_z)
            dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
            rows = 1 if ctx is None else ctx.shape[0]
            noise = torch.randn(rows * reps, self.features, dtype=dtype, device=ref.device)
            base_lp = -0.5 * noise.pow(2).sum(-1) - 0.5 * self.features * math.log(2 * math.pi)
        else:
            noise, base_lp = base.sample_and_log_prob(reps, context=embedded)
            if embedded is not None:
                noise, base_lp = noise.reshape(-1, self.features), base_lp.reshape(-1)
        if embedded is not None:
            embedded = embedded.repeat_interleave(reps, dim=0)  # row b repeated reps times
        x, logabsdet = flow._transform.inverse(noise, context=embedded)
        log_p = base_lp - logabsdet
        if ctx is None:
            return x, log_p
        return x.reshape(ctx.shape[0], reps, self.features), log_p.reshape(ctx.shape[0], reps)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        return self.sample_and_log_prob(sample_shape)[0]

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        with torch.no_grad():
            return self.rsample(sample_shape)

    # ------------------------------------------------------------------ density

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of ``value`` (shape ``... + batch_shape + (D,)``, broadcastable)."""
        cache = self._cache
        if cache is not None and value is cache[0]:
            return cache[1]
        if (
            not isinstance(value, torch.Tensor)
            or value.dim() < 1
            or value.shape[-1] != self.features
        ):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"value must have shape (..., {self.features}) for this flow over R^"
                f"{self.features}, got {shape}"
            )
        if self._validate_args and value.is_floating_point() and not all_finite(value):
            raise ValueError("value contains NaN or infinite values")
        batch = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        value = value.expand(batch + (self.features,))
        ctx = self._flat_context()
        if ctx is None:
            log_p = self.flow.log_prob(value.reshape(-1, self.features))
            return log_p.reshape(batch)
        # The context broadcasts against the value's batch (plates may expand it in any of its
        # dimensions, not only in front): one context row per value row.
        ctx = self.context.expand(batch + self.context.shape[-1:]).reshape(-1, ctx.shape[-1])
        log_p = self.flow.log_prob(value.reshape(-1, self.features), context=ctx)
        return log_p.reshape(batch)
