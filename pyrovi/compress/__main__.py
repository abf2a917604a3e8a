"""Command line: train a VAE, compress images with bits back, decompress them.

::

    python -m pyrovi.compress train --dataset digits --epochs 300 --model vae.pt
    python -m pyrovi.compress encode --model vae.pt --dataset digits --output test.pvbb
    python -m pyrovi.compress decode --model vae.pt --input test.pvbb --output test.npy
    python -m pyrovi.compress encode --model vae.pt --input images.npy --output images.pvbb

``train`` prints the model's ELBO on the training data (last epoch) and on the binarized test
split, in nats per image and bits per pixel. ``encode`` takes a ``.npy`` array ``(N, D)`` of
values on the likelihood's grid (binary for a Bernoulli model) or a data set's test split
(binarized once with seed 0 for a Bernoulli model) and prints the rate it reached; ``decode``
writes the decoded array in ``.npy`` format (float32) to exactly the ``--output`` path given (no
extension is added). Every command says which file it wrote and where. ``main(argv)`` returns a
dict of what it measured.

Arguments are parsed before torch is imported, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

from pyrovi._dataset_names import DATASETS  # noqa: E402
from pyrovi.cli import (  # noqa: E402
    HelpFormatter,
    add_data_arguments,
    describe,
    int_list,
    positive_int,
    print_written,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["TRAIN_RUN_TIME", "CommandError", "build_parser", "main"]

#: Wall time of ``python -m pyrovi.compress train --model vae.pt`` (the defaults: digits, 100
#: epochs) on 2 CPU cores, shown by ``train --help``.
TRAIN_RUN_TIME = "about 20 s"

PROG = "python -m pyrovi.compress"


def _common_options() -> argparse.ArgumentParser:
    """Options every subcommand has (``--no-progress``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (subcommands ``train``, ``encode``, ``decode``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Lossless compression of images by bits-back coding with a trained VAE.\n\n"
        f"Run '{PROG} <command> --help' for a command's options.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,encode,decode}")
    common = _common_options()

    t = sub.add_parser(
        "train",
        parents=[common],
        help="train an MLP VAE (Bernoulli likelihood, dynamic binarization)",
        description=describe(
            "Train an MLP VAE (Bernoulli likelihood, dynamic binarization of the training\n"
            "images) and save it for encode/decode. Prints the train ELBO (last epoch) and the\n"
            "test ELBO (test split binarized once, seed 0) in nats per image and bits per pixel.",
            run_time=TRAIN_RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    add_data_arguments(t)  # --dataset, --data-dir, --subset, as in the examples
    t.add_argument("--epochs", type=positive_int, default=100, help="training epochs")
    t.add_argument("--z-dim", type=positive_int, default=8, help="latent dimension")
    t.add_argument(
        "--hidden",
        type=int_list,
        default="512,256",
        help="encoder hidden widths, comma separated; the decoder uses them reversed",
    )
    t.add_argument(
        "--elbo-samples",
        type=positive_int,
        default=10,
        help="Monte Carlo samples per test image for the test ELBO",
    )
    t.add_argument("--seed", type=int, default=0, help="seed of initialization and batches")
    t.add_argument(
        "--model", required=True, help="file to write the model to (required, no default)"
    )

    e = sub.add_parser(
        "encode",
        parents=[common],
        help="compress images",
        description="Compress images (a .npy array or a data set's test split) with a model\n"
        "written by 'train'; prints the rate in bits per pixel.",
        formatter_class=HelpFormatter,
    )
    e.add_argument(
        "--model", required=True, help="model file written by 'train' (required, no default)"
    )
    e.add_argument("--output", required=True, help="stream file to write (required, no default)")
    e.add_argument(
        "--input",
        default=None,
        help=".npy array (N, D) to compress (default: none; give --input or --dataset)",
    )
    e.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="compress this data set's test split (default: none; give --input or --dataset)",
    )
    e.add_argument(
        "--data-dir",
        default=None,
        help="folder of the four MNIST-format files (default: none; needed for mnist)",
    )
    e.add_argument(
        "--n", type=positive_int, default=None, help="first N test images (default: all)"
    )
    e.add_argument(
        "--latent-bits", type=positive_int, default=12, help="bits per latent coordinate"
    )
    e.add_argument(
        "--lanes",
        type=positive_int,
        default=None,
        help="rANS heads (default: chosen from the data's estimated code length)",
    )

    d = sub.add_parser(
        "decode",
        parents=[common],
        help="decompress a stream",
        description="Decompress a stream written by 'encode' with the same model; writes the\n"
        "images as a float32 .npy array to exactly the --output path given.",
        formatter_class=HelpFormatter,
    )
    d.add_argument(
        "--model", required=True, help="model file written by 'train' (required, no default)"
    )
    d.add_argument(
        "--input", required=True, help="stream written by 'encode' (required, no default)"
    )
    d.add_argument(
        "--output",
        required=True,
        help="file to write the decoded .npy array to, exactly as named (required, no default)",
    )
    return p


_NPY_MAGIC = b"\x93NUMPY"


class CommandError(Exception):
    """A failure the command line reports in one line (exit status 1)."""


def _load_array(path: str) -> torch.Tensor:
    import numpy as np
    import torch

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


def _write(option: str, path: str, write: Callable[[str], object]) -> None:
    try:
        write(path)
    except OSError as err:
        raise CommandError(f"{option} {path}: cannot write it: {err.strerror or err}") from err


def _report_written(path: str | os.PathLike) -> None:
    """``wrote <name> to <absolute folder>``."""
    path = Path(path)
    print_written(path.parent, [path.name])


def _load_dataset(name: str, data_dir: str | None, **kwargs: Any):
    from pyrovi.data import load_dataset

    try:
        return load_dataset(name, data_dir, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        raise CommandError(str(err)) from err


def _load_data(parser: argparse.ArgumentParser, args: argparse.Namespace, likelihood: str):
    from pyrovi.data import binarize_data

    if (args.input is None) == (args.dataset is None):
        parser.error("encode needs exactly one of --input and --dataset")
    if args.input is not None:
        return _load_array(args.input)
    data = _load_dataset(args.dataset, args.data_dir)
    x = binarize_data(data, seed=0).x_test if likelihood == "bernoulli" else data.x_test
    return x[: args.n] if args.n else x


def _elbo_line(what: str, value: float, x_dim: int) -> str:
    """``train ELBO -23.41 nats/image (0.528 bits/pixel)``: ``-ELBO / (D ln 2)`` per pixel."""
    return f"{what} {value:.2f} nats/image ({-value / (x_dim * math.log(2)):.4f} bits/pixel)"


def _train(args: argparse.Namespace) -> dict:
    import torch

    from pyrovi.compress.bundle import save_vae, train_vae
    from pyrovi.data import binarize_data
    from pyrovi.infer import elbo

    data = _load_dataset(args.dataset, args.data_dir, subset=args.subset)
    hidden = list(args.hidden)
    t0 = time.perf_counter()
    model, guide, result = train_vae(
        data.x_train,
        args.z_dim,
        hidden_dims=hidden,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.no_progress,
    )
    train_seconds = time.perf_counter() - t0
    train_elbo = float(result.history["train_elbo"][-1])
    x_test = binarize_data(data, seed=0).x_test
    test_elbo = None
    if len(x_test):
        with torch.no_grad():
            test_elbo = elbo(model, guide, x_test, num_samples=args.elbo_samples).mean().item()
    x_dim = data.x_train.shape[1]
    meta = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "train_seconds": train_seconds,
        "train_elbo_last_epoch": train_elbo,
        "train_bits_per_dim": -train_elbo / (x_dim * math.log(2)),
        "test_elbo": test_elbo,
        "test_bits_per_dim": None if test_elbo is None else -test_elbo / (x_dim * math.log(2)),
        "test_images": len(x_test),
        "test_elbo_samples": args.elbo_samples,
    }
    _write("--model", args.model, lambda path: save_vae(path, model, guide, hidden, meta))
    print(f"trained {args.epochs} epochs on {len(data.x_train)} images in {train_seconds:.1f} s")
    print(_elbo_line("train ELBO", train_elbo, x_dim) + ", mean over the last epoch's batches")
    if test_elbo is not None:
        print(
            _elbo_line("test ELBO ", test_elbo, x_dim)
            + f", {len(x_test)} test images binarized with seed 0, {args.elbo_samples} samples"
        )
    _report_written(args.model)
    return meta


def _encode(parser: argparse.ArgumentParser, args: argparse.Namespace, model, guide) -> dict:
    from pyrovi.compress.bitsback import BitsBackCoder

    x = _load_data(parser, args, model.likelihood)
    coder = BitsBackCoder(model, guide, latent_bits=args.latent_bits, lanes=args.lanes)
    try:
        blob = coder.encode(x, progress=not args.no_progress)
    except (ValueError, TypeError) as err:
        source = f"--input {args.input}" if args.input else f"--dataset {args.dataset}"
        raise CommandError(f"{source}: {err}") from err
    _write("--output", args.output, lambda path: Path(path).write_bytes(blob))
    stats = coder.last_stats
    print(
        f"encoded {stats.num_data} images ({stats.x_dim} pixels each) in "
        f"{stats.encode_seconds:.2f} s with {stats.lanes} rANS lane"
        f"{'' if stats.lanes == 1 else 's'}: "
        f"{stats.bits_per_dim:.4f} bits/pixel in all ({stats.total_bits} bits), "
        f"{stats.net_bits_per_dim:.4f} without the header and {stats.clean_bits} clean bits"
    )
    _report_written(args.output)
    return stats.as_dict()


def _decode(args: argparse.Namespace, model, guide) -> dict:
    import numpy as np

    from pyrovi.compress.bitsback import decode

    try:
        blob = Path(args.input).read_bytes()
    except OSError as err:
        raise CommandError(f"--input {args.input}: cannot read it: {err.strerror}") from err
    try:
        t0 = time.perf_counter()
        x = decode(model, guide, blob, progress=not args.no_progress).cpu().numpy()
    except ValueError as err:
        raise CommandError(f"--input {args.input}: {str(err).removeprefix('blob: ')}") from err
    decode_seconds = time.perf_counter() - t0

    def save(path: str) -> None:
        with open(path, "wb") as f:  # np.save(path) would append ".npy" to a bare name
            np.save(f, x.astype(np.float32))

    _write("--output", args.output, save)
    print(f"decoded {x.shape[0]} images in {decode_seconds:.2f} s")
    _report_written(args.output)
    return {"num_data": int(x.shape[0]), "decode_seconds": decode_seconds, "output": args.output}


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    import torch

    from pyrovi.compress.bundle import load_vae

    torch.set_num_threads(args.threads)
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
    try:
        return _run(parser, args)
    except (CommandError, ValueError, TypeError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
