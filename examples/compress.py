"""Lossless compression of binarized images by bits-back coding with a VAE trained here.

Trains an MLP VAE (Bernoulli likelihood, dynamic binarization), compresses the first ``--n``
test images (binarized once, seed 0) with :class:`pyrovi.compress.BitsBackCoder`, decodes them
and checks the round trip, and compares the rate with the model's -ELBO and with gzip, bz2 and
lzma on the same bits packed 8 to a byte::

    python examples/compress.py                                 # digits, about a minute on CPU
    python examples/compress.py --dataset fashion-mnist --epochs 10 --n 2000 --z-dim 32

It writes ``metrics.json``, ``rates.png`` (bits per pixel of every method) and
``code_lengths.png`` (each image's bits-back code length against its -ELBO) to ``--out``
(default ``outputs/compress``). ``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyrovi.compress import BitsBackCoder, train_vae  # noqa: E402
from pyrovi.data import binarize_data, load_dataset  # noqa: E402
from pyrovi.infer import elbo  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description="Bits-back compression of binarized images with a VAE vs gzip/bz2/lzma.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--hidden", default="256,128", help="comma-separated encoder widths")
    p.add_argument("--n", type=int, default=None, help="test images to compress (default all)")
    p.add_argument("--lanes", type=int, default=1, help="rANS heads (few suit small data)")
    p.add_argument("--latent-bits", type=int, default=12)
    p.add_argument("--elbo-samples", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/compress")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.z_dim < 1 or args.lanes < 1 or (args.n is not None and args.n < 1):
        parser.error("--epochs, --z-dim, --lanes and --n must be positive")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    model, guide, result = train_vae(
        data.x_train, args.z_dim, hidden_dims=hidden, epochs=args.epochs, seed=args.seed
    )
    x = binarize_data(data, seed=0).x_test[: args.n]
    n, d = x.shape
    with torch.no_grad():
        neg_elbo = -elbo(model, guide, x, num_samples=args.elbo_samples) / math.log(2)
    coder = BitsBackCoder(
        model, guide, latent_bits=args.latent_bits, lanes=min(args.lanes, d), seed=args.seed
    )
    t0 = time.perf_counter()
    blob = coder.encode(x)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = coder.decode_values(blob)
    decode_s = time.perf_counter() - t0
    stats = coder.last_stats
    packed = np.packbits(x.numpy().astype(np.uint8).reshape(-1)).tobytes()
    baselines = {
        "gzip": 8 * len(gzip.compress(packed, compresslevel=9, mtime=0)) / (n * d),
        "bz2": 8 * len(bz2.compress(packed, compresslevel=9)) / (n * d),
        "lzma": 8 * len(lzma.compress(packed, preset=9 | lzma.PRESET_EXTREME)) / (n * d),
    }
    metrics = {
        "dataset": args.dataset,
        "n_test": n,
        "x_dim": d,
        "epochs": args.epochs,
        "z_dim": args.z_dim,
        "hidden": hidden,
        "train_seconds": result.timings.get("train_s"),
        "neg_elbo_bits_per_dim": float(neg_elbo.mean()) / d,
        "bits_back": stats.as_dict(),
        "exact_round_trip": bool(np.array_equal(decoded, x.double().numpy())),
        "encode_seconds": encode_s,
        "decode_seconds": decode_s,
        "baselines_packed_bits_per_dim": baselines,
    }
    print(
        f"{args.dataset}: {n} test images; -ELBO {metrics['neg_elbo_bits_per_dim']:.4f} bits/dim; "
        f"bits back {stats.bits_per_dim:.4f} total, {stats.net_bits_per_dim:.4f} without the "
        f"{stats.clean_bits} clean bits and header; "
        + ", ".join(f"{k} {v:.4f}" for k, v in baselines.items())
        + f"; round trip exact: {metrics['exact_round_trip']}"
    )

    names = ["-ELBO", "bits back\n(total)", "bits back\n(net)", *baselines]
    rates = [
        metrics["neg_elbo_bits_per_dim"],
        stats.bits_per_dim,
        stats.net_bits_per_dim,
        *baselines.values(),
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, rates, color=["0.6", "C0", "C0", "C1", "C2", "C3"])
    ax.set_ylabel("bits per pixel")
    ax.set_title(f"{args.dataset}: {n} binarized test images")
    fig.tight_layout()
    fig.savefig(out / "rates.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(neg_elbo.numpy(), stats.code_lengths, s=4)
    lim = [min(neg_elbo.min().item(), stats.code_lengths.min()), neg_elbo.max().item()]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel("-ELBO per image (bits)")
    ax.set_ylabel("bits-back code length (bits)")
    fig.tight_layout()
    fig.savefig(out / "code_lengths.png", dpi=120)
    plt.close(fig)
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote metrics.json, rates.png, code_lengths.png to {out}")
    return metrics


if __name__ == "__main__":
    main()
