import pytest
import torch

from pyrovi.data import DynamicBinarization, ImageData, binarize, binarize_data


def _probabilities(n=20000, seed=0):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def test_sample_is_binary_with_matching_mean():
    x = _probabilities()
    b = binarize(x, generator=torch.Generator().manual_seed(1))
    assert b.dtype == x.dtype and b.shape == x.shape
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(b.mean()) - float(x.mean())) < 0.02


def test_sample_respects_generator_seed():
    x = _probabilities(1000)
    first = binarize(x, generator=torch.Generator().manual_seed(3))
    second = binarize(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_threshold_is_exact():
    x = torch.tensor([0.0, 0.3, 0.5, 0.51, 1.0], dtype=torch.float64)
    assert torch.equal(
        binarize(x, method="threshold"), torch.tensor([0.0, 0, 0, 1, 1], dtype=torch.float64)
    )
    assert torch.equal(
        binarize(x, method="threshold", threshold=0.2),
        torch.tensor([0.0, 1, 1, 1, 1], dtype=torch.float64),
    )


@pytest.mark.parametrize("bad", [[-0.1, 0.5], [0.5, 1.2], [float("nan"), 0.5]])
def test_out_of_range_raises(bad):
    with pytest.raises(ValueError, match=r"`x` must have values in \[0, 1\]"):
        binarize(torch.tensor(bad))
    with pytest.raises(ValueError, match=r"`x` must have values in \[0, 1\]"):
        DynamicBinarization()(torch.tensor(bad))


def test_bad_method_and_dtype_raise():
    with pytest.raises(ValueError, match="`method` must be one of"):
        binarize(torch.rand(3), method="round")
    with pytest.raises(ValueError, match="`x` must be a floating-point tensor"):
        binarize(torch.ones(3, dtype=torch.uint8))


def test_dynamic_binarization_fresh_samples_and_seed():
    x = _probabilities(1000)
    transform = DynamicBinarization(torch.Generator().manual_seed(0))
    a, b = transform(x), transform(x)
    assert not torch.equal(a, b)
    assert set(torch.cat([a, b]).unique().tolist()) <= {0.0, 1.0}
    again = DynamicBinarization(torch.Generator().manual_seed(0))
    assert torch.equal(again(x), a) and torch.equal(again(x), b)
    assert DynamicBinarization()(x).device == x.device


def _tiny_data():
    g = torch.Generator().manual_seed(0)
    return ImageData(
        x_train=torch.rand(50, 6, generator=g),
        y_train=torch.randint(0, 3, (50,), generator=g),
        x_test=torch.rand(20, 6, generator=g),
        y_test=torch.randint(0, 3, (20,), generator=g),
        image_shape=(2, 3),
        name="tiny",
    )


def test_binarize_data_static_and_reproducible():
    data = _tiny_data()
    a, b = binarize_data(data, seed=5), binarize_data(data, seed=5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert set(torch.cat([a.x_train, a.x_test]).flatten().unique().tolist()) <= {0.0, 1.0}
    assert a.y_train is data.y_train and a.name == "tiny" and a.image_shape == (2, 3)
    t = binarize_data(data, method="threshold")
    assert torch.equal(t.x_test, (data.x_test > 0.5).float())
