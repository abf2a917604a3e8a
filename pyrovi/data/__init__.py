"""Image data sets for variational inference experiments.

Loaders return :class:`ImageData` with flattened float32 images in ``[0, 1]``:
MNIST-format folders (:func:`load_mnist`, :func:`load_fashion_mnist`, via the IDX
reader :func:`read_idx`), scikit-learn's 8x8 digits (:func:`load_digits`), and
static or dynamic binarization (:func:`binarize`, :func:`binarize_data`,
:class:`DynamicBinarization`), synthetic 2-D densities with exact log-densities
(:data:`TOY_DATASETS`) and the energy targets U1–U4 (:data:`ENERGIES`).
"""

from pyrovi.data.binarize import DynamicBinarization, binarize, binarize_data
from pyrovi.data.dataset import ImageData
from pyrovi.data.digits import load_digits
from pyrovi.data.energies import ENERGIES, U1, U2, U3, U4, wall
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
from pyrovi.data.series import (
    SeriesData,
    double_well,
    geometric_brownian_motion,
    irregular_times,
    ornstein_uhlenbeck,
    stochastic_lorenz,
)
from pyrovi.data.toy2d import (
    TOY_DATASETS,
    eight_gaussians,
    eight_gaussians_log_prob,
    rings,
    rings_log_prob,
    two_moons,
    two_moons_log_prob,
)

__all__ = [
    "ENERGIES",
    "U1",
    "U2",
    "U3",
    "U4",
    "wall",
    "TOY_DATASETS",
    "two_moons",
    "two_moons_log_prob",
    "rings",
    "rings_log_prob",
    "eight_gaussians",
    "eight_gaussians_log_prob",
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
    "SeriesData",
    "irregular_times",
    "ornstein_uhlenbeck",
    "geometric_brownian_motion",
    "stochastic_lorenz",
    "double_well",
]
