#!/usr/bin/env python
"""Training throughput (images/s) of ``fit`` on 1 and on 2 CPU processes (gloo).

The VAE of ``examples/vae.py`` (MLP 784-512-256, z = 32, Bernoulli) on the first ``--images``
Fashion-MNIST training images, dynamically binarized, global batch ``--batch-size``, Adam. Each
configuration runs ``fit(..., distributed=True)`` in ``--processes`` spawned processes with one
torch thread each (the 1-process run uses the same code path with a world of 1) for ``--epochs``
epochs; throughput = images per epoch / median epoch time of the epochs after the first. The
configurations alternate for ``--repeats`` rounds and the median over rounds is reported.

On a 2-core machine, 2 processes can at best double the throughput of 1; the all-reduce of
~0.55 M parameters per step is the main cost added.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/distributed_throughput.py     # ~4 min

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
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent


def _worker(rank, world, port, args, out):
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    import pyro
    import torch.distributed as dist

    from pyrovi.data import DynamicBinarization, load_dataset
    from pyrovi.guides import AmortizedNormal
    from pyrovi.infer import fit
    from pyrovi.models import VAE

    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
    )
    data = load_dataset("fashion-mnist", args.data_dir)
    x = data.x_train[: args.images]
    pyro.set_rng_seed(0)
    model = VAE(784, 32, hidden_dims=(512, 256))
    guide = AmortizedNormal(784, 32, hidden_dims=(512, 256))
    result = fit(
        model,
        guide,
        x,
        epochs=args.epochs,
        batch_size=args.batch_size,
        transform=DynamicBinarization(),
        seed=0,
        progress=False,
        distributed=True,
    )
    if rank == 0:
        times = result.history["epoch_time"][1:]
        Path(out).write_text(json.dumps({"epoch_times": times, "images": len(x)}))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(world: int, args, out: Path) -> float:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world, port, args, str(out))) for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a worker failed: exit codes {[p.exitcode for p in procs]}")
    rec = json.loads(out.read_text())
    return rec["images"] / statistics.median(rec["epoch_times"])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "results" / "distributed_throughput.json"))
    args = parser.parse_args(argv)
    worlds = [int(w) for w in args.processes.split(",")]
    rates: dict[int, list[float]] = {w: [] for w in worlds}
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"pyrovi_dist_{os.getpid()}.json"
    for rep in range(args.repeats):
        for w in worlds if rep % 2 == 0 else worlds[::-1]:
            rates[w].append(run(w, args, tmp))
            print(f"repeat {rep}: {w} process(es) {rates[w][-1]:.0f} images/s", flush=True)
    med = {w: statistics.median(v) for w, v in rates.items()}
    report = {
        "settings": vars(args),
        "images_per_s": {str(w): v for w, v in med.items()},
        "all_images_per_s": {str(w): v for w, v in rates.items()},
        "speedup": {str(w): med[w] / med[worlds[0]] for w in worlds},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "threads_per_process": 1,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    }
    for w in worlds:
        print(f"{w} process(es): {med[w]:.0f} images/s (x{report['speedup'][str(w)]:.2f})")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
