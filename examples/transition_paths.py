"""Inferring the transition paths that led to measured end states of a double-well dynamics.

Forward model (known, fixed): overdamped Langevin dynamics ``dz = −U'(z) dt + σ dW`` in the
quartic double well ``U(z) = h (z² − 1)²`` (:class:`pyrovi.models.potentials.DoubleWell`),
started in the left well, ``z(0) ~ N(−1, σ² / (16 h))`` (the well's harmonic equilibrium), run
to ``t_end`` with ``--num-steps`` Euler–Maruyama steps: a :class:`~pyrovi.models.ForwardSDE` with
``learn=False``. The measured end states are those of a direct simulation that ended in the right
well (``z(t_end) ≥ a``, ``a = --boundary``): rare transitions.

Backward model (learned): a :class:`~pyrovi.guides.BackwardSDE` run from each end state back to
time 0, with drift ``b(s, y) = −U'(y) + net(t, y)`` (the time reversal of the dynamics at
equilibrium, plus a learned correction), trained by ``Trace_ELBO``. It is the amortized
posterior over paths given the end state.

Checked against direct simulation (all with the same Euler–Maruyama step):

* the *conditioned direct ensemble*: paths of a brute-force simulation that ended in the right
  well — exact samples of the posterior over paths for their end states. The inferred paths for
  the same end states should match it (mean path, transition times, where transitions happen);
* a *long direct simulation* (``--num-chains`` chains of length ``--long-time``): the mean first-
  passage time (MFPT) from well to well, the committor ``q(z)`` (probability of reaching ``z ≥ a``
  before ``z ≤ −a``), the reactive-segment durations and the density of reactive segments, which
  transition-path theory gives as ``∝ π(z) q(z) (1 − q(z))``;
* the probability ``P(z(t_end) ≥ a)``: the fraction of the brute-force simulation against an
  importance-sampling estimate from the learned backward SDE (``∫ p(x) dx`` over the right well,
  with ``p(x)`` from :func:`pyrovi.infer.log_marginal_likelihood`).

``--potential muller-brown``: the same on the two-dimensional Müller–Brown surface
(:class:`pyrovi.models.potentials.MullerBrown`, energy × ``--mb-scale``), a standard small test
system of molecular-dynamics transition-path methods: paths from a ball of radius
``--boundary`` around minimum A to one around minimum B, compared with the conditioned direct
simulation (mean path, A→B segment durations, the fraction that passes the intermediate minimum,
``P(end in B)``) and the MFPT of a long direct simulation.

::

    python examples/transition_paths.py       # double well; about 1.5 min on 2 CPU cores (RUN_TIME)
    python examples/transition_paths.py --potential muller-brown --steps 1000 --batch-size 64 \
        --particles 1 --num-steps 120                      # about 2.5 min
    python examples/transition_paths.py --steps 200 --num-direct 50000   # quick look

Writes ``metrics.json`` and ``transition_paths.png`` to ``--out`` and says where. ``main(argv)``
returns the metrics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before importing torch

from pyrovi.cli import HelpFormatter, describe, positive_int, print_written  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from pyrovi.models.potentials import DoubleWell

# Wall time of `python examples/transition_paths.py` (the defaults: the double well) on 2 CPU
# cores, shown by --help.
RUN_TIME = "about 1.5 min"

#: Per-potential defaults of (sigma, t_end, num_steps, boundary).
DEFAULTS = {"double-well": (0.8, 2.0, 40, 0.8), "muller-brown": (0.7, 3.0, 150, 0.35)}

#: Legend labels of the three ensembles (the keys of metrics.json).
ENSEMBLE_LABELS = {
    "inferred": "inferred (backward SDE)",
    "direct_conditioned": "direct simulation, conditioned on the end",
    "long_simulation": "long direct simulation",
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=describe(
            "Learn a backward SDE that infers the transition paths behind measured end states\n"
            "(double well or Müller–Brown), checked against direct simulation.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--potential", choices=tuple(DEFAULTS), default="double-well", help="energy surface"
    )
    p.add_argument("--barrier", type=float, default=1.0, help="double well: barrier height h")
    p.add_argument("--mb-scale", type=float, default=0.01, help="Müller–Brown energy scale")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="diffusion σ, β = 2/σ² (default: 0.8; Müller–Brown 0.7)",
    )
    p.add_argument(
        "--t-end", type=float, default=None, help="final time (default: 2; Müller–Brown 3)"
    )
    p.add_argument(
        "--num-steps",
        type=positive_int,
        default=None,
        help="Euler–Maruyama steps to --t-end (default: 40; Müller–Brown 150)",
    )
    p.add_argument(
        "--boundary",
        type=float,
        default=None,
        help="double well: the wells are z ≤ −a and z ≥ a; Müller–Brown: radius of the balls "
        "around the minima (default: a = 0.8; Müller–Brown 0.35)",
    )
    p.add_argument("--num-direct", type=positive_int, default=400_000, help="brute-force paths")
    p.add_argument(
        "--num-end-states", type=positive_int, default=512, help="end states to train on"
    )
    p.add_argument(
        "--num-chains", type=positive_int, default=1000, help="chains of the long simulation"
    )
    p.add_argument("--long-time", type=float, default=400.0, help="length of each chain")
    p.add_argument("--hidden", type=positive_int, default=64, help="width of the drift network")
    p.add_argument("--steps", type=positive_int, default=1500, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=256, help="end states per step")
    p.add_argument("--particles", type=positive_int, default=2, help="ELBO particles per end state")
    p.add_argument("--lr", type=float, default=5e-3, help="initial ClippedAdam learning rate")
    p.add_argument("--num-paths", type=positive_int, default=2000, help="inferred paths")
    p.add_argument("--is-points", type=positive_int, default=512, help="x draws for P(B)")
    p.add_argument("--is-samples", type=positive_int, default=256, help="paths per x for p(x)")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and Pyro")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    p.add_argument(
        "--out", default="outputs/transition_paths", help="output folder (created if missing)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip transition_paths.png")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def reversible_drift(force, dim: int, hidden: int, t_end: float):
    """``b(s, y) = f(y) + net(t_end − s, y)``: at equilibrium the time reversal of a gradient
    dynamics is the dynamics itself (``b = f``); the net learns the correction."""
    from torch import nn

    from pyrovi.models.forward_sde import TimeMLP

    class ReversibleDrift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.force, self.t_end = force, t_end
            self.net = TimeMLP(dim, hidden, t_end)

        def forward(self, s, y):  # noqa: D102
            t = self.t_end - s
            return self.force(t, y) + self.net(t, y)

    return ReversibleDrift()


def simulate(force, sigma, z0, dt, num_steps, gen, keep_path=True, *, desc=None, progress=True):
    """Euler–Maruyama paths ``(num_steps + 1, N, d)`` (or the final state) from ``z0``.

    With ``desc``, a bar over the steps (only when stderr is a terminal).
    """
    import torch

    from pyrovi._progress import progress_bar

    z, path = z0.clone(), [z0.clone()]
    noise_scale = sigma * math.sqrt(dt)
    shown = progress and desc is not None
    with (
        torch.no_grad(),
        progress_bar(num_steps, desc=desc or "", progress=shown, unit="step", leave=False) as bar,
    ):
        for _ in range(num_steps):
            z = z + force(0.0, z) * dt + noise_scale * torch.randn(z.shape, generator=gen)
            if keep_path:
                path.append(z)
            bar.update(1)
    return torch.stack(path) if keep_path else z


def train_svi(svi, x_train, n_train: int, args, gen) -> list[float]:
    """``args.steps`` SVI steps on random minibatches of end states; the loss per end state.

    A bar over the steps shows the mean loss of the last 50 (only when stderr is a terminal).
    """
    import torch

    from pyrovi._progress import progress_bar

    history = []
    bar = progress_bar(args.steps, desc="SVI", progress=not args.no_progress, unit="step")
    with bar:
        for step in range(1, args.steps + 1):
            idx = torch.randint(0, n_train, (min(args.batch_size, n_train),), generator=gen)
            history.append(svi.step(x_train[idx]) / len(idx))
            if step % 50 == 0 or step == args.steps:
                recent = history[-50:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4g}", refresh=False)
            bar.update(1)
    return history


def reactive_segments(paths: np.ndarray, a: float):
    """Reactive segments (last exit from z ≤ −a to first entry into z ≥ a) of paths ``(N, L)``.

    Returns the list of durations (in steps) and the concatenated positions strictly inside.
    """
    import numpy as np

    durations, inside = [], []
    for row in paths:
        in_a, in_b = row <= -a, row >= a
        last_a = -1
        for k in range(len(row)):  # one pass per row; rows are short or few
            if in_a[k]:
                last_a = k
            elif in_b[k] and last_a >= 0:
                durations.append(k - last_a)
                inside.append(row[last_a + 1 : k])
                last_a = -1
    positions = np.concatenate(inside) if inside else np.zeros(0)
    return np.asarray(durations, dtype=float), positions


def long_run_statistics(chains: np.ndarray, a: float, dt: float, bins: np.ndarray):
    """MFPT (well minimum −1 to +1), committor histogram and reactive segments of long chains.

    ``chains`` is ``(num_chains, L)``. The committor of a point with ``−a < z < a`` is 1 if the
    chain next reaches ``z ≥ a`` before ``z ≤ −a``.
    """
    import numpy as np

    passages = []
    for row in chains:  # A→B first-passage times between the minima
        at_a = np.flatnonzero(row <= -1.0)
        at_b = np.flatnonzero(row >= 1.0)
        k, state = 0, None
        while True:
            if state != "A":
                nxt = at_a[at_a >= k]
                if not len(nxt):
                    break
                start, state = nxt[0], "A"
            hit = at_b[at_b > start]
            if not len(hit):
                break
            passages.append((hit[0] - start) * dt)
            k, state = hit[0], "B"
    # committor: next boundary hit, by a backward fill of boundary labels
    labels = np.where(chains <= -a, 0.0, np.where(chains >= a, 1.0, np.nan))
    filled = labels[:, ::-1].copy()
    for j in range(1, filled.shape[1]):
        col = filled[:, j]
        missing = np.isnan(col)
        col[missing] = filled[missing, j - 1]
    nxt = filled[:, ::-1]
    inside = np.isnan(labels) & ~np.isnan(nxt)
    which = np.digitize(chains[inside], bins) - 1
    ok = (which >= 0) & (which < len(bins) - 1)
    hits = np.bincount(which[ok], weights=nxt[inside][ok], minlength=len(bins) - 1)
    counts = np.bincount(which[ok], minlength=len(bins) - 1)
    committor = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    durations, positions = reactive_segments(chains, a)
    return np.asarray(passages), committor, durations, positions


def analytic_1d(potential: DoubleWell, sigma: float, a: float, grid: np.ndarray):
    """Committor, equilibrium density and MFPT of the continuous-time 1-D dynamics."""
    import numpy as np

    beta = 2 / sigma**2
    u = potential.barrier * (grid**2 - 1) ** 2
    w = np.exp(beta * u)
    inside = (grid >= -a) & (grid <= a)
    cum = np.cumsum(np.where(inside, w, 0.0))
    q = np.clip(cum / cum[-1], 0, 1)
    q[grid < -a], q[grid > a] = 0.0, 1.0
    pi = np.exp(-beta * u)
    pi /= np.trapezoid(pi, grid)
    # MFPT from −1 to +1 (reflecting at −∞): (1/D) ∫_{−1}^{1} e^{βU(y)} ∫_{−∞}^{y} e^{−βU} dz dy
    diff = sigma**2 / 2
    inner = np.cumsum(np.exp(-beta * u)) * (grid[1] - grid[0])
    sel = (grid >= -1) & (grid <= 1)
    mfpt = np.trapezoid((np.exp(beta * u) * inner)[sel], grid[sel]) / diff
    return q, pi, float(mfpt)


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``; "n/a" for None or NaN (nothing to average)."""
    if value is None or value != value:
        return "n/a"
    return format(value, spec)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in zip(("sigma", "t_end", "num_steps", "boundary"), DEFAULTS[args.potential]):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.potential == "muller-brown":
        return run_muller_brown(args, parser)
    return run_double_well(args, parser)


