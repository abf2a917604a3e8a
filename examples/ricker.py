"""Amortized posterior of the Ricker population model: NPE with a conditional flow against ABC.

The Ricker model (Wood 2010) is an implicit simulator: ``N_{t+1} = r N_t exp(−N_t + e_t)``,
``e_t ~ N(0, σ²)``, ``y_t ~ Poisson(φ N_t)``, T = 50, N₀ = 1, with θ = (log r, σ, φ) and priors
``log r ~ U(3, 5)``, ``σ ~ U(0, 0.8)``, ``φ ~ U(4, 20)``. Its likelihood is intractable, but
simulating is cheap. Both methods below see the same simulations ``(θ_i, y_i) ~ p(θ) p(y | θ)``
and Wood's 13 summary statistics of each series:

* NPE (:class:`pyrovi.infer.NPE`): a conditional flow ``q_φ(θ | s(y))`` (an MLP embedding of the
  standardized summaries as its context; bounded parameters learned in unconstrained space)
  trained by maximum likelihood; afterwards the posterior of any data set is one forward pass;
* rejection ABC (:func:`pyrovi.infer.abc_rejection`): the ``--abc-quantile`` fraction of the
  simulations whose standardized summaries are nearest to the observed ones.

The observed series is simulated at the reference truth (log r, σ, φ) = (3.8, 0.3, 10). Both
methods are then checked by simulation-based calibration on ``--sbc-tests`` fresh simulations
(ABC reusing its bank of simulations for every test data set).

::

    python examples/ricker.py                       # 10⁴ simulations; RUN_TIME below
    python examples/ricker.py --num-simulations 100000 --abc-quantile 0.001
    python examples/ricker.py --embedding gru --no-summaries     # a GRU on the raw series

Writes ``metrics.json`` (posterior means, sds, 90% intervals, times, SBC p-values),
``posterior.png`` (marginals of both methods with the truth), ``sbc.png`` and ``sbc_abc.png``
(rank histograms of NPE and ABC) to ``--out`` (default ``outputs/ricker``) and says where.
``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

# sleeping (not spinning) OpenMP threads; must be set before torch loads its OpenMP runtime
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import HelpFormatter, describe, positive_int, print_written  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pyrovi.infer.calibration import SBCResult

# Wall time of `python examples/ricker.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 2 min"

PARAMS = ("log_r", "sigma", "phi")
LABELS = {"log_r": "log r", "sigma": "σ", "phi": "φ"}
FIGURES = ("posterior.png", "sbc.png", "sbc_abc.png")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Ricker model: neural posterior estimation (conditional flow) vs rejection ABC at\n"
            "the same simulation budget, with simulation-based calibration.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--num-simulations", type=positive_int, default=10_000, help="budget (both methods)"
    )
    p.add_argument("--abc-quantile", type=float, default=0.01, help="ABC acceptance fraction")
    p.add_argument(
        "--flow", choices=("maf", "nsf", "realnvp"), default="nsf", help="conditional flow"
    )
    p.add_argument("--num-layers", type=positive_int, default=5, help="flow layers")
    p.add_argument("--hidden-features", type=positive_int, default=64, help="flow width")
    p.add_argument(
        "--embedding",
        choices=("mlp", "conv", "gru", "identity"),
        default="mlp",
        help="embedding net (mlp/identity on summaries, conv/gru on the raw series)",
    )
    p.add_argument(
        "--no-summaries", action="store_true", help="feed the raw series (use conv or gru)"
    )
    p.add_argument("--max-epochs", type=positive_int, default=500, help="NPE training epochs")
    p.add_argument("--patience", type=positive_int, default=20, help="early-stopping epochs")
    p.add_argument("--batch-size", type=positive_int, default=200, help="minibatch size")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--posterior-samples",
        type=positive_int,
        default=4000,
        help="NPE draws for the observed series",
    )
    p.add_argument("--sbc-tests", type=positive_int, default=300, help="SBC simulations")
    p.add_argument("--sbc-samples", type=positive_int, default=99, help="NPE draws per SBC test")
    p.add_argument("--seed", type=int, default=0, help="seed of simulations and training")
    p.add_argument("--obs-seed", type=int, default=1, help="seed of the observed series")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch (default: 2, or fewer CPUs if the machine has fewer)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--out", default="outputs/ricker", help="output folder (created if missing)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def summarize(samples: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean, sd and the 5%/95% quantiles (a 90% central interval) of each parameter."""
    import torch

    from pyrovi.models import RICKER_TRUTH

    out = {}
    q = torch.quantile(samples.double(), torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
    for j, name in enumerate(PARAMS):
        lo, hi = float(q[0, j]), float(q[1, j])
        out[name] = {
            "mean": float(samples[:, j].double().mean()),
            "sd": float(samples[:, j].double().std()),
            "ci90": [lo, hi],
            "truth_in_ci90": bool(lo <= RICKER_TRUTH[name] <= hi),
        }
    return out


def abc_sbc(theta, y, bank_theta, bank_y, summary, quantile, progress=True) -> SBCResult:
    """SBC ranks of rejection ABC: for each test series, ABC on the bank of simulations."""
    import torch

    from pyrovi._progress import progress_bar
    from pyrovi.infer import abc_rejection
    from pyrovi.infer.calibration import SBCResult, sbc_uniformity

    ranks = []
    with torch.no_grad():
        bank_s = summary(bank_y)
    with progress_bar(len(theta), desc="ABC SBC", progress=progress, unit="test") as bar:
        for t, y_t in zip(theta, y, strict=True):
            draws = abc_rejection(
                None,
                PARAMS,
                "y",
                y_t,
                theta=bank_theta,
                y=bank_y,
                summary=summary,
                summaries=bank_s,
                quantile=quantile,
            ).samples
            ranks.append((draws < t).sum(0))
            bar.update(1)
    ranks_t = torch.stack(ranks).cpu()
    num = int(draws.shape[0])
    return SBCResult(ranks_t, num, sbc_uniformity(ranks_t, num))


def plot_posteriors(npe_samples, abc_samples, path: Path) -> None:
    """Marginal histograms of both methods, with the truth and the prior range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from pyrovi.models import RICKER_TRUTH

    prior = {"log_r": (3.0, 5.0), "sigma": (0.0, 0.8), "phi": (4.0, 20.0)}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for j, (ax, name) in enumerate(zip(axes, PARAMS, strict=True)):
        lo, hi = prior[name]
        bins = torch.linspace(lo, hi, 41).numpy()
        ax.hist(npe_samples[:, j].numpy(), bins=bins, density=True, alpha=0.6, label="NPE")
        ax.hist(abc_samples[:, j].numpy(), bins=bins, density=True, alpha=0.6, label="ABC")
        ax.axvline(RICKER_TRUTH[name], color="k", ls="--", label="truth")
        ax.set_xlabel(LABELS[name])
        ax.set_xlim(lo, hi)
    axes[0].set_ylabel("posterior density")
    axes[0].legend(fontsize=8)
    fig.suptitle("Ricker model: posterior marginals for the observed series (x range: the prior)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns the metrics (also written to ``<out>/metrics.json``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.abc_quantile <= 1.0:
        parser.error(f"--abc-quantile must be in (0, 1], got {args.abc_quantile}")
    if args.no_summaries and args.embedding in ("mlp", "identity"):
        parser.error("--no-summaries needs --embedding conv or gru (a network on the raw series)")

    import pyro
    import torch

    from pyrovi.infer import NPE, abc_rejection, plot_sbc_ranks, sbc_ranks
    from pyrovi.models import RICKER_TRUTH, RickerModel, WoodSummary, simulate_ricker_at

    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        parser.error(f"--device {args.device!r} is not usable: {err}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress  # bars only when stderr is a terminal (pyrovi._progress)

    pyro.set_rng_seed(args.seed)
    model = RickerModel().to(device)
    summary = WoodSummary().to(device)
    y_obs = simulate_ricker_at(RICKER_TRUTH, seed=args.obs_seed).to(device)
    npe = NPE(
        model,
        PARAMS,
        "y",
        summary=None if args.no_summaries else summary,
        embedding=args.embedding,
        flow=args.flow,
        num_layers=args.num_layers,
        hidden_features=args.hidden_features,
        device=device,
    )
    t0 = time.perf_counter()
    theta, y = npe.simulate(args.num_simulations, progress=progress)
    sim_s = time.perf_counter() - t0
    print(f"{args.num_simulations} simulations in {sim_s:.2f} s")

    result = npe.train(
        theta=theta,
        y=y,
        batch_size=args.batch_size,
        lr=args.lr,
        max_epochs=args.max_epochs,
        patience=args.patience,
        progress=progress,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    with torch.no_grad():
        npe_samples = npe.posterior(y_obs).sample((args.posterior_samples,)).cpu()
    npe_infer_s = time.perf_counter() - t0
    print(
        f"NPE: {result.epochs} epochs (best {result.best_epoch}) in {result.timings['train_s']:.1f}"
        f" s; {args.posterior_samples} posterior draws in {npe_infer_s:.3f} s"
    )
    abc = abc_rejection(
        model, PARAMS, "y", y_obs, theta=theta, y=y, summary=summary, quantile=args.abc_quantile
    )
    abc_samples = abc.samples.cpu()
    print(
        f"ABC: {len(abc_samples)} accepted (ε = {abc.threshold:.3g}) in "
        f"{abc.timings['total_s']:.2f} s"
    )

    # simulation-based calibration on fresh simulations
    pyro.set_rng_seed(args.seed + 1)
    t_theta, t_y = npe.simulate(args.sbc_tests, progress=progress)
    t0 = time.perf_counter()
    npe_sbc = sbc_ranks(
        lambda yy, L: npe.posterior(yy).sample((L,)), t_theta, t_y, args.sbc_samples
    )
    npe_sbc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    abc_cal = abc_sbc(t_theta, t_y, theta, y, summary, args.abc_quantile, progress)
    abc_sbc_s = time.perf_counter() - t0
    names = [LABELS[p] for p in PARAMS]
    for result_sbc, method, name in ((npe_sbc, "NPE", "sbc.png"), (abc_cal, "ABC", "sbc_abc.png")):
        fig = plot_sbc_ranks(result_sbc, [f"{method} {n}" for n in names])
        fig.suptitle(
            f"{method}: SBC ranks of the truth among the posterior draws, {args.sbc_tests} tests"
        )
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        _close_figure(fig)
    plot_posteriors(npe_samples, abc_samples, out / "posterior.png")

    metrics = {
        "truth": RICKER_TRUTH,
        "y_obs": y_obs.cpu().tolist(),
        "num_simulations": args.num_simulations,
        "simulation_s": sim_s,
        "npe": {
            "posterior": summarize(npe_samples),
            "train_s": result.timings["train_s"],
            "inference_s": npe_infer_s,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "num_dropped": result.num_dropped,
            "flow": args.flow,
            "embedding": args.embedding,
            "summaries": not args.no_summaries,
            "sbc_p_values": dict(zip(PARAMS, npe_sbc.p_values.tolist(), strict=True)),
            "sbc_s": npe_sbc_s,
        },
        "abc": {
            "posterior": summarize(abc_samples),
            "quantile": args.abc_quantile,
            "accepted": len(abc_samples),
            "threshold": abc.threshold,
            "total_s": abc.timings["total_s"],
            "sbc_p_values": dict(zip(PARAMS, abc_cal.p_values.tolist(), strict=True)),
            "sbc_s": abc_sbc_s,
        },
        "sbc_tests": args.sbc_tests,
        "threads": args.threads,
        "device": str(device),
        "seed": args.seed,
    }
    for method in ("npe", "abc"):
        for name, row in metrics[method]["posterior"].items():
            lo, hi = row["ci90"]
            print(
                f"{method.upper()} {LABELS[name]:6s} mean {row['mean']:7.3f} sd {row['sd']:6.3f} "
                f"90% [{lo:7.3f}, {hi:7.3f}]  truth {RICKER_TRUTH[name]}"
            )
        p_values = ", ".join(f"{v:.3f}" for v in metrics[method]["sbc_p_values"].values())
        print(f"{method.upper()} SBC p-values: {p_values}")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print_written(out, ["metrics.json", *FIGURES])
    return metrics


def _close_figure(fig) -> None:
    """Free a figure's memory (pyplot keeps every figure it made until closed)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


if __name__ == "__main__":
    main()
