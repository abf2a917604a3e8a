"""Radial flow (Rezende & Mohamed, 2015) as an nflows transform, optionally conditional."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from pyrovi.distributions.transforms.hyper import (
    HyperTransform,
    _check_context,
    _check_positive_int,
)

__all__ = ["RadialTransform"]


class RadialTransform(HyperTransform):
    r"""Radial flow ``y = z + β h(α, r)(z − z₀)``, ``r = ‖z − z₀‖``, ``h = 1/(α + r)``.

    The closed form is the *sampling* direction (nflows ``inverse``: noise ``z`` -> data ``y``),
    with ``log|det ∂y/∂z| = (D − 1) log(1 + βh) + log(1 + βh + βh'(r) r)``, ``h' = −1/(α + r)²``.
    ``α = softplus(α̂) > 0`` and ``β = −α + softplus(β̂) ≥ −α`` make it invertible. Both factors
    are evaluated as sums of non-negative terms (``1 + βh = (r + softplus(β̂))/(α + r)``), so they
    stay accurate close to the boundary ``β = −α``.

    The *density* direction (nflows ``forward``) is closed form too: ``r_y = ‖y − z₀‖ =
    r (1 + β/(α + r))`` is increasing in ``r ≥ 0``; ``r`` is the non-negative root of
    ``r² + (α + β − r_y) r − α r_y = 0`` (computed in the cancellation-free form), then
    ``z − z₀ = (y − z₀) / (1 + β/(α + r))``. It is differentiable by ordinary autograd.

    Without ``context_features``, ``z₀``, ``α̂`` and ``β̂`` are parameters (``z₀ ~ N(0, 0.1²)``,
    ``α̂ ≈ 0``, ``β̂ ≈ α̂`` so that ``β ≈ 0``: a small random perturbation of the identity). With
    ``context_features`` every row gets its own ``(z₀, α̂, β̂)`` from ``nn.Linear(C, D + 2)``
    (bias initialized to those values, weights N(0, 0.01²)). An unconditional transform ignores
    any context it is given.

    Args:
        features: D.
        context_features: C, or None for an unconditional transform.

    Shapes:
        inputs ``(batch, D)``, context ``(batch, C)`` -> outputs ``(batch, D)``, logabsdet
        ``(batch,)``.
    """

    def __init__(self, features: int, context_features: int | None = None) -> None:
        d = _check_positive_int("features", features)
        z0 = 0.1 * torch.randn(d)
        alpha_hat = 0.01 * torch.randn(())
        beta_hat = alpha_hat + 0.01 * torch.randn(())
        super().__init__(
            d, context_features, {"z0": z0, "alpha_hat": alpha_hat, "beta_hat": beta_hat}
        )

    def _constrained(
        self, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z₀, α, softplus(β̂) = α + β)``, leading dim 1 or batch."""
        z0, alpha_hat, beta_hat = self._raw_params(context)
        return z0, F.softplus(alpha_hat), F.softplus(beta_hat)

    def constrained_params(
        self, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The constrained parameters ``(z₀, α, β)``.

        Args:
            context: ``(batch, C)`` for a conditional transform (ignored otherwise).

        Returns:
            ``z₀`` of shape ``(n, D)``, ``α`` and ``β`` of shape ``(n,)``, with ``n = 1`` for an
            unconditional transform and ``n = batch`` for a conditional one.
        """
        context = _check_context(context, None, self.context_features, type(self).__name__)
        z0, alpha, alpha_plus_beta = self._constrained(context)
        return z0, alpha, alpha_plus_beta - alpha

    def _logabsdet(
        self, r: torch.Tensor, alpha: torch.Tensor, alpha_plus_beta: torch.Tensor
    ) -> torch.Tensor:
        """Generative ``log|det ∂y/∂z|`` at radius ``r = ‖z − z₀‖``."""
        log_alpha_r = torch.log(alpha + r)
        # 1 + βh = (r + α + β)/(α + r);  1 + βh + βh'r = 1 + αβ/(α + r)² =
        # (r(2α + r) + α(α + β))/(α + r)²
        first = torch.log(r + alpha_plus_beta) - log_alpha_r
        second = torch.log(r * (2 * alpha + r) + alpha * alpha_plus_beta) - 2 * log_alpha_r
        return (self.features - 1) * first + second

    def inverse(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling direction ``z -> y = z + β (z − z₀)/(α + ‖z − z₀‖)``.

        Args:
            inputs: ``z``, ``(batch, D)``.
            context: ``(batch, C)``; required iff ``context_features`` was given.

        Returns:
            ``y`` ``(batch, D)`` and ``log|det ∂y/∂z|`` ``(batch,)``.
        """
        inputs, context = self._prepare(inputs, context)
        z0, alpha, alpha_plus_beta = self._constrained(context)
        diff = inputs - z0
        r = torch.linalg.vector_norm(diff, dim=-1)
        scale = (r + alpha_plus_beta) / (alpha + r)  # 1 + βh ≥ 0
        outputs = z0 + diff * scale.unsqueeze(-1)
        logabsdet = self._logabsdet(r, alpha, alpha_plus_beta)
        return outputs, logabsdet.expand(inputs.shape[0])

    def forward(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction ``y -> z`` (closed-form inverse of :meth:`inverse`).

        Args:
            inputs: ``y``, ``(batch, D)``.
            context: ``(batch, C)``; required iff ``context_features`` was given.

        Returns:
            ``z`` ``(batch, D)`` and ``log|det ∂z/∂y|`` ``(batch,)``.
        """
        inputs, context = self._prepare(inputs, context)
        z0, alpha, alpha_plus_beta = self._constrained(context)
        diff_y = inputs - z0
        r_y = torch.linalg.vector_norm(diff_y, dim=-1)
        # r² + p r − α r_y = 0 with p = α + β − r_y; non-negative root without cancellation:
        # p ≥ 0: r = 2α r_y / (p + √(p² + 4α r_y));  p < 0: r = (−p + √(p² + 4α r_y)) / 2
        p = alpha_plus_beta - r_y
        q = p.abs() + torch.sqrt(p * p + 4 * alpha * r_y)
        tiny = torch.finfo(q.dtype).tiny
        r = torch.where(p >= 0, 2 * alpha * r_y / q.clamp_min(tiny), 0.5 * q)
        # z − z₀ = (y − z₀)(α + r)/(r + α + β); the denominator is 0 only when y = z₀ = z
        denom = r + alpha_plus_beta
        scale = torch.where(denom > 0, (alpha + r) / denom.clamp_min(tiny), 0.0)
        outputs = z0 + diff_y * scale.unsqueeze(-1)
        logabsdet = -self._logabsdet(r, alpha, alpha_plus_beta)
        return outputs, logabsdet.expand(inputs.shape[0])
