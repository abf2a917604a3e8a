"""Static and dynamic binarization of images with values in ``[0, 1]``.

Static binarization fixes one binary sample (or a threshold) of the data once;
dynamic binarization draws a fresh Bernoulli sample every time a batch is used,
the usual setup for training on "dynamically binarized MNIST".
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pyrovi._checks import check_finite, check_int
from pyrovi._validation import value_range
from pyrovi.data.dataset import ImageData

__all__ = ["DynamicBinarization", "binarize", "binarize_data"]

_METHODS = ("sample", "threshold")


def _check_probabilities(x: Tensor, where: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = f"{x.dtype} tensor" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{where}: `x` must be a floating-point tensor, got {got}")
    if not x.numel():
        return
    lo, hi = value_range(x)  # one pass; NaN propagates to both
    if not (lo >= 0 and hi <= 1):
        raise ValueError(
            f"{where}: `x` must have values in [0, 1], got min {lo:.4g}, max {hi:.4g} (or NaN)"
        )


def binarize(
    x: Tensor,
    *,
    method: str = "sample",
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Binarize ``x`` once (static binarization).

    Args:
        x: Floating-point tensor of any shape, e.g. images ``(N, H*W)``, with
            values in ``[0, 1]``.
        method: ``"sample"``: each value ``p`` becomes 1 with probability ``p``
            (one Bernoulli draw); ``"threshold"``: 1 where ``x > threshold``.
        threshold: Cut-off for ``method="threshold"``; unused otherwise.
        generator: Random generator for ``method="sample"``, on ``x``'s device;
            ``None`` uses torch's global generator.

    Returns:
        Tensor of ``x``'s shape, dtype and device with values in ``{0, 1}``.

    Raises:
        ValueError: If ``x`` is not floating point or has values outside
            ``[0, 1]``, or ``method`` is unknown.
    """
    if method not in _METHODS:
        raise ValueError(f"binarize: `method` must be one of {_METHODS}, got {method!r}")
    _check_probabilities(x, "binarize")
    threshold = check_finite("threshold", threshold)
    if method == "sample":
        return torch.bernoulli(x, generator=generator)
    return (x > threshold).to(x.dtype)


class DynamicBinarization:
    """Transform that draws a fresh Bernoulli sample of its input on every call.

    Apply it to each batch when it is drawn, so the model sees a new binary
    version of the data every epoch (``fit(..., transform=DynamicBinarization())``).
    For validation data, binarize once instead (:func:`binarize` with a seeded
    generator), so that every epoch is scored on the same binary images.

    Args:
        generator: Random generator on the device of the data it will be called
            on; ``None`` uses torch's global generator, which
            ``pyrovi.infer.fit(..., seed=...)`` seeds when it starts (as does
            ``pyro.set_rng_seed``). Seeding it makes the sequence of samples
            reproducible.

    Example:
        >>> transform = DynamicBinarization(torch.Generator().manual_seed(0))
        >>> batch = transform(data.x_train[:128])  # values in {0, 1}
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                "DynamicBinarization: `generator` must be a torch.Generator or None, "
                f"got {type(generator).__name__}"
            )
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        """Return a new Bernoulli(``x``) sample.

        Args:
            x: Floating-point tensor of any shape with values in ``[0, 1]``.

        Returns:
            Tensor of ``x``'s shape, dtype and device with values in ``{0, 1}``.
        """
        _check_probabilities(x, "DynamicBinarization")
        return torch.bernoulli(x, generator=self.generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(generator={self.generator!r})"


def binarize_data(
    data: ImageData, *, method: str = "sample", seed: int = 0, threshold: float = 0.5
) -> ImageData:
    """Statically binarize both splits of ``data``.

    Args:
        data: Data with images in ``[0, 1]``.
        method: ``"sample"`` or ``"threshold"``, as in :func:`binarize`.
        seed: Seed of the generator used for ``method="sample"``; the same seed
            gives the same binarization.
        threshold: Cut-off for ``method="threshold"``.

    Returns:
        A copy of ``data`` with binary ``x_train`` and ``x_test`` (same dtype,
        shapes and devices); labels, ``image_shape`` and ``name`` unchanged.
    """
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    seed = check_int("seed", seed, minimum=0)
    generators: dict[torch.device, torch.Generator] = {}

    def gen(x: Tensor) -> torch.Generator:
        if x.device not in generators:
            generators[x.device] = torch.Generator(device=x.device).manual_seed(seed)
        return generators[x.device]

    return dataclasses.replace(
        data,
        x_train=binarize(
            data.x_train, method=method, threshold=threshold, generator=gen(data.x_train)
        ),
        x_test=binarize(
            data.x_test, method=method, threshold=threshold, generator=gen(data.x_test)
        ),
    )
