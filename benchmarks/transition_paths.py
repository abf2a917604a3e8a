#!/usr/bin/env python
"""Transition-path statistics of a learned backward SDE against direct simulation.

Runs ``examples/transition_paths.py`` (see its docstring for the set-up) for the 1-D double well
and for the Müller–Brown surface, and saves the measured statistics:

* ``P(z(t_end) in B)``: brute-force fraction against the importance-sampling estimate from the
  learned backward SDE;
* mean path, reactive-segment durations (and, in 1-D, where reactive segments spend time) of the
  inferred paths against the direct simulation conditioned on the same end states;
* from a long direct simulation: mean first-passage time and (1-D) the committor, beside the
  continuous-time 1-D formulas.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/transition_paths.py                 # double well
    OMP_WAIT_POLICY=PASSIVE python benchmarks/transition_paths.py --potential muller-brown

Writes ``benchmarks/results/transition_paths.json`` (double well) or
``benchmarks/results/transition_paths_muller_brown.json``; the figure goes to
``outputs/transition_paths_benchmark/<potential>/transition_paths.png``.
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
#: Training settings per potential (the Müller–Brown paths are 2-D and 120 steps long).
SETTINGS = {
    "double-well": ["--steps", "1500", "--batch-size", "256", "--particles", "2"],
    "muller-brown": [
        "--steps", "1000", "--batch-size", "64", "--particles", "1", "--num-steps", "120",
        "--num-direct", "400000", "--num-chains", "500", "--long-time", "200",
        "--is-points", "256", "--is-samples", "128",
    ],
}  # fmt: skip


def load_example():
    path = ROOT.parent / "examples" / "transition_paths.py"
    spec = importlib.util.spec_from_file_location("transition_paths_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--potential", choices=tuple(SETTINGS), default="double-well")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    p.add_argument("extra", nargs="*", help="further example options after --")
    args = p.parse_args(argv)
    name = "transition_paths" + ("" if args.potential == "double-well" else "_muller_brown")
    out = Path(args.out) if args.out is not None else ROOT / "results" / f"{name}.json"
    work = Path("outputs") / "transition_paths_benchmark" / args.potential
    example_argv = ["--potential", args.potential, *SETTINGS[args.potential], *args.extra]
    example_argv += ["--seed", str(args.seed), "--threads", str(args.threads), "--out", str(work)]
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    metrics = load_example().main(example_argv)
    report = {
        "example_argv": example_argv,
        "metrics": metrics,
        "seconds": time.perf_counter() - t0,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "pyrovi": pyrovi.__version__,
            "threads": torch.get_num_threads(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["benchmarks/transition_paths.py", *(argv or sys.argv[1:])]),
        },
    }
    if str(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out} (figure: {work / 'transition_paths.png'})")
    return report


if __name__ == "__main__":
    main()
