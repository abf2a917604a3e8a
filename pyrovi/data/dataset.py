"""The :class:`ImageData` container shared by all image data loaders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ImageData"]


@dataclass(frozen=True)
class ImageData:
    """A train/test split of an image classification data set.

    Attributes:
        x_train: Training images, shape ``(N_train, H*W)`` (or ``(N_train, H, W)``
            when a loader was asked not to flatten), float32 with values in ``[0, 1]``.
        y_train: Training labels, shape ``(N_train,)``, int64.
        x_test: Test images, shape ``(N_test, H*W)`` (or ``(N_test, H, W)``),
            float32 with values in ``[0, 1]``.
        y_test: Test labels, shape ``(N_test,)``, int64.
        image_shape: Height and width ``(H, W)`` of one image in pixels.
        name: Short name of the data set, e.g. ``"mnist"``.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    image_shape: tuple[int, int]
    name: str

    @property
    def x_dim(self) -> int:
        """Number of pixels of one image, ``H * W``."""
        return int(self.image_shape[0]) * int(self.image_shape[1])

    @property
    def num_classes(self) -> int:
        """Number of classes, ``int(max label) + 1`` over both splits."""
        labels = [y for y in (self.y_train, self.y_test) if y.numel() > 0]
        if not labels:
            return 0
        return int(max(int(y.max()) for y in labels)) + 1

    def to(self, device: torch.device | str) -> ImageData:
        """Return a copy with all four tensors moved to ``device``.

        Args:
            device: Target device, e.g. ``"cpu"`` or ``"cuda"``.

        Returns:
            A new :class:`ImageData`; ``self`` is unchanged.
        """
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def subset(self, n_train: int, n_test: int | None = None) -> ImageData:
        """The first ``n_train`` training and ``n_test`` (default ``n_train``) test examples.

        Args:
            n_train: Number of training examples to keep (positive).
            n_test: Number of test examples to keep (positive; default ``n_train``).

        Returns:
            A new :class:`ImageData` sharing storage with ``self``.
        """
        n_test = n_train if n_test is None else n_test
        for name, value in (("n_train", n_train), ("n_test", n_test)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
        )
