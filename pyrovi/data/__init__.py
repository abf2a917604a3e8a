"""Image data sets for variational inference experiments.

Loaders return :class:`ImageData` with flattened float32 images in ``[0, 1]``:
MNIST-format folders (:func:`load_mnist`, :func:`load_fashion_mnist`, via the IDX
reader :func:`read_idx`), scikit-learn's 8x8 digits (:func:`load_digits`), and
static or dynamic binarization (:func:`binarize`, :func:`binarize_data`,
:class:`DynamicBinarization`).
"""

from pyrovi.data.binarize import DynamicBinarization, binarize, binarize_data
from pyrovi.data.dataset import ImageData
from pyrovi.data.digits import load_digits
from pyrovi.data.idx import (
    FASHION_MNIST_BASE_URL,
    FASHION_MNIST_DEFAULT_ROOT,
    MNIST_BASE_URL,
    MNIST_FILES,
    download_mnist_files,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)
from pyrovi.data.load import DATASETS, load_dataset

__all__ = [
    "DATASETS",
    "load_dataset",
    "FASHION_MNIST_BASE_URL",
    "FASHION_MNIST_DEFAULT_ROOT",
    "MNIST_BASE_URL",
    "MNIST_FILES",
    "DynamicBinarization",
    "ImageData",
    "binarize",
    "binarize_data",
    "download_mnist_files",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "write_idx",
]
