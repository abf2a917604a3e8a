"""Lossless compression of binarized images by bits-back coding with a VAE trained here.

Trains an MLP VAE (Bernoulli likelihood, dynamic binarization), compresses the first ``--n``
test images (binarized once, seed 0) with :class:`pyrovi.compress.BitsBackCoder`, decodes them
and checks the round trip, and compares the rate with the model's -ELBO and with gzip, bz2 and
lzma on the same bits packed 8 to a byte::

    python examples/compress.py                   # digits; about 15 s on 2 CPU cores (RUN_TIME)
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

from pyrovi.cli import HelpFormatter, describe, int_list, positive_int, print_written  # noqa: E402

# Wall time of `python examples/compress.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 15 s"

FIGURES = ("rates.png", "code_lengths.png")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Bits-back compression of binarized images with a VAE trained here, against the\n"
            "-ELBO and gzip/bz2/lzma on the same bits.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--dataset",
        choices=("digits", "fashion-mnist"),
        default="digits",
        help="digits: scikit-learn 8x8 (bundled); fashion-mnist: the Debian "
        "dataset-fashion-mnist folder",
    )
    p.add_argument("--epochs", type=positive_int, default=150, help="training epochs")
    p.add_argument("--z-dim", type=positive_int, default=8, help="latent dimension")
    p.add_argument(
        "--hidden",
        type=int_list,
        default="256,128",
        help="encoder hidden widths, comma separated; the decoder uses them reversed",
    )
    p.add_argument(
        "--n", type=positive_int, default=None, help="test images to compress (default: all)"
    )
    p.add_argument("--lanes", type=positive_int, default=1, help="rANS heads (few suit small data)")
    p.add_argument(
        "--latent-bits", type=positive_int, default=12, help="bits per latent coordinate"
    )
    p.add_argument(
        "--elbo-samples",
        type=positive_int,
        default=20,
        help="Monte Carlo samples per test image for its -ELBO",
    )
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0, help="seed of training and of the clean bits")
    p.add_argument("--out", default="outputs/compress", help="output folder (created if missing)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from pyrovi.compress import BitsBackCoder, train_vae
    from pyrovi.data import binarize_data, load_dataset
    from pyrovi.infer import elbo

    progress = not args.no_progress
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        data = load_dataset(args.dataset)
    except FileNotFoundError as err:
        parser.error(str(err))  # the message lists the ways to get the files
    hidden = list(args.hidden)
    model, guide, result = train_vae(
        data.x_train,
        args.z_dim,
        hidden_dims=hidden,
        epochs=args.epochs,
        seed=args.seed,
        progress=progress,
    )
    x = binarize_data(data, seed=0).x_test[: args.n]
    n, d = x.shape
    with torch.no_grad():
        neg_elbo = -elbo(model, guide, x, num_samples=args.elbo_samples) / math.log(2)
    coder = BitsBackCoder(
        model, guide, latent_bits=args.latent_bits, lanes=min(args.lanes, d), seed=args.seed
    )
    t0 = time.perf_counter()
    blob = coder.encode(x, progress=progress)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = coder.decode_values(blob, progress=progress)
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
        f"{args.dataset}: {n} binarized test images, {d} pixels each; round trip exact: "
        f"{metrics['exact_round_trip']}"
    )
    print(f"  -ELBO                 {metrics['neg_elbo_bits_per_dim']:.4f} bits/pixel")
    print(
        f"  bits back, total      {stats.bits_per_dim:.4f} bits/pixel "
        f"(encode {encode_s:.2f} s, decode {decode_s:.2f} s)"
    )
    print(
        f"  bits back, net        {stats.net_bits_per_dim:.4f} bits/pixel (without the header "
        f"and the {stats.clean_bits} clean bits)"
    )
    for name, rate in baselines.items():
        print(f"  {name:<21} {rate:.4f} bits/pixel (8 pixels packed per byte)")
    plot_rates(out / FIGURES[0], metrics, stats, args.dataset)
    plot_code_lengths(out / FIGURES[1], neg_elbo.numpy(), stats.code_lengths, args.dataset)
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print_written(out, ["metrics.json", *FIGURES])
    return metrics


def plot_rates(path: Path, metrics: dict, stats, dataset: str) -> None:
    """Bar chart of the bits per pixel of every method (the -ELBO bound, bits back, baselines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = metrics["baselines_packed_bits_per_dim"]
    names = ["-ELBO", "bits back\n(total)", "bits back\n(net)", *baselines]
    rates = [
        metrics["neg_elbo_bits_per_dim"],
        stats.bits_per_dim,
        stats.net_bits_per_dim,
        *baselines.values(),
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, rates, color=["0.6", "C0", "C0", "C1", "C2", "C3"])
    ax.set_xlabel("method")
    ax.set_ylabel("rate (bits per pixel)")
    ax.set_title(f"{dataset}: {metrics['n_test']} binarized test images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_code_lengths(path: Path, neg_elbo_bits, code_lengths, dataset: str) -> None:
    """Each image's bits-back code length against its -ELBO (both in bits), with y = x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(neg_elbo_bits, code_lengths, s=4, label="one test image")
    lim = [
        min(neg_elbo_bits.min(), code_lengths.min()),
        max(neg_elbo_bits.max(), code_lengths.max()),
    ]
    ax.plot(lim, lim, "k--", lw=1, label="code length = -ELBO")
    ax.set_xlabel("-ELBO per image (bits)")
    ax.set_ylabel("bits-back code length (bits)")
    ax.set_title(f"{dataset}: code length per image")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
