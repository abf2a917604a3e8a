"""scikit-learn's bundled 8x8 handwritten digits, as :class:`ImageData`."""

from __future__ import annotations

import numbers

import torch

from pyrovi.data.dataset import ImageData

__all__ = ["load_digits"]


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes) with a fixed split.

    The data ships with scikit-learn, so no download is needed. Pixel values
    (integers 0..16) are divided by 16. The split is a permutation drawn from a
    ``torch.Generator`` seeded with ``seed``, so the same arguments always give
    the same split.

    Args:
        test_fraction: Fraction of the images put in the test split, in ``(0, 1)``;
            the test size is ``round(1797 * test_fraction)``, at least 1 and at
            most 1796.
        seed: Seed of the split permutation.

    Returns:
        :class:`ImageData` named ``"digits"``: ``x_*`` float32 of shape
        ``(N, 64)`` in ``[0, 1]``, ``y_*`` int64 of shape ``(N,)``,
        ``image_shape = (8, 8)``.

    Raises:
        ValueError: If ``test_fraction`` is not in ``(0, 1)``.
        TypeError: If ``seed`` is not an integer.
        ImportError: If scikit-learn is not installed.
    """
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not 0.0 < float(test_fraction) < 1.0
    ):
        raise ValueError(
            f"load_digits: `test_fraction` must be a number in (0, 1), got {test_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"load_digits: `seed` must be an int, got {seed!r}")
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:
        raise ImportError(
            "load_digits needs scikit-learn for its bundled digits data; "
            "install it with `pip install scikit-learn`"
        ) from err
    images, labels = _sk_load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float32) / 16.0
    y = torch.as_tensor(labels, dtype=torch.int64)
    n = x.shape[0]
    n_test = min(max(round(n * float(test_fraction)), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    test, train = perm[:n_test], perm[n_test:]
    return ImageData(x[train], y[train], x[test], y[test], (8, 8), "digits")
