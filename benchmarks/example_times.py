#!/usr/bin/env python
"""Wall time and headline figures of every example script with its default options.

Runs ``python examples/<name>.py`` (plus the extra arguments of each entry below) one after
another in fresh processes, each writing to its own folder under ``--work`` (default: a
temporary folder), and records the wall time (start of the interpreter to exit, so import time
counts), the exit code, the last lines of output and the example's ``metrics.json``. The times
are what ``--help`` and the READMEs state, so run it on a quiet machine: nothing else using the
CPU cores.

::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/example_times.py          # all, ~40 min on 2 cores
    python benchmarks/example_times.py --only vae,cvae                   # some of them
    python benchmarks/example_times.py --list                            # what would run

Writes ``benchmarks/results/example_times.json`` (``--out``); with ``--only`` the entries run
now replace those of the same name in an existing file and the others are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent

# name -> (script, extra arguments). Defaults everywhere; a second entry where an example has
# modes whose run times differ a lot.
RUNS: dict[str, tuple[str, list[str]]] = {
    "vae": ("vae.py", []),
    "cvae": ("cvae.py", []),
    "cvae-quadrant": ("cvae.py", ["--condition", "quadrant"]),
    "flow_vae": ("flow_vae.py", []),
    "flow_density": ("flow_density.py", []),
    "latent_sde": ("latent_sde.py", []),
    "diagnostics": ("diagnostics.py", []),
    "ground_state": ("ground_state.py", []),
    "ricker": ("ricker.py", []),
    "ricker_hierarchical": ("ricker_hierarchical.py", []),
    "diffusion_2d": ("diffusion_2d.py", []),
    "transition_paths": ("transition_paths.py", []),
    "model_families": ("model_families.py", []),
    "compress": ("compress.py", []),
}


def _headline(value):
    """``value`` without long lists (per-epoch histories, per-datapoint values): the figures."""
    if isinstance(value, dict):
        return {k: _headline(v) for k, v in value.items() if not _long(v)}
    if isinstance(value, list):
        return [_headline(v) for v in value]
    return value


def _long(value) -> bool:
    return isinstance(value, list) and len(value) > 20


def run_one(name: str, work: Path, timeout: float) -> dict:
    """Run one example in a fresh interpreter; its wall time, exit code, output and metrics."""
    script, extra = RUNS[name]
    out = work / name
    argv = [sys.executable, str(REPO / "examples" / script), *extra, "--out", str(out)]
    env = dict(os.environ, MPLBACKEND="Agg")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:
        code, stdout, stderr = None, str(err.stdout or ""), f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - start
    metrics_file = out / "metrics.json"
    metrics = _headline(json.loads(metrics_file.read_text())) if metrics_file.exists() else None
    command = " ".join(["python", f"examples/{script}", *extra])
    return {
        "command": command,
        "wall_s": round(wall, 1),
        "exit_code": code,
        "stdout_tail": stdout.splitlines()[-25:],
        "stderr_tail": stderr.splitlines()[-10:] if code else [],
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the examples; returns the report written to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated names (default: all)")
    p.add_argument("--list", action="store_true", help="print the names and commands and exit")
    p.add_argument("--work", default=None, help="folder for the examples' outputs (default: temp)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per example")
    p.add_argument(
        "--out", default=str(ROOT / "results" / "example_times.json"), help="JSON file to write"
    )
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        p.error(f"unknown example(s) {unknown}; choose from {sorted(RUNS)}")
    if args.list:
        for name in names:
            script, extra = RUNS[name]
            print(f"{name}: python examples/{script} {' '.join(extra)}".rstrip())
        return {}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pyrovi-examples-"))
    out = Path(args.out)
    report = json.loads(out.read_text()) if args.only and out.exists() else {"runs": {}}
    report["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for name in names:
        print(f"{name} ...", flush=True)
        result = run_one(name, work, args.timeout)
        report["runs"][name] = result
        status = "ok" if result["exit_code"] == 0 else f"FAILED ({result['exit_code']})"
        print(f"{name}: {result['wall_s']:.0f} s, {status}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after each run: nothing is lost
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
