#!/usr/bin/env python
"""Held-out NLL bound of a DDPM on 2-D toy data, beside the flow densities on the same data.

For each data set (two moons, three rings, eight Gaussians, drawn exactly as
``benchmarks/flow_density_nll.py`` draws them: same seed, 5000 training and 5000 test points)
and each configuration (training loss × variance schedule), ``examples/diffusion_2d.py`` trains a
:class:`pyrovi.models.DDPM` and reports the held-out ``−ELBO`` in nats per point (an upper bound on
the DDPM's NLL, every step's KL in closed form). The table sets it beside the true density's NLL
and the flows' held-out NLLs from ``benchmarks/results/flow_density_nll.json``.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/diffusion_2d.py            # ~10-15 min, 1 thread
    python benchmarks/diffusion_2d.py --datasets moons --configs hybrid-linear --steps 500 --out ''

Writes ``benchmarks/results/diffusion_2d.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
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

ROOT = Path(__file__).resolve().parent
CONFIGS = ("hybrid-linear", "elbo-linear", "hybrid-cosine", "elbo-cosine", "simple-linear")


def load_example():
    path = ROOT.parent / "examples" / "diffusion_2d.py"
    spec = importlib.util.spec_from_file_location("diffusion_2d_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plot_results(results: dict, path: Path) -> None:
    """Bar chart: DDPM NLL bounds beside the flows' NLLs and the true NLL, per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (name, e) in zip(axes[0], results.items()):
        labels = [f"DDPM {c}" for c in e["ddpm"]] + list(e["flows_test_nll"] or {})
        values = [v["test_nll_bound"] for v in e["ddpm"].values()]
        values += list((e["flows_test_nll"] or {}).values())
        colors = ["C0"] * len(e["ddpm"]) + ["C1"] * (len(labels) - len(e["ddpm"]))
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.axvline(e["true_nll"], color="k", ls="--", label=f"true NLL {e['true_nll']:.3f}")
        ax.set_xlim(min(values + [e["true_nll"]]) - 0.2, max(values) + 0.1)
        ax.set(title=f"{name}: held-out NLL (DDPM: −ELBO bound)", xlabel="nats per point")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="moons,rings,8gaussians")
    p.add_argument("--configs", default="hybrid-linear,elbo-linear,hybrid-cosine")
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "results" / "diffusion_2d.json"))
    p.add_argument("--plot", default="outputs/diffusion_2d_benchmark/nll.png", help="'' for none")
    p.add_argument("--plot-only", action="store_true", help="plot the saved --out JSON and exit")
    args = p.parse_args(argv)
    if args.plot_only:
        report = json.loads(Path(args.out).read_text())
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_results(report["results"], Path(args.plot))
        print(f"wrote {args.plot}")
        return report
    example = load_example()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise SystemExit(f"unknown configs {bad}; choose from {CONFIGS}")
    torch.set_num_threads(args.threads)
    results: dict = {}
    t_start = time.perf_counter()
    for name in datasets:
        entry: dict = {"ddpm": {}}
        for config in configs:
            loss, schedule = config.split("-")
            pyro.clear_param_store()
            argv_ex = [
                "--dataset", name, "--loss", loss, "--schedule", schedule,
                "--T", str(args.T), "--steps", str(args.steps), "--hidden", str(args.hidden),
                "--seed", str(args.seed), "--threads", str(args.threads), "--no-plot",
                "--out", str(Path("outputs") / "diffusion_2d_benchmark" / name / config),
            ]  # fmt: skip
            m = example.main(argv_ex)
            entry["true_nll"] = m["true_nll"]
            entry["flows_test_nll"] = m["flows_test_nll"]
            entry["ddpm"][config] = {
                k: m[k]
                for k in (
                    "test_nll_bound",
                    "test_nll_bound_stderr",
                    "test_bits_per_dim",
                    "excess_nll_bound",
                    "train_seconds",
                    "ms_per_step",
                )
            }
        results[name] = entry
    print(f"\n{'data set':<11} {'true':>6} " + " ".join(f"{c:>14}" for c in configs) + "  flows")
    for name, e in results.items():
        row = " ".join(f"{e['ddpm'][c]['test_nll_bound']:>14.3f}" for c in configs)
        flows = e["flows_test_nll"] or {}
        fl = ", ".join(f"{k} {v:.3f}" for k, v in sorted(flows.items(), key=lambda kv: kv[1]))
        print(f"{name:<11} {e['true_nll']:>6.3f} {row}  {fl}")
    report = {
        "settings": {**vars(args), "n_train": 5000, "n_test": 5000, "batch_size": 256},
        "results": results,
        "seconds": time.perf_counter() - t_start,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "pyrovi": pyrovi.__version__,
            "threads": torch.get_num_threads(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["benchmarks/diffusion_2d.py", *(argv or sys.argv[1:])]),
        },
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_results(results, Path(args.plot))
        print(f"wrote {args.plot}")
    return report


if __name__ == "__main__":
    main()
