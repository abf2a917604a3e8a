"""Quantum ground states by variational inference over paths (Barr, Gispen & Lamacraft 2020).

The model samples a path from the Feynman–Kac measure of ``H = −½∇² + V``
(:class:`~pyrovi.distributions.FeynmanKac`), the guide from the drift SDE ``dX = v_θ dt + dW``;
``SVI(model, guide, ClippedAdam, Trace_ELBO())`` minimizes ``E[ℓ_T]``, whose value per unit time
bounds the ground-state energy from above (up to the time step). Walkers persist between steps.

Systems (``--system``): ``harmonic`` (``--num-particles``, ``--dim``, ``--omega``), ``hydrogen``,
``helium``, ``h2`` (``--bond-length``, default 1.401 bohr) and ``bosons`` (N bosons in a 2-D trap
with Gaussian interaction ``g/(πs²) e^{−r²/s²}``: ``--num-particles``, ``--g``, ``--s``).

The default drift (``--drift gradient``) is ``v = ∇ log ψ_θ`` of a network ``log ψ_θ`` with exact
cusps (``pyrovi.nn.NeuralLogPsi``), so ``ψ_θ`` is a wave function and three estimates are printed
(and saved in ``metrics.json``), each ± its standard error:

* ``path``: the boundary-corrected ``ℓ_T/T`` at ``--eval-dt`` and half of it, and their Richardson
  extrapolation (the Euler–Maruyama step biases it);
* ``variational``: ``⟨E_L⟩`` over ``|ψ|²`` sampled by Metropolis-adjusted Langevin steps (an
  upper bound, no step bias);
* ``projected``: importance-sampled diffusion Monte Carlo at ``--dmc-dts``, extrapolated to
  ``dt → 0`` (exact for the nodeless ground states here).

Other drifts (``resnet``, ``equivariant``) give the path estimate only. The trained drift's
weights go to ``drift.pt``. Plots (``ground_state.png``): the energy against training step and,
for 2-D systems, the learned drift of particle 1 with the others held fixed (quiver plot). For
bosons, several ``--g`` values train one drift each and ``drift_fields.png`` draws their fields
side by side (the lecture's strongly repulsive ``--g 15 3``).

::

    python examples/ground_state.py --system harmonic   # about 20 s on 2 CPU cores (RUN_TIME)
    python examples/ground_state.py --system bosons --g 15 3 --minutes 3
    python examples/ground_state.py --system helium --minutes 10

``main(argv)`` returns the metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before `import torch`: sleeping threads

from pyrovi.cli import HelpFormatter, describe, positive_int, print_written  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from pyrovi.models import hamiltonians

# Wall time of `python examples/ground_state.py` (the defaults: the 1-D harmonic oscillator) on 2
# CPU cores, shown by --help.
RUN_TIME = "about 20 s"

#: The systems of ``pyrovi.models.hamiltonians.SYSTEMS`` (named here so that ``--help`` needs no
#: torch; a test checks the two agree).
SYSTEMS = ("bosons", "h2", "harmonic", "helium", "hydrogen")


def positive_float(text: str) -> float:
    """argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=describe(
            "Learn a quantum ground state with a neural drift (Feynman-Kac + Trace_ELBO) and\n"
            "estimate its energy, extrapolated in the time step.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--system", choices=SYSTEMS, default="harmonic", help="the Hamiltonian")
    p.add_argument(
        "--num-particles",
        type=positive_int,
        default=None,
        help="harmonic, bosons: number of particles (default: 1 for harmonic, 2 for bosons)",
    )
    p.add_argument("--dim", type=positive_int, default=1, help="harmonic: spatial dimension")
    p.add_argument("--omega", type=positive_float, default=1.0, help="harmonic: frequency")
    p.add_argument(
        "--g",
        type=float,
        nargs="+",
        default=[3.0],
        help="bosons: interaction strength; several values train one drift each and draw "
        "their drift fields side by side",
    )
    p.add_argument("--s", type=positive_float, default=0.5, help="bosons: interaction range")
    p.add_argument("--bond-length", type=positive_float, default=1.401, help="h2: R (bohr)")
    p.add_argument(
        "--drift",
        choices=["gradient", "auto", "resnet", "equivariant"],
        default="gradient",
        help="drift network (gradient: ∇ log ψ of a network with exact cusps, which the "
        "variational and projected estimates need; auto: equivariant for several identical "
        "particles, else resnet)",
    )
    p.add_argument(
        "--width", type=positive_int, default=None, help="hidden width (default: 16 gradient, 64)"
    )
    p.add_argument(
        "--depth", type=int, default=None, help="hidden layers (default: 1 gradient, 2 blocks)"
    )
    p.add_argument("--walkers", type=positive_int, default=256, help="walkers while training")
    p.add_argument("--horizon", type=positive_float, default=1.0, help="time T of one path")
    p.add_argument("--dt", type=positive_float, default=0.05, help="Euler–Maruyama step")
    p.add_argument("--steps", type=positive_int, default=300, help="SVI steps (at most)")
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=None,
        help="training time cap in minutes (default: no cap, --steps decides)",
    )
    p.add_argument(
        "--load-drift",
        default=None,
        help="start from a saved drift.pt (default: none, a freshly initialized drift)",
    )
    p.add_argument("--no-train", action="store_true", help="only evaluate (with --load-drift)")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="initial learning rate")
    p.add_argument(
        "--final-lr",
        type=positive_float,
        default=1e-3,
        help="learning rate at the last step (exponential decay)",
    )
    p.add_argument(
        "--no-boundary-loss",
        action="store_true",
        help="train on plain E[ℓ_T] (no boundary factor in the model)",
    )
    p.add_argument(
        "--eval-walkers",
        type=positive_int,
        default=2000,
        help="independent walkers of the energy estimate",
    )
    p.add_argument(
        "--eval-dt",
        type=positive_float,
        default=None,
        help="time step of the estimate (default: --dt; the estimate also runs at half of it)",
    )
    p.add_argument(
        "--eval-horizon",
        type=positive_float,
        default=None,
        help="path length T of the estimate (default: --horizon)",
    )
    p.add_argument("--eval-paths", type=positive_int, default=20, help="paths per walker")
    p.add_argument("--burn-in", type=int, default=3, help="paths per walker discarded")
    p.add_argument(
        "--vmc-walkers", type=positive_int, default=2000, help="walkers of the variational estimate"
    )
    p.add_argument(
        "--vmc-steps", type=positive_int, default=1000, help="Langevin steps (variational)"
    )
    p.add_argument(
        "--vmc-dt", type=positive_float, default=0.05, help="Langevin time step (variational)"
    )
    p.add_argument(
        "--dmc-dts",
        type=positive_float,
        nargs="+",
        default=[0.04, 0.02, 0.01],
        help="time steps of the projected (DMC) estimate, extrapolated to dt -> 0",
    )
    p.add_argument(
        "--dmc-time",
        type=positive_float,
        default=20.0,
        help="measured imaginary time per DMC time step",
    )
    p.add_argument(
        "--dmc-burn-in", type=positive_float, default=2.0, help="discarded DMC imaginary time"
    )
    p.add_argument(
        "--dtype", choices=["float32", "float64"], default="float64", help="torch default dtype"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and Pyro")
    p.add_argument(
        "--out", default="outputs/ground_state", help="output folder (created if missing)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip ground_state.png")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def make_hamiltonian(args: argparse.Namespace, g: float | None = None) -> hamiltonians.Hamiltonian:
    """The system the arguments describe (bosons: interaction ``g``, default the first ``--g``)."""
    from pyrovi.models import hamiltonians

    if args.system == "harmonic":
        return hamiltonians.harmonic_oscillator(args.num_particles or 1, args.dim, args.omega)
    if args.system == "bosons":
        return hamiltonians.gaussian_bosons(
            args.num_particles or 2, args.g[0] if g is None else g, args.s
        )
    if args.system == "h2":
        return hamiltonians.h2(args.bond_length)
    return hamiltonians.SYSTEMS[args.system]()


def plot(path: Path, history: dict, ham, drift, exact: float | None, metrics: dict) -> None:
    """Energy against step and, in 2-D, a quiver plot of particle 1's drift."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Coulomb systems in atomic units (hartree, bohr); trapped particles in units ħ = m = 1
    coulomb = ham.interaction == "coulomb"
    energy_unit = "hartree" if coulomb else "units ħ = m = 1"
    length_unit = "bohr" if coulomb else "units ħ = m = 1"
    quiver = ham.dim == 2
    skip = getattr(drift, "skip", None) if quiver else None
    ncols = 1 + quiver + (skip is not None)
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.4))
    axes = list(axes) if ncols > 1 else [axes]
    ax = axes[0]
    steps = torch.tensor(history["step"], dtype=torch.float64)
    energy = torch.tensor(history["energy"], dtype=torch.float64)
    ax.plot(steps, energy, lw=0.5, alpha=0.4, label="batch ℓ_T/T (boundary-corrected)")
    window = max(1, len(energy) // 50)
    if len(energy) >= window:
        smooth = energy.unfold(0, window, 1).mean(-1)
        ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"moving average ({window})")
    if exact is not None:
        ax.axhline(exact, color="k", ls="--", lw=1, label=f"exact {exact:g}")
    ax.axhline(metrics["extrapolated"]["energy"], color="C3", lw=1, label="path, Richardson")
    if metrics.get("variational"):
        ax.axhline(metrics["variational"]["energy"], color="C4", lw=1, label="variational")
        ax.axhline(metrics["projected"]["energy"], color="C2", lw=1, label="projected, dt → 0")
    lo = min(float(energy.quantile(0.02)), exact if exact is not None else float(energy.min()))
    hi = float(energy.quantile(0.9))
    ax.set_ylim(lo - 0.05 * abs(hi - lo) - 1e-3, hi + 0.05 * abs(hi - lo) + 1e-3)
    ax.set_xlabel("SVI step")
    ax.set_ylabel(f"energy ({energy_unit})")
    ax.set_title(f"{ham.name}: energy during training")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    if quiver:
        gx, gy, vx, vy, others = _particle_one_field(ham, drift)
        fields = [("learned drift of particle 1 (others fixed)", vx, vy)]
        if skip is not None:
            _, _, sx, sy, _ = _particle_one_field(ham, skip)
            title = "drift minus the trap's −x: the interaction part"
            fields.append((title, vx - sx, vy - sy))
        for ax, (title, u, v) in zip(axes[1:], fields):
            ax.quiver(gx, gy, u, v, angles="xy")
            ax.scatter(
                others[:, 0], others[:, 1], c="C3", s=60, zorder=3, label="other particles (fixed)"
            )
            ax.set_aspect("equal")
            ax.set(
                xlabel=f"x of particle 1 ({length_unit})",
                ylabel=f"y of particle 1 ({length_unit})",
            )
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _particle_one_field(ham, drift, grid: int = 21, extent: float = 2.5):
    """The drift of particle 1 on a grid with the others fixed: ``(gx, gy, vx, vy, others)``."""
    import torch

    axis = torch.linspace(-extent, extent, grid, dtype=torch.float64)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    others = torch.tensor([[0.8, 0.0], [-0.6, 0.7], [0.0, -0.9], [-0.7, -0.6]])
    others = others[: ham.num_particles - 1].to(torch.float64)
    x = torch.zeros(gx.numel(), ham.num_particles, 2, dtype=torch.float64)
    x[:, 0, 0], x[:, 0, 1] = gx.reshape(-1), gy.reshape(-1)
    x[:, 1:] = others
    param = next(drift.parameters(), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else None
    t = torch.zeros((), dtype=dtype, device=device)
    flat = x.reshape(len(x), -1).to(dtype=dtype, device=device)
    with torch.no_grad():
        v = drift(t, flat).reshape(len(x), ham.num_particles, 2)[:, 0].double().cpu()
    return gx, gy, v[:, 0].reshape(gx.shape), v[:, 1].reshape(gx.shape), others


def plot_drift_fields(path: Path, runs: list[tuple[float, object, object]]) -> None:
    """Quiver plots of particle 1's learned drift, one column per ``g``.

    Top row: the drift ``∇₁ log ψ``; bottom row: the drift plus the trap's ``x`` (what the
    interaction adds: the push away from the other particle).

    Args:
        path: PNG to write.
        runs: ``(g, hamiltonian, drift)`` per column.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(4.6 * len(runs), 9.2), squeeze=False)
    for col, (g, ham, drift) in enumerate(runs):
        gx, gy, vx, vy, others = _particle_one_field(ham, drift)
        s = ham.params["s"]
        panels = [
            (f"drift ∇ log ψ of particle 1\ng = {g:g}, s = {s:g}", vx, vy),
            (f"drift + x (the interaction's part)\ng = {g:g}, s = {s:g}", vx + gx, vy + gy),
        ]
        for row, (title, u, v) in enumerate(panels):
            ax = axes[row, col]
            longest = float((u**2 + v**2).sqrt().max())
            # an explicit scale: matplotlib's automatic one divides by zero for a zero field
            ax.quiver(gx, gy, u, v, angles="xy", scale=max(longest, 1e-9) * 18)
            ax.scatter(
                others[:, 0], others[:, 1], c="C3", s=60, zorder=3, label="other particle (fixed)"
            )
            ax.set_aspect("equal")
            ax.set(xlabel="x of particle 1 (trap units)", ylabel="y of particle 1 (trap units)")
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _train_and_estimate(args, ham, out: Path, progress: bool) -> tuple[dict, object]:
    """Train one drift on ``ham`` and estimate its energy; returns ``(metrics, drift)``."""
    import torch

    from pyrovi.models import GroundState, format_estimate, train_ground_state
    from pyrovi.nn import GradientDrift, drift_for

    gradient = args.drift == "gradient"
    width = args.width or (16 if gradient else 64)
    depth = args.depth if args.depth is not None else (1 if gradient else 2)
    eval_dt = args.eval_dt or args.dt
    eval_horizon = args.eval_horizon or args.horizon
    drift = drift_for(ham, args.drift, width, depth)
    if args.load_drift is not None:
        try:
            drift.load_state_dict(torch.load(args.load_drift))
        except (OSError, RuntimeError) as err:
            message = f"--load-drift {args.load_drift!r} could not be loaded: {err}"
            raise SystemExit(message) from err
    gs = GroundState(
        ham,
        drift,
        args.walkers,
        args.horizon,
        args.dt,
        boundary_loss=not args.no_boundary_loss,
    )
    if gradient:  # start the training chain from |ψ|² of the initial ψ
        gs.walkers.copy_(gs.variational(steps=2, burn_in=50, progress=False).walkers)
    start = time.perf_counter()
    max_seconds = None if args.minutes is None else 60 * args.minutes
    if args.no_train:
        history = {"step": [], "energy": [], "seconds": []}
    else:  # a bar over the steps with the running energy (only when stderr is a terminal)
        history = train_ground_state(
            gs,
            args.steps,
            lr=args.lr,
            final_lr=args.final_lr,
            max_seconds=max_seconds,
            progress=progress,
        )
    train_s = time.perf_counter() - start

    # path estimate: more independent walkers, resampled from the trained chain, relaxed by burn-in
    index = torch.randint(args.walkers, (args.eval_walkers,))
    evaluator = GroundState(
        ham, drift, args.eval_walkers, eval_horizon, eval_dt, walkers=gs.walkers[index]
    )
    t0 = time.perf_counter()
    out_est = evaluator.extrapolate(args.eval_paths, burn_in=args.burn_in, progress=progress)
    eval_s = time.perf_counter() - t0
    coarse, fine, ext = out_est["coarse"], out_est["fine"], out_est["extrapolated"]
    variational = projected = None
    var_s = proj_s = 0.0
    if isinstance(drift, GradientDrift):
        t0 = time.perf_counter()
        variational = gs.variational(
            args.vmc_walkers, steps=args.vmc_steps, dt=args.vmc_dt, progress=progress
        )
        var_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        projected = gs.projected(
            walkers=variational.walkers,
            dts=tuple(args.dmc_dts),
            time_per_dt=args.dmc_time,
            burn_in_time=args.dmc_burn_in,
            progress=progress,
        )
        proj_s = time.perf_counter() - t0
    exact = ham.exact_energy
    metrics = {
        "system": ham.name,
        "params": ham.params,
        "exact_energy": exact,
        "energy_dt": {"energy": coarse.corrected, "stderr": coarse.corrected_stderr},
        "energy_dt_half": {"energy": fine.corrected, "stderr": fine.corrected_stderr},
        "extrapolated": ext,
        "plain_estimates": {
            "dt": {"energy": coarse.energy, "stderr": coarse.stderr},
            "dt_half": {"energy": fine.energy, "stderr": fine.stderr},
        },
        "error_vs_exact": None if exact is None else ext["energy"] - exact,
        "variational": None if variational is None else variational.as_dict(),
        "projected": None if projected is None else projected.as_dict(),
        "coarse": coarse.as_dict(),
        "fine": fine.as_dict(),
        "training": {
            "steps": len(history["step"]),
            "walkers": args.walkers,
            "horizon": args.horizon,
            "dt": args.dt,
            "drift": type(drift).__name__,
            "width": width,
            "depth": depth,
            "lr": args.lr,
            "final_lr": args.final_lr,
            "boundary_loss": not args.no_boundary_loss,
            "final_batch_energy_mean_last_10pct": float(
                torch.tensor(history["energy"][-max(1, len(history["energy"]) // 10) :]).mean()
            )
            if history["energy"]
            else None,
            "loaded_drift": args.load_drift,
        },
        "evaluation": {
            "walkers": args.eval_walkers,
            "paths_per_walker": args.eval_paths,
            "burn_in": args.burn_in,
            "horizon": eval_horizon,
            "dt": eval_dt,
        },
        "seconds": {
            "train": train_s,
            "path": eval_s,
            "variational": var_s,
            "projected": proj_s,
            "total": time.perf_counter() - start,
        },
    }
    rows = [
        (f"path E(dt={eval_dt:g})", coarse.corrected, coarse.corrected_stderr),
        (f"path E(dt={eval_dt / 2:g})", fine.corrected, fine.corrected_stderr),
        ("path, Richardson", ext["energy"], ext["stderr"]),
    ]
    if variational is not None:
        rows.append(("variational (MALA)", variational.energy, variational.stderr))
        for est in projected["estimates"]:
            rows.append((f"projected E(dt={est.dt:g})", est.energy, est.stderr))
        rows.append(("projected, dt -> 0", projected["energy"], projected["stderr"]))
    width_ = max(len(label) for label, *_ in rows)
    name = ham.name + ("" if ham.name != "bosons" else f" g={ham.params['g']:g}")
    for label, energy, stderr in rows:
        print(f"{name}: {label:<{width_}} = {format_estimate(energy, stderr)}")
    if exact is not None:
        print(f"{name}: exact {exact:.6f}")
    times = f"train {train_s:.1f} s ({len(history['step'])} steps), path {eval_s:.1f} s"
    if variational is not None:
        times += f", variational {var_s:.1f} s, projected {proj_s:.1f} s"
    print(times)
    torch.save(drift.state_dict(), out / "drift.pt")
    metrics["history"] = history
    return metrics, drift


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the metrics (also written to ``--out/metrics.json``).

    With several ``--g`` (bosons) every run gets a subfolder ``g<value>`` and the metrics are
    ``{"runs": {g: metrics}}``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 0:
        parser.error("--depth must be >= 0")
    if args.burn_in < 0:
        parser.error("--burn-in must be >= 0")
    if len(args.g) > 1 and args.system != "bosons":
        parser.error("several --g values are for --system bosons")
    if len(set(args.dmc_dts)) < 2:
        parser.error("--dmc-dts needs at least two distinct time steps")
    eval_dt = args.eval_dt or args.dt
    eval_horizon = args.eval_horizon or args.horizon
    for horizon, dt, what in ((args.horizon, args.dt, ""), (eval_horizon, eval_dt, "eval-")):
        n = round(horizon / dt)
        if n < 1 or abs(n * dt - horizon) > 1e-6 * horizon:
            parser.error(f"--{what}dt must divide --{what}horizon into a whole number of steps")

    import pyro
    import torch

    progress = not args.no_progress
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = {
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "seed": args.seed,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    several = args.system == "bosons" and len(args.g) > 1
    if several:
        runs, fields, histories = {}, [], {}
        for g in args.g:
            sub = out / f"g{g:g}"
            sub.mkdir(exist_ok=True)
            pyro.set_rng_seed(args.seed)
            pyro.clear_param_store()  # each g trains its own drift
            ham = make_hamiltonian(args, g)
            metrics, drift = _train_and_estimate(args, ham, sub, progress)
            histories[f"{g:g}"] = metrics.pop("history")
            (sub / "metrics.json").write_text(json.dumps(metrics | common, indent=2) + "\n")
            runs[f"{g:g}"] = metrics
            fields.append((g, ham, drift))
        result = {"runs": runs, **common}
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        written = ["metrics.json"] + [f"g{g:g}/metrics.json, g{g:g}/drift.pt" for g in args.g]
        if not args.no_plot:
            plot_drift_fields(out / "drift_fields.png", fields)
            written.append("drift_fields.png")
        print_written(out, written)
        result["histories"] = histories
        return result
    ham = make_hamiltonian(args)
    metrics, drift = _train_and_estimate(args, ham, out, progress)
    history = metrics.pop("history")
    metrics.update(common)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    written = ["metrics.json", "drift.pt"]
    if not args.no_plot and history["step"]:
        plot(out / "ground_state.png", history, ham, drift, ham.exact_energy, metrics)
        written.append("ground_state.png")
    print_written(out, written)
    metrics["history"] = history
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
