"""Several Ricker series sharing parameters: NUTS on a learned likelihood, against ABC and NPE.

Each of ``--num-series`` population series follows the Ricker model (Wood 2010),
``N_{t+1} = r_g N_t exp(−N_t + σ ε_t)``, ``y_t ~ Poisson(φ N_t)``, T = 50, with its own growth
rate and the noise σ and the observation scale φ shared. A hierarchical Pyro model ties the
growth rates together::

    μ ~ U(3.3, 4.7),  τ ~ U(0.02, 0.4),  σ ~ U(0, 0.8),  φ ~ U(4, 20)
    log r_g ~ N(μ, τ)                        for g = 1..G   (pyro.plate("series", G))
    y_g ~ Ricker(log r_g, σ, φ)

The likelihood of a series is intractable. Three methods see the same number of simulated
series (``--num-simulations``) and Wood's 13 summary statistics of each series:

* NLE (:class:`pyrovi.infer.NLE`): a conditional flow ``q(s(y) | log r, σ, φ)`` fitted on
  single-series simulations; the hierarchical model then uses it as a Pyro distribution,
  ``pyro.sample("y", nle.likelihood({...}), obs=y)`` inside the plate, and Pyro's NUTS samples
  the joint posterior of (μ, τ, σ, φ, log r_1..G). One likelihood serves any number of series;
* NPE (:class:`pyrovi.infer.NPE`) on the hierarchical simulator, the G series' summaries
  concatenated: it applies because G is fixed, but each training pair costs G series, so it sees
  ``num_simulations / G`` data sets;
* rejection ABC (:func:`pyrovi.infer.abc_rejection`) on the same hierarchical simulations.

The observed series are simulated at μ = 3.8, τ = 0.1, σ = 0.3, φ = 10 (``--obs-seed``).

::

    python examples/ricker_hierarchical.py                  # RUN_TIME below
    python examples/ricker_hierarchical.py --num-series 10 --num-simulations 50000

Writes ``metrics.json`` (per method: posterior mean, sd and 90% interval of every parameter, the
truth inside it or not, times) and ``posterior.png`` (marginals of μ, τ, σ, φ) to ``--out``
(default ``outputs/ricker_hierarchical``). ``main(argv)`` returns the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import HelpFormatter, describe, positive_int, print_written  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Wall time of `python examples/ricker_hierarchical.py` (the defaults) on 2 CPU cores.
RUN_TIME = "about 5 min"

GLOBALS = ("mu", "tau", "sigma", "phi")
TRUTH = {"mu": 3.8, "tau": 0.1, "sigma": 0.3, "phi": 10.0}
PRIOR = {"mu": (3.3, 4.7), "tau": (0.02, 0.4), "sigma": (0.0, 0.8), "phi": (4.0, 20.0)}
LABELS = {"mu": "μ", "tau": "τ", "sigma": "σ", "phi": "φ"}
FIGURES = ("posterior.png",)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Hierarchical Ricker model over several series: NUTS on a learned likelihood (NLE)\n"
            "against NPE and rejection ABC with the same number of simulated series.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--num-series", type=positive_int, default=5, help="G, observed series")
    p.add_argument("--num-steps", type=positive_int, default=50, help="T, length of a series")
    p.add_argument(
        "--num-simulations", type=positive_int, default=10_000, help="simulated series (all)"
    )
    p.add_argument("--abc-quantile", type=float, default=0.02, help="ABC acceptance fraction")
    p.add_argument("--num-layers", type=positive_int, default=5, help="flow layers")
    p.add_argument("--hidden-features", type=positive_int, default=50, help="flow width")
    p.add_argument("--max-epochs", type=positive_int, default=300, help="training epochs (max)")
    p.add_argument("--num-samples", type=positive_int, default=500, help="NUTS draws")
    p.add_argument("--warmup", type=positive_int, default=300, help="NUTS warmup steps")
    p.add_argument("--seed", type=int, default=0, help="seed of simulations, training and NUTS")
    p.add_argument("--obs-seed", type=int, default=1, help="seed of the observed series")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    p.add_argument(
        "--out", default="outputs/ricker_hierarchical", help="output folder (created if missing)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def hierarchical_priors(device: torch.device) -> dict[str, object]:
    """The uniform hyperpriors and shared-parameter priors, on ``device``."""
    import pyro.distributions as dist
    import torch

    return {
        name: dist.Uniform(torch.tensor(lo, device=device), torch.tensor(hi, device=device))
        for name, (lo, hi) in PRIOR.items()
    }


def hierarchical_model(num_series: int, likelihood, device, y: torch.Tensor | None = None):
    """The hierarchical model; ``likelihood(log_r (…, G), sigma, phi)`` gives the distribution of
    the G series (the simulator or the learned likelihood)."""
    import pyro
    import pyro.distributions as dist

    priors = hierarchical_priors(device)
    mu = pyro.sample("mu", priors["mu"])
    tau = pyro.sample("tau", priors["tau"])
    sigma = pyro.sample("sigma", priors["sigma"])
    phi = pyro.sample("phi", priors["phi"])
    with pyro.plate("series", num_series, dim=-1):
        log_r = pyro.sample("log_r", dist.Normal(mu, tau))  # global sites broadcast in the plate
        return pyro.sample("y", likelihood(log_r, sigma, phi), obs=y)


def ricker_simulator(num_steps: int):
    """``likelihood`` for :func:`hierarchical_model` that simulates: process noise as a latent
    site, Poisson counts given the population."""

    def likelihood(log_r, sigma, phi):
        import pyro
        import pyro.distributions as dist
        import torch

        from pyrovi.models.simulators import ricker_population

        zero = torch.zeros((), device=log_r.device)
        eps = pyro.sample(
            "eps", dist.Normal(zero, 1.0).expand(log_r.shape + (num_steps,)).to_event(1)
        )
        n = ricker_population(log_r, sigma.unsqueeze(-1) * eps)
        return dist.Poisson(phi.unsqueeze(-1) * n, validate_args=False).to_event(1)

    return likelihood


def summarize(draws: dict[str, torch.Tensor], truth: dict[str, object]) -> dict[str, dict]:
    """Mean, sd, 90% central interval and whether the truth is inside, per parameter."""
    import torch

    out = {}
    for name, x in draws.items():
        x = x.double().reshape(x.shape[0], -1)
        q = torch.quantile(x, torch.tensor([0.05, 0.95], dtype=torch.float64), dim=0)
        t = torch.as_tensor(truth[name], dtype=torch.float64).reshape(-1)
        out[name] = {
            "mean": x.mean(0).tolist(),
            "sd": x.std(0).tolist(),
            "ci90": [q[0].tolist(), q[1].tolist()],
            "truth": t.tolist(),
            "truth_in_ci90": ((q[0] <= t) & (t <= q[1])).tolist(),
        }
    return out


def plot_marginals(samples: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """Marginal histograms of μ, τ, σ, φ for each method, with the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    fig, axes = plt.subplots(1, len(GLOBALS), figsize=(13, 3.2))
    for ax, name in zip(axes, GLOBALS, strict=True):
        lo, hi = PRIOR[name]
        bins = torch.linspace(lo, hi, 41).numpy()
        for method, draws in samples.items():
            ax.hist(draws[name].cpu().numpy(), bins=bins, density=True, alpha=0.5, label=method)
        ax.axvline(TRUTH[name], color="k", ls="--", label="truth")
        ax.set_xlabel(LABELS[name])
        ax.set_xlim(lo, hi)
    axes[0].set_ylabel("posterior density")
    axes[0].legend(fontsize=8)
    fig.suptitle("Hierarchical Ricker model: posterior marginals (x range: the prior)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns the metrics (also written to ``<out>/metrics.json``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 < args.abc_quantile <= 1.0:
        parser.error(f"--abc-quantile must be in (0, 1], got {args.abc_quantile}")
    if args.num_steps < 2:
        parser.error(f"--num-steps must be at least 2, got {args.num_steps}")
    if args.num_simulations < 2 * args.num_series:
        parser.error("--num-simulations must be at least twice --num-series")

    import pyro
    import torch
    from pyro.infer import MCMC, NUTS, Predictive

    from pyrovi.infer import NLE, NPE, abc_rejection
    from pyrovi.models import RickerModel, WoodSummary

    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        parser.error(f"--device {args.device!r} is not usable: {err}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    g, steps = args.num_series, args.num_steps
    simulator = ricker_simulator(steps)

    # observed series at the truth
    pyro.set_rng_seed(args.obs_seed)
    at_truth = pyro.poutine.condition(
        hierarchical_model, {k: torch.tensor(v, device=device) for k, v in TRUTH.items()}
    )
    trace = pyro.poutine.trace(at_truth).get_trace(g, simulator, device)
    y_obs, true_log_r = trace.nodes["y"]["value"], trace.nodes["log_r"]["value"]
    truth = {**TRUTH, "log_r": true_log_r.cpu()}
    summary = WoodSummary(num_steps=steps).to(device)

    # NLE on single series, then NUTS on the hierarchical model with the learned likelihood
    pyro.set_rng_seed(args.seed)
    nle = NLE(
        RickerModel(num_steps=steps).to(device),
        ["log_r", "sigma", "phi"],
        "y",
        summary=summary,
        num_layers=args.num_layers,
        hidden_features=args.hidden_features,
        device=device,
    )
    fit = nle.train(args.num_simulations, max_epochs=args.max_epochs, progress=progress, seed=0)
    print(f"NLE: {fit.epochs} epochs (best {fit.best_epoch}) in {fit.timings['train_s']:.1f} s")

    def learned(log_r, sigma, phi):
        return nle.likelihood({"log_r": log_r, "sigma": sigma, "phi": phi})

    t0 = time.perf_counter()
    mcmc = MCMC(
        NUTS(hierarchical_model),
        num_samples=args.num_samples,
        warmup_steps=args.warmup,
        disable_progbar=not progress,
    )
    mcmc.run(g, learned, device, y_obs)
    nuts_s = time.perf_counter() - t0
    nle_draws = {k: v.detach() for k, v in mcmc.get_samples().items()}
    print(f"NUTS on the learned likelihood: {args.num_samples} draws in {nuts_s:.1f} s")

    # the hierarchical simulator for NPE and ABC: the same number of simulated series
    num_sets = args.num_simulations // g
    params = [*GLOBALS, "log_r"]
    pyro.set_rng_seed(args.seed + 1)
    t0 = time.perf_counter()
    sims = Predictive(
        hierarchical_model, num_samples=num_sets, return_sites=[*params, "y"], parallel=True
    )(g, simulator, device)
    theta = torch.cat([sims[p].reshape(num_sets, -1) for p in params], -1)
    y_sets = sims["y"].reshape(num_sets, g, steps)
    sim_s = time.perf_counter() - t0

    def set_summary(y: torch.Tensor) -> torch.Tensor:
        return summary(y).flatten(-2)

    npe = NPE(
        lambda: hierarchical_model(g, simulator, device),
        params,
        "y",
        summary=set_summary,
        num_layers=args.num_layers,
        hidden_features=args.hidden_features,
        device=device,
    )
    npe_fit = npe.train(
        theta=theta, y=y_sets, max_epochs=args.max_epochs, progress=progress, seed=0
    )
    npe_theta = npe.posterior(y_obs).sample((4000,))
    npe_draws = {**npe.posterior(y_obs).split(npe_theta)}
    print(f"NPE: {npe_fit.epochs} epochs on {num_sets} data sets of {g} series")
    abc = abc_rejection(
        None,
        params,
        "y",
        y_obs,
        theta=theta,
        y=y_sets,
        summary=set_summary,
        quantile=args.abc_quantile,
    )
    abc_draws = {n: v for n, v in zip(params, abc.samples.split([1, 1, 1, 1, g], -1), strict=True)}
    abc_draws = {n: (v.squeeze(-1) if n != "log_r" else v) for n, v in abc_draws.items()}
    print(f"ABC: {len(abc.samples)} of {num_sets} data sets accepted")

    samples = {"NLE + NUTS": nle_draws, "NPE": npe_draws, "ABC": abc_draws}
    plot_marginals(samples, out / "posterior.png")
    metrics = {
        "truth": {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in truth.items()},
        "num_series": g,
        "num_steps": steps,
        "num_simulated_series": args.num_simulations,
        "nle": {
            "posterior": summarize({p: nle_draws[p] for p in params}, truth),
            "train_s": fit.timings["train_s"],
            "nuts_s": nuts_s,
            "epochs": fit.epochs,
        },
        "npe": {
            "posterior": summarize(npe_draws, truth),
            "train_s": npe_fit.timings["train_s"],
            "num_data_sets": num_sets,
        },
        "abc": {
            "posterior": summarize(abc_draws, truth),
            "accepted": len(abc.samples),
            "quantile": args.abc_quantile,
        },
        "hierarchical_simulation_s": sim_s,
        "seed": args.seed,
        "device": str(device),
    }
    for method in ("nle", "npe", "abc"):
        post = metrics[method]["posterior"]
        row = "  ".join(
            f"{LABELS[n]} {post[n]['mean'][0]:.3f} ± {post[n]['sd'][0]:.3f}" for n in GLOBALS
        )
        inside = sum(sum(v["truth_in_ci90"]) for v in post.values())
        total = sum(len(v["truth_in_ci90"]) for v in post.values())
        print(f"{method.upper():4s} {row}  (truth in 90% interval: {inside}/{total})")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print_written(out, ["metrics.json", *FIGURES])
    return metrics


if __name__ == "__main__":
    main()
