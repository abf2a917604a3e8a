import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrovi.data import (
    FASHION_MNIST_DEFAULT_ROOT,
    MNIST_FILES,
    ImageData,
    download_mnist_files,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
N_TRAIN, N_TEST, H, W = 12, 5, 4, 3


def _random_array(dtype, shape, rng):
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = _random_array(dtype, (3, 4, 5), rng)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == torch.from_numpy(array).dtype
    assert tuple(out.shape) == array.shape
    np.testing.assert_array_equal(out.numpy(), array)


def test_round_trip_tensor_and_1d(tmp_path):
    t = torch.arange(7, dtype=torch.int32)
    write_idx(tmp_path / "t.idx", t)
    assert torch.equal(read_idx(tmp_path / "t.idx"), t)


def test_big_endian_header_and_data(tmp_path):
    write_idx(tmp_path / "x", np.array([[1, 258]], dtype=np.int16))
    raw = (tmp_path / "x").read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 1, 2])


def test_gzip_detected_by_magic_not_extension(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    renamed = tmp_path / "no-extension"
    os.replace(tmp_path / "a.gz", renamed)
    assert renamed.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(renamed).numpy(), array)


def test_unsupported_dtype_rejected(tmp_path):
    with pytest.raises(ValueError, match="`array` has dtype"):
        write_idx(tmp_path / "b", np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_raises(tmp_path, gz):
    path = tmp_path / "full"
    write_idx(path, np.arange(100, dtype=np.float32))
    raw = path.read_bytes()[:-7]
    bad = tmp_path / "short-file"
    bad.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match="short-file.*truncated data.*expected 400 data bytes"):
        read_idx(bad)


def test_trailing_bytes_raise(tmp_path):
    path = tmp_path / "extra"
    write_idx(path, np.arange(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="size mismatch"):
        read_idx(path)


def test_truncated_gzip_stream_raises(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_bad_magic_raises(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match="bad-magic.*bad magic number"):
        read_idx(path)


def test_unknown_dtype_code_raises(tmp_path):
    path = tmp_path / "bad-code"
    path.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match="unknown dtype code 0x0A"):
        read_idx(path)


# ----------------------------------------------------------------- MNIST layout


def _write_mnist_folder(folder: Path, suffix: str = ".gz", seed: int = 0):
    """Write a tiny MNIST-format data set; return the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, H, W), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, H, W), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    arrays["train-images-idx3-ubyte"][0, 0, 0] = 255  # make the [0, 1] ends exact
    arrays["train-images-idx3-ubyte"][0, 0, 1] = 0
    arrays["train-labels-idx1-ubyte"][0] = 9
    for name, array in arrays.items():
        write_idx(folder / f"{name}{suffix}", array)
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_mnist_from_written_files(tmp_path, suffix):
    arrays = _write_mnist_folder(tmp_path / "mnist", suffix)
    data = load_mnist(tmp_path / "mnist")
    assert isinstance(data, ImageData)
    assert data.name == "mnist"
    assert data.image_shape == (H, W) and data.x_dim == H * W
    assert data.x_train.shape == (N_TRAIN, H * W) and data.x_test.shape == (N_TEST, H * W)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_train.shape == (N_TRAIN,) and data.y_test.shape == (N_TEST,)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert data.num_classes == 10
    expected = arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, -1) / 255.0
    np.testing.assert_allclose(data.x_train.numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_load_mnist_unflattened_and_to(tmp_path):
    _write_mnist_folder(tmp_path)
    data = load_mnist(tmp_path, flatten=False)
    assert data.x_train.shape == (N_TRAIN, H, W) and data.x_test.shape == (N_TEST, H, W)
    moved = data.to("cpu")
    assert moved is not data and torch.equal(moved.x_test, data.x_test)


def test_load_mnist_count_mismatch(tmp_path):
    _write_mnist_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(N_TEST + 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected equal counts"):
        load_mnist(tmp_path)


def test_missing_folder_raises(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match="no-such-folder.*does not exist"):
        load_mnist(missing)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist(missing)


def test_missing_files_raise(tmp_path):
    folder = tmp_path / "partial-folder"
    _write_mnist_folder(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="partial-folder.*lacks t10k-labels-idx1-ubyte"):
        load_mnist(folder)
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(folder)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(folder)


def test_the_missing_files_error_names_every_way_to_get_them(tmp_path):
    """The command line has --data-dir but no download flag; Python has both."""
    with pytest.raises(FileNotFoundError, match="the command line does not download") as info:
        load_fashion_mnist(tmp_path / "none")
    text = str(info.value)
    for way in (
        "apt-get install dataset-fashion-mnist",
        "/usr/share/datasets/fashion-mnist",
        "--data-dir FOLDER` on the command line",
        "load_fashion_mnist(FOLDER, download=True)",
        "the command line does not download",
    ):
        assert way in text
    with pytest.raises(FileNotFoundError, match=r"--data-dir FOLDER") as info:
        load_mnist(tmp_path / "none")
    text = str(info.value)
    assert "--data-dir FOLDER" in text and "load_mnist(FOLDER, download=True)" in text
    assert "dataset-fashion-mnist" not in text  # that package holds Fashion-MNIST only


def test_download_from_file_url_then_load(tmp_path):
    arrays = _write_mnist_folder(tmp_path / "server", ".gz")
    base_url = (tmp_path / "server").as_uri() + "/"
    root = tmp_path / "new" / "mnist"
    data = load_mnist(root, download=True, base_url=base_url)
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{n}.gz" for n in MNIST_FILES)
    np.testing.assert_array_equal(data.y_train.numpy(), arrays["train-labels-idx1-ubyte"])
    fashion = load_fashion_mnist(tmp_path / "fashion", download=True, base_url=base_url)
    assert fashion.name == "fashion-mnist" and fashion.x_train.shape == (N_TRAIN, H * W)


def test_download_skips_present_files(tmp_path):
    _write_mnist_folder(tmp_path / "server", ".gz")
    base_url = (tmp_path / "server").as_uri()  # no trailing slash: added
    root = tmp_path / "root"
    _write_mnist_folder(root, "", seed=1)  # raw files count as present
    (root / "t10k-labels-idx1-ubyte").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    downloaded = download_mnist_files(root, base_url)
    assert downloaded == [root / "t10k-labels-idx1-ubyte.gz"]
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir() if p.name in before} == before
    assert download_mnist_files(root, base_url) == []
    assert not any(p.name.endswith(".part") for p in root.iterdir())


def test_download_rejects_invalid_file(tmp_path):
    server = tmp_path / "server"
    _write_mnist_folder(server, ".gz")
    (server / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>not found</html>")
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="bad magic"):
        download_mnist_files(root, server.as_uri() + "/")
    assert not (root / "train-labels-idx1-ubyte.gz").exists()
    assert not any(p.name.endswith(".part") for p in root.iterdir())


def test_download_missing_url_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="could not download"):
        download_mnist_files(tmp_path / "root", (tmp_path / "empty-server").as_uri() + "/")


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DEFAULT_ROOT).is_dir(),
    reason=f"Fashion-MNIST not installed in {FASHION_MNIST_DEFAULT_ROOT} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_load_installed_fashion_mnist():
    data = load_fashion_mnist()
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.image_shape == (28, 28) and data.num_classes == 10
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
