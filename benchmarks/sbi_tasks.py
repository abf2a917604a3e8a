#!/usr/bin/env python
"""NPE, TSNPE and NLE on the sbibm benchmark tasks: C2ST against the reference posteriors, beside
the published numbers, and wall time against the ``sbi`` package.

Protocol (Lueckmann et al. 2021): for each task, simulation budget and observation ``n`` of the
benchmark, ``--num-samples`` (10,000) posterior draws are compared with the task's 10,000
reference posterior samples by :func:`pyrovi.infer.c2st` (z-scored by the reference, MLP
classifier of two hidden layers of 10 D units, 5-fold cross-validation). 0.5 is perfect. Each
draw set is scored twice (``--c2st sbibm``, the default): with pyrovi's early stopping on a tenth
of each training fold (``c2st_per_obs``; seconds) and with sbibm's own classifier, trained without
early stopping for up to 10,000 epochs (``c2st_sbibm_per_obs``; minutes per observation when the
sets are close), the one behind the published numbers. The early-stopped classifier is the
sharper test: on the same draws it mostly scores higher (up to 0.045). ``--c2st fast`` skips the
second. The draws are kept under ``--samples-dir`` (git-ignored ``outputs/``).

* Tasks: ``pyrovi.models.sbi_task(name)`` — Pyro models of sbibm's Gaussian linear, SLCP,
  Gaussian mixture and Bernoulli GLM (summary statistics). The observations and the reference
  samples come from the sbibm wheel, downloaded from the package index into a cache
  (``~/.cache/pyrovi/sbibm``) at benchmark time and read with zipfile
  (``benchmarks/sbibm_reference.py``); nothing of it is committed or used by the tests.
* Methods (all MAF, 5 layers of 50 hidden units, identity embedding, batch 200, Adam 5e-4,
  10% validation, patience 20 — sbi's defaults):

  - ``npe``: ``NPE(...).train(budget)`` once per task and budget (amortized), then
    ``posterior(y_o).sample`` for every observation;
  - ``tsnpe``: for each observation, ``NPE(...).train_rounds(y_o, num_rounds, budget //
    num_rounds)`` (truncation at the 10⁻⁴ quantile of log q);
  - ``nle``: ``NLE(...).train(budget)`` once per task and budget, then ``posterior(y_o)`` by the
    batched ensemble sampler (100 chains, 300 warmup steps, thinning 10).

* Wall time against ``sbi`` (``--sbi-python``: the Python of a separate environment with sbi,
  e.g. ``/tmp/sbi_env/bin/python``; see ``benchmarks/sbi_side.py``): for the observations in
  ``--timing-observations``, pyrovi and sbi are run one after the other (``--repeats`` times,
  alternating) on the same simulations (NPE, NLE; TSNPE's first round), each on one thread, and
  the ratio of medians of total time (simulation + training + truncation + sampling of
  ``--num-samples``) is reported. sbi's draws are scored by C2ST too.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sbi_tasks.py --tasks gaussian_linear,slcp \\
        --budgets 1000,10000 --observations 1-10 --sbi-python /tmp/sbi_env/bin/python

Results are merged into ``benchmarks/results/sbi_tasks.json`` (task → method → budget), with the
published numbers of ``benchmarks/sbi_published.json`` beside them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sbibm_reference as ref  # noqa: E402

from pyrovi.infer import NLE, NPE, c2st  # noqa: E402
from pyrovi.models import sbi_task  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "sbi_tasks.json"
PUBLISHED = ROOT / "sbi_published.json"
METHODS = ("npe", "tsnpe", "nle")
FLOW = {"flow": "maf", "num_layers": 5, "hidden_features": 50}
MCMC = {"num_chains": 100, "warmup": 300, "thin": 10, "progress": False}
#: Training options of every method (``--batch-size``; the library's default batch is 200).
TRAIN: dict = {}
#: TSNPE's options beyond training (``--threshold-samples``).
TSNPE: dict = {}


def parse_observations(text: str) -> list[int]:
    """``"1-10"`` or ``"1,3,5"`` to a list of observation numbers in 1..10."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    bad = [n for n in out if not 1 <= n <= ref.NUM_OBSERVATIONS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"observations must be in 1..10, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default=",".join(ref.TASKS), help="comma-separated sbibm tasks")
    p.add_argument("--methods", default=",".join(METHODS), help="npe, tsnpe, nle")
    p.add_argument("--budgets", default="1000,10000", help="simulation budgets")
    p.add_argument("--observations", type=parse_observations, default=list(range(1, 11)))
    p.add_argument("--num-samples", type=int, default=10_000, help="posterior draws per obs")
    p.add_argument("--num-rounds", type=int, default=2, help="TSNPE rounds")
    p.add_argument(
        "--flow",
        choices=("maf", "nsf"),
        default="maf",
        help="flow of all methods (results of nsf are stored under '<method>_nsf')",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=200,
        help="training minibatch (results with another than 200 go under '<method>_b<size>')",
    )
    p.add_argument(
        "--lr-drops",
        type=int,
        default=0,
        help="restarts at lr / 5 after early stopping (train's lr_drops; results under '_d<n>')",
    )
    p.add_argument(
        "--c2st",
        choices=("sbibm", "fast"),
        default="sbibm",
        help="sbibm: score with the benchmark's classifier (no early stopping; minutes per "
        "observation when close) as well as the fast one; fast: early stopping only",
    )
    p.add_argument(
        "--samples-dir",
        default=str(ROOT.parent / "outputs" / "sbi_samples"),
        help="where the posterior draws are kept ('' to keep none)",
    )
    p.add_argument(
        "--thin",
        type=int,
        default=10,
        help="NLE sampler: ensemble steps between kept draws (results under 'nle_t<n>' "
        "with another than 10)",
    )
    p.add_argument(
        "--threshold-samples",
        type=int,
        default=10_000,
        help="TSNPE: posterior draws that set each round's truncation threshold (the library's "
        "default 10,000; the TSNPE paper used 100,000; results under '_s<n>' with another)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sbi-python", default=None, help="python of an environment with sbi")
    p.add_argument("--timing-observations", type=parse_observations, default=[1])
    p.add_argument("--repeats", type=int, default=1, help="alternating timing repeats")
    p.add_argument(
        "--timing-only", action="store_true", help="only the wall-time comparison (needs sbi)"
    )
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument(
        "--table", action="store_true", help="print the results file as markdown tables and exit"
    )
    return p


