"""Convolutional encoder and decoder for small square-ish images."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from pyrovi._checks import check_int

__all__ = ["ConvEncoder", "ConvDecoder"]


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    message = (
        "image_shape must be (height, width) with both positive integers divisible by 4, "
        f"got {image_shape!r}"
    )
    if isinstance(image_shape, str | bytes) or not isinstance(image_shape, Sequence):
        raise TypeError(message)
    if len(image_shape) != 2 or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s <= 0 or s % 4
        for s in image_shape
    ):
        raise ValueError(message)
    return int(image_shape[0]), int(image_shape[1])


def _check_channels(channels: Sequence[int]) -> tuple[int, int]:
    if (
        isinstance(channels, str | bytes)
        or not isinstance(channels, Sequence)
        or len(channels) != 2
    ):
        raise TypeError(f"channels must be a pair of positive integers, got {channels!r}")
    return check_int("channels[0]", channels[0]), check_int("channels[1]", channels[1])


def _check_flat(x: torch.Tensor, size: int, name: str, image_shape: tuple[int, int]) -> None:
    if x.dim() == 0 or x.shape[-1] != size:
        raise ValueError(
            f"{name}: expected (..., {size}) (flattened {image_shape[0]}x{image_shape[1]} images), "
            f"got shape {tuple(x.shape)}"
        )


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions and a linear layer: flat image -> features.

    Args:
        image_shape: ``(H, W)``, both divisible by 4.
        out_dim: Output features.
        channels: Channels of the two convolutions.

    Shapes:
        input ``(..., H * W)`` -> output ``(..., out_dim)``.
    """

    def __init__(
        self, image_shape: Sequence[int], out_dim: int, channels: Sequence[int] = (32, 64)
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        c1, c2 = _check_channels(channels)
        out_dim = check_int("out_dim", out_dim)
        h, w = self.image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.linear = nn.Linear(c2 * (h // 4) * (w // 4), int(out_dim))
        self.in_dim = h * w
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        _check_flat(x, self.in_dim, "x", self.image_shape)
        batch = x.shape[:-1]
        h = self.conv(x.reshape(-1, 1, *self.image_shape))
        return self.linear(h.flatten(1)).reshape(*batch, self.out_dim)


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions: latent -> flat image.

    Args:
        in_dim: Latent features.
        image_shape: ``(H, W)``, both divisible by 4.
        channels: Channels after the linear layer and after the first transposed convolution.

    Shapes:
        input ``(..., in_dim)`` -> output ``(..., H * W)`` (unnormalized: logits or means).
    """

    def __init__(
        self, in_dim: int, image_shape: Sequence[int], channels: Sequence[int] = (64, 32)
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        c1, c2 = _check_channels(channels)
        in_dim = check_int("in_dim", in_dim)
        h, w = self.image_shape
        self._grid = (c1, h // 4, w // 4)
        self.linear = nn.Sequential(nn.Linear(int(in_dim), c1 * (h // 4) * (w // 4)), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c2, 1, 4, stride=2, padding=1),
        )
        self.in_dim = int(in_dim)
        self.out_dim = h * w

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if z.dim() == 0 or z.shape[-1] != self.in_dim:
            raise ValueError(f"z: expected (..., {self.in_dim}), got shape {tuple(z.shape)}")
        batch = z.shape[:-1]
        h = self.linear(z.reshape(-1, self.in_dim)).reshape(-1, *self._grid)
        return self.deconv(h).reshape(*batch, self.out_dim)
