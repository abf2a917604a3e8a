"""Latent SDE on the stochastic Lorenz attractor (Li et al. 2020; torchsde's Lorenz setting).

Data: :func:`pyrovi.data.stochastic_lorenz` (σ=10, ρ=28, β=8/3, multiplicative noise 0.1, 0.28,
0.3), ``--num-times`` observations on [0, ``--t-end``], standardized per coordinate, plus
Gaussian observation noise 0.01. The first ``--observe-fraction`` of the times is observed; the
rest is held out for forecasting.

Model and guide: :class:`~pyrovi.models.LatentSDE` (learned prior drift, diagonal diffusion shared
with the guide, linear decoder, Laplace likelihood) and :class:`~pyrovi.guides.PosteriorSDE`
(GRU encoder read backwards in time, posterior drift conditioned on its context), trained by
``pyrovi.infer.fit`` (Pyro's Trace_ELBO; the path KL is the Girsanov log-ratio) with KL annealing.

Reported (``metrics.json``) on held-out series:

* ``test_reconstruction_mse``: mean squared error of the decoded posterior mean (average over
  ``--samples`` posterior paths) against the observed values (standardized units);
* ``test_forecast_mse``: the posterior state at the last observed time continued with the prior
  SDE (``LatentSDE.forecast``), decoded and averaged over samples, against the held-out values;
  next to ``forecast_mse_last_value`` (repeating the last observation) for scale;
* the final training ELBO per series and the wall time.

::

    python examples/latent_sde.py                        # about 45 s on 2 CPU cores
    python examples/latent_sde.py --epochs 300 --num-series 1024 --batch-size 256

Writes ``metrics.json`` and ``latent_sde.png`` (data, reconstructions, forecasts and prior
samples) to ``--out`` (default ``outputs/latent_sde``). ``main(argv)`` returns the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# sleeping (not spinning) OpenMP threads: see examples/flow_density.py; before `import torch`
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import HelpFormatter, describe, positive_int, print_written  # noqa: E402

# Wall time of `python examples/latent_sde.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 45 s"


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=describe(
            "Latent SDE on stochastic Lorenz data: fit, reconstruct, forecast.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--num-series", type=positive_int, default=512, help="training series")
    p.add_argument("--num-test", type=positive_int, default=64, help="held-out series")
    p.add_argument("--num-times", type=positive_int, default=100, help="time points in all")
    p.add_argument(
        "--t-end", type=float, default=2.0, help="last observation time (Lorenz time units)"
    )
    p.add_argument(
        "--observe-fraction",
        type=float,
        default=0.75,
        help="share of the times that is observed; the rest is forecast",
    )
    p.add_argument("--latent-dim", type=positive_int, default=4, help="dimension of the SDE state")
    p.add_argument("--context-dim", type=positive_int, default=64, help="GRU encoder context width")
    p.add_argument("--hidden", type=positive_int, default=128, help="width of the drift networks")
    p.add_argument(
        "--substeps", type=positive_int, default=1, help="Euler-Maruyama steps per time interval"
    )
    p.add_argument("--epochs", type=positive_int, default=50, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=128, help="series per minibatch")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    p.add_argument("--kl-warmup", type=float, default=20.0, help="KL annealing epochs")
    p.add_argument(
        "--kl-estimator",
        choices=("quadratic", "full"),
        default="quadratic",
        help="path KL per step: quadratic (lower variance) or full (the exact Euler-Maruyama "
        "density ratio, with the Itô term)",
    )
    p.add_argument("--samples", type=positive_int, default=8, help="posterior/forecast draws")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and training)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="CPU threads for torch; the small SDE steps ran twice as fast on 1 thread as on 2 "
        "(42 s against 83 s with the defaults)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device, e.g. cpu, cuda; auto: cuda when one is visible, else cpu",
    )
    p.add_argument("--out", default="outputs/latent_sde", help="output folder (created if missing)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-plot", action="store_true", help="skip latent_sde.png")
    return p


def reconstruct(model, guide, xs, samples):
    """Decoded posterior mean ``(B, T, D)`` averaged over ``samples`` posterior paths."""
    import pyro
    import torch

    with torch.no_grad(), pyro.plate("samples", samples, dim=-2):
        path = pyro.poutine.trace(guide).get_trace(xs).nodes["z"]["value"]
        return model.decoder(path).mean(0)


def plot(path, times, obs_times, test, recon, forecast, prior_mean):
    """Data, reconstructions and forecasts of three test series; prior samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    split = len(obs_times)
    names = ("x", "y", "z")
    for j in range(3):
        ax = axes[0, j]
        for i, color in zip(range(3), ("C0", "C1", "C2")):
            ax.plot(times.cpu(), test[i, :, j].cpu(), ".", ms=2, color=color)
            ax.plot(obs_times.cpu(), recon[i, :, j].cpu(), "-", color=color, lw=1)
            for s in range(forecast["mean"].shape[0]):
                ax.plot(
                    times[split:].cpu(),
                    forecast["mean"][s, i, :, j].cpu(),
                    "-",
                    color=color,
                    lw=0.5,
                    alpha=0.5,
                )
        ax.axvline(float(obs_times[-1]), color="k", lw=0.5, ls="--")
        ax.set_title(f"{names[j]}: data (dots), reconstruction, forecasts", fontsize=10)
        ax.set_xlabel("time t (Lorenz time units; dashed: last observation)")
        ax.set_ylabel(f"{names[j]} (standardized)")
    for j, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
        ax = axes[1, j]
        for i in range(min(8, test.shape[0])):
            ax.plot(test[i, :, a].cpu(), test[i, :, b].cpu(), color="0.7", lw=0.5)
        for i in range(prior_mean.shape[0]):
            ax.plot(prior_mean[i, :, a].cpu(), prior_mean[i, :, b].cpu(), lw=0.8)
        ax.set_xlabel(f"{names[a]} (standardized)")
        ax.set_ylabel(f"{names[b]} (standardized)")
        ax.set_title("test data (grey) and prior samples", fontsize=10)
    fig.suptitle(
        "Latent SDE on stochastic Lorenz data: three test series (one color each) with the "
        "decoded posterior mean, forecasts past the dashed line and prior samples"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 < args.observe_fraction < 1:
        parser.error("--observe-fraction must lie strictly between 0 and 1")
    if not args.t_end > 0 or not args.lr > 0:
        parser.error("--t-end and --lr must be positive")
    split = int(round(args.num_times * args.observe_fraction))
    if not 2 <= split < args.num_times:
        parser.error("--num-times too small: need at least 2 observed and 1 held-out time")

    # Heavy imports after the arguments are parsed: --help and usage errors come back at once.
    import pyro
    import torch

    from pyrovi.cli import resolve_device
    from pyrovi.data import stochastic_lorenz
    from pyrovi.guides import PosteriorSDE
    from pyrovi.infer import fit
    from pyrovi.models import LatentSDE

    device = resolve_device(parser, args)
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    times = torch.linspace(0, args.t_end, args.num_times)
    data = stochastic_lorenz(
        args.num_series + args.num_test, times, normalize=True, obs_noise=0.01, seed=args.seed
    ).values.to(device)
    times = times.to(device)
    obs_times = times[:split]
    train, test = data[: args.num_series, :split], data[args.num_series :]

    model = LatentSDE(
        3,
        obs_times,
        latent_dim=args.latent_dim,
        hidden=args.hidden,
        substeps=args.substeps,
        kl_estimator=args.kl_estimator,
    ).to(device)
    guide = PosteriorSDE(model, context_dim=args.context_dim, hidden=args.hidden).to(device)
    result = fit(
        model,
        guide,
        train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_annealing=args.kl_warmup,
        progress=not args.no_progress,  # a bar only when stderr is a terminal
        seed=args.seed,
    )
    train_seconds = time.perf_counter() - t_start

    model.eval(), guide.eval()
    observed = test[:, :split]
    recon = reconstruct(model, guide, observed, args.samples)
    forecast = model.forecast(guide, observed, times[split:], num_samples=args.samples)
    held_out = test[:, split:]
    forecast_mse = float((forecast["mean"].mean(0) - held_out).pow(2).mean())
    last_value = float((observed[:, -1:] - held_out).pow(2).mean())
    with torch.no_grad():
        prior_path = model(None, num_series=6)
        prior_mean = model.decoder(prior_path)
    metrics = {
        "data": {
            "train_series": args.num_series,
            "test_series": args.num_test,
            "observed_times": split,
            "forecast_times": args.num_times - split,
            "t_end": args.t_end,
        },
        "settings": {
            k: getattr(args, k)
            for k in (
                "latent_dim",
                "context_dim",
                "hidden",
                "substeps",
                "epochs",
                "batch_size",
                "lr",
                "kl_warmup",
                "kl_estimator",
                "samples",
                "seed",
                "threads",
            )
        },
        "train_elbo_per_series_last_epoch": result.history["train_elbo"][-1],
        "test_reconstruction_mse": float((recon - observed).pow(2).mean()),
        "test_forecast_mse": forecast_mse,
        "forecast_mse_last_value": last_value,
        "train_seconds": train_seconds,
    }
    written = ["metrics.json"]
    if not args.no_plot:
        plot(out / "latent_sde.png", times, obs_times, test, recon, forecast, prior_mean)
        written.append("latent_sde.png")
    metrics["seconds"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(
        f"train ELBO {metrics['train_elbo_per_series_last_epoch']:.1f} nats/series (last epoch); "
        f"test reconstruction MSE {metrics['test_reconstruction_mse']:.3f}, forecast MSE "
        f"{forecast_mse:.3f} (repeating the last value: {last_value:.3f}), standardized units; "
        f"{metrics['seconds']:.0f} s"
    )
    print_written(out, written)
    return metrics


if __name__ == "__main__":
    main()