def run_double_well(args, parser) -> dict:
    """The 1-D double well: paths, committor, MFPT, transition times (module docstring)."""
    import numpy as np
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, Trace_ELBO

    from pyrovi.guides import BackwardSDE
    from pyrovi.infer.evidence import elbo, log_marginal_likelihood
    from pyrovi.models import ForwardSDE
    from pyrovi.models.potentials import DoubleWell

    if not args.sigma > 0:
        parser.error("--sigma must be positive")
    if not args.barrier > 0 or not args.t_end > 0 or not args.lr > 0:
        parser.error("--barrier, --t-end and --lr must be positive")
    if not 0 < args.boundary < 1:
        parser.error("--boundary must lie in (0, 1)")
    if 8 * args.barrier * args.t_end / args.num_steps > 1:
        parser.error(
            "--num-steps too small: Euler–Maruyama needs 8 h Δt <= 1 in the wells "
            f"(h={args.barrier}, Δt={args.t_end / args.num_steps:g})"
        )
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    potential = DoubleWell(args.barrier)
    sigma, a, K = args.sigma, args.boundary, args.num_steps
    dt = args.t_end / K
    init_sd = sigma / math.sqrt(16 * args.barrier)
    init = dist.Normal(torch.tensor([-1.0]), torch.tensor([init_sd])).to_event(1)
    model = ForwardSDE(1, args.t_end, K, drift=potential, diffusion=sigma, init=init, learn=False)

    # ---- direct simulation: brute force, conditioned on ending in the right well
    z0 = -1.0 + init_sd * torch.randn(args.num_direct, 1, generator=gen)
    direct = simulate(
        potential, sigma, z0, dt, K, gen, desc="direct paths", progress=not args.no_progress
    )
    direct = direct[..., 0].T  # (N, K + 1)
    ended = direct[:, -1] >= a
    p_direct = float(ended.float().mean())
    p_direct_se = math.sqrt(p_direct * (1 - p_direct) / args.num_direct)
    conditioned = direct[ended]
    if conditioned.shape[0] < 2:
        parser.error("no direct path ended in the right well: raise --num-direct or --sigma")
    n_train = min(args.num_end_states, conditioned.shape[0] // 2)
    x_train = conditioned[:n_train, -1:].contiguous()
    held_out = conditioned[n_train:]
    direct_seconds = time.perf_counter() - t_start

    # ---- learn the backward SDE
    guide = BackwardSDE(model, drift=reversible_drift(potential, 1, args.hidden, args.t_end))
    optim = pyro.optim.ClippedAdam({"lr": args.lr, "lrd": 0.1 ** (1 / args.steps)})
    # one plate ("data"); stating it spares Pyro's guess and its INFO log line
    loss = Trace_ELBO(num_particles=args.particles, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, optim, loss)
    t0 = time.perf_counter()
    history = train_svi(svi, x_train, n_train, args, gen)
    train_seconds = time.perf_counter() - t0

    # ---- inferred paths for held-out end states, and the evidence
    guide.eval()
    x_eval = held_out[: args.num_paths, -1:]
    with torch.no_grad():
        inferred = guide(x_eval)[..., 0]  # (n, K): z(t_0..t_{K-1})
    inferred = torch.cat([inferred, x_eval], dim=-1)  # (n, K + 1) with the end state
    direct_eval = held_out[: args.num_paths]
    elbo_eval = elbo(model, guide, x_eval[:256], num_samples=16).mean().item()
    # P(z(t_end) >= a) = ∫ p(x) dx over x >= a by importance sampling from a Gaussian fit
    ends = conditioned[:, -1]
    h = dist.Normal(ends.mean(), 1.5 * ends.std())
    xs = h.sample((args.is_points,)).unsqueeze(-1)
    log_px = log_marginal_likelihood(model, guide, xs, num_samples=args.is_samples)
    weights = torch.where(xs[:, 0] >= a, (log_px - h.log_prob(xs[:, 0])).exp(), 0.0)
    p_inferred = float(weights.mean())
    p_inferred_se = float(weights.std() / math.sqrt(len(weights)))

    # ---- long direct simulation
    t0 = time.perf_counter()
    z0 = -1.0 + init_sd * torch.randn(args.num_chains, 1, generator=gen)
    long_steps = int(round(args.long_time / dt))
    chains = simulate(
        potential, sigma, z0, dt, long_steps, gen, desc="long run", progress=not args.no_progress
    )
    chains = chains[..., 0].T.numpy()
    bins = np.linspace(-a, a, 17)
    passages, committor, long_durations, long_positions = long_run_statistics(chains, a, dt, bins)
    long_seconds = time.perf_counter() - t0
    grid = np.linspace(-3, 3, 6001)
    q_exact, pi_exact, mfpt_exact = analytic_1d(potential, sigma, a, grid)
    inf_durations, inf_positions = reactive_segments(inferred.numpy(), a)
    dir_durations, dir_positions = reactive_segments(direct_eval.numpy(), a)

    def hist(values):
        if not len(values):
            return [float("nan")] * (len(bins) - 1)
        counts, _ = np.histogram(values, bins=bins, density=True)
        return counts.tolist()

    mean_path = {
        "inferred": inferred.mean(0).tolist(),
        "direct": direct_eval.mean(0).tolist(),
        "inferred_std": inferred.std(0).tolist(),
        "direct_std": direct_eval.std(0).tolist(),
    }
    mean_path_error = float((inferred.mean(0) - direct_eval.mean(0)).abs().max())
    metrics = {
        "settings": {
            k: getattr(args, k)
            for k in (
                "potential",
                "barrier",
                "sigma",
                "t_end",
                "num_steps",
                "boundary",
                "num_direct",
                "num_end_states",
                "num_chains",
                "long_time",
                "hidden",
                "steps",
                "batch_size",
                "particles",
                "lr",
                "num_paths",
                "is_points",
                "is_samples",
                "seed",
                "threads",
            )
        },
        "dt": dt,
        "p_end_in_b_direct": p_direct,
        "p_end_in_b_direct_stderr": p_direct_se,
        "p_end_in_b_inferred": p_inferred,
        "p_end_in_b_inferred_stderr": p_inferred_se,
        "elbo_per_end_state": elbo_eval,
        "train_loss_last_100": float(np.mean(history[-100:])),
        "mean_path_max_abs_error": mean_path_error,
        "transition_time_mean": {
            "inferred": float(inf_durations.mean() * dt) if len(inf_durations) else None,
            "direct_conditioned": float(dir_durations.mean() * dt) if len(dir_durations) else None,
            "long_simulation": float(long_durations.mean() * dt) if len(long_durations) else None,
        },
        "transition_counts": {
            "inferred": len(inf_durations),
            "direct_conditioned": len(dir_durations),
            "long_simulation": len(long_durations),
        },
        "mfpt_direct": float(passages.mean()) if len(passages) else float("nan"),
        "mfpt_direct_stderr": float(passages.std() / math.sqrt(len(passages)))
        if len(passages) > 1
        else float("nan"),
        "mfpt_passages": len(passages),
        "mfpt_continuous_time_formula": mfpt_exact,
        "committor_bins": bins.tolist(),
        "committor_long_simulation": [None if np.isnan(c) else float(c) for c in committor],
        "committor_formula": np.interp(0.5 * (bins[1:] + bins[:-1]), grid, q_exact).tolist(),
        "reactive_density": {
            "inferred": hist(inf_positions),
            "direct_conditioned": hist(dir_positions),
            "long_simulation": hist(long_positions),
        },
        "mean_path": mean_path,
        "seconds": {
            "direct": direct_seconds,
            "train": train_seconds,
            "long_simulation": long_seconds,
            "ms_per_step": 1000 * train_seconds / args.steps,
        },
    }
    written = ["metrics.json"]
    if not args.no_plot:
        written.append("transition_paths.png")
        plot(
            out / "transition_paths.png",
            metrics,
            inferred.numpy(),
            direct_eval.numpy(),
            grid,
            q_exact,
            pi_exact,
            (inf_durations, dir_durations, long_durations),
            potential,
        )
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    tt = metrics["transition_time_mean"]
    print(
        f"P(z(t_end) >= {a:g}): direct {p_direct:.4f} ± {p_direct_se:.4f}, "
        f"inferred {p_inferred:.4f} ± {p_inferred_se:.4f}"
    )
    print(
        f"mean transition time: inferred {_fmt(tt['inferred'], '.3f')}, direct conditioned "
        f"{_fmt(tt['direct_conditioned'], '.3f')}, long run {_fmt(tt['long_simulation'], '.3f')}"
    )
    print(
        f"MFPT from well to well: long direct simulation {_fmt(metrics['mfpt_direct'], '.1f')} "
        f"({metrics['mfpt_passages']} passages), continuous-time formula {mfpt_exact:.1f}"
    )
    print_written(out, written)
    return metrics


def plot(path, metrics, inferred, direct, grid, q_exact, pi_exact, durations, potential):
    """Paths, mean paths, reactive densities, committor and transition-time histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s = metrics["settings"]
    a, dt = s["boundary"], metrics["dt"]
    times = np.arange(inferred.shape[1]) * dt
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    for i in range(min(15, len(inferred))):
        ax.plot(times, inferred[i], color="C0", lw=0.7, alpha=0.8)
        ax.plot(times, direct[i], color="C1", lw=0.7, alpha=0.8)
    ax.plot([], [], color="C0", label="inferred (backward SDE)")
    ax.plot([], [], color="C1", label="direct simulation, conditioned")
    ax.axhspan(a, 2, color="0.9")
    ax.axhspan(-2, -a, color="0.9")
    ax.set(
        xlabel="time t (reduced units)",
        ylabel="position z (reduced units)",
        title="paths ending in the right well",
        ylim=(-2, 2),
    )
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for ens, color, name in ((inferred, "C0", "inferred"), (direct, "C1", "direct")):
        m, sd = ens.mean(0), ens.std(0)
        ax.plot(times, m, color=color, label=f"{name} mean ± sd")
        ax.fill_between(times, m - sd, m + sd, color=color, alpha=0.2)
    ax.set(
        xlabel="time t (reduced units)",
        ylabel="position z (reduced units)",
        title="path ensemble given the end state",
    )
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    centres = 0.5 * (np.asarray(s_bins := metrics["committor_bins"])[1:] + np.asarray(s_bins)[:-1])
    for key, color in (("inferred", "C0"), ("direct_conditioned", "C1"), ("long_simulation", "k")):
        label = ENSEMBLE_LABELS[key]
        ax.plot(centres, metrics["reactive_density"][key], "o-", color=color, ms=3, label=label)
    sel = (grid > -a) & (grid < a)
    m_tpt = pi_exact * q_exact * (1 - q_exact)
    m_tpt = m_tpt[sel] / np.trapezoid(m_tpt[sel], grid[sel])
    ax.plot(grid[sel], m_tpt, "--", color="0.5", label="π q (1 − q), normalized")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # room for the legend above the data
    ax.set(
        xlabel="position z (reduced units)",
        ylabel="density (per unit z)",
        title="where reactive segments spend time",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    comm = [np.nan if c is None else c for c in metrics["committor_long_simulation"]]
    ax.plot(centres, comm, "o", color="k", label="long direct simulation")
    ax.plot(grid[sel], q_exact[sel], "-", color="0.5", label="1-D formula (continuous time)")
    ax.set(
        xlabel="position z (reduced units)",
        ylabel="committor q(z)",
        title="P(reach z ≥ a before z ≤ −a)",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    edges = np.arange(0, inferred.shape[1] + 1) * dt
    keys = ("inferred", "direct_conditioned", "long_simulation")
    for d, color, key in zip(durations, ("C0", "C1", "k"), keys):
        name = ENSEMBLE_LABELS[key]
        if len(d):
            ax.hist(d * dt, bins=edges, density=True, histtype="step", color=color, label=name)
    ax.set(
        xlabel="duration (reduced time units)",
        ylabel="density (per unit time)",
        title="reactive-segment durations",
    )
    ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # room for the legend above the data
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1, 2]
    vals = [metrics["p_end_in_b_direct"], metrics["p_end_in_b_inferred"]]
    errs = [metrics["p_end_in_b_direct_stderr"], metrics["p_end_in_b_inferred_stderr"]]
    ax.bar([0, 1], vals, yerr=errs, color=["C1", "C0"])
    ax.set_xticks([0, 1], ["direct\n(brute force)", "backward SDE\n(importance sampling)"])
    ax.set(
        ylabel="probability",
        title=f"P(z(t_end) ≥ {a:g}); MFPT long run {metrics['mfpt_direct']:.1f}",
    )
    fig.suptitle(
        f"Double well (h = {s['barrier']:g}, σ = {s['sigma']:g}): transition paths inferred from "
        "their end states vs direct simulation"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _segments_2d(paths: torch.Tensor, a_centre, b_centre, radius: float, dt: float):
    """Durations of (last exit from the A ball → first entry into the B ball) segments, and
    whether each went through the intermediate minimum's ball. ``paths`` is ``(N, L, 2)``."""
    import numpy as np
    import torch

    from pyrovi.models.potentials import MullerBrown

    in_a = (paths - a_centre).norm(dim=-1) < radius
    in_b = (paths - b_centre).norm(dim=-1) < radius
    in_c = (paths - torch.tensor(MullerBrown.MINIMA[2])).norm(dim=-1) < 0.2
    durations, via_c = [], []
    for ia, ib, ic in zip(in_a.numpy(), in_b.numpy(), in_c.numpy()):
        hits_b = np.flatnonzero(ib)
        if not len(hits_b):
            continue
        before = np.flatnonzero(ia[: hits_b[0]])
        if not len(before):
            continue
        start, end = before[-1], hits_b[0]
        durations.append((end - start) * dt)
        via_c.append(bool(ic[start:end].any()))
    return np.asarray(durations), np.asarray(via_c, dtype=bool)


def run_muller_brown(args, parser) -> dict:
    """The Müller–Brown surface: paths from minimum A to minimum B, against direct simulation."""
    import numpy as np
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, Trace_ELBO

    from pyrovi._progress import progress_bar
    from pyrovi.guides import BackwardSDE
    from pyrovi.infer.evidence import elbo, log_marginal_likelihood
    from pyrovi.models import ForwardSDE
    from pyrovi.models.potentials import MullerBrown

    progress = not args.no_progress
    if not args.sigma > 0 or not args.t_end > 0 or not args.lr > 0 or not args.mb_scale > 0:
        parser.error("--sigma, --t-end, --lr and --mb-scale must be positive")
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    potential = MullerBrown(args.mb_scale)
    sigma, radius, K = args.sigma, args.boundary, args.num_steps
    dt = args.t_end / K
    a_centre, b_centre = torch.tensor(MullerBrown.MINIMA[0]), torch.tensor(MullerBrown.MINIMA[1])
    init_sd = 0.05
    init = dist.Normal(a_centre, torch.full((2,), init_sd)).to_event(1)
    model = ForwardSDE(2, args.t_end, K, drift=potential, diffusion=sigma, init=init, learn=False)

    # direct simulation in chunks, keeping the paths that end in the B ball
    kept, total = [], 0
    with progress_bar(args.num_direct, desc="direct paths", progress=progress, unit="path") as bar:
        while total < args.num_direct:
            n = min(50_000, args.num_direct - total)
            z0 = a_centre + init_sd * torch.randn(n, 2, generator=gen)
            paths = simulate(potential, sigma, z0, dt, K, gen).transpose(0, 1)  # (n, K + 1, 2)
            kept.append(paths[(paths[:, -1] - b_centre).norm(dim=-1) < radius])
            total += n
            bar.update(n)
    conditioned = torch.cat(kept)
    p_direct = conditioned.shape[0] / total
    p_direct_se = math.sqrt(p_direct * (1 - p_direct) / total)
    if conditioned.shape[0] < 2:
        parser.error("no direct path ended in the B basin: raise --num-direct or --sigma")
    n_train = min(args.num_end_states, conditioned.shape[0] // 2)
    x_train = conditioned[:n_train, -1].contiguous()
    held_out = conditioned[n_train:]
    direct_seconds = time.perf_counter() - t_start

    guide = BackwardSDE(model, drift=reversible_drift(potential, 2, args.hidden, args.t_end))
    optim = pyro.optim.ClippedAdam({"lr": args.lr, "lrd": 0.1 ** (1 / args.steps)})
    loss = Trace_ELBO(num_particles=args.particles, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, optim, loss)
    t0 = time.perf_counter()
    history = train_svi(svi, x_train, n_train, args, gen)
    train_seconds = time.perf_counter() - t0

    guide.eval()
    x_eval = held_out[: args.num_paths, -1]
    with torch.no_grad():
        inferred = torch.cat([guide(x_eval), x_eval.unsqueeze(1)], dim=1)  # (n, K + 1, 2)
    direct_eval = held_out[: args.num_paths]
    ends = conditioned[:, -1]
    h = dist.Normal(ends.mean(0), 1.5 * ends.std(0)).to_event(1)
    xs = h.sample((args.is_points,))
    log_px = log_marginal_likelihood(model, guide, xs, num_samples=args.is_samples)
    inside = (xs - b_centre).norm(dim=-1) < radius
    weights = torch.where(inside, (log_px - h.log_prob(xs)).exp(), 0.0)
    p_inferred = float(weights.mean())
    p_inferred_se = float(weights.std() / math.sqrt(len(weights)))
    inf_dur, inf_c = _segments_2d(inferred, a_centre, b_centre, radius, dt)
    dir_dur, dir_c = _segments_2d(direct_eval, a_centre, b_centre, radius, dt)

    # long direct simulation: mean first-passage time from the A ball to the B ball
    t0 = time.perf_counter()
    z = a_centre + init_sd * torch.randn(args.num_chains, 2, generator=gen)
    start = torch.zeros(args.num_chains)
    from_a = torch.ones(args.num_chains, dtype=torch.bool)
    passages = []
    long_steps = int(round(args.long_time / dt))
    with progress_bar(long_steps, desc="long run", progress=progress, unit="step") as bar:
        for k in range(1, long_steps + 1):
            noise = sigma * math.sqrt(dt) * torch.randn(z.shape, generator=gen)
            z = z + potential(0.0, z) * dt + noise
            at_a = (z - a_centre).norm(dim=-1) < radius
            at_b = (z - b_centre).norm(dim=-1) < radius
            arrived = from_a & at_b
            passages.extend(((k - start[arrived]) * dt).tolist())
            from_a &= ~at_b
            newly = at_a & ~from_a
            start[newly], from_a[newly] = float(k), True
            bar.update(1)
    long_seconds = time.perf_counter() - t0
    passages = np.asarray(passages)

    def mean_or_none(v):
        return float(v.mean()) if len(v) else None

    metrics = {
        "settings": {
            k: getattr(args, k)
            for k in (
                "potential",
                "mb_scale",
                "sigma",
                "t_end",
                "num_steps",
                "boundary",
                "num_direct",
                "num_end_states",
                "num_chains",
                "long_time",
                "hidden",
                "steps",
                "batch_size",
                "particles",
                "lr",
                "num_paths",
                "is_points",
                "is_samples",
                "seed",
                "threads",
            )
        },  # fmt: skip
        "dt": dt,
        "p_end_in_b_direct": p_direct,
        "p_end_in_b_direct_stderr": p_direct_se,
        "p_end_in_b_inferred": p_inferred,
        "p_end_in_b_inferred_stderr": p_inferred_se,
        "elbo_per_end_state": elbo(model, guide, x_eval[:256], num_samples=16).mean().item(),
        "train_loss_last_100": float(np.mean(history[-100:])),
        "mean_path_max_abs_error": float(
            (inferred.mean(0) - direct_eval.mean(0)).norm(dim=-1).max()
        ),
        "transition_time_mean": {
            "inferred": mean_or_none(inf_dur),
            "direct_conditioned": mean_or_none(dir_dur),
        },
        "fraction_via_intermediate_minimum": {
            "inferred": mean_or_none(inf_c.astype(float)),
            "direct_conditioned": mean_or_none(dir_c.astype(float)),
        },
        "transition_counts": {"inferred": len(inf_dur), "direct_conditioned": len(dir_dur)},
        "mfpt_direct": float(passages.mean()) if len(passages) else float("nan"),
        "mfpt_direct_stderr": float(passages.std() / math.sqrt(len(passages)))
        if len(passages) > 1
        else float("nan"),
        "mfpt_passages": len(passages),
        "seconds": {
            "direct": direct_seconds,
            "train": train_seconds,
            "long_simulation": long_seconds,
            "ms_per_step": 1000 * train_seconds / args.steps,
        },
    }
    written = ["metrics.json"]
    if not args.no_plot:
        written.append("transition_paths.png")
        plot_2d(
            out / "transition_paths.png",
            metrics,
            inferred,
            direct_eval,
            potential,
            (inf_dur, dir_dur),
        )
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    tt, via = metrics["transition_time_mean"], metrics["fraction_via_intermediate_minimum"]
    print(
        f"Müller–Brown: P(end in B) direct {p_direct:.4f} ± {p_direct_se:.4f}, "
        f"inferred {p_inferred:.4f} ± {p_inferred_se:.4f}"
    )
    for key in ("inferred", "direct_conditioned"):
        print(
            f"{ENSEMBLE_LABELS[key]}: mean A→B time {_fmt(tt[key], '.3f')}, "
            f"via the intermediate minimum {_fmt(via[key], '.1%')}"
        )
    print(
        f"MFPT A→B: long direct simulation {_fmt(metrics['mfpt_direct'], '.2f')} "
        f"({metrics['mfpt_passages']} passages)"
    )
    print_written(out, written)
    return metrics


def plot_2d(path, metrics, inferred, direct, potential, durations):
    """Müller–Brown: inferred and direct paths on the energy contours, mean paths, durations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    gx, gy = torch.meshgrid(
        torch.linspace(-1.5, 1.2, 200), torch.linspace(-0.3, 2.0, 200), indexing="xy"
    )
    energy = potential.energy(torch.stack([gx, gy], -1)).clamp(max=0.5 * potential.scale * 100)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    for ax, ens, color, name in (
        (axes[0], inferred, "C0", "inferred (backward SDE)"),
        (axes[1], direct, "C1", "direct simulation, conditioned"),
    ):
        ax.contour(gx, gy, energy, levels=25, colors="0.6", linewidths=0.5)
        for i in range(min(20, len(ens))):
            ax.plot(ens[i, :, 0], ens[i, :, 1], color=color, lw=0.6, alpha=0.8)
        ax.set(title=name, xlabel="x (reduced units)", ylabel="y (reduced units)")
    ax = axes[2]
    ax.contour(gx, gy, energy, levels=25, colors="0.6", linewidths=0.5)
    for ens, color, name in ((inferred, "C0", "inferred"), (direct, "C1", "direct")):
        m = ens.mean(0)
        ax.plot(m[:, 0], m[:, 1], color=color, lw=2, label=f"{name} mean path")
    ax.legend(fontsize=8)
    ax.set(
        title="mean path given the end state",
        xlabel="x (reduced units)",
        ylabel="y (reduced units)",
    )
    ax = axes[3]
    dt = metrics["dt"]
    edges = np.arange(0, inferred.shape[1] + 1, 3) * dt
    keys = ("inferred", "direct_conditioned")
    for d, color, key in zip(durations, ("C0", "C1"), keys):
        name = ENSEMBLE_LABELS[key]
        if len(d):
            ax.hist(d, bins=edges, density=True, histtype="step", color=color, label=name)
    p = metrics
    ax.set(
        xlabel="duration (reduced time units)",
        ylabel="density (per unit time)",
        title=f"A→B segment durations\nP(end in B): direct {p['p_end_in_b_direct']:.4f}, "
        f"inferred {p['p_end_in_b_inferred']:.4f}",
    )
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the data
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Müller–Brown: A→B transition paths inferred from their end states")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
