#!/usr/bin/env python
"""Training throughput (images/s) of ``fit`` on 1 and 2 CPU processes, against plain PyTorch DDP.

The VAE of ``examples/vae.py`` (MLP 784-512-256, z = 32, Bernoulli) on the first ``--images``
Fashion-MNIST training images, dynamically binarized, Adam (``default_adam``: the fused kernel),
one torch thread per process, gloo. For each global batch size in ``--batch-sizes`` these
configurations run, each in freshly spawned processes, for ``--epochs`` epochs:

``fit``         ``fit(...)`` in one process, not distributed: the baseline;
``fit_dist``    ``fit(..., distributed=True)`` in 1 and in 2 processes (each takes half of every
                global batch; one all-reduce of all gradients per step);
``ddp``         the same networks and loss written in plain PyTorch (``PlainVAE`` of
                ``vae_overhead.py``) wrapped in ``torch.nn.parallel.DistributedDataParallel``, in 1
                and 2 processes, each process taking its half of every global batch.

Throughput = images per epoch / median epoch time of the epochs after the first. The
configurations run in a rotating order for ``--repeats`` rounds; the median over rounds is
reported, with each configuration's ratio to ``fit`` on one process at the same batch size.

On a 2-core machine 2 processes can at best double the throughput of 1. What they add is the
all-reduce of the ~1.1 M gradients (4.4 MB) per step, a fixed cost that larger batches amortize.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/distributed_throughput.py     # ~6 min

Writes ``benchmarks/results/distributed_throughput.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
CONFIGS = {"fit": (1,), "fit_dist": None, "ddp": None}  # None: every --processes count


def _train_fit(x, args, batch_size: int, distributed: bool) -> list[float]:
    import pyro

    from pyrovi.data import DynamicBinarization
    from pyrovi.guides import AmortizedNormal
    from pyrovi.infer import fit
    from pyrovi.models import VAE

    pyro.set_rng_seed(0)
    model = VAE(784, args.z_dim, hidden_dims=(512, 256))
    guide = AmortizedNormal(784, args.z_dim, hidden_dims=(512, 256))
    result = fit(
        model,
        guide,
        x,
        epochs=args.epochs,
        batch_size=batch_size,
        transform=DynamicBinarization(),
        seed=0,
        progress=False,
        distributed=distributed,
    )
    return result.history["epoch_time"]


def _train_ddp(x, args, batch_size: int, rank: int, world: int) -> list[float]:
    sys.path.insert(0, str(ROOT))
    from vae_overhead import PlainVAE

    from pyrovi.data import DynamicBinarization
    from pyrovi.infer import default_adam
    from pyrovi.infer.distributed import shard_bounds

    class Loss(torch.nn.Module):  # DDP synchronizes the gradients of what forward computes
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, xb, scale):
            return self.vae.loss(xb, scale)

    torch.manual_seed(rank)
    net = torch.nn.parallel.DistributedDataParallel(Loss(PlainVAE(784, args.z_dim)))
    opt = default_adam(net.parameters(), 1e-3)
    binarize = DynamicBinarization()
    generator = torch.Generator().manual_seed(0)
    n = len(x)
    times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            a, b = shard_bounds(lo, hi, rank, world)
            xb = binarize(x[order[a:b]])
            opt.zero_grad(set_to_none=True)
            # DDP averages gradients over processes: scale each shard's sum by N / shard size
            net(xb, n / (b - a)).backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def _worker(kind: str, rank: int, world: int, port: int, batch_size: int, args, out: str):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    from pyrovi.data import load_dataset

    x = load_dataset("fashion-mnist", args.data_dir).x_train[: args.images]
    grouped = kind != "fit"
    if grouped:
        dist.init_process_group(
            "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
        )
    if kind == "ddp":
        times = _train_ddp(x, args, batch_size, rank, world)
    else:
        times = _train_fit(x, args, batch_size, distributed=grouped)
    if rank == 0:
        Path(out).write_text(json.dumps({"epoch_times": times, "images": len(x)}))
    if grouped:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(kind: str, world: int, batch_size: int, args, out: Path) -> float:
    """Images per second of one configuration (median epoch after the first)."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(kind, r, world, port, batch_size, args, str(out)))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(
            f"{kind} x{world}: a worker failed, exit codes {[p.exitcode for p in procs]}"
        )
    rec = json.loads(out.read_text())
    return rec["images"] / statistics.median(rec["epoch_times"][1:])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"subset of {list(CONFIGS)}")
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--z-dim", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "results" / "distributed_throughput.json"))
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    worlds = [int(w) for w in args.processes.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    runs = [
        (kind, w)
        for kind in args.configs.split(",")
        for w in (CONFIGS[kind] if CONFIGS[kind] is not None else worlds)
    ]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pyrovi_dist_{os.getpid()}.json"
    rates: dict[str, dict[str, list[float]]] = {
        str(b): {f"{k}x{w}": [] for k, w in runs} for b in batch_sizes
    }
    for rep in range(args.repeats):
        shift = rep % len(runs)
        for b in batch_sizes:
            for kind, w in runs[shift:] + runs[:shift]:
                rate = run(kind, w, b, args, tmp)
                rates[str(b)][f"{kind}x{w}"].append(rate)
                print(f"repeat {rep} batch {b}: {kind} x{w} {rate:.0f} images/s", flush=True)
    summary = {}
    for b, per in rates.items():
        med = {k: statistics.median(v) for k, v in per.items()}
        base = med.get("fitx1")
        summary[b] = {
            k: {"images_per_s": v, "ratio_to_fit_1_process": v / base if base else None}
            for k, v in med.items()
        }
    report = {
        "settings": vars(args),
        "summary": summary,
        "all_images_per_s": rates,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads_per_process": 1,
            "load_average_at_end": os.getloadavg(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    }
    print(f"\n{'batch':>6} {'configuration':>14} {'images/s':>10} {'vs fit x1':>10}")
    for b, per in summary.items():
        for k, v in per.items():
            ratio = v["ratio_to_fit_1_process"]
            print(f"{b:>6} {k:>14} {v['images_per_s']:>10.0f} {ratio or float('nan'):>10.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
