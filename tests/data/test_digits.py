import pytest
import torch

from pyrovi.data import ImageData, load_digits


def test_shapes_range_and_metadata():
    data = load_digits()
    assert isinstance(data, ImageData)
    assert data.name == "digits" and data.image_shape == (8, 8) and data.x_dim == 64
    assert data.x_train.shape[0] + data.x_test.shape[0] == 1797
    assert data.x_test.shape == (round(1797 * 0.2), 64)
    assert data.y_train.shape == (data.x_train.shape[0],)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert data.num_classes == 10


def test_split_is_deterministic_and_disjoint():
    a, b = load_digits(), load_digits()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_digits(seed=1)
    assert not torch.equal(a.y_test, c.y_test)
    # Train and test together are exactly the full data set (as a multiset of rows).
    rows = torch.cat([a.x_train, a.x_test])
    full = torch.cat([c.x_train, c.x_test])
    assert torch.equal(rows.sum(0), full.sum(0))


def test_test_fraction():
    data = load_digits(test_fraction=0.5)
    assert data.x_test.shape[0] == round(1797 * 0.5)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, "0.2", True])
def test_bad_test_fraction_raises(bad):
    with pytest.raises(ValueError, match="`test_fraction` must be a number in"):
        load_digits(test_fraction=bad)
