"""Normalizing flows in two dimensions: density estimation and variational inference.

Part ``density`` fits :class:`~pyrovi.models.FlowDensity` by maximum likelihood
(``fit(model, None, x)``) to samples of two toy distributions — two moons (two half circles with
Gaussian noise) and rings (three concentric circles with Gaussian noise) — and reports the
held-out negative log-likelihood of every flow kind next to the NLL of the true density (which
these samplers know: a 1-D integral over the position on the curve, done by quadrature).

Part ``energy`` fits :class:`~pyrovi.guides.FlowGuide` by reverse KL (Pyro's ``SVI`` with
``Trace_ELBO``) to the unnormalized densities ``exp(−U)`` of Rezende & Mohamed (2015), U1–U4,
through the Pyro model::

    z = pyro.sample("z", dist.Normal(0, 1).expand([2]).to_event(1))
    pyro.factor("U", -U(z) - Normal(0, 1).log_prob(z).sum(-1))      # joint density exp(-U(z))

It reports the final ELBO (= log Z − KL(q ‖ p)), log Z estimated by importance sampling with the
guide as proposal (and its effective sample size), log Z by quadrature on a grid, and
KL(q ‖ p) = log Z − ELBO. U2–U4 do not depend on z1 beyond |z1| ≈ 4 except through a bounded
wave, so ``exp(−U)`` has infinite mass over R² and reverse KL would spread q along z1 forever;
by default every target gets a wall outside the box the paper plots, ``½((|z1| − 4)₊ / 0.25)²``
added to U (negligible for U1), which makes log Z finite. ``--no-wall`` uses the energies as
written.

::

    python examples/flow_density.py                          # both parts, nsf and realnvp: ~3 min
    python examples/flow_density.py --parts energy --flows iaf,nsf,planar --steps 2000
    python examples/flow_density.py --parts density --flows maf,nsf,realnvp --epochs 100

The density part is stable across seeds: over seeds 0, 1, 2 (each draws its own data) the
held-out NLL exceeded the true density's by 0.038, 0.032, 0.047 nats (nsf) and 0.174, 0.237,
0.140 (realnvp) on moons, by 0.158, 0.164, 0.251 (nsf) and 0.919, 0.879, 0.826 (realnvp) on
rings. With the defaults (500 SVI steps) the energy fits are not converged and depend on the seed.
Over seeds 0, 1, 2 (``--seed``, ``--threads 1``), KL = log Z − ELBO in nats and the importance
sampling ESS (share of the 100,000 draws) were:

======  ===================  =================  ===================  ==================
target  nsf KL               nsf ESS            realnvp KL           realnvp ESS
======  ===================  =================  ===================  ==================
U1      0.266, 0.043, 0.041  55%, 93%, 93%      0.250, 0.347, 0.921  3.1%, 13.5%, 0.2%
U2      0.038, 0.217, 0.076  88%, 63%, 83%      0.187, 0.155, 0.183  43%, 66%, 20%
U3      0.254, 0.571, 0.762  52%, 0.2%, 6.9%    0.418, 0.292, 0.367  10%, 8.4%, 15%
U4      0.227, 0.282, 0.274  0.2%, 9.0%, 43%    0.385, 0.375, 0.373  0.4%, 0.4%, 5.8%
======  ===================  =================  ===================  ==================

A low ESS means q misses part of exp(−U) and the importance estimate of log Z is unreliable.

Writes ``metrics.json``, ``densities.png`` (data, true density and each flow's density) and
``energies.png`` (exp(−U) and a histogram of each guide's samples) to ``--out`` (default
``outputs/flow_density``). ``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# OpenMP threads that sleep instead of spinning while they wait. With spinning threads (the
# default) these small-batch steps slow down 10-30x whenever another process competes for the
# cores. Read when torch loads its OpenMP runtime, so it has to come before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import (  # noqa: E402
    HelpFormatter,
    describe,
    positive_int,
    print_written,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Wall time of `python examples/flow_density.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 3 min"

# Names of pyrovi.distributions.flow_layers.FLOW_KINDS, pyrovi.data.toy2d.TOY_DATASETS and
# pyrovi.data.energies.ENERGIES, spelled out so that parsing needs no torch
# (tests/test_examples_flows.py checks that they agree with the library).
FLOW_KINDS = ("iaf", "maf", "nsf", "realnvp", "planar", "radial")
DATASET_NAMES = ("moons", "rings", "8gaussians")
TARGET_NAMES = ("U1", "U2", "U3", "U4")
BOX = 6.0  # quadrature and plots on [-BOX, BOX]²


def energy_model(energy: Callable) -> Callable:
    """A Pyro model whose joint density over ``z`` is ``exp(−energy(z))``."""
    import pyro
    import pyro.distributions as dist

    standard = dist.Normal(0.0, 1.0)

    def model() -> torch.Tensor:
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        # replace the N(0, I) prior's log-density by −U
        pyro.factor("U", -energy(z) - standard.log_prob(z).sum(-1))
        return z

    return model


def grid(lo: float, hi: float, n: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(n*n, 2)`` points of an n × n grid (row = z2, column = z1), its axis, and the cell area."""
    import torch

    axis = torch.linspace(lo, hi, n)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], -1), axis, float((axis[1] - axis[0]) ** 2)


