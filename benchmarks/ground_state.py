#!/usr/bin/env python
"""Ground-state energies learned by ``examples/ground_state.py`` against exact/reference values.

Each preset trains a neural drift with ``SVI(model, guide, ClippedAdam, Trace_ELBO())`` (the
Feynman–Kac model, the drift-SDE guide, persistent walkers, boundary-corrected loss) for a wall
time budget, then estimates the energy with independent walkers at ``dt`` and ``dt/2`` and
extrapolates (Richardson). Targets (issue 5):

============  =================================  =============================
preset        exact / reference                  target
============  =================================  =============================
harmonic3d    1.5                                within 0.2 %
hydrogen      −0.5                               within 2 mHa
bosons_g3     2.312 (Mujal et al. 2017)          within 0.5 %
bosons_g6     2.484 (Mujal et al. 2017)          within 0.5 %
helium        −2.903724                          within 5 mHa
h2            −1.174476 (R = 1.401)              within 2 mHa
============  =================================  =============================

``helium_small_dt`` re-evaluates the trained helium drift (``drift.pt``) at smaller steps.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ground_state.py --preset helium
    python benchmarks/ground_state.py --preset harmonic3d -- --minutes 1   # extra example args

Writes ``benchmarks/results/ground_state_<preset>.json`` (the example's metrics plus the command,
the preset and the wall time); one thread by default (``--threads`` of the example).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRESETS: dict[str, list[str]] = {
    "harmonic3d": (
        "--system harmonic --dim 3 --walkers 512 --horizon 1 --dt 0.05 --steps 6000 --minutes 7 "
        "--lr 1e-2 --final-lr 3e-4 --eval-walkers 4000 --eval-paths 40"
    ).split(),
    "hydrogen": (
        "--system hydrogen --walkers 512 --horizon 0.5 --dt 0.01 --steps 3000 --minutes 4 "
        "--lr 3e-4 --final-lr 3e-5 --eval-dt 0.002 --eval-horizon 0.2 --eval-walkers 4000 "
        "--eval-paths 40"
    ).split(),
    "bosons_g3": (
        "--system bosons --g 3 --s 0.5 --walkers 512 --horizon 1 --dt 0.02 --steps 8000 "
        "--minutes 7 --lr 3e-3 --final-lr 2e-4 --eval-dt 0.02 --eval-walkers 4000 --eval-paths 30"
    ).split(),
    "bosons_g6": (
        "--system bosons --g 6 --s 0.5 --walkers 512 --horizon 1 --dt 0.02 --steps 8000 "
        "--minutes 7 --lr 3e-3 --final-lr 2e-4 --eval-dt 0.02 --eval-walkers 4000 --eval-paths 30"
    ).split(),
    "helium": (
        "--system helium --walkers 512 --horizon 0.5 --dt 0.01 --steps 8000 --minutes 12 "
        "--lr 2e-3 --final-lr 2e-4 --eval-dt 0.004 --eval-horizon 0.2 --eval-walkers 4000 "
        "--eval-paths 40"
    ).split(),
    # the helium drift trained above, evaluated at smaller steps (the Z = 2 cusp makes the
    # Euler-Maruyama bias large at dt = 0.004): needs outputs/ground_state_helium/drift.pt
    "helium_small_dt": (
        "--system helium --load-drift outputs/ground_state_helium/drift.pt --no-train "
        "--horizon 0.2 --dt 0.01 --eval-dt 0.001 --eval-horizon 0.2 --eval-walkers 2000 "
        "--eval-paths 15 --burn-in 10"
    ).split(),
    "h2": (
        "--system h2 --walkers 512 --horizon 0.5 --dt 0.01 --steps 8000 --minutes 12 "
        "--lr 2e-3 --final-lr 2e-4 --eval-dt 0.004 --eval-horizon 0.2 --eval-walkers 4000 "
        "--eval-paths 40"
    ).split(),
}


def _load_example():
    path = ROOT / "examples" / "ground_state.py"
    spec = importlib.util.spec_from_file_location("pyrovi_example_ground_state", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    """Run one preset; returns what was saved."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--out", default=None, help="JSON path (default results/ground_state_<preset>)")
    p.add_argument("extra", nargs="*", help="extra arguments for the example (after --)")
    args = p.parse_args(argv)
    example_args = [*PRESETS[args.preset], *args.extra]
    out_dir = ROOT / "outputs" / f"ground_state_{args.preset}"
    start = time.perf_counter()
    metrics = _load_example().main([*example_args, "--out", str(out_dir), "--no-progress"])
    wall = time.perf_counter() - start
    history = metrics.pop("history")
    stride = max(1, len(history["step"]) // 200)
    result = {
        "preset": args.preset,
        "command": "python benchmarks/ground_state.py --preset "
        + args.preset
        + ("" if not args.extra else " -- " + shlex.join(args.extra)),
        "example_args": example_args,
        "wall_s": wall,
        **metrics,
        "history": {k: v[::stride] for k, v in history.items()},
    }
    exact = metrics["exact_energy"]
    if exact is not None:
        ext = metrics["extrapolated"]
        result["relative_error"] = (ext["energy"] - exact) / abs(exact)
        print(
            f"{args.preset}: {ext['energy']:.5f} ± {ext['stderr']:.5f} vs {exact} "
            f"(error {1000 * (ext['energy'] - exact):+.2f} m, "
            f"{100 * result['relative_error']:+.3f}%), wall {wall:.0f}s"
        )
    path = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / (f"ground_state_{args.preset}.json")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
