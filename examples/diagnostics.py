"""Read an SVI posterior the way MCMC users do: ArviZ, PSIS k-hat, inference gaps, collapse.

Two models, both fitted with ``pyrovi.fit``:

* **Bayesian linear regression** (global latents ``w``, ``b``, ``sigma``) on synthetic data with
  correlated features, fitted once with a mean-field guide (``AutoNormal``) and once with a
  full-covariance guide (``AutoMultivariateNormal``). The Pareto k-hat of the joint importance
  weights tells the two apart; ``az.summary``, PSIS-LOO, ``az.plot_posterior`` and
  ``az.plot_ppc`` run on the InferenceData of the full-covariance fit.
* **VAE** on the 8x8 digits (local latents, amortized diagonal Gaussian guide): k-hat per test
  image, the approximation and amortization gaps (Cremer et al. 2018), active units and KL per
  latent dimension (posterior collapse).

The default run takes about 35 s on two CPU cores (``RUN_TIME``)::

    python examples/diagnostics.py
    python examples/diagnostics.py --z-dim 32 --epochs 200
    python examples/diagnostics.py --guide mvn --refine-steps 500

It writes ``regression.nc`` and ``vae.nc`` (netCDF; reload with
``pyrovi.diagnostics.load_inference_data`` or ``az.from_netcdf``),
``metrics.json`` and the figures ``regression_posterior.png``, ``regression_ppc.png``,
``regression_elbo.png``, ``vae_elbo.png``, ``vae_khat.png``, ``vae_gaps.png``, ``vae_kl.png``,
``vae_latent.png``, ``vae_reconstructions.png``, ``vae_samples.png`` to ``--out`` (default
``outputs/diagnostics``). ``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

# OpenMP threads that sleep instead of spinning while they wait (see examples/vae.py); read when
# torch loads its OpenMP runtime, so it has to come before `import torch`.
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

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Wall time of `python examples/diagnostics.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 35 s"

FIGURES = (
    "regression_posterior.png",
    "regression_ppc.png",
    "regression_elbo.png",
    "vae_elbo.png",
    "vae_khat.png",
    "vae_gaps.png",
    "vae_kl.png",
    "vae_latent.png",
    "vae_reconstructions.png",
    "vae_samples.png",
)


def save_figure(
    fig,
    path: Path,
    *,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    extra_legend: tuple = (),
) -> None:
    """Save ``fig`` with all its legends gathered into one below the plots, where none covers data.

    Args:
        fig: A matplotlib Figure (from pyrovi's or ArviZ's plot functions).
        path: The PNG to write.
        title: Figure title (``suptitle``), if the plot function set none.
        xlabel, ylabel: Figure-wide axis labels, for panels that have none.
        extra_legend: ``(handle, label)`` pairs added to the legend (e.g. for bars).
    """
    handles, labels = [], []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            more_handles, more_labels = ax.get_legend_handles_labels()
            handles += more_handles
            labels += more_labels
            legend.remove()
    for handle, label in extra_legend:
        handles.append(handle)
        labels.append(label)
    fig.set_layout_engine("constrained")
    if title:
        fig.suptitle(title)
    if xlabel:
        fig.supxlabel(xlabel)
    if ylabel:
        fig.supylabel(ylabel)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=2 if len(labels) == 4 else min(3, len(labels)),
            fontsize="small",
            frameon=False,
        )
    fig.savefig(path, dpi=110)


def _arviz():
    with warnings.catch_warnings():  # ArviZ's once-a-day notice about its coming refactor
        warnings.filterwarnings("ignore", category=FutureWarning)
        import arviz

    return arviz


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Posterior diagnostics with ArviZ for SVI: a Bayesian regression (global\n"
            "latents) and a VAE (local latents).",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    add_data_arguments(p)
    add_training_arguments(
        p, out="outputs/diagnostics", defaults={"epochs": 100}, epochs_help="VAE training epochs"
    )  # --batch-size, --lr, --device and --checkpoint apply to the VAE; the regression is full
    # batch on the CPU
    g = p.add_argument_group("regression")
    g.add_argument("--reg-n", type=positive_int, default=200, help="regression datapoints")
    g.add_argument("--reg-features", type=positive_int, default=5, help="regression features")
    g.add_argument(
        "--reg-correlation",
        type=float,
        default=0.9,
        help="correlation between the regression features",
    )
    g.add_argument("--reg-steps", type=positive_int, default=1500, help="SVI steps (full batch)")
    g.add_argument("--reg-lr", type=float, default=0.02, help="regression learning rate")
    g.add_argument(
        "--reg-khat-samples",
        type=positive_int,
        default=10000,
        help="draws for the k-hat of each regression guide (at least 21; k-hat near 0.7 needs "
        "thousands to be told apart from 0.5)",
    )
    g.add_argument(
        "--draws", type=positive_int, default=1000, help="posterior draws of the regression"
    )
    g = p.add_argument_group("VAE")
    g.add_argument("--z-dim", type=positive_int, default=16, help="latent dimension")
    g.add_argument(
        "--hidden",
        type=int_list,
        default="256,128",
        help="encoder hidden widths (decoder reversed)",
    )
    g.add_argument(
        "--guide",
        choices=("normal", "mvn"),
        default="normal",
        help="normal: diagonal Gaussian q(z|x); mvn: full covariance",
    )
    g.add_argument("--vae-draws", type=positive_int, default=100, help="posterior draws in vae.nc")
    g.add_argument(
        "--khat-samples", type=positive_int, default=1000, help="draws per image for k-hat"
    )
    g.add_argument(
        "--iwae-k",
        type=positive_int,
        default=1000,
        help="draws per image for log p(x) (IWAE) and the ELBOs of the gaps",
    )
    g.add_argument(
        "--refine-steps",
        type=positive_int,
        default=300,
        help="Adam steps of the per-image optimized guide q*",
    )
    g.add_argument(
        "--gap-points",
        type=positive_int,
        default=None,
        help="test images for the gaps (default: all of them)",
    )
    return p


# --------------------------------------------------------------------------- regression


def regression_model(x: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """``y = x w + b + sigma * noise`` with ``w ~ N(0, I)``, ``b ~ N(0, 5²)``,
    ``sigma ~ HalfNormal(1)``; ``mu`` is recorded as a deterministic site.

    Written to broadcast over an outer plate of draws (``(x * w).sum(-1)`` rather than
    ``x @ w``), so that ``to_inference_data(..., parallel=True)`` draws all samples at once.
    """
    import pyro
    import pyro.distributions as dist

    p = x.shape[-1]
    w = pyro.sample("w", dist.Normal(x.new_zeros(p), 1.0).to_event(1))
    b = pyro.sample("b", dist.Normal(x.new_zeros(()), 5.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(x.new_ones(())))
    with pyro.plate("data", x.shape[0]):
        mu = pyro.deterministic("mu", (x * w).sum(-1) + b, event_dim=0)
        pyro.sample("y", dist.Normal(mu, sigma), obs=y)


def regression_data(n: int, p: int, correlation: float, seed: int):
    """Features with pairwise correlation ``correlation`` and a response from known weights."""
    import torch

    g = torch.Generator().manual_seed(seed)
    common = torch.randn(n, 1, generator=g)
    x = math.sqrt(correlation) * common + math.sqrt(1 - correlation) * torch.randn(
        n, p, generator=g
    )
    w = torch.linspace(1.0, -1.0, p)
    y = x @ w + 0.5 + 0.8 * torch.randn(n, generator=g)
    return x, y, w


def run_regression(args: argparse.Namespace, out: Path) -> dict:
    """Fit both guides, print their k-hats, then the ArviZ view of the full-covariance fit."""
    import pyro
    from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

    from pyrovi import fit
    from pyrovi.diagnostics import plot_elbo, psis_khat, to_inference_data

    az = _arviz()
    x, y, w_true = regression_data(args.reg_n, args.reg_features, args.reg_correlation, args.seed)
    print(
        f"\n== Bayesian linear regression: {args.reg_n} points, {args.reg_features} features "
        f"(correlation {args.reg_correlation}), true w = {[round(v, 2) for v in w_true.tolist()]},"
        " b = 0.5, sigma = 0.8"
    )
    metrics: dict = {"regression": {}}
    for name, guide_cls in (
        ("AutoNormal", AutoNormal),
        ("AutoMultivariateNormal", AutoMultivariateNormal),
    ):
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        guide = guide_cls(regression_model)
        result = fit(
            regression_model,
            guide,
            (x, y),
            epochs=args.reg_steps,
            batch_size=args.reg_n,
            lr=args.reg_lr,
            seed=args.seed,
            progress=False,
        )
        k = psis_khat(
            regression_model, guide, x, y, num_samples=args.reg_khat_samples, parallel=True
        )
        print(
            f"{name:>22}: final ELBO {result.history['train_elbo'][-1] * args.reg_n:.2f} nats, "
            f"{k.summary()}"
        )
        metrics["regression"][name] = {
            "elbo": result.history["train_elbo"][-1] * args.reg_n,
            "khat": float(k.khat),
        }
    # The full-covariance fit (the last one) as InferenceData.
    idata = to_inference_data(
        regression_model,
        guide,
        x,
        y,
        num_samples=args.draws,
        parallel=True,
        dims={"w": ["feature"]},
        coords={"feature": [f"x{i}" for i in range(args.reg_features)]},
    )
    idata.to_netcdf(out / "regression.nc")
    summary = az.summary(idata, var_names=["w", "b", "sigma"], kind="stats")
    print(summary.to_string())
    loo = az.loo(idata)
    print(loo)
    metrics["regression"]["loo"] = {
        "elpd_loo": float(loo.elpd_loo),
        "se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "max_pareto_k": float(loo.pareto_k.max()),
    }
    import matplotlib.pyplot as plt

    axes = az.plot_posterior(idata, var_names=["w", "b", "sigma"], figsize=(11, 8))
    fig = axes.ravel()[0].figure
    save_figure(
        fig,
        out / "regression_posterior.png",
        title=f"Regression posterior, AutoMultivariateNormal ({args.draws} draws; "
        f"true w = {[round(v, 2) for v in w_true.tolist()]}, b = 0.5, sigma = 0.8)",
        xlabel="parameter value",
    )
    plt.close(fig)
    ax = az.plot_ppc(idata, num_pp_samples=min(100, args.draws), random_seed=args.seed)
    fig = getattr(ax, "figure", None) or ax.ravel()[0].figure
    save_figure(
        fig,
        out / "regression_ppc.png",
        title="Regression: posterior predictive check (densities of y)",
        ylabel="density",
    )
    plt.close(fig)
    save_figure(
        plot_elbo(result, "regression (AutoMultivariateNormal): ELBO per datapoint"),
        out / "regression_elbo.png",
    )
    return metrics


# --------------------------------------------------------------------------- VAE


def run_vae(args: argparse.Namespace, out: Path, device: torch.device, parser) -> dict:
    """Train a VAE on the data set and print k-hat, gaps and collapse statistics."""
    import pyro
    import torch

    from pyrovi import VAE, AmortizedMultivariateNormal, AmortizedNormal, fit
    from pyrovi.data import DynamicBinarization, binarize_data
    from pyrovi.diagnostics import (
        inference_gaps,
        plot_elbo,
        plot_gaps,
        plot_khat,
        plot_kl_per_dimension,
        plot_latent,
        plot_reconstructions,
        plot_samples,
        posterior_collapse,
        psis_khat,
        to_inference_data,
    )

    data = load_data_or_exit(parser, args)
    binary = binarize_data(data, seed=0)
    x_train, x_test = data.x_train.to(device), binary.x_test.to(device)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model = VAE(data.x_dim, args.z_dim, hidden_dims=args.hidden).to(device)
    guide_cls = AmortizedNormal if args.guide == "normal" else AmortizedMultivariateNormal
    guide = guide_cls(data.x_dim, args.z_dim, hidden_dims=args.hidden).to(device)
    print(
        f"\n== VAE on {data.name}: {len(x_train)} train / {len(x_test)} test images, "
        f"z_dim={args.z_dim}, hidden={args.hidden}, guide={args.guide}, epochs={args.epochs}"
    )
    t0 = time.perf_counter()
    result = fit(
        model,
        guide,
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
        transform=DynamicBinarization(torch.Generator(device=device).manual_seed(args.seed)),
        seed=args.seed,
        progress=not args.no_progress,
        checkpoint=args.checkpoint,
        resume=args.resume,
    )
    print(
        f"trained in {time.perf_counter() - t0:.1f} s; final train ELBO "
        f"{result.history['train_elbo'][-1]:.3f} nats/image"
    )
    model.eval()
    guide.eval()
    metrics: dict = {"train_elbo": result.history["train_elbo"][-1]}

    t0 = time.perf_counter()
    idata = to_inference_data(model, guide, x_test, num_samples=args.vae_draws, parallel=True)
    idata.to_netcdf(out / "vae.nc")
    print(
        f"InferenceData of the test set ({args.vae_draws} draws): posterior z "
        f"{dict(idata.posterior['z'].sizes)}, log_likelihood x "
        f"{dict(idata.log_likelihood['x'].sizes)}; q(z|x) of the first test image:"
    )
    az = _arviz()
    print(az.summary(idata, var_names=["z"], coords={"data": [0]}, kind="stats").to_string())

    k = psis_khat(model, guide, x_test, num_samples=args.khat_samples)
    print(k.summary())
    save_figure(
        plot_khat(k, f"{data.name}: Pareto k-hat of q(z|x) per test image"), out / "vae_khat.png"
    )
    counts = k.counts()
    metrics["khat"] = {
        "median": k.khat.median().item(),
        "max": k.khat.max().item(),
        "fraction_good": counts["good"] / k.khat.numel(),
        "fraction_ok": counts["ok"] / k.khat.numel(),
        "fraction_bad": counts["bad"] / k.khat.numel(),
    }

    n_gap = min(args.gap_points or len(x_test), len(x_test))
    gaps = inference_gaps(
        model, guide, x_test[:n_gap], num_samples=args.iwae_k, refine_steps=args.refine_steps
    )
    print(gaps.summary())
    if gaps.khat is not None:
        bad = (gaps.khat >= 0.7).double().mean().item()
        print(
            f"  (k-hat of q* >= 0.7 for {100 * bad:.1f}% of the images: there log p(x) and the "
            "approximation gap are underestimated)"
        )
    save_figure(
        plot_gaps(gaps, f"{data.name}: gaps per test image ({n_gap} images)"),
        out / "vae_gaps.png",
    )
    metrics["gaps"] = {**gaps.mean(), "num_images": n_gap}

    collapse = posterior_collapse(model, guide, x_test)
    print(collapse.summary())
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    save_figure(
        plot_kl_per_dimension(
            collapse, f"{data.name} VAE: KL(q(z_d|x) || p(z_d)) per latent dimension"
        ),
        out / "vae_kl.png",
        extra_legend=(
            (Patch(color="tab:blue"), "KL, active dimension"),
            (Patch(color="lightgrey"), "KL, inactive dimension"),
            (Line2D([], [], color="black", ls=":", lw=0.8), "activity threshold"),
        ),
    )
    metrics["collapse"] = {
        "active_units": collapse.num_active,
        "z_dim": args.z_dim,
        "kl_per_dimension": collapse.kl.tolist(),
        "activity": collapse.activity.tolist(),
    }
    print(f"diagnostics took {time.perf_counter() - t0:.1f} s")

    h, w = data.image_shape
    with torch.no_grad():
        z_mean = guide.encode(x_test)[0]
        n_show = min(16, len(x_test))
        recon = model.decode(z_mean[:n_show])
        plot_reconstructions(
            x_test[:n_show],
            recon,
            (h, w),
            f"{data.name}: binarized test images and reconstructions (decoder mean at encoder "
            "mean)",
            path=out / "vae_reconstructions.png",
        )
        plot_samples(
            model.sample_prior(32),
            (h, w),
            f"{data.name}: decoder means of z ~ N(0, I)",
            path=out / "vae_samples.png",
        )
    plot_latent(z_mean, data.y_test, f"{data.name}: encoder means", path=out / "vae_latent.png")
    save_figure(plot_elbo(result, f"{data.name} VAE: ELBO per image"), out / "vae_elbo.png")
    return {"vae": metrics}


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.reg_correlation < 1:
        parser.error("--reg-correlation must be in [0, 1)")
    for name in ("khat_samples", "reg_khat_samples"):
        if getattr(args, name) < 21:
            parser.error(f"--{name.replace('_', '-')} must be at least 21 (PSIS fits a tail of 5)")

    import torch  # after parsing: --help and usage errors come back at once

    device = resolve_device(parser, args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    metrics = run_regression(args, out)
    metrics.update(run_vae(args, out, device, parser))
    metrics["seconds"] = time.perf_counter() - t0
    with open(out / "metrics.json", "w") as f:
        json.dump(_finite(metrics), f, indent=2)
    print(f"\ntook {metrics['seconds']:.0f} s")
    print_written(out, ["regression.nc", "vae.nc", "metrics.json", *FIGURES])
    return metrics


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float):
        return finite_or_none(obj)
    return obj


if __name__ == "__main__":
    main()