# --------------------------------------------------------------------------- command line


def flow_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated flow kinds, e.g. ``"nsf,realnvp"``."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in FLOW_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"expected flow kinds from {FLOW_KINDS}, got {text!r}")
    return kinds


def name_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(k.strip() for k in text.split(",") if k.strip())
        bad = [k for k in names if k not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"expected names from {choices}, got {text!r}")
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "2-D normalizing flows: maximum-likelihood densities (FlowDensity) and\n"
            "reverse-KL fits of the Rezende & Mohamed energies (FlowGuide).",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--parts",
        type=name_list(("density", "energy")),
        default="density,energy",
        help="which parts to run",
    )
    p.add_argument("--flows", type=flow_list, default="nsf,realnvp", help=f"from {FLOW_KINDS}")
    p.add_argument("--num-layers", type=positive_int, default=4, help="flow layers")
    p.add_argument(
        "--hidden-features", type=positive_int, default=32, help="conditioner network width"
    )
    g = p.add_argument_group("density (maximum likelihood)")
    g.add_argument(
        "--datasets",
        type=name_list(DATASET_NAMES),
        default="moons,rings",
        help=f"from {DATASET_NAMES}",
    )
    g.add_argument("--n-train", type=positive_int, default=5000, help="training samples")
    g.add_argument("--n-test", type=positive_int, default=5000, help="held-out samples")
    g.add_argument("--epochs", type=positive_int, default=30, help="epochs of maximum likelihood")
    g.add_argument("--batch-size", type=positive_int, default=256, help="minibatch size")
    g.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (both parts)")
    e = p.add_argument_group("energy (reverse KL)")
    e.add_argument(
        "--targets",
        type=name_list(TARGET_NAMES),
        default="U1,U2,U3,U4",
        help="Rezende & Mohamed energies",
    )
    e.add_argument("--steps", type=positive_int, default=500, help="SVI steps per target")
    e.add_argument("--particles", type=positive_int, default=128, help="ELBO particles per step")
    e.add_argument(
        "--eval-samples",
        type=positive_int,
        default=100_000,
        help="guide samples for the final ELBO and the importance-sampling log Z",
    )
    e.add_argument(
        "--no-wall", action="store_true", help="no wall at |z1| = 4 (log Z infinite for U2–U4)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (data, initialization, SVI)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch (default: 2, or fewer CPUs if the machine has fewer)",
    )
    p.add_argument(
        "--out", default="outputs/flow_density", help="output folder (created if missing)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


# --------------------------------------------------------------------------- part (a)


def run_density(args: argparse.Namespace, show: bool) -> tuple[dict, dict]:
    """Maximum likelihood on each toy data set with each flow. Returns (metrics, plot data)."""
    import pyro
    import torch

    from pyrovi.data.toy2d import TOY_DATASETS
    from pyrovi.infer import fit
    from pyrovi.models import FlowDensity

    metrics: dict[str, dict] = {}
    plots: dict[str, dict] = {}
    points, axis, _ = grid(-4.0, 4.0, 160)
    for d_index, name in enumerate(args.datasets):
        sampler, true_log_prob = TOY_DATASETS[name]
        gen = torch.Generator().manual_seed(args.seed * 1000 + d_index)
        x_train = sampler(args.n_train, gen)
        x_test = sampler(args.n_test, gen)
        true_nll = -true_log_prob(x_test).mean().item()
        entry = {"n_train": len(x_train), "n_test": len(x_test), "true_nll": true_nll}
        heat = {"data": x_train, "true": true_log_prob(points).exp().reshape(len(axis), -1)}
        print(f"[{name}] {len(x_train)} train / {len(x_test)} test; true NLL {true_nll:.3f} nats")
        for kind in args.flows:
            pyro.clear_param_store()
            pyro.set_rng_seed(args.seed)
            model = FlowDensity(
                2, flow=kind, num_layers=args.num_layers, hidden_features=args.hidden_features
            )
            result = fit(
                model,
                None,
                x_train,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                progress=show,
            )
            model.eval()
            t_eval = time.perf_counter()
            with torch.no_grad():
                test_nll = -model.log_prob(x_test).mean().item()
                train_nll = -model.log_prob(x_train).mean().item()
                heat[kind] = model.log_prob(points).exp().reshape(len(axis), -1)
            entry[kind] = {
                "test_nll": test_nll,
                "train_nll": train_nll,
                "excess_nll": test_nll - true_nll,
                "train_seconds": result.timings.get("train_s", float("nan")),
                "eval_seconds": time.perf_counter() - t_eval,
                "history_train_nll": [-v for v in result.history["train_elbo"]],
            }
            print(
                f"[{name}] {kind:8s} held-out NLL {test_nll:.3f} nats (true density "
                f"{true_nll:.3f}, excess {test_nll - true_nll:+.3f}), train NLL {train_nll:.3f}, "
                f"{entry[kind]['train_seconds']:.1f} s"
            )
        metrics[name] = entry
        plots[name] = heat
    return metrics, {"axis": axis, "heat": plots}


def label_outer(axes, xlabel: str, ylabel: str, ticks: tuple[float, ...]) -> None:
    """Ticks and axis labels on the bottom row and the left column of a grid of panels only."""
    for r, row in enumerate(axes):
        for c, ax in enumerate(row):
            ax.set_xticks(ticks if r == len(axes) - 1 else [])
            ax.set_yticks(ticks if c == 0 else [])
            if r == len(axes) - 1:
                ax.set_xlabel(xlabel)
            if c == 0:
                ax.set_ylabel(ylabel)


def plot_densities(plot: dict, metrics: dict, flows: tuple[str, ...], path: Path):
    """Rows: data sets; columns: training data, true density, each flow's density."""
    from matplotlib.figure import Figure

    axis = plot["axis"].numpy()
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    names = list(plot["heat"])
    cols = 2 + len(flows)
    fig = Figure(figsize=(2.6 * cols, 2.7 * len(names)))
    axes = fig.subplots(len(names), cols, squeeze=False)
    for r, name in enumerate(names):
        heat = plot["heat"][name]
        x = heat["data"].numpy()
        ax = axes[r][0]
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4, color="k")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_aspect("equal")
        ax.set_title(f"{name}: {len(x)} samples", fontsize=9)
        vmax = float(heat["true"].max())
        panels = [("true", f"true density, NLL {metrics[name]['true_nll']:.3f}")]
        panels += [(k, f"{k}, NLL {metrics[name][k]['test_nll']:.3f}") for k in flows]
        for c, (key, title) in enumerate(panels, start=1):
            ax = axes[r][c]
            ax.imshow(
                heat[key].numpy(),
                origin="lower",
                extent=extent,
                cmap="viridis",
                vmin=0,
                vmax=vmax,
                interpolation="nearest",
            )
            ax.set_title(title, fontsize=9)
    label_outer(axes, "x₁", "x₂", (-4, 0, 4))
    fig.suptitle("Maximum-likelihood flows (FlowDensity): density on a grid, held-out NLL in nats")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


