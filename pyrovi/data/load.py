"""Loading an image data set by name."""

from __future__ import annotations

import os

from pyrovi._checks import check_optional_int
from pyrovi._dataset_names import DATASETS
from pyrovi.data.dataset import ImageData
from pyrovi.data.digits import load_digits
from pyrovi.data.idx import load_fashion_mnist, load_mnist

__all__ = ["DATASETS", "load_dataset"]


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    subset: int | None = None,
    download: bool = False,
) -> ImageData:
    """Load ``"digits"``, ``"fashion-mnist"`` or ``"mnist"`` as flattened images in [0, 1].

    Args:
        name: One of :data:`DATASETS`.
        root: Folder with the four MNIST-format files; required for ``"mnist"``, defaults to
            the Debian folder for ``"fashion-mnist"``, unused for ``"digits"``.
        subset: Keep only the first ``subset`` training and test images.
        download: Download MNIST-format files into ``root`` when missing.

    Returns:
        :class:`ImageData`.

    Raises:
        ValueError: Unknown ``name``, or ``"mnist"`` without ``root``.
        FileNotFoundError: Missing files (the message says how to get them).
    """
    subset = check_optional_int("subset", subset)
    if name == "digits":
        data = load_digits()
    elif name == "fashion-mnist":
        data = load_fashion_mnist(root, download=download)
    elif name == "mnist":
        if root is None:
            raise ValueError("root: 'mnist' needs a folder with the four MNIST-format files")
        data = load_mnist(root, download=download)
    else:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    return data if subset is None else data.subset(subset)
