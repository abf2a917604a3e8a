#!/usr/bin/env python
"""Flow guides against the diagonal Gaussian guide: test NLL (IWAE) and ELBO of a VAE.

Every guide trains the same VAE (decoder ``MLP`` z-256-512-784, Bernoulli likelihood) with the
same encoder trunk (``MLP`` 784-512-256 + ReLU), the same initial weights of decoder and trunk,
the same data order, optimizer (Adam 1e-3), batch (128), latent size (z = 32) and number of
epochs, on dynamically binarized Fashion-MNIST. Only ``q(z | x)`` differs:

``normal``   :class:`pyrovi.guides.AmortizedNormal` (linear head to the mean and scale);
``iaf`` ``maf`` ``nsf`` ``realnvp`` ``planar`` ``radial``
             :class:`pyrovi.guides.AmortizedFlow` with that flow (``--num-layers`` layers,
             conditioners of width ``--hidden-features``, all conditioned on the trunk's
             features) on top of the amortized Gaussian.

Evaluation on the test set, binarized once with seed 0 (the same images for every guide):
``test_nll`` = −IWAE bound with K = ``--iwae-k`` importance samples (nats per image),
``test_elbo`` with ``--elbo-samples`` samples per image, their gap ``−test_nll − test_elbo``
(≥ 0; how far the guide is from the posterior as seen by the IWAE bound), and the difference of
each to the ``normal`` guide with a paired standard error over test images.

Each guide can run in its own process (``--guides iaf``): the per-image test values are saved to
``--cache-dir`` and the JSON (``--out``) merges all guides run with the same settings, so a long
benchmark can be run one configuration at a time::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/flow_guides.py                 # all guides
    for g in normal iaf nsf realnvp planar radial maf; do
        OMP_WAIT_POLICY=PASSIVE python benchmarks/flow_guides.py --guides $g --test-subset 2000
    done
    python benchmarks/flow_guides.py --guides normal,iaf --epochs 1 --train-subset 2048 \\
        --test-subset 200 --iwae-k 100 --out ''                              # quick look

``maf`` samples sequentially (z_dim network passes per layer), which makes it ~10x slower to
train and evaluate as a guide than ``iaf`` (164 vs 19 ms per training step here).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

import pyrovi  # noqa: E402
from pyrovi.data import (  # noqa: E402
    FASHION_MNIST_DEFAULT_ROOT,
    DynamicBinarization,
    binarize_data,
    load_fashion_mnist,
)
from pyrovi.guides import AmortizedFlow, AmortizedNormal  # noqa: E402
from pyrovi.infer import elbo, fit, log_marginal_likelihood  # noqa: E402
from pyrovi.models import VAE  # noqa: E402

GUIDES = ("normal", "iaf", "nsf", "realnvp", "planar", "radial", "maf")
ROOT = Path(__file__).resolve().parent
# settings that must agree for results of separate runs to be merged
SETTINGS = (
    "epochs",
    "batch_size",
    "z_dim",
    "hidden",
    "num_layers",
    "hidden_features",
    "lr",
    "iwae_k",
    "elbo_samples",
    "train_subset",
    "test_subset",
    "seed",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="VAE test NLL (IWAE) and ELBO with flow guides vs AmortizedNormal.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--guides", default=",".join(GUIDES), help=f"comma list of {GUIDES}")
    p.add_argument("--data-dir", default=FASHION_MNIST_DEFAULT_ROOT)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--hidden", default="512,256", help="encoder widths (decoder reversed)")
    p.add_argument("--num-layers", type=int, default=2, help="flow layers")
    p.add_argument("--hidden-features", type=int, default=64, help="flow conditioner width")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--iwae-k", type=int, default=1000)
    p.add_argument("--elbo-samples", type=int, default=10)
    p.add_argument("--train-subset", type=int, default=None, help="first N training images")
    p.add_argument("--test-subset", type=int, default=None, help="first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--cache-dir",
        default="outputs/benchmarks/flow_guides",
        help="per-image test values of each guide (for the paired comparison)",
    )
    p.add_argument(
        "--out",
        default=str(ROOT / "results" / "flow_guides.json"),
        help="JSON file ('' to write nothing); guides of earlier runs with the same settings "
        "are kept",
    )
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="only time training steps: interleaved blocks of --timing-steps steps per guide "
        "(on a quiet machine; the per-epoch times of a full run are taken as it goes and suffer "
        "from whatever else runs); saved under 'timing' in --out",
    )
    p.add_argument("--timing-steps", type=int, default=50)
    p.add_argument("--timing-rounds", type=int, default=3)
    return p


def time_guides(kinds: list[str], settings: dict, args, x_train) -> dict:
    """Median training time per step of each guide: ``fit(epochs=1)`` on ``steps * batch``
    images per block, guides round-robin, one persistent Adam per guide (fit's clock,
    ``timings["train_s"]``, without fit's setup)."""
    steps, batch = args.timing_steps, settings["batch_size"]
    x_block = x_train[: steps * batch]
    runs = {}
    for kind in kinds:
        pyro.clear_param_store()
        pyro.set_rng_seed(settings["seed"])
        model = VAE(784, settings["z_dim"], hidden_dims=tuple(settings["hidden"]))
        guide = make_guide(kind, settings)
        adam = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=settings["lr"])
        runs[kind] = (model, guide, adam, [])
    for r in range(args.timing_rounds + 1):  # round 0: warm-up, not counted
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
        for kind in order:
            model, guide, adam, times = runs[kind]
            result = fit(
                model,
                guide,
                x_block,
                epochs=1,
                batch_size=batch,
                optimizer=lambda _params, adam=adam: adam,
                transform=DynamicBinarization(torch.Generator().manual_seed(r)),
                seed=r,
                progress=False,
            )
            if r > 0:
                times.append(1000 * result.timings["train_s"] / result.steps)
    steps_per_epoch = -(-60000 // batch)
    out = {}
    for kind, (_, _, _, times) in runs.items():
        ms = statistics.median(times)
        out[kind] = {
            "ms_per_step_median": ms,
            "ms_per_step": times,
            "seconds_per_epoch_estimate": ms * steps_per_epoch / 1000,
        }
        print(f"[timing] {kind:8s} {ms:7.2f} ms/step, ≈ {ms * steps_per_epoch / 1000:6.1f} s/epoch")
    if "normal" in out:
        for kind in out:
            out[kind]["vs_normal"] = (
                out[kind]["ms_per_step_median"] / out["normal"]["ms_per_step_median"]
            )
    return {
        "steps_per_block": steps,
        "rounds": args.timing_rounds,
        "threads": torch.get_num_threads(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "guides": out,
    }


def settings_of(args: argparse.Namespace) -> dict:
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "z_dim": args.z_dim,
        "hidden": [int(h) for h in args.hidden.split(",")],
        "num_layers": args.num_layers,
        "hidden_features": args.hidden_features,
        "lr": args.lr,
        "iwae_k": args.iwae_k,
        "elbo_samples": args.elbo_samples,
        "train_subset": args.train_subset,
        "test_subset": args.test_subset,
        "seed": args.seed,
    }


def make_guide(kind: str, settings: dict) -> torch.nn.Module:
    hidden = tuple(settings["hidden"])
    if kind == "normal":
        return AmortizedNormal(784, settings["z_dim"], hidden_dims=hidden)
    return AmortizedFlow(
        784,
        settings["z_dim"],
        flow=kind,
        num_layers=settings["num_layers"],
        hidden_features=settings["hidden_features"],
        hidden_dims=hidden,
    )


def run_guide(kind: str, settings: dict, x_train, x_test) -> tuple[dict, dict]:
    """Train one VAE with guide ``kind``; returns (summary, per-image test values)."""
    seed = settings["seed"]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    hidden = tuple(settings["hidden"])
    # Built first from the same seed: identical decoder and encoder-trunk weights for all guides.
    model = VAE(784, settings["z_dim"], likelihood="bernoulli", hidden_dims=hidden)
    guide = make_guide(kind, settings)
    n_params = sum(p.numel() for p in guide.parameters())
    print(f"[{kind}] training {settings['epochs']} epochs, guide parameters {n_params}", flush=True)
    t0 = time.perf_counter()
    result = fit(
        model,
        guide,
        x_train,
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        lr=settings["lr"],
        transform=DynamicBinarization(torch.Generator().manual_seed(seed)),
        seed=seed,
        progress=False,
    )
    train_s = time.perf_counter() - t0
    for e, (v, t) in enumerate(
        zip(result.history["train_elbo"], result.history["epoch_time"]), start=1
    ):
        print(f"[{kind}] epoch {e}: train ELBO {v:.2f}, {t:.1f} s", flush=True)
    model.eval()
    guide.eval()
    torch.manual_seed(seed + 1)  # the same evaluation draws for every run of this guide
    t1 = time.perf_counter()
    with torch.no_grad():
        test_elbo = elbo(model, guide, x_test, num_samples=settings["elbo_samples"])
        elbo_s = time.perf_counter() - t1
        test_ll = log_marginal_likelihood(model, guide, x_test, num_samples=settings["iwae_k"])
    eval_s = time.perf_counter() - t1
    nll = -test_ll.mean().item()
    e = test_elbo.mean().item()
    summary = {
        "guide": kind,
        "guide_parameters": n_params,
        "test_nll": nll,
        "test_elbo": e,
        "gap": -nll - e,
        "train_elbo_last_epoch": result.history["train_elbo"][-1],
        "train_elbo_history": result.history["train_elbo"],
        "epoch_seconds": result.history["epoch_time"],
        "seconds_per_epoch_median": statistics.median(result.history["epoch_time"]),
        "seconds_per_epoch_min": min(result.history["epoch_time"]),
        "step_ms_median": result.timings.get("step_ms"),
        "train_seconds": train_s,
        "eval_elbo_seconds": elbo_s,
        "eval_seconds": eval_s,
        "threads": torch.get_num_threads(),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    print(
        f"[{kind}] test NLL {nll:.3f}, test ELBO {e:.3f}, gap {-nll - e:.3f}, "
        f"{summary['seconds_per_epoch_median']:.1f} s/epoch, eval {eval_s:.0f} s",
        flush=True,
    )
    return summary, {"nll": -test_ll.cpu(), "elbo": test_elbo.cpu()}


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of ``a - b`` and its standard error over test images."""
    d = (a - b).double()
    return d.mean().item(), (d.std(unbiased=True) / math.sqrt(len(d))).item()


def compare(results: dict, cache: Path) -> dict:
    """Differences to the normal guide (negative NLL difference = the flow is better)."""
    base_path = cache / "normal.pt"
    if "normal" not in results or not base_path.is_file():
        return {}
    base = torch.load(base_path)
    out = {}
    for kind in results:
        path = cache / f"{kind}.pt"
        if kind == "normal" or not path.is_file():
            continue
        per = torch.load(path)
        d_nll, se_nll = paired(per["nll"], base["nll"])
        gap, gap0 = -per["nll"] - per["elbo"], -base["nll"] - base["elbo"]
        d_gap, se_gap = paired(gap, gap0)
        d_elbo, se_elbo = paired(per["elbo"], base["elbo"])
        out[kind] = {
            "nll_minus_normal": d_nll,
            "nll_minus_normal_se": se_nll,
            "elbo_minus_normal": d_elbo,
            "elbo_minus_normal_se": se_elbo,
            "gap_minus_normal": d_gap,
            "gap_minus_normal_se": se_gap,
            "time_per_epoch_vs_normal": results[kind]["seconds_per_epoch_median"]
            / results["normal"]["seconds_per_epoch_median"],
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    kinds = [g.strip() for g in args.guides.split(",") if g.strip()]
    bad = [g for g in kinds if g not in GUIDES]
    if bad:
        raise SystemExit(f"unknown guides {bad}; choose from {GUIDES}")
    torch.set_num_threads(args.threads)
    settings = settings_of(args)

    data = load_fashion_mnist(args.data_dir)
    x_test = binarize_data(data, seed=0).x_test
    x_train = data.x_train
    if args.train_subset:
        x_train = x_train[: args.train_subset]
    if args.test_subset:
        x_test = x_test[: args.test_subset]
    print(
        f"Fashion-MNIST: {len(x_train)} train, {len(x_test)} test images; settings {settings}",
        flush=True,
    )

    out = Path(args.out) if args.out else None
    if args.timing_only:
        timing = time_guides(kinds, settings, args, x_train)
        if out is not None:
            report = json.loads(out.read_text()) if out.is_file() else {}
            report["timing"] = timing
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
        return {"timing": timing}
    cache = Path(args.cache_dir) / (
        "_".join(f"{k}={settings[k]}" for k in SETTINGS)
        .replace(" ", "")
        .replace(",", "-")
        .replace("[", "")
        .replace("]", "")
    )
    cache.mkdir(parents=True, exist_ok=True)
    report = {"results": {}}
    if out is not None and out.is_file():
        old = json.loads(out.read_text())
        if old.get("settings") == settings:
            report = old
            print(f"merging with the guides in {out}: {sorted(old.get('results', {}))}")
    report["settings"] = settings
    for kind in kinds:
        summary, per_image = run_guide(kind, settings, x_train, x_test)
        torch.save(per_image, cache / f"{kind}.pt")
        report["results"][kind] = summary
        report["comparison_to_normal"] = compare(report["results"], cache)
        report["environment"] = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "pyrovi": pyrovi.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "command": " ".join(sys.argv),
        }
        report["n_train"], report["n_test"] = len(x_train), len(x_test)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return report


def print_table(report: dict) -> None:
    comp = report.get("comparison_to_normal", {})
    print(
        f"\n{'guide':8s} {'test NLL':>9s} {'test ELBO':>10s} {'gap':>6s} "
        f"{'ΔNLL vs normal':>16s} {'Δgap':>14s} {'s/epoch':>8s}"
    )
    for kind, r in report["results"].items():
        c = comp.get(kind)
        dn = f"{c['nll_minus_normal']:+.2f} ± {c['nll_minus_normal_se']:.2f}" if c else ""
        dg = f"{c['gap_minus_normal']:+.2f} ± {c['gap_minus_normal_se']:.2f}" if c else ""
        print(
            f"{kind:8s} {r['test_nll']:9.2f} {r['test_elbo']:10.2f} {r['gap']:6.2f} "
            f"{dn:>16s} {dg:>14s} {r['seconds_per_epoch_median']:8.1f}"
        )


if __name__ == "__main__":
    main()
