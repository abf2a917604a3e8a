"""Command line: train a VAE, compress images with bits back, decompress them.

::

    python -m pyrovi.compress train --dataset digits --epochs 300 --model vae.pt
    python -m pyrovi.compress encode --model vae.pt --dataset digits --output test.pvbb
    python -m pyrovi.compress decode --model vae.pt --input test.pvbb --output test.npy
    python -m pyrovi.compress encode --model vae.pt --input images.npy --output images.pvbb

``encode`` takes a ``.npy`` array ``(N, D)`` of values on the likelihood's grid (binary for a
Bernoulli model) or a data set's test split (binarized once with seed 0 for a Bernoulli model);
``decode`` writes the decoded array as ``.npy`` (float32). ``main(argv)`` returns a dict of what
it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyrovi.compress.bitsback import BitsBackCoder, decode  # noqa: E402
from pyrovi.compress.bundle import load_vae, save_vae, train_vae  # noqa: E402
from pyrovi.data import DATASETS, binarize_data, load_dataset  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="python -m pyrovi.compress",
        description="Lossless compression of images by bits-back coding with a trained VAE.",
    )
    p.add_argument("--threads", type=_positive, default=1, help="torch threads")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an MLP VAE (Bernoulli, dynamic binarization)")
    t.add_argument("--dataset", choices=DATASETS, default="digits")
    t.add_argument("--data-dir", default=None, help="folder of MNIST-format files")
    t.add_argument("--subset", type=_positive, default=None, help="first N training images")
    t.add_argument("--epochs", type=_positive, default=100)
    t.add_argument("--z-dim", type=_positive, default=8)
    t.add_argument("--hidden", default="512,256", help="comma-separated widths")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--model", required=True, help="output file")

    for name, help_ in (("encode", "compress images"), ("decode", "decompress a stream")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--model", required=True, help="file written by 'train'")
        s.add_argument("--output", required=True)
        if name == "encode":
            s.add_argument("--input", default=None, help=".npy array (N, D); or use --dataset")
            s.add_argument("--dataset", choices=DATASETS, default=None)
            s.add_argument("--data-dir", default=None)
            s.add_argument("--n", type=_positive, default=None, help="first N test images")
            s.add_argument("--latent-bits", type=_positive, default=12)
            s.add_argument("--lanes", type=_positive, default=None, help="rANS heads")
        else:
            s.add_argument("--input", required=True, help="stream written by 'encode'")
    return p


_NPY_MAGIC = b"\x93NUMPY"


class CommandError(Exception):
    """A failure the command line reports in one line (exit status 1)."""


def _load_array(path: str) -> torch.Tensor:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
        if magic != _NPY_MAGIC:
            raise CommandError(f"--input {path}: not a .npy file (it starts with {magic!r})")
        array = np.load(path)
    except (OSError, ValueError, EOFError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise CommandError(f"--input {path}: cannot read a .npy array: {reason}") from err
    if array.dtype.kind not in "biuf":
        raise CommandError(f"--input {path}: holds {array.dtype} values, not numbers")
    return torch.as_tensor(array, dtype=torch.float64)


def _write(path: str, write: Callable[[str], object]) -> None:
    try:
        write(path)
    except OSError as err:
        raise CommandError(f"--output {path}: cannot write it: {err.strerror or err}") from err


def _load_dataset(name: str, data_dir: str | None, **kwargs):
    try:
        return load_dataset(name, data_dir, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from err


def _load_data(parser: argparse.ArgumentParser, args: argparse.Namespace, likelihood: str):
    if (args.input is None) == (args.dataset is None):
        parser.error("encode needs exactly one of --input and --dataset")
    if args.input is not None:
        return _load_array(args.input)
    data = _load_dataset(args.dataset, args.data_dir)
    x = binarize_data(data, seed=0).x_test if likelihood == "bernoulli" else data.x_test
    return x[: args.n] if args.n else x


def _train(args: argparse.Namespace) -> dict:
    data = _load_dataset(args.dataset, args.data_dir, subset=args.subset)
    try:
        hidden = [int(h) for h in args.hidden.split(",") if h]
    except ValueError as err:
        raise CommandError(f"--hidden {args.hidden!r}: not comma-separated integers") from err
    t0 = time.perf_counter()
    model, guide, result = train_vae(
        data.x_train, args.z_dim, hidden_dims=hidden, epochs=args.epochs, seed=args.seed
    )
    meta = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "train_seconds": time.perf_counter() - t0,
        "train_elbo_last_epoch": result.history["train_elbo"][-1],
    }
    save_vae(args.model, model, guide, hidden, meta)
    print(f"trained {args.epochs} epochs in {meta['train_seconds']:.1f} s -> {args.model}")
    return meta


def _encode(parser: argparse.ArgumentParser, args: argparse.Namespace, model, guide) -> dict:
    x = _load_data(parser, args, model.likelihood)
    coder = BitsBackCoder(model, guide, latent_bits=args.latent_bits, lanes=args.lanes)
    try:
        blob = coder.encode(x)
    except (ValueError, TypeError) as err:
        source = f"--input {args.input}" if args.input else f"--dataset {args.dataset}"
        raise CommandError(f"{source}: {err}") from err
    _write(args.output, lambda path: Path(path).write_bytes(blob))
    stats = coder.last_stats.as_dict()
    print(json.dumps(stats, indent=2))
    return stats


def _decode(args: argparse.Namespace, model, guide) -> dict:
    try:
        blob = Path(args.input).read_bytes()
    except OSError as err:
        raise CommandError(f"--input {args.input}: cannot read it: {err.strerror}") from err
    try:
        t0 = time.perf_counter()
        x = decode(model, guide, blob).cpu().numpy()
    except ValueError as err:
        raise CommandError(f"--input {args.input}: {str(err).removeprefix('blob: ')}") from err
    _write(args.output, lambda path: np.save(path, x.astype(np.float32)))
    out = {"num_data": int(x.shape[0]), "decode_seconds": time.perf_counter() - t0}
    print(f"decoded {x.shape[0]} images in {out['decode_seconds']:.2f} s -> {args.output}")
    return out


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    if args.command == "train":
        return _train(args)
    model, guide, _ = load_vae(args.model)
    if args.command == "encode":
        return _encode(parser, args, model, guide)
    return _decode(args, model, guide)


def main(argv: list[str] | None = None) -> dict:
    """Run the command line; ``argv`` defaults to ``sys.argv[1:]``.

    Errors of the arguments exit with status 2 (argparse's usage message); a file that cannot be
    used (model, stream, input array, output path), data the model cannot code, or a stream
    encoded with another model exit with status 1 after one line on stderr,
    ``python -m pyrovi.compress: error: ...``, naming the file and what is wrong.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return _run(parser, args)
    except (CommandError, ValueError, TypeError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
