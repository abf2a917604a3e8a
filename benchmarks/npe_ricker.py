#!/usr/bin/env python
"""Ricker model at the reference truth: NPE vs rejection ABC at 10⁴ and 10⁵ simulations.

For each budget this runs ``examples/ricker.py`` (same simulations for both methods, Wood's 13
summary statistics, an observed series simulated at (log r, σ, φ) = (3.8, 0.3, 10) with seed 1)
and collects, for NPE and ABC, the posterior mean, sd and 90% central interval of each parameter,
the wall times, and the SBC uniformity p-values (χ² on rank histograms over ``--sbc-tests`` fresh
simulations; ABC reuses its simulation bank for every test data set). ABC accepts 100 draws at
every budget (quantile 100 / N) unless ``--abc-accept`` says otherwise.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/npe_ricker.py                 # 10⁴ and 10⁵
    OMP_WAIT_POLICY=PASSIVE python benchmarks/npe_ricker.py --budgets 10000

Results are merged into ``benchmarks/results/npe_ricker.json`` (one entry per budget).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent


def load_example():
    path = ROOT.parent / "examples" / "ricker.py"
    spec = importlib.util.spec_from_file_location("pyrovi_example_ricker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budgets", default="10000,100000")
    p.add_argument("--abc-accept", type=int, default=100, help="ABC draws kept per budget")
    p.add_argument("--sbc-tests", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="extra example arguments, space separated")
    p.add_argument("--out", default=str(ROOT / "results" / "npe_ricker.json"))
    args = p.parse_args(argv)
    example = load_example()
    rows = {}
    for budget in (int(b) for b in args.budgets.split(",")):
        quantile = args.abc_accept / budget
        metrics = example.main(
            [
                "--num-simulations",
                str(budget),
                "--abc-quantile",
                str(quantile),
                "--sbc-tests",
                str(args.sbc_tests),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
                "--no-progress",
                "--out",
                f"outputs/ricker_bench_{budget}",
                *args.extra.split(),
            ]
        )
        metrics.pop("y_obs")
        metrics["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        metrics.update(
            torch=torch.__version__,
            python=platform.python_version(),
            cpu_count=os.cpu_count(),
            load_average_at_end=os.getloadavg(),
        )
        rows[str(budget)] = metrics
    if args.out:
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.update(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
