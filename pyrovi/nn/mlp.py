"""Multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """A fully connected network ``in_dim -> hidden_dims... -> out_dim``.

    Args:
        in_dim: Input features.
        hidden_dims: Widths of the hidden layers (may be empty: a single linear map).
        out_dim: Output features.
        activation: Factory for the nonlinearity between layers (default ``nn.ReLU``).

    Shapes:
        input ``(..., in_dim)`` -> output ``(..., out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        dims = [int(in_dim), *(int(h) for h in hidden_dims), int(out_dim)]
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if any(d <= 0 for d in dims[1:-1]):
            raise ValueError(f"hidden_dims must be positive integers, got {list(hidden_dims)!r}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(activation())
        super().__init__(*layers)
        self.in_dim = dims[0]
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(x)
