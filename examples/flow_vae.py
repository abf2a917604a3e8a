"""Train the same VAE with a Gaussian guide and with normalizing-flow guides; compare the bounds.

One run trains one VAE per guide — :class:`~pyrovi.guides.AmortizedNormal` and
:class:`~pyrovi.guides.AmortizedFlow` of every kind in ``--flows`` — with the same decoder, the
same encoder trunk (and the same initial weights of both), the same epochs, data order and seed.
Only ``q(z | x)`` differs. For each guide it reports the test ELBO, the test NLL (−IWAE bound,
K = ``--iwae-k``), the gap IWAE − ELBO (how much the ELBO loses to a guide that is not the
posterior) and the training time; for each flow guide also the differences from the Gaussian
guide's NLL and gap, with their standard error over the test images (paired: the same images).
That standard error leaves out the spread over training seeds (below). The default run (digits,
guides normal and iaf) takes about 2 min on two CPU cores (``RUN_TIME``)::

    python examples/flow_vae.py                         # digits: normal vs iaf
    python examples/flow_vae.py --flows iaf,nsf,realnvp --num-layers 4
    python examples/flow_vae.py --dataset fashion-mnist --epochs 10 --z-dim 32

With the defaults on digits the two guides cannot be told apart: over seeds 0, 1, 2
(``--seed``, ``--threads 1``) the IAF guide's test NLL minus the Gaussian guide's was −0.039,
+0.018, −0.014 nats (mean −0.012, sd 0.029) and its IWAE − ELBO gap minus the Gaussian guide's
−0.005, −0.026, +0.041 (mean +0.003, sd 0.034); the gaps themselves were 0.43–0.47 (normal) and
0.42–0.48 (iaf), the test NLLs 22.35–22.44 (normal) and 22.37–22.40 (iaf) nats per image. So
this run does not show a flow narrowing the gap; bigger flows or latent spaces are not measured
here.

It writes ``metrics.json``, ``comparison.png`` (each flow guide's NLL and −ELBO minus the
Gaussian guide's, and every guide's gap, with standard errors over the test images) and
``samples.png`` (decoder means of prior samples, one row per guide) to ``--out`` (default
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

from pyrovi.cli import (  # noqa: E402
    HelpFormatter,
    add_data_arguments,
    add_training_arguments,
    describe,
    finite_or_none,
    int_list,
    load_data_or_exit,
    positive_int,
    print_written,
    resolve_device,
)

# Wall time of `python examples/flow_vae.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 2 min"

# pyrovi.distributions.flow_layers.FLOW_KINDS, spelled out so that parsing needs no torch
# (tests/test_examples_flows.py checks that the two agree).
FLOW_KINDS = ("iaf", "maf", "nsf", "realnvp", "planar", "radial")

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
        description=describe(
            "Train a VAE with a Gaussian guide and with flow guides; compare test ELBO,\n"
            "test NLL (IWAE) and their gap.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
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


def standard_error(values) -> float:
    """Standard error of the mean of a 1-D tensor (0 for fewer than two values)."""
    n = values.numel()
    return float(values.std() / n**0.5) if n > 1 else 0.0


def plot_comparison(results: dict, per_image: dict, title: str, path: Path):
    """Two panels of dots with ±1 standard-error bars (over test images); returns the Figure.

    Left: each flow guide's test NLL and test −ELBO minus the Gaussian guide's, per image and
    paired (the same images, the same decoder initialization), so 0 is "as good as
    ``normal``"; without the Gaussian guide, the values themselves. Right: the IWAE − ELBO gap of
    every guide on an axis that starts at 0.

    Args:
        results: ``{guide: metrics}`` as in ``metrics.json``.
        per_image: ``{guide: {"nll": (N,), "neg_elbo": (N,)}}`` in nats.
        title: Figure title.
        path: Where to save the PNG.
    """
    from matplotlib.figure import Figure

    names = list(results)
    paired = "normal" in names and len(names) > 1
    shown = [n for n in names if n != "normal"] if paired else names
    fig = Figure(figsize=(4.5 + 1.3 * len(names), 4.2))
    ax1, ax2 = fig.subplots(1, 2)
    for offset, key, label, color in (
        (-0.12, "nll", "test NLL (IWAE)", "tab:blue"),
        (0.12, "neg_elbo", "test −ELBO", "tab:orange"),
    ):
        values, errors = [], []
        for n in shown:
            v = per_image[n][key] - per_image["normal"][key] if paired else per_image[n][key]
            values.append(float(v.mean()))
            errors.append(standard_error(v))
        xs = [x + offset for x in range(len(shown))]
        ax1.errorbar(xs, values, yerr=errors, fmt="o", color=color, capsize=4, label=label)
        side = -1 if offset < 0 else 1  # labels outside the pair of dots
        for x, v in zip(xs, values):
            ax1.annotate(
                f"{v:+.3f}" if paired else f"{v:.2f}",
                (x, v),
                xytext=(7 * side, 0),
                textcoords="offset points",
                ha="right" if side < 0 else "left",
                va="center",
                fontsize=8,
            )
    ax1.set_xticks(list(range(len(shown))), shown)
    ax1.set_xlim(-0.6, len(shown) - 0.4)
    if paired:
        ax1.axhline(0.0, color="gray", lw=1, ls="--")
        ax1.set_ylabel("difference from the Gaussian guide,\nnats per image (below 0: better)")
        ax1.set_title("Test NLL and −ELBO vs. normal")
    else:
        ax1.set_ylabel("nats per image (lower is better)")
        ax1.set_title("Test NLL and −ELBO")
    ax1.set_xlabel("guide")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)

    gaps = [per_image[n]["neg_elbo"] - per_image[n]["nll"] for n in names]
    means = [float(g.mean()) for g in gaps]
    errors = [standard_error(g) for g in gaps]
    colors = ["tab:gray" if n == "normal" else "tab:blue" for n in names]
    xs = list(range(len(names)))
    ax2.bar(xs, means, 0.6, yerr=errors, color=colors, capsize=4)
    for x, v, e in zip(xs, means, errors):
        ax2.annotate(
            f"{v:.3f}",
            (x, v + e),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax2.set_xticks(xs, names)
    ax2.set_xlabel("guide")
    ax2.set_ylabel("IWAE − ELBO, nats per image")
    ax2.set_ylim(0, max(m + e for m, e in zip(means, errors)) * 1.25 + 1e-3)
    ax2.set_title("IWAE − ELBO gap (axis from 0)")
    n_images = len(next(iter(per_image.values()))["nll"])
    fig.suptitle(
        f"{title}\nerror bars: ±1 standard error over the {n_images} test images "
        "(one training seed: rerun with --seed for the spread between seeds)",
        fontsize=9,
    )
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

    # Heavy imports after the arguments are parsed: --help and usage errors come back at once.
    import pyro
    import torch

    from pyrovi import VAE, AmortizedNormal, elbo, fit, log_marginal_likelihood
    from pyrovi.data import DynamicBinarization, binarize_data
    from pyrovi.diagnostics import plot_image_rows
    from pyrovi.guides import AmortizedFlow

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
    per_image: dict[str, dict[str, torch.Tensor]] = {}
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
            elbo_i = elbo(model, guide, x_test, num_samples=args.elbo_samples).cpu()
            nll_i = -log_marginal_likelihood(model, guide, x_test, num_samples=args.iwae_k).cpu()
            test_elbo, test_nll = elbo_i.mean().item(), nll_i.mean().item()
            per_image[name] = {"nll": nll_i, "neg_elbo": -elbo_i}
            samples[name] = model.decode(z_show).reshape(-1, h, w).cpu()
        eval_s = time.perf_counter() - t_eval
        results[name] = {
            "guide": "AmortizedNormal" if name == "normal" else f"AmortizedFlow(flow={name!r})",
            "guide_parameters": sum(p.numel() for p in guide.parameters()),
            "train_elbo": result.history["train_elbo"][-1],
            "test_elbo": test_elbo,
            "test_nll_iwae": test_nll,
            "iwae_elbo_gap": -test_nll - test_elbo,
            "test_nll_se": standard_error(nll_i),
            "iwae_elbo_gap_se": standard_error(-elbo_i - nll_i),
            "train_seconds": result.timings.get("train_s", float("nan")),
            "step_ms": result.timings.get("step_ms", float("nan")),
            "eval_seconds": eval_s,
            "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
        }
        r = results[name]
        print(
            f"[{name}] test ELBO {test_elbo:.3f}, test NLL {test_nll:.3f} (IWAE K={args.iwae_k}), "
            f"gap {r['iwae_elbo_gap']:.3f} ± {r['iwae_elbo_gap_se']:.3f} nats/image; training "
            f"{r['train_seconds']:.1f} s ({r['step_ms']:.2f} ms/step), evaluation {eval_s:.1f} s"
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
                # paired over the test images: the standard error of the per-image differences
                d_nll = per_image[name]["nll"] - per_image["normal"]["nll"]
                d_gap = (per_image[name]["neg_elbo"] - per_image[name]["nll"]) - (
                    per_image["normal"]["neg_elbo"] - per_image["normal"]["nll"]
                )
                r["nll_minus_normal_se"] = standard_error(d_nll)
                r["gap_minus_normal_se"] = standard_error(d_gap)

    print(
        f"\n{'guide':8s} {'test ELBO':>10s} {'test NLL':>9s} {'gap':>6s} {'NLL - normal':>16s} "
        f"{'gap - normal':>16s} {'train s':>8s}"
    )
    for name, r in results.items():
        diffs = [
            f"{r[k]:+.3f} ± {r[k + '_se']:.3f}" if k in r else ""
            for k in ("nll_minus_normal", "gap_minus_normal")
        ]
        print(
            f"{name:8s} {r['test_elbo']:10.3f} {r['test_nll_iwae']:9.3f} "
            f"{r['iwae_elbo_gap']:6.3f} {diffs[0]:>16s} {diffs[1]:>16s} {r['train_seconds']:8.1f}"
        )
    print(
        f"(nats per image; ± one standard error over the {len(x_test)} test images, paired; "
        "it does not include the spread over training seeds)"
    )

    plot_comparison(
        results,
        per_image,
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
    print_written(out, ["metrics.json", "comparison.png", "samples.png"])
    return metrics


if __name__ == "__main__":
    main()
