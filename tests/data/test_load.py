"""load_dataset by name and ImageData.subset."""

import pytest

from pyrovi.data import load_dataset


def test_load_digits_by_name_and_subset():
    data = load_dataset("digits", subset=100)
    assert data.x_train.shape == (100, 64) and data.x_test.shape == (100, 64)
    assert data.name == "digits"
    smaller = data.subset(10, 5)
    assert len(smaller.x_train) == 10 and len(smaller.y_test) == 5
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        data.subset(0)


def test_bad_names_and_missing_folders(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="root: 'mnist' needs a folder"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")
