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
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyrovi.compress.bitsback import BitsBackCoder, stream_info  # noqa: E402
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


def _load_data(parser: argparse.ArgumentParser, args: argparse.Namespace, likelihood: str):
    if (args.input is None) == (args.dataset is None):
        parser.error("encode needs exactly one of --input and --dataset")
    if args.input is not None:
        return torch.as_tensor(np.load(args.input), dtype=torch.float64)
    try:
        data = load_dataset(args.dataset, args.data_dir)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    x = binarize_data(data, seed=0).x_test if likelihood == "bernoulli" else data.x_test
    return x[: args.n] if args.n else x


def main(argv: list[str] | None = None) -> dict:
    """Run the command line; ``argv`` defaults to ``sys.argv[1:]``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "train":
        try:
            data = load_dataset(args.dataset, args.data_dir, subset=args.subset)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
        hidden = [int(h) for h in args.hidden.split(",") if h]
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
    try:
        model, guide, _ = load_vae(args.model)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    if args.command == "encode":
        x = _load_data(parser, args, model.likelihood)
        try:
            coder = BitsBackCoder(model, guide, latent_bits=args.latent_bits, lanes=args.lanes)
            blob = coder.encode(x)
        except ValueError as e:
            parser.error(str(e))
        Path(args.output).write_bytes(blob)
        stats = coder.last_stats.as_dict()
        print(json.dumps(stats, indent=2))
        return stats
    blob = Path(args.input).read_bytes()
    try:
        info = stream_info(blob)
        coder = BitsBackCoder(
            model,
            guide,
            **{k: info[k] for k in ("latent_bits", "lanes", "seed")},
            posterior_precision=info["posterior_precision"],
            likelihood_precision=info["likelihood_precision"],
        )
        t0 = time.perf_counter()
        x = coder.decode_values(blob)
    except ValueError as e:
        parser.error(str(e))
    np.save(args.output, x.astype(np.float32))
    out = {"num_data": int(x.shape[0]), "decode_seconds": time.perf_counter() - t0}
    print(f"decoded {x.shape[0]} images in {out['decode_seconds']:.2f} s -> {args.output}")
    return out


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