# --------------------------------------------------------------------------- part (b)


def run_energy(args: argparse.Namespace, show: bool) -> tuple[dict, dict]:
    """Reverse-KL fits of each energy with each flow guide. Returns (metrics, plot data)."""
    import pyro
    import torch
    from pyro.infer import SVI, Trace_ELBO

    from pyrovi._progress import progress_bar
    from pyrovi.data.energies import ENERGIES, wall
    from pyrovi.guides import FlowGuide

    metrics: dict[str, dict] = {}
    plots: dict[str, dict] = {}
    points, axis, cell = grid(-BOX, BOX, 601)
    for t_name in args.targets:
        raw = ENERGIES[t_name]

        def energy(z: torch.Tensor, raw: Callable = raw) -> torch.Tensor:
            return raw(z) if args.no_wall else raw(z) + wall(z)

        with torch.no_grad():
            log_density = -energy(points)
        # quadrature on [-6, 6]^2; with the wall the mass outside the box is negligible
        log_z_grid = (torch.logsumexp(log_density.double(), 0) + math.log(cell)).item()
        entry: dict = {"log_z_grid": log_z_grid, "log_z_grid_box": [-BOX, BOX]}
        heat = {"true": log_density.exp().reshape(len(axis), -1)[::3, ::3]}
        print(f"[{t_name}] log Z by quadrature on [-{BOX:g}, {BOX:g}]²: {log_z_grid:.3f}")
        model = energy_model(energy)
        for kind in args.flows:
            pyro.clear_param_store()
            pyro.set_rng_seed(args.seed)
            guide = FlowGuide(
                model, flow=kind, num_layers=args.num_layers, hidden_features=args.hidden_features
            )
            loss = Trace_ELBO(
                num_particles=args.particles, vectorize_particles=True, max_plate_nesting=0
            )
            svi = SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), loss)
            history = []
            t0 = time.perf_counter()
            with progress_bar(args.steps, desc=f"{t_name} {kind}", progress=show) as bar:
                for _ in range(args.steps):
                    history.append(-svi.step())
                    bar.update()
            train_s = time.perf_counter() - t0
            with torch.no_grad():
                gen_state = torch.get_rng_state()
                torch.manual_seed(args.seed + 1)
                z, log_q = guide.get_posterior().sample_and_log_prob((args.eval_samples,))
                torch.set_rng_state(gen_state)
                log_w = (-energy(z) - log_q).double()
                final_elbo = log_w.mean().item()
                log_z_is = (torch.logsumexp(log_w, 0) - math.log(len(log_w))).item()
                w = torch.softmax(log_w, 0)
                ess = (1.0 / (w**2).sum()).item() / len(log_w)
            entry[kind] = {
                "final_elbo": final_elbo,
                "log_z_importance": log_z_is,
                "importance_ess_fraction": ess,
                "kl_importance": log_z_is - final_elbo,
                "kl_grid": log_z_grid - final_elbo,
                "train_seconds": train_s,
                "ms_per_step": 1000 * train_s / args.steps,
                "history_elbo_every_10": history[::10],
            }
            heat[kind] = z.numpy()
            print(
                f"[{t_name}] {kind:8s} ELBO {final_elbo:.3f}, log Z (IS) {log_z_is:.3f} "
                f"(ESS {100 * ess:.1f}%), KL = log Z − ELBO {log_z_grid - final_elbo:.3f} "
                f"(grid log Z), {train_s:.1f} s"
            )
        metrics[t_name] = entry
        plots[t_name] = heat
    return metrics, {"axis": axis[::3], "heat": plots}


