"""An elementwise affine transform whose shift and scale may depend on a context."""

from __future__ import annotations

import torch
from nflows.transforms import Transform
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_int, check_nonnegative

__all__ = ["ElementwiseAffine"]


class ElementwiseAffine(Transform):
    """``z = μ + σ ⊙ u`` in the sampling direction (nflows ``inverse``); ``σ = softplus(·) + ε``.

    With ``context_features`` the shift and scale come from a linear map of the context, so
    ``u ~ N(0, I)`` becomes ``N(μ(c), diag σ(c)²)``: the amortized Gaussian that
    :class:`pyrovi.guides.AmortizedFlow` refines with flow layers. Without a context, ``μ`` and
    ``σ`` are parameters (initialized to 0 and 1).

    Args:
        features: D.
        context_features: C, or None for an unconditional transform.
        min_scale: ε, floor of σ.
        head: Optional module mapping the context ``(batch, C)`` to ``(batch, 2D)`` (shift, raw
            scale); default ``nn.Linear(C, 2D)``.

    Shapes:
        inputs ``(batch, D)``, context ``(batch, C)``; logabsdet ``(batch,)``.
    """

    def __init__(
        self,
        features: int,
        context_features: int | None = None,
        min_scale: float = 1e-4,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.features = check_int("features", features)
        if context_features is not None:
            context_features = check_int("context_features", context_features)
        self.context_features = context_features
        self.min_scale = check_nonnegative("min_scale", min_scale)
        if context_features is None and self.min_scale >= 1:
            raise ValueError(
                f"min_scale must be below 1 (the initial scale of an unconditional affine "
                f"layer), got {min_scale!r}"
            )
        if context_features is None:
            self.shift = nn.Parameter(torch.zeros(self.features))
            # softplus(raw) + eps = 1 at initialization
            raw = torch.log(torch.expm1(torch.tensor(1.0 - self.min_scale)))
            self.raw_scale = nn.Parameter(torch.full((self.features,), float(raw)))
            self.head = None
        else:
            self.head = head if head is not None else nn.Linear(int(context_features), 2 * features)

    def shift_and_scale(
        self, batch: int, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``μ`` and ``σ``, each ``(batch, D)`` (or ``(D,)`` without a context)."""
        if self.head is None:
            return self.shift, F.softplus(self.raw_scale) + self.min_scale
        if context is None or context.shape[0] != batch:
            got = None if context is None else tuple(context.shape)
            raise ValueError(
                f"context must have shape ({batch}, {self.context_features}), got {got}"
            )
        shift, raw = self.head(context).chunk(2, dim=-1)
        return shift, F.softplus(raw) + self.min_scale

    def forward(self, inputs: torch.Tensor, context: torch.Tensor | None = None):
        """Density direction: ``u = (z - μ) / σ``."""
        shift, scale = self.shift_and_scale(inputs.shape[0], context)
        logabsdet = -torch.log(scale).sum(-1).expand(inputs.shape[0])
        return (inputs - shift) / scale, logabsdet

    def inverse(self, inputs: torch.Tensor, context: torch.Tensor | None = None):
        """Sampling direction: ``z = μ + σ ⊙ u``."""
        shift, scale = self.shift_and_scale(inputs.shape[0], context)
        logabsdet = torch.log(scale).sum(-1).expand(inputs.shape[0])
        return shift + scale * inputs, logabsdet
