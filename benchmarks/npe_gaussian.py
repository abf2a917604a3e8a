#!/usr/bin/env python
"""C2ST of neural posterior estimation on the Gaussian linear task (D = 10), pyrovi vs sbi.

Task (sbibm's ``gaussian_linear``): ``θ ~ N(0, 0.1 I)``, ``y | θ ~ N(θ, 0.1 I)``, D = 10; the
posterior is ``N(y / 2, 0.05 I)``. Three observations are drawn once from the prior predictive
with seed ``--obs-seed`` (the same for every method). For each simulation budget, one amortized
estimator is trained (seed ``--seed``) and, for each observation, ``--num-samples`` posterior
samples are compared with as many exact posterior samples by :func:`pyrovi.infer.c2st`
(z-scored by the exact samples, MLP classifier with two hidden layers of 10 D units, 5-fold
stratified cross-validation, early stopping on a tenth of each training fold). 0.5 is perfect.

Methods:

* ``pyrovi``: ``pyrovi.infer.NPE(GaussianLinear(), ["theta"], "y", flow="maf",
  embedding="identity")`` — 5 MAF layers of width 50 and a conditional elementwise affine layer,
  batch 200, Adam 5e-4, 10% validation, patience 20 (the same training settings as sbi's
  defaults).
* ``sbi``: ``sbi.inference.NPE(prior, density_estimator="maf")`` with its defaults, trained on
  simulations from the same simulator; needs the ``sbi`` package (run this script with the
  Python of an environment that has it, e.g. ``/tmp/sbi_env/bin/python``).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/npe_gaussian.py --method pyrovi --budgets 1000,10000
    OMP_WAIT_POLICY=PASSIVE /tmp/sbi_env/bin/python benchmarks/npe_gaussian.py --method sbi

Results are merged into ``benchmarks/results/npe_gaussian.json`` (key: method, then budget).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from pyrovi.infer import NPE, c2st  # noqa: E402
from pyrovi.infer.npe import simulate  # noqa: E402
from pyrovi.models import GaussianLinear  # noqa: E402

ROOT = Path(__file__).resolve().parent
PUBLISHED_SBIBM_NSF = {"1000": 0.694, "10000": 0.552, "100000": 0.506}
SBI_REPORTED = {"1000": {"c2st": 0.557, "train_s": 6.6}, "10000": {"c2st": 0.517, "train_s": 29.0}}


def observations(model: GaussianLinear, num: int, seed: int) -> torch.Tensor:
    """``(num, D)`` observations from the prior predictive, drawn with a fixed seed."""
    pyro.set_rng_seed(seed)
    return simulate(model, ["theta"], "y", num)[1]


def train_pyrovi(model, theta, y, seed):
    npe = NPE(model, ["theta"], "y", flow="maf", embedding="identity")
    t0 = time.perf_counter()
    result = npe.train(theta=theta, y=y, seed=seed, progress=False)
    train_s = time.perf_counter() - t0
    info = {"epochs": result.epochs, "best_epoch": result.best_epoch}

    def sample(y_o, n):
        with torch.no_grad():
            return npe.posterior(y_o).sample((n,))

    return sample, train_s, info


def train_sbi(model, theta, y, seed):
    import sbi
    from sbi.inference import NPE as SBI_NPE

    torch.manual_seed(seed)
    d = model.dim
    prior = torch.distributions.MultivariateNormal(torch.zeros(d), 0.1 * torch.eye(d))
    inference = SBI_NPE(prior=prior, density_estimator="maf", show_progress_bars=False)
    t0 = time.perf_counter()
    inference.append_simulations(theta, y).train(show_train_summary=False)
    train_s = time.perf_counter() - t0
    posterior = inference.build_posterior()
    info = {"epochs": int(inference.epoch), "sbi_version": sbi.__version__}

    def sample(y_o, n):
        return posterior.sample((n,), x=y_o, show_progress_bars=False)

    return sample, train_s, info


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", choices=("pyrovi", "sbi"), default="pyrovi")
    p.add_argument("--budgets", default="1000,10000,100000", help="comma list of simulations")
    p.add_argument("--num-obs", type=int, default=3)
    p.add_argument("--num-samples", type=int, default=10_000, help="samples per C2ST side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--obs-seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "results" / "npe_gaussian.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = GaussianLinear(10)
    y_obs = observations(model, args.num_obs, args.obs_seed)
    train = train_pyrovi if args.method == "pyrovi" else train_sbi
    rows = {}
    for budget in (int(b) for b in args.budgets.split(",")):
        pyro.set_rng_seed(args.seed + budget)
        theta, y = simulate(model, ["theta"], "y", budget)
        sample, train_s, info = train(model, theta, y, args.seed)
        scores, c2st_s = [], 0.0
        for j, y_o in enumerate(y_obs):
            torch.manual_seed(args.seed + j)
            approx = sample(y_o, args.num_samples)
            exact = model.posterior(y_o).sample((args.num_samples,))
            t0 = time.perf_counter()
            with threadpool_limits(args.threads):
                scores.append(c2st(exact, approx, seed=args.seed))
            c2st_s += time.perf_counter() - t0
        row = {
            "c2st_per_obs": scores,
            "c2st_mean": sum(scores) / len(scores),
            "train_s": train_s,
            "c2st_s": c2st_s,
            **info,
        }
        rows[str(budget)] = row
        print(
            f"{args.method:6s} N={budget:>6d}  C2ST {row['c2st_mean']:.3f} "
            f"({', '.join(f'{s:.3f}' for s in scores)})  train {train_s:.1f} s  "
            f"epochs {info['epochs']}",
            flush=True,
        )
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "num_obs": args.num_obs,
        "obs_seed": args.obs_seed,
        "num_samples": args.num_samples,
        "seed": args.seed,
        "load_average_at_end": os.getloadavg(),
    }
    if args.out:
        path = Path(args.out)
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.setdefault("task", "gaussian_linear D=10, prior N(0, 0.1 I), noise N(0, 0.1 I)")
        data["published_sbibm_npe_nsf"] = PUBLISHED_SBIBM_NSF
        data["sbi_reported_in_issue"] = SBI_REPORTED
        entry = data.setdefault(args.method, {})
        for budget, row in rows.items():
            entry[budget] = {**row, **meta}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