def plot_energies(plot: dict, metrics: dict, flows: tuple[str, ...], path: Path):
    """Rows: targets; columns: exp(−U) on a grid, 2-D histogram of each guide's samples."""
    import numpy as np
    from matplotlib.figure import Figure

    axis = plot["axis"].numpy()
    lim = 4.5
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    names = list(plot["heat"])
    cols = 1 + len(flows)
    fig = Figure(figsize=(2.6 * cols, 2.7 * len(names)))
    axes = fig.subplots(len(names), cols, squeeze=False)
    bins = np.linspace(-lim, lim, 101)
    for r, name in enumerate(names):
        heat = plot["heat"][name]
        ax = axes[r][0]
        ax.imshow(heat["true"].numpy(), origin="lower", extent=extent, cmap="viridis")
        ax.set_title(f"exp(−{name}), log Z {metrics[name]['log_z_grid']:.3f}", fontsize=9)
        for c, kind in enumerate(flows, start=1):
            z = heat[kind]
            ax = axes[r][c]
            ax.hist2d(z[:, 0], z[:, 1], bins=[bins, bins], cmap="viridis")
            m = metrics[name][kind]
            ax.set_title(f"{kind}: KL {m['kl_grid']:.3f}", fontsize=9)
        for ax in axes[r]:
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
    label_outer(axes, "z₁", "z₂", (-4, 0, 4))
    fig.suptitle("Reverse KL with FlowGuide: target density and guide samples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error("--lr must be positive")

    import torch  # after parsing: --help and usage errors come back at once

    from pyrovi.data.energies import WALL_AT, WALL_SCALE

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    show = not args.no_progress  # bars only when stderr is a terminal (pyrovi._progress)
    metrics: dict = {
        "flows": list(args.flows),
        "num_layers": args.num_layers,
        "hidden_features": args.hidden_features,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
    }
    written = ["metrics.json"]
    t_start = time.perf_counter()
    if "density" in args.parts:
        density, plot = run_density(args, show)
        metrics["density"] = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "datasets": density,
        }
        plot_densities(plot, density, args.flows, out / "densities.png")
        written.append("densities.png")
    if "energy" in args.parts:
        energy, plot = run_energy(args, show)
        metrics["energy"] = {
            "steps": args.steps,
            "particles": args.particles,
            "eval_samples": args.eval_samples,
            "wall": None if args.no_wall else f"0.5*(relu(|z1|-{WALL_AT})/{WALL_SCALE})^2",
            "targets": energy,
        }
        plot_energies(plot, energy, args.flows, out / "energies.png")
        written.append("energies.png")
    metrics["seconds"] = time.perf_counter() - t_start
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"took {metrics['seconds']:.0f} s")
    print_written(out, written)
    return metrics


if __name__ == "__main__":
    main()
