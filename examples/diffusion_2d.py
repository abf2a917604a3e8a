"""A denoising diffusion model (DDPM) on 2-D toy data: two moons, rings or eight Gaussians.

Data: the samplers of :mod:`pyrovi.data.toy2d` with their exact log-densities, drawn exactly as
``benchmarks/flow_density_nll.py`` draws them (same seed, same sizes), so the held-out NLL
bound here can be set beside the flow densities' held-out NLLs.

Model: :class:`pyrovi.models.DDPM` (``--T`` steps, linear or cosine schedule, MLP noise
predictor, learned per-step reverse variances), trained with Adam on ``DDPM.loss`` (``--loss``:
the ELBO with one random step per datapoint, Ho et al.'s simple ε loss, or the hybrid of both).

Reported (``metrics.json``): the held-out ``−ELBO`` in nats per point (``test_nll_bound``, an
upper bound on the model's NLL, every step's KL in closed form), in bits per dimension, the true
density's NLL on the same points, and — when ``benchmarks/results/flow_density_nll.json``
exists — the flows' held-out NLLs on the same data. ``diffusion_2d.png`` shows the data, model
samples and the reverse chain at a few steps.

::

    python examples/diffusion_2d.py                # moons; about 20 s on 2 CPU cores (RUN_TIME)
    python examples/diffusion_2d.py --dataset 8gaussians --schedule cosine

It writes ``metrics.json`` and ``diffusion_2d.png`` to ``--out`` (default
``outputs/diffusion_2d``) and says where. ``main(argv)`` returns the metrics.
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
    import torch

    from pyrovi.models import DDPM

# Wall time of `python examples/diffusion_2d.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 20 s"

ROOT = Path(__file__).resolve().parent.parent
FLOW_RESULTS = ROOT / "benchmarks" / "results" / "flow_density_nll.json"
#: The order in which benchmarks/flow_density_nll.py seeds its data sets (seed * 1000 + index).
FLOW_DATASET_ORDER = ("moons", "rings", "8gaussians")
#: The names of ``pyrovi.data.toy2d.TOY_DATASETS`` (here so that ``--help`` needs no torch; a
#: test checks the two agree).
TOY_DATASET_NAMES = ("moons", "rings", "8gaussians")


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=describe(
            "DDPM on 2-D toy data: held-out NLL bound beside the true density and the flows.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", choices=TOY_DATASET_NAMES, default="moons", help="toy 2-D data set")
    p.add_argument("--n-train", type=positive_int, default=5000, help="training points")
    p.add_argument("--n-test", type=positive_int, default=5000, help="held-out points")
    p.add_argument("--T", type=positive_int, default=100, help="diffusion steps")
    p.add_argument(
        "--schedule", choices=("linear", "cosine"), default="linear", help="noise schedule"
    )
    p.add_argument(
        "--loss",
        choices=("elbo", "simple", "hybrid"),
        default="hybrid",
        help="training loss: the ELBO, Ho et al.'s simple eps loss, or both",
    )
    p.add_argument(
        "--variance",
        choices=("learned", "beta", "posterior"),
        default="learned",
        help="reverse-step variances",
    )
    p.add_argument("--hidden", type=positive_int, default=128, help="noise-predictor width")
    p.add_argument("--steps", type=positive_int, default=4000, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=256, help="minibatch size")
    p.add_argument(
        "--lr", type=float, default=2e-3, help="initial Adam learning rate (cosine decay)"
    )
    p.add_argument("--eval-samples", type=positive_int, default=4, help="z_t draws per step")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialization and batches")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    p.add_argument(
        "--out", default="outputs/diffusion_2d", help="output folder (created if missing)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip diffusion_2d.png")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def load_data(name: str, n_train: int, n_test: int, seed: int):
    """Train and test sets drawn as ``benchmarks/flow_density_nll.py`` draws them."""
    import torch

    from pyrovi.data.toy2d import TOY_DATASETS

    sampler, log_prob = TOY_DATASETS[name]
    index = FLOW_DATASET_ORDER.index(name) if name in FLOW_DATASET_ORDER else 0
    gen = torch.Generator().manual_seed(seed * 1000 + index)
    return sampler(n_train, gen), sampler(n_test, gen), log_prob


def train(model: DDPM, x: torch.Tensor, args) -> list[float]:
    """Adam with cosine learning-rate decay on ``model.loss``; returns the loss every 100 steps.

    A bar over the steps shows the mean loss of the last 100 (only when stderr is a terminal).
    """
    import torch

    from pyrovi._progress import progress_bar

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    gen = torch.Generator().manual_seed(args.seed)
    history, running = [], 0.0
    bar = progress_bar(args.steps, desc="DDPM", progress=not args.no_progress, unit="step")
    with bar:
        for step in range(1, args.steps + 1):
            batch = x[torch.randint(0, x.shape[0], (args.batch_size,), generator=gen)]
            loss = model.loss(batch, args.loss).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
            if step % 100 == 0 or step == args.steps:
                history.append(running / (100 if step % 100 == 0 else step % 100))
                running = 0.0
                bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
            bar.update(1)
    return history


def flow_reference(name: str, n_train: int, n_test: int, seed: int) -> dict | None:
    """The flows' held-out NLLs from ``flow_density_nll.json`` if it used the same data."""
    if not FLOW_RESULTS.exists():
        return None
    saved = json.loads(FLOW_RESULTS.read_text())
    s = saved.get("settings", {})
    if (s.get("n_train"), s.get("n_test"), s.get("seed")) != (n_train, n_test, seed):
        return None
    entry = saved.get("results", {}).get(name)
    if entry is None:
        return None
    return {k: v["test_nll"] for k, v in entry["flows"].items() if v.get("error") is None}


