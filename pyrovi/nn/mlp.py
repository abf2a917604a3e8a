"""Multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pyrovi._checks import check_callable, check_hidden_dims, check_int

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """A fully connected network ``in_dim -> hidden_dims... -> out_dim``.

    Args:
        in_dim: Input features.
        hidden_dims: Widths of the hidden layers, a sequence of positive integers (may be empty:
            a single linear map). A string, a single number, floats, bools, zeros and negative
            widths are refused.
        out_dim: Output features.
        activation: Factory for the nonlinearity between layers (default ``nn.ReLU``).

    Shapes:
        input ``(..., in_dim)`` -> output ``(..., out_dim)``.

    Raises:
        ValueError: ``in_dim``/``out_dim`` not positive integers, a bad width in ``hidden_dims``.
        TypeError: ``hidden_dims`` not a sequence (e.g. the string ``"16"``), ``activation`` not
            callable.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        dims = [
            check_int("in_dim", in_dim),
            *check_hidden_dims(hidden_dims),
            check_int("out_dim", out_dim),
        ]
        check_callable("activation", activation, "a factory of nn.Module (e.g. nn.ReLU)")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(activation())
        super().__init__(*layers)
        self.in_dim = dims[0]
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() == 0 or x.shape[-1] != self.in_dim:
            raise ValueError(
                f"x: this MLP maps (..., {self.in_dim}) inputs, got shape {tuple(x.shape)}"
            )
        weight = self[0].weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"x has dtype {x.dtype} but the network's parameters are {weight.dtype}: convert "
                f"the data (e.g. x.to({weight.dtype})) or the model and guide (.to(dtype))"
            )
        return super().forward(x)
