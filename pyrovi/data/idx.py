"""IDX files (the MNIST file format): reading, writing, loading and downloading.

An IDX file is a big-endian binary array: two zero bytes, a one-byte dtype code,
a one-byte number of dimensions ``d``, then ``d`` big-endian uint32 sizes, then the
data in C order. The files are often gzip-compressed; :func:`read_idx` detects
that from the gzip magic bytes rather than from the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyrovi.data.dataset import ImageData

__all__ = [
    "FASHION_MNIST_BASE_URL",
    "FASHION_MNIST_DEFAULT_ROOT",
    "MNIST_BASE_URL",
    "MNIST_FILES",
    "download_mnist_files",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "write_idx",
]

PathLike = str | os.PathLike

MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
"""Default download location of the MNIST ``.gz`` files."""
FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Default download location of the Fashion-MNIST ``.gz`` files."""
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs its files."""

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four MNIST-format file names (each may also exist with a ``.gz`` suffix)."""

# IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: PathLike) -> Tensor:
    """Read an IDX file, raw or gzip-compressed.

    Args:
        path: Path to the file. Gzip compression is detected from the magic bytes
            ``1f 8b``, whatever the file name.

    Returns:
        A tensor with the shape stored in the header and the matching dtype
        (uint8, int8, int16, int32, float32 or float64), in native byte order.

    Raises:
        ValueError: If the file is not a valid IDX file (bad magic, unknown dtype
            code, corrupt gzip stream, truncated data or trailing bytes).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"IDX file '{path}': corrupt or truncated gzip data ({err})") from err
    if len(raw) < 4:
        raise ValueError(f"IDX file '{path}': expected a 4-byte header, got {len(raw)} bytes")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"IDX file '{path}': bad magic number, expected the first two bytes to be "
            f"00 00, got {raw[:2].hex(' ')}"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"IDX file '{path}': unknown dtype code 0x{code:02X}, expected one of {known}"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"IDX file '{path}': truncated header, expected {ndim} dimension sizes "
            f"({header_len} header bytes), got {len(raw)} bytes"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_len
    if got != expected:
        kind = "truncated data" if got < expected else "size mismatch (trailing bytes)"
        raise ValueError(
            f"IDX file '{path}': {kind}, expected {expected} data bytes for shape "
            f"{tuple(shape)} of {dtype.newbyteorder('=').name}, got {got}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def write_idx(path: PathLike, array: np.ndarray | Tensor) -> None:
    """Write an array as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    Args:
        path: Destination file.
        array: Numpy array or tensor of dtype uint8, int8, int16, int32, float32 or
            float64, with at most 255 dimensions.

    Raises:
        ValueError: If ``array`` has an unsupported dtype or shape.
    """
    if isinstance(array, Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    native = {d.newbyteorder("="): c for c, d in _IDX_DTYPES.items()}
    code = native.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(d.name for d in native)
        raise ValueError(f"write_idx: `array` has dtype {array.dtype}, expected one of {names}")
    if array.ndim > 255 or any(s >= 2**32 for s in array.shape):
        raise ValueError(
            f"write_idx: `array` has shape {array.shape}, expected at most 255 dimensions "
            "each smaller than 2**32"
        )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def _find(root: Path, name: str) -> Path | None:
    """Return ``root/name`` or ``root/name.gz``, whichever exists (raw first)."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def download_mnist_files(
    root: PathLike, base_url: str = MNIST_BASE_URL, *, timeout: float = 60.0
) -> list[Path]:
    """Download the four MNIST-format ``.gz`` files into ``root``.

    Files already present in ``root`` (raw or ``.gz``) are skipped. Each file is
    fetched from ``base_url + name + ".gz"`` into a temporary file in ``root``,
    checked to parse as IDX, and then moved into place with :func:`os.replace`,
    so an interrupted download never leaves a partial file under the final name.

    Args:
        root: Destination folder; created if missing.
        base_url: URL prefix of the files, e.g. :data:`MNIST_BASE_URL`,
            :data:`FASHION_MNIST_BASE_URL` or a ``file://`` URL.
        timeout: Socket timeout for each request, in seconds.

    Returns:
        Paths of the files downloaded by this call (empty if all were present).

    Raises:
        OSError: If a download fails.
        ValueError: If a downloaded file is not a valid IDX file.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not base_url.endswith("/"):
        base_url += "/"
    downloaded = []
    for name in MNIST_FILES:
        if _find(root, name) is not None:
            continue
        url = f"{base_url}{name}.gz"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                except OSError as err:
                    raise OSError(f"could not download '{url}': {err}") from err
            read_idx(tmp)  # raises ValueError if the download is not valid IDX
            data = tmp.read_bytes()
            if data[:2] != _GZIP_MAGIC:  # server sent uncompressed data
                tmp.write_bytes(gzip.compress(data, mtime=0))
            target = root / f"{name}.gz"
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        downloaded.append(target)
    return downloaded


def _how_to_get(name: str) -> str:
    """The ways to provide the files of data set ``name``, for the missing-files error."""
    loader = "load_fashion_mnist" if name == "fashion-mnist" else "load_mnist"
    ways = []
    if name == "fashion-mnist":
        ways.append(
            "install the Debian package 'dataset-fashion-mnist' (`apt-get install "
            f"dataset-fashion-mnist`; its files land in {FASHION_MNIST_DEFAULT_ROOT}, the "
            "default folder)"
        )
    ways += [
        "put the four files in a folder and give it: `--data-dir FOLDER` on the command line "
        f"(examples, `python -m pyrovi.compress`), `{loader}(FOLDER)` from Python",
        f"where there is internet access, download them from Python: "
        f"`{loader}(FOLDER, download=True)` (the command line does not download)",
    ]
    return "To get them: " + "; or ".join(ways) + "."


def _load_mnist_format(
    root: PathLike, name: str, download: bool, base_url: str, flatten: bool
) -> ImageData:
    root = Path(root)
    if download:
        download_mnist_files(root, base_url)
    paths = {f: _find(root, f) for f in MNIST_FILES}
    missing = [f for f, p in paths.items() if p is None]
    if missing:
        state = "does not exist" if not root.is_dir() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"{name}: folder '{root}' {state}; expected the files {', '.join(MNIST_FILES)} "
            f"(each raw or with '.gz'). {_how_to_get(name)}"
        )
    splits, shapes = [], []
    for images_file, labels_file in (MNIST_FILES[:2], MNIST_FILES[2:]):
        images, labels = read_idx(paths[images_file]), read_idx(paths[labels_file])
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError(
                f"{name}: '{paths[images_file]}' holds {images.dtype} of shape "
                f"{tuple(images.shape)}, expected uint8 images of shape (N, H, W)"
            )
        if labels.ndim != 1 or labels.dtype.is_floating_point:
            raise ValueError(
                f"{name}: '{paths[labels_file]}' holds {labels.dtype} of shape "
                f"{tuple(labels.shape)}, expected integer labels of shape (N,)"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}: '{paths[images_file]}' has {images.shape[0]} images but "
                f"'{paths[labels_file]}' has {labels.shape[0]} labels; expected equal counts"
            )
        shapes.append((int(images.shape[1]), int(images.shape[2])))
        x = images.to(torch.float32).div_(255.0)
        splits.append((x.flatten(1) if flatten else x, labels.to(torch.int64)))
    if shapes[0] != shapes[1]:
        raise ValueError(
            f"{name}: training images are {shapes[0]} but test images are {shapes[1]}; "
            "expected the same image shape (H, W)"
        )
    (x_train, y_train), (x_test, y_test) = splits
    return ImageData(x_train, y_train, x_test, y_test, shapes[0], name)


def load_mnist(
    root: PathLike,
    *,
    download: bool = False,
    base_url: str | None = None,
    flatten: bool = True,
) -> ImageData:
    """Load MNIST (or any data set in the MNIST file layout) from a folder.

    The folder must hold the four files in :data:`MNIST_FILES`, each raw or with a
    ``.gz`` suffix.

    Args:
        root: Folder holding the files.
        download: If true, create ``root`` and download the missing files from
            ``base_url`` first (see :func:`download_mnist_files`).
        base_url: Download URL prefix; defaults to :data:`MNIST_BASE_URL`.
        flatten: If true, images have shape ``(N, H*W)``, else ``(N, H, W)``.

    Returns:
        :class:`ImageData` named ``"mnist"`` with float32 images in ``[0, 1]``
        (pixel value / 255) and int64 labels; for MNIST ``N_train = 60000``,
        ``N_test = 10000`` and ``image_shape = (28, 28)``.

    Raises:
        FileNotFoundError: If the folder or any of the files is missing.
        ValueError: If a file is not valid IDX or the files do not fit together.
    """
    return _load_mnist_format(root, "mnist", download, base_url or MNIST_BASE_URL, flatten)


def load_fashion_mnist(
    root: PathLike | None = None,
    *,
    download: bool = False,
    base_url: str | None = None,
    flatten: bool = True,
) -> ImageData:
    """Load Fashion-MNIST from a folder in the MNIST file layout.

    Args:
        root: Folder holding the files; defaults to
            :data:`FASHION_MNIST_DEFAULT_ROOT`, where the Debian package
            ``dataset-fashion-mnist`` installs them.
        download: If true, create ``root`` and download the missing files from
            ``base_url`` first.
        base_url: Download URL prefix; defaults to :data:`FASHION_MNIST_BASE_URL`.
        flatten: If true, images have shape ``(N, H*W)``, else ``(N, H, W)``.

    Returns:
        :class:`ImageData` named ``"fashion-mnist"`` (60000 training and 10000 test
        images of 28x28 pixels, 10 classes), images float32 in ``[0, 1]``.

    Raises:
        FileNotFoundError: If the folder or any of the files is missing.
        ValueError: If a file is not valid IDX or the files do not fit together.
    """
    return _load_mnist_format(
        FASHION_MNIST_DEFAULT_ROOT if root is None else root,
        "fashion-mnist",
        download,
        base_url or FASHION_MNIST_BASE_URL,
        flatten,
    )
