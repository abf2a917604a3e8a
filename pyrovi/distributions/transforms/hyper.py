"""The base of transforms whose parameters are free or come from a context (a hypernetwork),
and the argument checks shared by the transforms of this package."""

from __future__ import annotations

import math

import torch
from nflows.transforms.base import Transform
from torch import nn

__all__ = ["HyperTransform"]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_inputs(inputs: object, features: int, name: str = "inputs") -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (batch, {features}), "
            f"got {type(inputs).__name__}"
        )
    if inputs.dim() != 2 or inputs.shape[1] != features:
        raise ValueError(f"{name} must have shape (batch, {features}), got {tuple(inputs.shape)}")
    if not inputs.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {inputs.dtype}")
    return inputs


def _check_context(
    context: object, batch: int | None, context_features: int | None, owner: str
) -> torch.Tensor | None:
    """Validate ``context`` for a transform; unconditional transforms ignore it (returns None).

    ``batch`` is the batch size of the inputs, or None when there are no inputs to match.
    """
    if context_features is None:
        return None
    if context is None:
        raise ValueError(
            f"{owner} was built with context_features={context_features} and needs a context "
            f"of shape (batch, {context_features}), got context=None"
        )
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
    if (
        context.dim() != 2
        or context.shape[1] != context_features
        or (batch is not None and context.shape[0] != batch)
    ):
        expected = "batch" if batch is None else str(batch)
        raise ValueError(
            f"context must have shape ({expected}, {context_features}) (batch size of the "
            f"inputs, context_features), got {tuple(context.shape)}"
        )
    return context


class HyperTransform(Transform):
    """A transform with named parameters that are ``nn.Parameter`` s, or, given
    ``context_features``, the output of a linear hypernetwork of the context (one parameter set
    per row; its weights start at N(0, 0.01²) and its bias at the initial values).

    Subclasses pass ``initial`` (name -> initial tensor) and read the parameters with
    :meth:`_raw_params`, which returns them in that order with a leading dimension of 1
    (unconditional) or batch (conditional).

    Args:
        features: D.
        context_features: C, or None for free parameters.
        initial: Parameter names and initial values, in order.
    """

    def __init__(
        self, features: int, context_features: int | None, initial: dict[str, torch.Tensor]
    ) -> None:
        super().__init__()
        self.features = _check_positive_int("features", features)
        self.context_features = (
            None
            if context_features is None
            else _check_positive_int("context_features", context_features)
        )
        self._shapes = [(name, tuple(v.shape)) for name, v in initial.items()]
        if self.context_features is None:
            for name, value in initial.items():
                setattr(self, name, nn.Parameter(value))
            self.hypernet = None
        else:
            flat = torch.cat([v.reshape(-1) for v in initial.values()])
            self.hypernet = nn.Linear(self.context_features, flat.numel())
            with torch.no_grad():
                self.hypernet.weight.normal_(0.0, 0.01)
                self.hypernet.bias.copy_(flat)

    def _raw_params(self, context: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The parameters in ``initial``'s order, each ``(n, *shape)`` (n = 1 or batch)."""
        if self.hypernet is None:
            return tuple(getattr(self, name).unsqueeze(0) for name, _ in self._shapes)
        out = self.hypernet(context)
        params, start = [], 0
        for _, shape in self._shapes:
            size = math.prod(shape)
            params.append(out[:, start : start + size].reshape(out.shape[0], *shape))
            start += size
        return tuple(params)

    def _prepare(
        self, inputs: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Checked ``(inputs, context)`` for a forward or inverse call."""
        inputs = _check_inputs(inputs, self.features)
        context = _check_context(
            context, inputs.shape[0], self.context_features, type(self).__name__
        )
        return inputs, context
