#!/usr/bin/env python
"""Held-out NLL of 2-D toy densities fitted by maximum likelihood with ``FlowDensity``.

For each data set (two moons, three rings, eight Gaussians; the samplers and their exact
log-densities are those of ``examples/flow_density.py``) and each flow kind, a
:class:`pyrovi.models.FlowDensity` with ``--num-layers`` layers (conditioner width
``--hidden-features``) is fitted with ``fit(model, None, x_train)`` (Adam, batch 256) and scored on
held-out samples. The table gives the held-out NLL in nats per point, the NLL of the true density
on the same points (the data's entropy, up to Monte Carlo error) and the excess
``NLL(flow) − NLL(true)`` — an estimate of KL(p ‖ p_flow) ≥ 0. All kinds see the same data, the
same seed and the same number of optimizer steps.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/flow_density_nll.py          # ~3-5 min, 1 thread
    python benchmarks/flow_density_nll.py --flows maf,nsf --datasets moons --epochs 5 --out ''

Writes ``benchmarks/results/flow_density_nll.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

import pyrovi  # noqa: E402
from pyrovi.data.toy2d import TOY_DATASETS  # noqa: E402
from pyrovi.infer import fit  # noqa: E402
from pyrovi.models import FlowDensity  # noqa: E402

ROOT = Path(__file__).resolve().parent
FLOWS = ("maf", "nsf", "realnvp", "iaf", "planar", "radial")


def load_toy_data():
    """The toy 2-D data sets with their exact log-densities (:mod:`pyrovi.data.toy2d`)."""
    return TOY_DATASETS


def build_parser(datasets) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Held-out NLL of FlowDensity on 2-D toy data, per flow kind.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--flows", default=",".join(FLOWS), help=f"comma list of {FLOWS}")
    p.add_argument(
        "--datasets", default=",".join(datasets), help=f"comma list of {tuple(datasets)}"
    )
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=50, help="20 steps of 256 per epoch")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--hidden-features", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "results" / "flow_density_nll.json"))
    return p


def main(argv: list[str] | None = None) -> dict:
    datasets = load_toy_data()
    args = build_parser(datasets).parse_args(argv)
    flows = [f.strip() for f in args.flows.split(",") if f.strip()]
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [f for f in flows if f not in FLOWS] + [d for d in names if d not in datasets]
    if bad:
        raise SystemExit(f"unknown flows or data sets: {bad}")
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    t_start = time.perf_counter()
    for d_index, name in enumerate(names):
        sampler, true_log_prob = datasets[name]
        gen = torch.Generator().manual_seed(args.seed * 1000 + d_index)
        x_train, x_test = sampler(args.n_train, gen), sampler(args.n_test, gen)
        true_nll = -true_log_prob(x_test).mean().item()
        entry: dict = {"true_nll": true_nll, "flows": {}}
        print(f"[{name}] true density: held-out NLL {true_nll:.3f}", flush=True)
        for kind in flows:
            pyro.clear_param_store()
            pyro.set_rng_seed(args.seed)
            model = FlowDensity(
                2, flow=kind, num_layers=args.num_layers, hidden_features=args.hidden_features
            )
            error = None
            try:
                result = fit(
                    model,
                    None,
                    x_train,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=args.seed,
                    progress=False,
                )
            except Exception as err:  # record a failure (e.g. divergence) and go on
                error = f"{type(err).__name__}: {err}"
                result = None
            model.eval()
            with torch.no_grad():
                test_nll = -model.log_prob(x_test).mean().item()
                train_nll = -model.log_prob(x_train).mean().item()
            history = [] if result is None else [-v for v in result.history["train_elbo"]]
            entry["flows"][kind] = {
                "test_nll": test_nll,
                "train_nll": train_nll,
                "excess_nll": test_nll - true_nll,
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_seconds": None if result is None else result.timings["train_s"],
                "ms_per_step": None
                if result is None
                else 1000 * result.timings["train_s"] / max(1, result.steps),
                "train_nll_first_epochs": history[:3],
                "train_nll_last_epoch": history[-1] if history else None,
                "error": error,
            }
            e = entry["flows"][kind]
            print(
                f"[{name}] {kind:8s} held-out NLL {test_nll:8.3f} "
                f"(excess {test_nll - true_nll:+.3f}), train NLL {train_nll:.3f}, "
                f"{e['parameters']} parameters, "
                f"{e['train_seconds'] or float('nan'):.1f} s"
                + (f"  ERROR {error}" if error else ""),
                flush=True,
            )
        results[name] = entry

    print(f"\n{'held-out NLL':14s}" + "".join(f"{n:>12s}" for n in names))
    print(f"{'true density':14s}" + "".join(f"{results[n]['true_nll']:12.3f}" for n in names))
    for kind in flows:
        row = "".join(f"{results[n]['flows'][kind]['test_nll']:12.3f}" for n in names)
        print(f"{kind:14s}{row}")
    report = {
        "settings": {
            "flows": flows,
            "datasets": names,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "num_layers": args.num_layers,
            "hidden_features": args.hidden_features,
            "seed": args.seed,
            "threads": args.threads,
        },
        "results": results,
        "seconds": time.perf_counter() - t_start,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "pyrovi": pyrovi.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        },
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
