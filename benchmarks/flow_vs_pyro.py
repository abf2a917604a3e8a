#!/usr/bin/env python
"""pyrovi's nflows-based ``AmortizedFlow`` against the same guide built from Pyro's own
conditional transforms: test ELBO and training time per epoch of a VAE.

All guides share the encoder (``MLP`` 784-512-256 + ReLU, the same initial weights), the Gaussian
base ``z0 = μ(h) + σ(h) ε`` from a linear head on the encoder features ``h`` (softplus scale +
1e-4), and the decoder (z-256-512-784, Bernoulli; the same initial weights). The flow layers on
top, all conditioned on ``h``, differ:

``nflows-iaf``       ``AmortizedFlow(flow="iaf")``: nflows MADE (residual, width
                     ``--hidden-features``, context added in every block), reversed between layers.
``pyro-iaf``         ``pyro.distributions.transforms.conditional_affine_autoregressive`` (Pyro's
                     ConditionalAutoRegressiveNN, 5 hidden layers of ``--hidden-features``: the
                     same depth and width, context concatenated to the input), reversed between
                     layers (``Permute``).
``nflows-nsf``       ``AmortizedFlow(flow="nsf")``: rational-quadratic spline couplings (8 bins,
                     linear tails at ±5), alternating masks.
``pyro-spline``      ``conditional_spline``: an elementwise rational-quadratic spline (8 bins,
                     bound 5) whose parameters come from a DenseNN of the context only, no
                     coupling between dimensions.
``pyro-spline-ar``   ``conditional_spline_autoregressive``: an autoregressive spline (8 bins, bound
                     5), reversed between layers; the closest Pyro counterpart of ``nflows-nsf``.

Pyro's guides sample through ``TransformedDistribution`` and score their own samples from the
transforms' caches (``cache_size=1``), as ``NFlowsDistribution`` does; neither inverts a flow.

Timing: one ``fit(..., epochs=1)`` call per guide per round, round-robin with the starting guide
rotated every round; each guide keeps one Adam over all rounds (passed to fit as a factory), so
interleaving does not restart the optimizer. Time per epoch is ``FitResult.timings["train_s"]``
(fit's clock around the epoch loop, without its setup); the figure per guide is the median over
rounds, and the ratio nflows / Pyro is taken per round (paired) and its median reported.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/flow_vs_pyro.py          # ~2.5 min on 2 CPU cores
    python benchmarks/flow_vs_pyro.py --guides nflows-iaf,pyro-iaf --rounds 2 --out ''

Writes ``benchmarks/results/flow_vs_pyro.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import pyro.distributions.transforms as T  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import pyrovi  # noqa: E402
from pyrovi.cli import int_list  # noqa: E402
from pyrovi.data import DynamicBinarization, binarize_data, load_dataset  # noqa: E402
from pyrovi.guides import AmortizedFlow, AmortizedNormal  # noqa: E402
from pyrovi.infer import elbo, fit  # noqa: E402
from pyrovi.models import VAE  # noqa: E402
from pyrovi.nn import submodule  # noqa: E402

GUIDES = ("nflows-iaf", "pyro-iaf", "nflows-nsf", "pyro-spline", "pyro-spline-ar")
PAIRS = (
    ("nflows-iaf", "pyro-iaf"),
    ("nflows-nsf", "pyro-spline"),
    ("nflows-nsf", "pyro-spline-ar"),
)
ROOT = Path(__file__).resolve().parent


class PyroTransformGuide(AmortizedNormal):
    """``q(z | x)``: AmortizedNormal's Gaussian pushed through Pyro conditional transforms whose
    context is the encoder features (the same structure as ``AmortizedFlow``)."""

    def __init__(self, x_dim, z_dim, kind, num_layers, hidden_features, hidden_dims):
        super().__init__(x_dim, z_dim, hidden_dims=hidden_dims)
        hidden = [hidden_features] * 5
        layers: list[nn.Module] = []
        for i in range(num_layers):
            if kind == "iaf":
                layers.append(T.conditional_affine_autoregressive(z_dim, self.features, hidden))
            elif kind == "spline":
                layers.append(
                    T.conditional_spline(z_dim, self.features, hidden, count_bins=8, bound=5.0)
                )
            elif kind == "spline-ar":
                layers.append(
                    T.conditional_spline_autoregressive(
                        z_dim, self.features, hidden, count_bins=8, bound=5.0
                    )
                )
            else:
                raise ValueError(kind)
            if kind != "spline" and i < num_layers - 1:
                layers.append(T.Permute(torch.arange(z_dim - 1, -1, -1)))
        self.flow_layers = nn.ModuleList([t for t in layers if isinstance(t, nn.Module)])
        self._layers = layers  # in order, including the parameter-free permutations

    def distribution(self, x: torch.Tensor, *args: torch.Tensor) -> dist.Distribution:
        features = submodule(self, "encoder")(self._inputs(x, args))
        loc, raw = submodule(self, "head")(features).chunk(2, dim=-1)
        base = dist.Normal(loc, F.softplus(raw) + self.min_scale).to_event(1)
        transforms = [
            t.condition(features) if isinstance(t, dist.ConditionalTransform) else t
            for t in self._layers
        ]
        return dist.TransformedDistribution(base, transforms)


def make_guide(name: str, args, x_dim: int) -> nn.Module:
    lib, kind = name.split("-", 1)
    if lib == "nflows":
        return AmortizedFlow(
            x_dim,
            args.z_dim,
            flow=kind,
            num_layers=args.num_layers,
            hidden_features=args.hidden_features,
            hidden_dims=args.hidden,
        )
    return PyroTransformGuide(
        x_dim, args.z_dim, kind, args.num_layers, args.hidden_features, args.hidden
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="AmortizedFlow (nflows) vs Pyro conditional transforms as a VAE guide.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--guides", default=",".join(GUIDES), help=f"comma list of {GUIDES}")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-subset", type=int, default=12800, help="first N training images")
    p.add_argument("--test-subset", type=int, default=1000, help="first N test images")
    p.add_argument("--rounds", type=int, default=8, help="interleaved epochs per guide")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--hidden", type=int_list, default="512,256", help="encoder widths")
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--hidden-features", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--elbo-samples", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results" / "flow_vs_pyro.json"))
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    names = [g.strip() for g in args.guides.split(",") if g.strip()]
    bad = [g for g in names if g not in GUIDES]
    if bad:
        raise SystemExit(f"unknown guides {bad}; choose from {GUIDES}")
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir)
    x_train = data.x_train[: args.train_subset]
    x_test = binarize_data(data, seed=0).x_test[: args.test_subset]
    print(
        f"{data.name}: {len(x_train)} train, {len(x_test)} test; z={args.z_dim}, "
        f"{args.num_layers} flow layers of width {args.hidden_features}; guides {names}",
        flush=True,
    )

    runs = {}
    for name in names:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        model = VAE(data.x_dim, args.z_dim, likelihood="bernoulli", hidden_dims=args.hidden)
        guide = make_guide(name, args, data.x_dim)
        params = list(model.parameters()) + list(guide.parameters())
        runs[name] = {
            "model": model,
            "guide": guide,
            "adam": torch.optim.Adam(params, lr=args.lr),
            "binarize": DynamicBinarization(torch.Generator().manual_seed(args.seed)),
            "epoch_s": [],
            "train_elbo": [],
            "flow_parameters": sum(p.numel() for p in guide.parameters())
            - sum(p.numel() for p in guide.encoder.parameters()),
        }
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            run = runs[name]
            result = fit(
                run["model"],
                run["guide"],
                x_train,
                epochs=1,
                batch_size=args.batch_size,
                optimizer=lambda _params, adam=run["adam"]: adam,
                transform=run["binarize"],
                seed=args.seed + r,
                progress=False,
            )
            run["epoch_s"].append(result.timings["train_s"])
            run["train_elbo"].append(result.history["train_elbo"][-1])
            print(
                f"round {r + 1} {name:15s} {result.timings['train_s']:6.2f} s/epoch, "
                f"train ELBO {result.history['train_elbo'][-1]:.2f}",
                flush=True,
            )

    results = {}
    for name, run in runs.items():
        run["model"].eval()
        run["guide"].eval()
        torch.manual_seed(args.seed + 1)
        t0 = time.perf_counter()
        with torch.no_grad():
            test_elbo = (
                elbo(run["model"], run["guide"], x_test, num_samples=args.elbo_samples)
                .mean()
                .item()
            )
        results[name] = {
            "test_elbo": test_elbo,
            "train_elbo_history": run["train_elbo"],
            "seconds_per_epoch": run["epoch_s"],
            "seconds_per_epoch_median": statistics.median(run["epoch_s"]),
            "ms_per_step_median": 1000
            * statistics.median(run["epoch_s"])
            / -(-len(x_train) // args.batch_size),
            "eval_seconds": time.perf_counter() - t0,
            "flow_and_head_parameters": run["flow_parameters"],
        }
    comparisons = {}
    for a, b in PAIRS:
        if a in results and b in results:
            ratios = [x / y for x, y in zip(runs[a]["epoch_s"], runs[b]["epoch_s"])]
            comparisons[f"{a} vs {b}"] = {
                "time_ratio_paired_median": statistics.median(ratios),
                "time_ratio_of_medians": results[a]["seconds_per_epoch_median"]
                / results[b]["seconds_per_epoch_median"],
                "test_elbo_difference": results[a]["test_elbo"] - results[b]["test_elbo"],
            }
    report = {
        "settings": {
            "dataset": data.name,
            "n_train": len(x_train),
            "n_test": len(x_test),
            "rounds": args.rounds,
            "batch_size": args.batch_size,
            "z_dim": args.z_dim,
            "hidden": list(args.hidden),
            "num_layers": args.num_layers,
            "hidden_features": args.hidden_features,
            "lr": args.lr,
            "elbo_samples": args.elbo_samples,
            "seed": args.seed,
            "threads": args.threads,
        },
        "results": results,
        "comparisons": comparisons,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "pyrovi": pyrovi.__version__,
            "cpu_count": os.cpu_count(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        },
    }
    print(f"\n{'guide':15s} {'test ELBO':>10s} {'s/epoch':>8s} {'ms/step':>8s} {'params':>8s}")
    for name, r in results.items():
        print(
            f"{name:15s} {r['test_elbo']:10.2f} {r['seconds_per_epoch_median']:8.2f} "
            f"{r['ms_per_step_median']:8.2f} {r['flow_and_head_parameters']:8d}"
        )
    for key, c in comparisons.items():
        print(
            f"{key}: time × {c['time_ratio_paired_median']:.2f} (paired median), "
            f"test ELBO difference {c['test_elbo_difference']:+.2f}"
        )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