PUBLISHED_NAME = {"npe": "NPE", "tsnpe": "TSNPE", "nle": "NLE"}


def table(results: dict) -> str:
    """Markdown: mean C2ST per task, method and budget beside the published one, and the wall
    time against sbi."""
    published = results.get("published", {}).get("c2st", {})
    lines = [
        "C2ST: early-stopping classifier, or `fast / sbibm` where the draws were also scored "
        "by sbibm's classifier (no early stopping), the one behind the published numbers.",
        "",
        "| task | method | C2ST 10³ (published) | C2ST 10⁴ (published) | C2ST 10⁵ (published) "
        "| observations |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    timing_lines = [
        "| task | method | budget | pyrovi s | sbi s | ratio | repeats | C2ST pyrovi / sbi |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for task in ref.TASKS:
        for key, rows in results.get(task, {}).items():
            pub = published.get(task, {}).get(PUBLISHED_NAME[key.split("_")[0]]) or {}
            cells = []
            for budget in ("1000", "10000", "100000"):
                row = rows.get(budget, {})
                ours = f"{row['c2st_mean']:.3f}" if "c2st_mean" in row else "–"
                seen = len(row.get("c2st_per_obs", {}))
                if "c2st_sbibm_mean" in row:  # scored by sbibm's classifier as well
                    ours += f" / {row['c2st_sbibm_mean']:.3f}"
                    scored = len(row.get("c2st_sbibm_per_obs", {}))
                    if scored != seen:  # older draws, not kept, were not rescored
                        ours += f" [sbibm: {scored} obs]"
                if 0 < seen < 10:  # fewer observations than the protocol's 10
                    ours += f" [{seen} obs]"
                theirs = f"{pub[budget]:.3f}" if pub.get(budget) is not None else "–"
                cells.append(f"{ours} ({theirs})")
                for n, t in row.get("timing", {}).items():
                    ours_s = statistics.median(t["pyrovi_total_s"])
                    sbi_s = statistics.median(t["sbi_total_s"])
                    timing_lines.append(
                        f"| {task} | {key} | {budget} | {ours_s:.1f} | {sbi_s:.1f} | "
                        f"{t['ratio_of_medians']:.2f} | {len(t['pyrovi_total_s'])} | "
                        f"{t['pyrovi_c2st']:.3f} / "
                        f"{t['sbi_c2st']:.3f} (obs {n}) |"
                    )
            count = max(len(row.get("c2st_per_obs", {})) for row in rows.values())
            lines.append(f"| {task} | {key} | {' | '.join(cells)} | {count} |")
    return "\n".join(lines) + "\n\n" + "\n".join(timing_lines)


# ------------------------------------------------------------------------------ pyrovi side


def _npe(model) -> NPE:
    return NPE(model, ["theta"], "y", embedding="identity", **FLOW)


def _nle(model) -> NLE:
    return NLE(model, ["theta"], "y", **FLOW)


def _key(method: str, args) -> str:
    """The results key of a method: ``npe``, or ``npe_nsf`` with ``--flow nsf``, and
    ``tsnpe_10r`` for TSNPE with ten rounds (two are the default), ``_s100000`` for TSNPE's
    threshold set on 100,000 posterior draws (10,000 are the default)."""
    key = method if args.flow == "maf" else f"{method}_{args.flow}"
    if method == "tsnpe" and args.num_rounds != 2:
        key += f"_{args.num_rounds}r"
    if method == "tsnpe" and args.threshold_samples != 10_000:
        key += f"_s{args.threshold_samples}"
    if args.batch_size != 200:
        key += f"_b{args.batch_size}"
    if args.lr_drops:
        key += f"_d{args.lr_drops}"
    if method == "nle" and args.thin != 10:
        key += f"_t{args.thin}"
    return key


def train_amortized(method: str, model, budget: int, seed: int, sims=None):
    """An NPE or NLE trained on ``budget`` simulations (or the given ones); (estimator, result,
    simulate_s). The seed is set before the flow is built, so its initial weights, and with them
    the whole run, do not depend on what the process did before (other observations, other
    methods)."""
    pyro.set_rng_seed(seed)
    est = _npe(model) if method == "npe" else _nle(model)
    t0 = time.perf_counter()
    theta, y = sims if sims is not None else est.simulate(budget, progress=False)
    simulate_s = time.perf_counter() - t0
    result = est.train(theta=theta, y=y, seed=seed, progress=False, **TRAIN)
    return est, result, simulate_s


def draw(method: str, est, y_o: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` posterior draws for ``y_o``."""
    if method == "nle":
        return est.posterior(y_o, **MCMC).sample((num,))
    with torch.no_grad():
        return est.posterior(y_o).sample((num,))


def run_tsnpe(model, y_o: torch.Tensor, budget: int, rounds: int, seed: int, first=None):
    """TSNPE for one observation: (estimator, rounds result, seconds); seeded before the flow is
    built, like :func:`train_amortized`."""
    pyro.set_rng_seed(seed)
    est = _npe(model)
    t0 = time.perf_counter()
    out = est.train_rounds(
        y_o, rounds, budget // rounds, seed=seed, progress=False, **TSNPE, **TRAIN
    )
    return est, out, time.perf_counter() - t0


def score(samples: torch.Tensor, task: str, n: int, seed: int, protocol: str) -> dict:
    """C2ST of ``samples`` against the reference posterior of observation ``n``: ``{"fast":
    ...}`` (early stopping), and with ``protocol="sbibm"`` also ``{"sbibm": ...}``, the
    benchmark's own classifier (trained without early stopping, up to 10,000 epochs, seed 1), the
    one behind the published numbers."""
    reference = ref.reference_samples(task, n)
    m = min(len(reference), len(samples))  # balanced classes
    a, b = reference[:m], samples.double().cpu()[:m]
    out = {"fast": c2st(a, b, seed=seed)}
    if protocol == "sbibm":
        out["sbibm"] = c2st(a, b, seed=1, early_stopping=False, max_iter=10_000)
    return out


def save_samples(samples: torch.Tensor, args, task: str, key: str, budget: int, n: int) -> None:
    """Keep the draws under ``--samples-dir`` (git-ignored) so they can be scored again."""
    if args.samples_dir:
        folder = Path(args.samples_dir) / task / key / str(budget)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(samples.cpu(), folder / f"obs{n}.pt")


def pyrovi_results(task: str, method: str, budget: int, args) -> dict:
    """C2ST per observation and timings of one method at one budget."""
    model = sbi_task(task)
    rows: dict = {"c2st_per_obs": {}, "times_per_obs": {}}
    if method in ("npe", "nle"):
        est, result, sim_s = train_amortized(method, model, budget, args.seed)
        rows.update(
            simulate_s=sim_s,
            train_s=result.timings["train_s"],
            epochs=result.epochs,
            best_epoch=result.best_epoch,
        )
    for n in args.observations:
        y_o = ref.observation(task, n).reshape(model_data_shape(model)).float()
        t0 = time.perf_counter()
        if method == "tsnpe":
            est, out, seconds = run_tsnpe(model, y_o, budget, args.num_rounds, args.seed)
            rows["times_per_obs"][n] = {
                "rounds_s": seconds,
                "acceptance": out.acceptance,
                "epochs": [r.epochs for r in out.rounds],
            }
            t0 = time.perf_counter()
        samples = draw(method, est, y_o, args.num_samples)
        sample_s = time.perf_counter() - t0
        rows["times_per_obs"].setdefault(n, {})["sample_s"] = sample_s
        save_samples(samples, args, task, _key(method, args), budget, n)
        t0 = time.perf_counter()
        scores = score(samples, task, n, args.seed, args.c2st)
        rows["c2st_per_obs"][n] = scores["fast"]
        if "sbibm" in scores:
            rows.setdefault("c2st_sbibm_per_obs", {})[n] = scores["sbibm"]
        rows["times_per_obs"][n]["c2st_s"] = time.perf_counter() - t0
        both = " / ".join(f"{k} {v:.3f}" for k, v in scores.items())
        print(
            f"{task:17s} {method:6s} {budget:>7d} obs {n:2d}: C2ST {both}"
            f" (sampling {sample_s:.1f} s)",
            flush=True,
        )
    rows["c2st_mean"] = statistics.fmean(rows["c2st_per_obs"].values())
    if "c2st_sbibm_per_obs" in rows:
        rows["c2st_sbibm_mean"] = statistics.fmean(rows["c2st_sbibm_per_obs"].values())
    rows["observations"] = list(args.observations)
    return rows


def model_data_shape(model) -> tuple[int, ...]:
    """The observed site's shape, from one prior-predictive draw."""
    with torch.no_grad(), pyro.poutine.block():
        trace = pyro.poutine.trace(model).get_trace()
    return tuple(trace.nodes["y"]["value"].shape)


# ------------------------------------------------------------------------------ wall time


def pyrovi_total(task: str, method: str, budget: int, n: int, sims, args) -> tuple[float, dict]:
    """pyrovi's total seconds on one observation (simulation + training + sampling)."""
    model = sbi_task(task)
    y_o = ref.observation(task, n).reshape(model_data_shape(model)).float()
    t0 = time.perf_counter()
    if method == "tsnpe":
        est, _, _ = run_tsnpe(model, y_o, budget, args.num_rounds, args.seed)
    else:
        est, _, _ = train_amortized(method, model, budget, args.seed, sims)
    samples = draw(method, est, y_o, args.num_samples)
    return time.perf_counter() - t0, {"samples": samples}


def sbi_total(task: str, method: str, budget: int, n: int, sims_path: Path, args) -> dict:
    """Runs ``benchmarks/sbi_side.py`` in the sbi environment; its JSON (with the samples)."""
    with tempfile.TemporaryDirectory() as tmp:
        obs_path, out_path = Path(tmp) / "obs.pt", Path(tmp) / "out.json"
        torch.save(ref.observation(task, n).reshape(-1).float(), obs_path)
        cmd = [
            args.sbi_python,
            str(ROOT / "sbi_side.py"),
            "--task",
            task,
            "--method",
            method,
            "--budget",
            str(budget),
            "--obs",
            str(obs_path),
            "--out",
            str(out_path),
            "--num-samples",
            str(args.num_samples),
            "--num-rounds",
            str(args.num_rounds),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
            "--sims",
            str(sims_path),
            "--density-estimator",
            args.flow,
            "--quiet",
        ]
        subprocess.run(cmd, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
        out = json.loads(out_path.read_text())
        out["samples"] = torch.load(out["samples_path"])
    return out


def timing(task: str, method: str, budget: int, args) -> dict:
    """Alternating pyrovi / sbi runs on the timing observations; medians and their ratio."""
    model = sbi_task(task)
    rows = {}
    for n in args.timing_observations:
        pyro.set_rng_seed(args.seed + 1000 * n)
        theta, y = _npe(model).simulate(budget, progress=False)
        ours, theirs, sbi_c2st, our_c2st = [], [], None, None
        with tempfile.TemporaryDirectory() as tmp:
            sims_path = Path(tmp) / "sims.pt"
            torch.save({"theta": theta, "y": y.reshape(budget, -1).float()}, sims_path)
            for _ in range(args.repeats):
                seconds, extra = pyrovi_total(task, method, budget, n, (theta, y), args)
                ours.append(seconds)
                out = sbi_total(task, method, budget, n, sims_path, args)
                theirs.append(out["total_s"])
            our_c2st = score(extra["samples"], task, n, args.seed, "fast")["fast"]
            sbi_draws = out["samples"].reshape(-1, theta.shape[1])
            sbi_c2st = score(sbi_draws, task, n, args.seed, "fast")["fast"]
        rows[n] = {
            "pyrovi_total_s": ours,
            "sbi_total_s": theirs,
            "ratio_of_medians": statistics.median(ours) / statistics.median(theirs),
            "pyrovi_c2st": our_c2st,
            "sbi_c2st": sbi_c2st,
            "sbi_version": out.get("versions", {}).get("sbi"),
            "sbi_sampler": out.get("sampler"),
        }
        print(
            f"{task:17s} {method:6s} {budget:>7d} obs {n:2d}: pyrovi {statistics.median(ours):.1f}"
            f" s, sbi {statistics.median(theirs):.1f} s (ratio {rows[n]['ratio_of_medians']:.2f});"
            f" C2ST pyrovi {our_c2st:.3f}, sbi {sbi_c2st:.3f}",
            flush=True,
        )
    return rows


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict:
    """Run what the arguments ask for and merge it into the results JSON."""
    args = build_parser().parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return {}
    torch.set_num_threads(args.threads)
    FLOW["flow"] = args.flow
    TRAIN["batch_size"] = args.batch_size
    TRAIN["lr_drops"] = args.lr_drops
    MCMC["thin"] = args.thin
    if args.threshold_samples <= 0:
        raise SystemExit(
            f"--threshold-samples: expected a positive count, got {args.threshold_samples}"
        )
    TSNPE["num_threshold_samples"] = args.threshold_samples
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    budgets = [int(b) for b in args.budgets.split(",") if b]
    for t in tasks:
        sbi_task(t)  # names the valid tasks on a typo
    if bad := [m for m in methods if m not in METHODS]:
        raise SystemExit(f"--methods: unknown {bad}; choose from {METHODS}")
    if args.timing_only and not args.sbi_python:
        raise SystemExit("--timing-only needs --sbi-python")
    ref.fetch_sbibm()
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else {}
    published = json.loads(PUBLISHED.read_text()) if PUBLISHED.exists() else {}
    results["published"] = published
    results["protocol"] = {
        "num_samples": args.num_samples,
        "c2st": "c2st_per_obs: pyrovi.infer.c2st, 5 folds, MLP 2 x 10 D, early stopping on a "
        "tenth of each training fold; c2st_sbibm_per_obs (--c2st sbibm): the same classifier as "
        "sbibm's (no early stopping, max_iter 10000, seed 1), stratified folds",
        "flow": {k: v for k, v in FLOW.items() if k != "flow"},
        "nle_sampler": {k: v for k, v in MCMC.items() if k != "progress"},
    }
    for task in tasks:
        for method in methods:
            for budget in budgets:
                entry = results.setdefault(task, {}).setdefault(_key(method, args), {})
                if args.timing_only:
                    entry.setdefault(str(budget), {})["timing"] = timing(task, method, budget, args)
                    path.write_text(json.dumps(results, indent=2))
                    continue
                row = pyrovi_results(task, method, budget, args)
                row["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                row.update(
                    flow=args.flow,
                    threads=args.threads,
                    seed=args.seed,
                    batch_size=args.batch_size,
                    lr_drops=args.lr_drops,
                )
                if method == "tsnpe":
                    row["num_rounds"] = args.num_rounds
                    row["threshold_samples"] = args.threshold_samples
                if method == "nle":
                    row["thin"] = args.thin
                entry[str(budget)] = {**entry.get(str(budget), {}), **row}
                if args.sbi_python:
                    entry[str(budget)]["timing"] = timing(task, method, budget, args)
                results["environment"] = {
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                    "cpu_count": os.cpu_count(),
                    "load_average": os.getloadavg(),
                }
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
