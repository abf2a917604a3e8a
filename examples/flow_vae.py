"""Train the same VAE with a Gaussian guide and with normalizing-flow guides; compare the bounds.

One run trains one VAE per guide — :class:`~pyrovi.guides.AmortizedNormal` and
:class:`~pyrovi.guides.AmortizedFlow` of every kind in ``--flows`` — with the same decoder, the
same encoder trunk (and the same initial weights of both), the same epochs, data order and seed.
Only ``q(z | x)`` differs. For each guide it reports the test ELBO, the test NLL (−IWAE bound,
K = ``--iwae-k``), the gap IWAE − ELBO (how much the ELBO loses to a guide that is not the
posterior) and the training time. The default run (digits, guides normal and iaf) takes about
two minutes on two CPU cores::

    python examples/flow_vae.py                         # digits: normal vs iaf
    python examples/flow_vae.py --flows iaf,nsf,realnvp --num-layers 4
    python examples/flow_vae.py --dataset fashion-mnist --epochs 10 --z-dim 32

It writes ``metrics.json``, ``comparison.png`` (NLL and gap per guide) and ``samples.png``
(decoder means of prior samples, one row per guide) to ``--out`` (default
``outputs/flow_vae``). ``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# OpenMP threads that sleep instead of spinning while they wait. With spinning threads (the
# default) these small-batch steps slow down 10-30x whenever another process competes for the
# cores. Read when torch loads its OpenMP runtime, so it has to come before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyrovi import VAE, AmortizedNormal, elbo, fit, log_marginal_likelihood  # noqa: E402
from pyrovi.cli import (  # noqa: E402
    add_data_arguments,
    add_training_arguments,
    finite_or_none,
    int_list,
    load_data_or_exit,
    positive_int,
    resolve_device,
)
from pyrovi.data import DynamicBinarization, binarize_data  # noqa: E402
from pyrovi.diagnostics import plot_image_rows  # noqa: E402
from pyrovi.distributions.flow_layers import FLOW_KINDS  # noqa: E402
from pyrovi.guides import AmortizedFlow  # noqa: E402

# Default epochs per data set: digits has 1438 training images (12 steps of 128).
DEFAULT_EPOCHS = {"digits": 300, "fashion-mnist": 10, "mnist": 10}
DEFAULT_Z_DIM = {"digits": 8, "fashion-mnist": 32, "mnist": 32}


def flow_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated flow kinds, e.g. ``"iaf,nsf"`` (may be empty)."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in FLOW_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown flow kinds {bad}; choose from {FLOW_KINDS}")
    if len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(f"flow kinds repeat: {text!r}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description="Train a VAE with a Gaussian guide and with flow guides; compare test ELBO, "
        "test NLL (IWAE) and their gap.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(p)
    add_training_arguments(
        p,
        out="outputs/flow_vae",
        epochs_help=f"training epochs (default per data set: {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--flows",
        type=flow_list,
        default="iaf",
        help=f"flow guides to train besides the Gaussian one, comma separated, from {FLOW_KINDS}",
    )
    p.add_argument(
        "--no-normal",
        action="store_true",
        help="skip the Gaussian guide (AmortizedNormal)",
    )
    p.add_argument("--num-layers", type=positive_int, default=2, help="flow layers")
    p.add_argument(
        "--hidden-features", type=positive_int, default=64, help="width of the flow conditioners"
    )
    p.add_argument(
        "--z-dim",
        type=positive_int,
        default=None,
        help=f"latent dimension (default per data set: {DEFAULT_Z_DIM})",
    )
    p.add_argument(
        "--hidden",
        type=int_list,
        default="512,256",
        help="encoder hidden widths, comma separated; the decoder uses them reversed",
    )
    p.add_argument(
        "--iwae-k",
        type=positive_int,
        default=1000,
        help="importance samples K for the test log-likelihood",
    )
    p.add_argument(
        "--elbo-samples",
        type=positive_int,
        default=10,
        help="Monte Carlo samples per test image for the test ELBO",
    )
    return p


def guide_checkpoint(checkpoint: str | None, name: str) -> str | None:
    """``run.pt`` -> ``run.iaf.pt``: one checkpoint file per guide."""
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    return str(path.with_name(f"{path.stem}.{name}{path.suffix or '.pt'}"))


def plot_comparison(results: dict, title: str, path: Path):
    """Bar charts of test NLL and IWAE − ELBO gap per guide; returns the Figure."""
    from matplotlib.figure import Figure

    names = list(results)
    nll = [results[n]["test_nll_iwae"] for n in names]
    neg_elbo = [-results[n]["test_elbo"] for n in names]
    gap = [results[n]["iwae_elbo_gap"] for n in names]
    colors = ["tab:gray" if n == "normal" else "tab:blue" for n in names]
    fig = Figure(figsize=(4 + 1.2 * len(names), 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    xs = range(len(names))
    ax1.bar([x - 0.2 for x in xs], neg_elbo, 0.4, color="lightgray", label="test −ELBO")
    ax1.bar([x + 0.2 for x in xs], nll, 0.4, color=colors, label="test NLL (IWAE)")
    for x, v in zip(xs, nll):
        ax1.annotate(f"{v:.2f}", (x + 0.2, v), ha="center", va="bottom", fontsize=8)
    lo = min(nll) - 0.5 * (max(neg_elbo) - min(nll) + 1)
    ax1.set_ylim(lo, max(neg_elbo) + 0.15 * (max(neg_elbo) - lo))
    ax1.set_xticks(list(xs), names)
    ax1.set_ylabel("nats per image (lower is better)")
    ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title("−ELBO and NLL")
    ax2.bar(list(xs), gap, 0.6, color=colors)
    for x, v in zip(xs, gap):
        ax2.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)
    ax2.set_xticks(list(xs), names)
    ax2.set_ylabel("nats per image")
    ax2.set_ylim(0, max(max(gap), 1e-3) * 1.2)
    ax2.set_title("IWAE − ELBO gap")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    z_dim = args.z_dim or DEFAULT_Z_DIM[args.dataset]
    guides = ([] if args.no_normal else ["normal"]) + list(args.flows)
    if not guides:
        parser.error("nothing to train: --no-normal and an empty --flows")
    device = resolve_device(parser, args)

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data_or_exit(parser, args)
    # Bernoulli likelihood: a fresh binarization of every training batch, one fixed (seed 0)
    # binarization of the test set, the same for every guide.
    x_train = data.x_train.to(device)
    x_test = binarize_data(data, seed=0).x_test.to(device)
    print(
        f"{data.name}: {len(x_train)} train / {len(x_test)} test images; z_dim={z_dim}, "
        f"hidden={args.hidden}, guides={guides}, flow layers={args.num_layers}, "
        f"epochs={epochs}, device={device}"
    )

    # the same prior draws for every guide's decoder
    z_show = torch.randn(32, z_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)
    results: dict[str, dict] = {}
    samples: dict[str, torch.Tensor] = {}
    h, w = data.image_shape
    for name in guides:
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        # Built first from the same seed: the same decoder and encoder-trunk weights for all.
        model = VAE(data.x_dim, z_dim, likelihood="bernoulli", hidden_dims=args.hidden).to(device)
        if name == "normal":
            guide = AmortizedNormal(data.x_dim, z_dim, hidden_dims=args.hidden)
        else:
            guide = AmortizedFlow(
                data.x_dim,
                z_dim,
                flow=name,
                num_layers=args.num_layers,
                hidden_features=args.hidden_features,
                hidden_dims=args.hidden,
            )
        guide = guide.to(device)
        transform = DynamicBinarization(torch.Generator(device=device).manual_seed(args.seed))
        print(f"[{name}] training ({sum(p.numel() for p in guide.parameters())} guide parameters)")
        result = fit(
            model,
            guide,
            x_train,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            device=device,
            transform=transform,
            seed=args.seed,
            progress=not args.no_progress,
            checkpoint=guide_checkpoint(args.checkpoint, name),
            resume=args.resume,
        )
        model.eval()
        guide.eval()
        torch.manual_seed(args.seed + 1)  # the same evaluation draws for every guide
        t_eval = time.perf_counter()
        with torch.no_grad():
            test_elbo = elbo(model, guide, x_test, num_samples=args.elbo_samples).mean().item()
            test_ll = log_marginal_likelihood(model, guide, x_test, num_samples=args.iwae_k)
            test_nll = -test_ll.mean().item()
            samples[name] = model.decode(z_show).reshape(-1, h, w).cpu()
        eval_s = time.perf_counter() - t_eval
        results[name] = {
            "guide": "AmortizedNormal" if name == "normal" else f"AmortizedFlow(flow={name!r})",
            "guide_parameters": sum(p.numel() for p in guide.parameters()),
            "train_elbo": result.history["train_elbo"][-1],
            "test_elbo": test_elbo,
            "test_nll_iwae": test_nll,
            "iwae_elbo_gap": -test_nll - test_elbo,
            "train_seconds": result.timings.get("train_s", float("nan")),
            "step_ms": result.timings.get("step_ms", float("nan")),
            "eval_seconds": eval_s,
            "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
        }
        r = results[name]
        print(
            f"[{name}] test ELBO {test_elbo:.3f}, test NLL {test_nll:.3f} (IWAE K={args.iwae_k}), "
            f"gap {r['iwae_elbo_gap']:.3f} nats/image; training {r['train_seconds']:.1f} s "
            f"({r['step_ms']:.2f} ms/step), evaluation {eval_s:.1f} s"
        )

    metrics = {
        "dataset": data.name,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "x_dim": data.x_dim,
        "epochs": epochs,
        "batch_size": args.batch_size,
        "z_dim": z_dim,
        "hidden": list(args.hidden),
        "num_layers": args.num_layers,
        "hidden_features": args.hidden_features,
        "likelihood": "bernoulli",
        "binarize": "dynamic",
        "lr": args.lr,
        "seed": args.seed,
        "device": str(device),
        "iwae_k": args.iwae_k,
        "test_elbo_samples": args.elbo_samples,
        "guides": results,
    }
    if "normal" in results:
        base = results["normal"]
        for name, r in results.items():
            if name != "normal":
                r["nll_minus_normal"] = r["test_nll_iwae"] - base["test_nll_iwae"]
                r["gap_minus_normal"] = r["iwae_elbo_gap"] - base["iwae_elbo_gap"]

    print(f"\n{'guide':8s} {'test ELBO':>10s} {'test NLL':>9s} {'gap':>6s} {'train s':>8s}")
    for name, r in results.items():
        print(
            f"{name:8s} {r['test_elbo']:10.3f} {r['test_nll_iwae']:9.3f} "
            f"{r['iwae_elbo_gap']:6.3f} {r['train_seconds']:8.1f}"
        )

    plot_comparison(
        results,
        f"{data.name}, z={z_dim}, {epochs} epochs, IWAE K={args.iwae_k} "
        f"({len(x_test)} test images)",
        out / "comparison.png",
    )
    plot_image_rows(
        [(name, s) for name, s in samples.items()],
        f"{data.name}: decoder means of the same 32 draws z ~ N(0, I), one VAE per guide",
        cols=16,
        path=out / "samples.png",
    )
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote metrics.json, comparison.png, samples.png to {out}")
    return metrics


if __name__ == "__main__":
    main()
