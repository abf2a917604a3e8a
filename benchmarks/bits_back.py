#!/usr/bin/env python
"""Bits-back compression of binarized images with a trained VAE vs its -ELBO and gzip/bz2/lzma.

For each data set (``--datasets``):

1. train an MLP VAE (:func:`pyrovi.compress.bundle.train_vae`: Bernoulli likelihood, dynamic
   binarization of the training images, Adam) or load it from ``--cache`` when it is there with
   the same settings;
2. binarize the test images once (``pyrovi.data.binarize_data(seed=0)``: one Bernoulli draw of
   each grey level) and keep the first ``--n-test``;
3. compress them with :class:`pyrovi.compress.BitsBackCoder` for each ``--lanes`` setting
   (``auto``: the coder's default, chosen from the data size; ``full``: one lane per pixel),
   decompress, check the round trip is exact, and time both directions;
4. compute the model's -ELBO on the same images (``pyrovi.infer.elbo``, ``--elbo-samples``
   draws per image) and compress the same bits with gzip, bz2 and lzma (Python's standard
   library, strongest presets) in two layouts: ``packed`` (``np.packbits`` of the N x D bits,
   row-major: 8 pixels a byte) and ``bytes`` (one byte, 0 or 1, per pixel).

Rates are bits per pixel (bits/dim). For bits back: ``total`` is the whole output (header, heads,
stack); ``net`` leaves out the header and the clean bits that start the chain; ``chain`` is the
sum of the per-image bits-back code lengths (what the chain adds per image, without any fixed
cost). ``total_vs_neg_elbo_plus_header`` compares the whole output with the -ELBO of the images
plus the header's bits. ``--sizes-digits`` and ``--sizes-fashion`` also code the first n test
images with the default lanes, to show the fixed costs against the data size.

Wall and CPU (process) times in one process; training and the -ELBO use ``--threads`` torch
threads, the coder always runs its networks on one thread (for bit-exact floats). The
machine may be shared: ``load_average_at_end`` in the JSON says how busy it was.

Usage::

    python benchmarks/bits_back.py                                  # digits + Fashion-MNIST
    python benchmarks/bits_back.py --datasets digits --out ''       # quick look, writes nothing
    python benchmarks/bits_back.py --datasets fashion-mnist --n-test 2000 --epochs-fashion 20

Writes ``benchmarks/results/bits_back.json`` (``--out``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import bz2  # noqa: E402
import datetime  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import lzma  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pyrovi.compress import BitsBackCoder  # noqa: E402
from pyrovi.compress.bundle import load_vae, save_vae, train_vae  # noqa: E402
from pyrovi.data import binarize_data, load_dataset  # noqa: E402
from pyrovi.infer import elbo  # noqa: E402

BASELINES = {
    "gzip": lambda b: gzip.compress(b, compresslevel=9, mtime=0),
    "bz2": lambda b: bz2.compress(b, compresslevel=9),
    "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="digits,fashion-mnist")
    p.add_argument("--n-test", type=int, default=10000, help="test images (at most all)")
    p.add_argument("--epochs-digits", type=int, default=300)
    p.add_argument("--epochs-fashion", type=int, default=10)
    p.add_argument("--z-dim-digits", type=int, default=8)
    p.add_argument("--z-dim-fashion", type=int, default=32)
    p.add_argument("--hidden", default="512,256")
    p.add_argument("--latent-bits", type=int, default=12)
    p.add_argument(
        "--lanes-digits",
        default="auto,1,8,full",
        help="comma-separated rANS lane counts to measure on digits ('auto' = the coder's "
        "default, 'full' = x_dim)",
    )
    p.add_argument("--lanes-fashion", default="auto,112,full", help="the same for Fashion-MNIST")
    p.add_argument(
        "--sizes-digits",
        default="25,50,100,200",
        help="first-n subsets of the digits test images coded with the default lanes ('' = none)",
    )
    p.add_argument("--sizes-fashion", default="30,100,300,1000", help="the same for Fashion-MNIST")
    p.add_argument(
        "--elbo-samples",
        type=int,
        default=None,
        help="draws per image for the -ELBO (default: 100 on digits, 20 on Fashion-MNIST)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="outputs/bits_back", help="folder for trained models")
    p.add_argument("--out", default="benchmarks/results/bits_back.json")
    return p.parse_args(argv)


def get_model(name, data, args):
    z_dim = args.z_dim_digits if name == "digits" else args.z_dim_fashion
    epochs = args.epochs_digits if name == "digits" else args.epochs_fashion
    hidden = [int(h) for h in args.hidden.split(",")]
    settings = {"dataset": name, "z_dim": z_dim, "epochs": epochs, "hidden": hidden}
    settings["seed"] = args.seed
    path = Path(args.cache) / f"{name}-z{z_dim}-e{epochs}-s{args.seed}.pt" if args.cache else None
    if path is not None and path.is_file():
        model, guide, meta = load_vae(path)
        if meta.get("settings") == settings:
            print(f"{name}: loaded {path}")
            return model, guide, meta
    t0 = time.perf_counter()
    model, guide, result = train_vae(
        data.x_train, z_dim, hidden_dims=hidden, epochs=epochs, seed=args.seed
    )
    meta = {
        "settings": settings,
        "train_seconds": time.perf_counter() - t0,
        "train_elbo_last_epoch": result.history["train_elbo"][-1],
    }
    print(f"{name}: trained {epochs} epochs in {meta['train_seconds']:.0f} s")
    if path is not None:
        save_vae(path, model, guide, hidden, meta)
    return model, guide, meta


def baselines(bits: np.ndarray) -> dict:
    n_pixels = bits.size
    layouts = {"packed": np.packbits(bits.reshape(-1)).tobytes(), "bytes": bits.tobytes()}
    out = {}
    for layout, raw in layouts.items():
        for name, compress in BASELINES.items():
            t0 = time.perf_counter()
            blob = compress(raw)
            seconds = time.perf_counter() - t0
            out[f"{name}_{layout}"] = {
                "bytes": len(blob),
                "bits_per_dim": 8 * len(blob) / n_pixels,
                "encode_seconds": seconds,
            }
    return out


def code(model, guide, x, lanes, label, neg_elbo, args):
    """Compress and decompress ``x`` with ``lanes`` (None: the default); rates and times."""
    n, d = x.shape
    coder = BitsBackCoder(model, guide, latent_bits=args.latent_bits, lanes=lanes)
    estimate = coder.estimate_bits(x)
    t0, c0 = time.perf_counter(), time.process_time()
    blob = coder.encode(x)
    enc_s, enc_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    decoded = coder.decode_values(blob)
    dec_s, dec_cpu = time.perf_counter() - t0, time.process_time() - c0
    exact = bool(np.array_equal(decoded, x.double().numpy()))
    stats = coder.last_stats
    neg_elbo_bits = neg_elbo.sum().item() / math.log(2)
    neg_elbo_bpd = neg_elbo_bits / (n * d)
    run = {
        "lanes_option": label,
        "exact_round_trip": exact,
        **stats.as_dict(),
        "estimated_bits": estimate,
        "neg_elbo_bits": neg_elbo_bits,
        "neg_elbo_plus_header_bits": neg_elbo_bits + stats.header_bits,
        "encode_seconds": enc_s,
        "decode_seconds": dec_s,
        "encode_cpu_seconds": enc_cpu,
        "decode_cpu_seconds": dec_cpu,
        "encode_images_per_s": n / enc_s,
        "decode_images_per_s": n / dec_s,
        "encode_kpixels_per_s": n * d / enc_s / 1e3,
        "decode_kpixels_per_s": n * d / dec_s / 1e3,
        "total_vs_neg_elbo": stats.bits_per_dim / neg_elbo_bpd - 1,
        "total_vs_neg_elbo_plus_header": stats.total_bits / (neg_elbo_bits + stats.header_bits) - 1,
        "net_vs_neg_elbo": stats.net_bits_per_dim / neg_elbo_bpd - 1,
        "chain_vs_neg_elbo": stats.chain_bits_per_dim / neg_elbo_bpd - 1,
    }
    print(
        f"  n={n} lanes={label}({stats.lanes}): total {stats.bits_per_dim:.4f} "
        f"({run['total_vs_neg_elbo_plus_header']:+.2%} vs -ELBO + header), net "
        f"{stats.net_bits_per_dim:.4f}, chain {stats.chain_bits_per_dim:.4f} bits/dim (clean bits "
        f"{stats.clean_bits}); encode {n / enc_s:.0f} img/s ({n / enc_cpu:.0f}/CPU-s), decode "
        f"{n / dec_s:.0f} img/s ({n / dec_cpu:.0f}/CPU-s); exact={exact}"
    )
    return run


def run_dataset(name, args):
    data = load_dataset(name)
    model, guide, meta = get_model(name, data, args)
    x = binarize_data(data, seed=0).x_test[: args.n_test]
    n, d = x.shape
    elbo_samples = args.elbo_samples or (100 if name == "digits" else 20)
    with torch.no_grad():
        torch.manual_seed(args.seed)
        neg_elbo = -elbo(model, guide, x, num_samples=elbo_samples)
    neg_elbo_bpd = neg_elbo.mean().item() / (d * math.log(2))
    neg_elbo_se = neg_elbo.std().item() / math.sqrt(n) / (d * math.log(2))
    print(f"{name}: {n} test images of {d} pixels; -ELBO {neg_elbo_bpd:.4f} bits/dim")
    runs = []
    lane_list = args.lanes_digits if name == "digits" else args.lanes_fashion
    for label in lane_list.split(","):
        lanes = None if label == "auto" else d if label == "full" else int(label)
        runs.append(code(model, guide, x, lanes, label, neg_elbo, args))
    sweep = []
    sizes = args.sizes_digits if name == "digits" else args.sizes_fashion
    if sizes:
        for size in [int(v) for v in sizes.split(",")]:
            sweep.append(code(model, guide, x[:size], None, "auto", neg_elbo[:size], args))
    base = baselines(x.numpy().astype(np.uint8))
    for key, value in base.items():
        print(f"  {key:12s} {value['bits_per_dim']:.4f} bits/dim ({value['encode_seconds']:.2f} s)")
    return {
        "dataset": name,
        "n_test": n,
        "x_dim": d,
        "binarization": "pyrovi.data.binarize_data(seed=0), method='sample' (test split)",
        "model": {
            "vae": f"MLP VAE, Bernoulli likelihood, hidden {args.hidden}, z_dim "
            f"{meta['settings']['z_dim']}, AmortizedNormal guide",
            **meta,
        },
        "latent_bits": args.latent_bits,
        "elbo_samples": elbo_samples,
        "neg_elbo_bits_per_dim": neg_elbo_bpd,
        "neg_elbo_bits_per_dim_se": neg_elbo_se,
        "neg_elbo_nats_per_image": neg_elbo.mean().item(),
        "bits_back": runs,
        "bits_back_by_size": sweep,
        "baselines": base,
        "beats_all_baselines": {
            f"lanes={r['lanes_option']}({r['lanes']})": bool(
                all(r["bits_per_dim"] < v["bits_per_dim"] for v in base.values())
            )
            for r in runs
        },
    }


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results = [run_dataset(name, args) for name in args.datasets.split(",")]
    out = {
        "benchmark": "bits_back",
        "started_utc": started,
        "wall_seconds": time.perf_counter() - t0,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "args": vars(args),
        "results": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
