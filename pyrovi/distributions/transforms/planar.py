"""Planar flow (Rezende & Mohamed, 2015) as an nflows transform, optionally conditional."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from pyrovi.distributions.transforms.hyper import (
    HyperTransform,
    _check_context,
    _check_positive_int,
)

__all__ = ["PlanarTransform"]

_SOFTPLUS_INV_ONE = math.log(math.e - 1.0)  # softplus(x) = 1  <=>  x = log(e - 1)


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else max(1e-6, 8 * torch.finfo(dtype).eps)


# --------------------------------------------------------------------------- root finding
def _solve_planar_alpha(
    s: torch.Tensor, one_plus_k: torch.Tensor, b: torch.Tensor, tol: float, max_iter: int
) -> torch.Tensor:
    """Solve ``alpha + k tanh(alpha + b) = s`` elementwise, for ``k >= -1`` (no autograd).

    The left side is non-decreasing in ``alpha`` and the root lies in ``[s - |k|, s + |k|]``.
    A safeguarded Newton iteration (``rtsafe``): a Newton step is taken when it stays inside the
    current bracket and at most halves the previous step, otherwise the bracket is bisected; so
    the step sizes at least halve every iteration and the iteration always converges. A row stops
    (is frozen) once its step or its bracket is below ``tol * (1 + |alpha|)``.
    """
    k = one_plus_k - 1
    width = k.abs()
    lo, hi = s - width, s + width
    alpha = s - k * torch.tanh(s + b)  # one fixed-point step: already inside [lo, hi]
    step_old = 2 * width
    done = torch.zeros_like(s, dtype=torch.bool)
    for _ in range(max_iter):
        t = torch.tanh(alpha + b)
        t_sq = t * t
        f = alpha + k * t - s
        fp = t_sq + (1 - t_sq) * one_plus_k  # = 1 + k (1 - t²) >= 0, without cancellation
        lo = torch.where(f <= 0, alpha, lo)
        hi = torch.where(f >= 0, alpha, hi)
        newton = alpha - f / fp  # inf/nan where fp == 0: rejected below
        use_newton = (newton >= lo) & (newton <= hi) & (2 * (newton - alpha).abs() <= step_old)
        new = torch.where(use_newton, newton, 0.5 * (lo + hi))
        step = (new - alpha).abs()
        scale = tol * (1 + new.abs())
        converged = (step <= scale) | (hi - lo <= scale)
        alpha = torch.where(done, alpha, new)
        step_old = torch.where(done, step_old, step)
        done = done | converged
        if bool(done.all()):
            break
    return alpha


class PlanarTransform(HyperTransform):
    r"""Planar flow ``y = z + û tanh(wᵀz + b)`` (Rezende & Mohamed, 2015).

    The closed form is the *sampling* direction (nflows ``inverse``: noise ``z`` -> data ``y``),
    with ``log|det ∂y/∂z| = log|1 + h'(wᵀz + b) ûᵀw|``, ``h = tanh``. Invertibility is enforced
    by ``û = u + (m(wᵀu) − wᵀu) w / ‖w‖²`` with ``m(a) = −1 + softplus(a)``, so ``wᵀû > −1``.

    The *density* direction (nflows ``forward``: ``y`` -> ``z``) is solved numerically: with
    ``α = wᵀz`` the scalar equation ``wᵀy = α + wᵀû tanh(α + b)`` is monotone in ``α`` and its
    root lies within ``|α − wᵀy| ≤ |wᵀû|``; it is found per row by safeguarded Newton/bisection
    (to ~1e-12 relative in float64, ~1e-6 in float32), then ``z = y − û tanh(α + b)`` and
    ``logabsdet = −log|1 + h'(α + b) ûᵀw|``. When ``wᵀu ≪ 0`` (``wᵀû → −1``) the map is nearly
    singular around ``wᵀz = −b`` and this inverse is inherently ill-conditioned there (errors up to
    ~eps^(1/3), i.e. ~5e-3 in float32); the iteration stops after ``max_iter`` steps regardless.

    Gradients of the density direction: the root ``α₀`` is found without autograd; then one
    Newton step ``α = α₀ − g(α₀)/g'(α₀)`` with ``g(α) = α + wᵀû tanh(α + b) − wᵀy`` is taken *with*
    autograd. Its value equals ``α₀`` (``g(α₀) ≈ 0``) and its derivative is ``−∂g/∂θ / g'``, the
    implicit-function-theorem derivative of the root, so ``z``, ``logabsdet`` and hence
    ``Flow.log_prob`` have exact gradients w.r.t. the inputs, the parameters and the context.

    Without ``context_features``, ``u``, ``w`` and ``b`` are parameters; ``w`` starts as a random
    unit vector and ``u ≈ log(e − 1) w`` (plus N(0, 0.01²) noise) so that ``wᵀû ≈ 0``: the initial
    transform is a small random perturbation of the identity. With ``context_features`` every row
    gets its own ``(u, w, b)`` from ``nn.Linear(C, 2D + 1)`` (the *hypernetwork*, whose bias
    starts at those values and whose weights are N(0, 0.01²)). An unconditional transform ignores
    any context it is given (so it can sit in a conditional ``CompositeTransform``).

    Args:
        features: D.
        context_features: C, or None for an unconditional transform.
        max_iter: Iteration cap of the root finder of the density direction.

    Shapes:
        inputs ``(batch, D)``, context ``(batch, C)`` -> outputs ``(batch, D)``, logabsdet
        ``(batch,)``.
    """

    def __init__(
        self, features: int, context_features: int | None = None, *, max_iter: int = 100
    ) -> None:
        d = _check_positive_int("features", features)
        w0 = torch.randn(d)
        w0 = w0 / w0.norm()
        u0 = _SOFTPLUS_INV_ONE * w0 + 0.01 * torch.randn(d)
        b0 = 0.01 * torch.randn(())
        super().__init__(d, context_features, {"u": u0, "w": w0, "b": b0})
        self.max_iter = _check_positive_int("max_iter", max_iter)

    def _constrained(
        self, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(û, w, b, 1 + wᵀû)``, leading dim 1 (unconditional) or batch (conditional)."""
        u, w, b = self._raw_params(context)
        wu = (w * u).sum(-1)
        w_sq = (w * w).sum(-1)
        w_sq_safe = w_sq.clamp_min(torch.finfo(w_sq.dtype).tiny)
        sp = F.softplus(wu)
        u_hat = u + ((sp - 1 - wu) / w_sq_safe).unsqueeze(-1) * w
        # 1 + wᵀû = softplus(wᵀu) computed without cancellation (ratio == 1 unless w ≈ 0, when
        # the clamp makes the transform a shift)
        ratio = w_sq / w_sq_safe
        one_plus_k = sp * ratio + (1 + wu) * (1 - ratio)
        return u_hat, w, b, one_plus_k

    def constrained_params(
        self, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The constrained parameters ``(û, w, b)``.

        Args:
            context: ``(batch, C)`` for a conditional transform (ignored otherwise).

        Returns:
            ``û`` and ``w`` of shape ``(n, D)`` and ``b`` of shape ``(n,)``, with ``n = 1`` for an
            unconditional transform and ``n = batch`` for a conditional one.
        """
        if self.context_features is not None:
            context = _check_context(context, None, self.context_features, type(self).__name__)
        u_hat, w, b, _ = self._constrained(context)
        return u_hat, w, b

    def inverse(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling direction ``z -> y = z + û tanh(wᵀz + b)``.

        Args:
            inputs: ``z``, ``(batch, D)``.
            context: ``(batch, C)``; required iff ``context_features`` was given.

        Returns:
            ``y`` ``(batch, D)`` and ``log|det ∂y/∂z|`` ``(batch,)``.
        """
        inputs, context = self._prepare(inputs, context)
        u_hat, w, b, one_plus_k = self._constrained(context)
        t = torch.tanh((inputs * w).sum(-1) + b)
        outputs = inputs + u_hat * t.unsqueeze(-1)
        t_sq = t * t
        # 1 + h'·wᵀû = t² + (1 − t²)(1 + wᵀû): a sum of non-negative terms
        logabsdet = torch.log(t_sq + (1 - t_sq) * one_plus_k)
        return outputs, logabsdet.expand(inputs.shape[0])

    def forward(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction ``y -> z`` (numerical inverse of :meth:`inverse`).

        Args:
            inputs: ``y``, ``(batch, D)``.
            context: ``(batch, C)``; required iff ``context_features`` was given.

        Returns:
            ``z`` ``(batch, D)`` and ``log|det ∂z/∂y|`` ``(batch,)``.
        """
        inputs, context = self._prepare(inputs, context)
        u_hat, w, b, one_plus_k = self._constrained(context)
        k = one_plus_k - 1
        s = (inputs * w).sum(-1)
        with torch.no_grad():
            s0 = s.detach()
            alpha0 = _solve_planar_alpha(
                s0,
                one_plus_k.detach().expand_as(s0),
                b.detach().expand_as(s0),
                _default_tol(s0.dtype),
                self.max_iter,
            )
        # one Newton step with autograd: same value, implicit-function gradient
        t0 = torch.tanh(alpha0 + b)
        t0_sq = t0 * t0
        g = alpha0 + k * t0 - s
        g_prime = t0_sq + (1 - t0_sq) * one_plus_k
        alpha = alpha0 - g / g_prime.clamp_min(torch.finfo(g_prime.dtype).tiny)
        t = torch.tanh(alpha + b)
        outputs = inputs - u_hat * t.unsqueeze(-1)
        t_sq = t * t
        logabsdet = -torch.log(t_sq + (1 - t_sq) * one_plus_k)
        return outputs, logabsdet.expand(inputs.shape[0])
