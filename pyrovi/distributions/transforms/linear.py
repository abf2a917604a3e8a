"""An invertible linear transform in PLU form that avoids deprecated torch solvers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from nflows.transforms.base import Transform
from torch import nn
from torch.nn import functional as F

from pyrovi.distributions.transforms.hyper import _check_inputs, _check_positive_int

__all__ = ["LULinear"]


class LULinear(Transform):
    r"""Invertible linear map ``x -> x Wᵀ + bias`` with ``W = P L U``.

    ``P`` is a fixed permutation (a buffer; identity unless ``permutation`` is given), ``L`` is
    unit lower triangular and ``U`` upper triangular with diagonal ``softplus(·) + eps > 0``, so
    ``W`` is always invertible and ``log|det W| = Σ log diag(U)``. A drop-in replacement for
    ``nflows.transforms.LULinear``, which calls the deprecated ``torch.triangular_solve`` (a
    warning on recent torch); the inverse here uses ``torch.linalg.solve_triangular``.

    As in nflows, ``forward`` (``x -> x Wᵀ + bias``) is the density direction and ``inverse``
    (two triangular solves) the sampling direction. There is no context: a ``context`` argument
    is accepted and ignored, so the transform can sit in a conditional ``CompositeTransform``.

    Args:
        features: D.
        identity_init: Start at ``L = U = I`` (so ``W = P``, and ``W = I`` by default); otherwise
            the off-diagonal entries and the raw diagonal are drawn from
            ``Uniform(−1/√D, 1/√D)``.
        permutation: Optional permutation of ``range(D)``: row ``i`` of ``P`` selects entry
            ``permutation[i]``, i.e. ``(P v)_i = v[permutation[i]]``.
        eps: Floor of the diagonal of ``U``.

    Shapes:
        inputs ``(batch, D)`` -> outputs ``(batch, D)``, logabsdet ``(batch,)``.
    """

    def __init__(
        self,
        features: int,
        identity_init: bool = True,
        *,
        permutation: Sequence[int] | torch.Tensor | None = None,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.features = d = _check_positive_int("features", features)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.eps = float(eps)
        if permutation is None:
            perm = torch.arange(d)
        else:
            perm = torch.as_tensor(permutation)
            if (
                perm.dim() != 1
                or perm.numel() != d
                or perm.is_floating_point()
                or not torch.equal(torch.sort(perm).values, torch.arange(d))
            ):
                raise ValueError(
                    f"permutation must be a permutation of range({d}) of shape ({d},), got "
                    f"{permutation!r}"
                )
            perm = perm.long()
        self.register_buffer("permutation", perm)
        rows, cols = torch.tril_indices(d, d, offset=-1)
        self.register_buffer("_lower_rows", rows, persistent=False)
        self.register_buffer("_lower_cols", cols, persistent=False)
        n_off = d * (d - 1) // 2
        self.lower_entries = nn.Parameter(torch.zeros(n_off))
        self.upper_entries = nn.Parameter(torch.zeros(n_off))
        self.unconstrained_upper_diag = nn.Parameter(torch.zeros(d))
        self.bias = nn.Parameter(torch.zeros(d))
        with torch.no_grad():
            if identity_init:
                # softplus(x) + eps = 1
                self.unconstrained_upper_diag.fill_(math.log(math.expm1(1.0 - self.eps)))
            else:
                bound = 1.0 / math.sqrt(d)
                for p in (self.lower_entries, self.upper_entries, self.unconstrained_upper_diag):
                    p.uniform_(-bound, bound)

    def upper_diag(self) -> torch.Tensor:
        """The diagonal of ``U``, ``(D,)``, all positive."""
        return F.softplus(self.unconstrained_upper_diag) + self.eps

    def lower_upper(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, U)``, both ``(D, D)``: unit lower and upper triangular."""
        d = self.features
        rows, cols = self._lower_rows, self._lower_cols
        eye = torch.eye(d, dtype=self.lower_entries.dtype, device=self.lower_entries.device)
        lower = eye.index_put((rows, cols), self.lower_entries)
        upper = torch.diag(self.upper_diag()).index_put((cols, rows), self.upper_entries)
        return lower, upper

    def weight(self) -> torch.Tensor:
        """``W = P L U``, ``(D, D)``."""
        lower, upper = self.lower_upper()
        return (lower @ upper)[self.permutation]

    def logabsdet(self) -> torch.Tensor:
        """``log|det W| = Σ log diag(U)``, a scalar."""
        return torch.log(self.upper_diag()).sum()

    def forward(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density direction ``x -> x Wᵀ + bias``.

        Args:
            inputs: ``(batch, D)``.
            context: Ignored.

        Returns:
            outputs ``(batch, D)`` and ``log|det W|`` broadcast to ``(batch,)``.
        """
        inputs = _check_inputs(inputs, self.features)
        lower, upper = self.lower_upper()
        outputs = (inputs @ upper.T @ lower.T)[:, self.permutation] + self.bias
        return outputs, self.logabsdet().expand(inputs.shape[0])

    def inverse(
        self, inputs: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling direction ``y -> (y − bias) W⁻ᵀ`` by two triangular solves.

        Args:
            inputs: ``(batch, D)``.
            context: Ignored.

        Returns:
            outputs ``(batch, D)`` and ``−log|det W|`` broadcast to ``(batch,)``.
        """
        inputs = _check_inputs(inputs, self.features)
        lower, upper = self.lower_upper()
        v = (inputs - self.bias)[:, torch.argsort(self.permutation)]  # = x Uᵀ Lᵀ
        # rows: solve w Lᵀ = v, then x Uᵀ = w
        w = torch.linalg.solve_triangular(lower.T, v, upper=True, left=False, unitriangular=True)
        outputs = torch.linalg.solve_triangular(upper.T, w, upper=False, left=False)
        return outputs, (-self.logabsdet()).expand(inputs.shape[0])