def plot(path: Path, x_test: torch.Tensor, model: DDPM, title: str) -> None:
    """Data, samples, and the reverse chain at a few steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chain = model.sample(2000, return_chain=True)  # (n, T + 1, 2), from z_T to x
    T = model.T
    shown = [0, T // 2, 3 * T // 4, T - T // 10, T]
    fig, axes = plt.subplots(
        1, len(shown) + 1, figsize=(3.0 * (len(shown) + 1), 3.6), layout="constrained"
    )
    axes[0].scatter(*x_test[:2000].T, s=1, color="0.3")
    axes[0].set_title("test data")
    axes[0].set_ylabel("x₂")
    for ax, k in zip(axes[1:], shown):
        ax.scatter(*chain[:, k].T, s=1, color="C0")
        ax.set_title("samples x" if k == T else f"reverse chain z_{T - k}")
    for ax in axes:
        ax.set_xlabel("x₁")
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error("--lr must be positive")

    import torch

    from pyrovi.models import DDPM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test, true_log_prob = load_data(args.dataset, args.n_train, args.n_test, args.seed)
    model = DDPM(2, args.T, args.schedule, hidden=args.hidden, variance=args.variance)
    t0 = time.perf_counter()
    history = train(model, x_train, args)
    train_seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        bound = model.nll_bound(x_test, args.eval_samples)
        true_nll = -true_log_prob(x_test).mean().item()
        samples = model.sample(x_test.shape[0])
    test_bound = bound.mean().item()
    metrics = {
        "dataset": args.dataset,
        "settings": {
            k: getattr(args, k)
            for k in (
                "n_train",
                "n_test",
                "T",
                "schedule",
                "loss",
                "variance",
                "hidden",
                "steps",
                "batch_size",
                "lr",
                "eval_samples",
                "seed",
                "threads",
            )
        },
        "test_nll_bound": test_bound,
        "test_nll_bound_stderr": bound.std().item() / math.sqrt(bound.numel()),
        "test_bits_per_dim": test_bound / (2 * math.log(2)),
        "true_nll": true_nll,
        "excess_nll_bound": test_bound - true_nll,
        "sample_mean": samples.mean(0).tolist(),
        "data_mean": x_test.mean(0).tolist(),
        "loss_every_100_steps": history,
        "train_seconds": train_seconds,
        "ms_per_step": 1000 * train_seconds / args.steps,
        "flows_test_nll": flow_reference(args.dataset, args.n_train, args.n_test, args.seed),
    }
    written = ["metrics.json"]
    if not args.no_plot:
        title = (
            f"DDPM on {args.dataset}: test NLL bound {test_bound:.3f} nats/point "
            f"(true density {true_nll:.3f})"
        )
        plot(out / "diffusion_2d.png", x_test, model, title)
        written.append("diffusion_2d.png")
    metrics["seconds"] = time.perf_counter() - t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    flows = metrics["flows_test_nll"]
    best = f"; best flow {min(flows.values()):.3f} nats" if flows else ""
    print(
        f"{args.dataset}: test NLL bound {test_bound:.3f} ± {metrics['test_nll_bound_stderr']:.3f}"
        f" nats/point ({metrics['test_bits_per_dim']:.3f} bits/dim), true NLL {true_nll:.3f}"
        f"{best}; trained {args.steps} steps in {train_seconds:.0f} s"
    )
    print_written(out, written)
    return metrics


if __name__ == "__main__":
    main()
