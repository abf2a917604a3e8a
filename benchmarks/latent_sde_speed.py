#!/usr/bin/env python
"""Time per training iteration of pyrovi's latent SDE against a plain torchsde baseline.

Setting (issue 4; torchsde's latent-SDE Lorenz example): stochastic Lorenz data normalized, latent
4, context 64, hidden 128, Laplace likelihood (scale 0.01), Euler–Maruyama with dt = 0.01, batch
1024 and 128. The observation grid is ``linspace(0, 2, 101)`` so that dt = 0.01 divides it: both
methods take exactly 200 steps (pyrovi: ``substeps=2``; torchsde: ``dt=0.01`` on the same grid).

Both methods use the very same modules (encoder GRU, q(z0|x), posterior drift, prior drift,
diagonal diffusion, decoder) and the same per-series ELBO:

``pyrovi``    ``Trace_ELBO`` on ``LatentSDE``/``PosteriorSDE``: the guide samples the path with
              pyrovi's vectorized Euler–Maruyama loop; the model scores it (prior drift evaluated
              for all steps at once) with the quadratic KL estimator (the model's default).
``torchsde``  ``torchsde.sdeint(sde, z0, ts, method="euler", dt=0.01, logqp=True)``: posterior
              drift ``f``, prior drift ``h`` and diffusion ``g`` evaluated at every step, the
              path KL ``Σ ½|u|² Δt`` accumulated by torchsde; loss written by hand.

Each iteration is loss + backward + Adam step. Methods alternate in blocks of ``--steps``
iterations (the first method rotates each repeat), after one warm-up block each; the median over
repeats of the time per iteration is reported as ``torchsde / pyrovi`` (> 1: pyrovi is faster).
Then both are trained from the same initial weights for ``--train-iters`` iterations at batch
``--train-batch`` and the final ELBO per series (mean of the last 10 iterations) is reported.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/latent_sde_speed.py            # ~10 min, 1 thread
    python benchmarks/latent_sde_speed.py --batches 128 --repeats 3 --train-iters 20 --out ''

Writes ``benchmarks/results/latent_sde_speed.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torchsde
from pyro.infer import Trace_ELBO

from pyrovi.data import stochastic_lorenz
from pyrovi.guides import PosteriorSDE
from pyrovi.models import LatentSDE

ROOT = Path(__file__).resolve().parent


class TorchsdeLatentSDE(torch.nn.Module):
    """The same latent SDE as pyrovi's pair, trained through ``torchsde.sdeint(logqp=True)``."""

    sde_type = "ito"
    noise_type = "diagonal"

    def __init__(self, model: LatentSDE, guide: PosteriorSDE, dt: float) -> None:
        super().__init__()
        self.model, self.guide, self.dt = model, guide, dt
        self._drift = None

    def f(self, t, y):  # posterior drift
        return self._drift(t, y)

    def h(self, t, y):  # prior drift
        return self.model.prior_drift(t, y)

    def g(self, t, y):
        return self.model.diffusion(t, y)

    def loss(self, xs: torch.Tensor) -> torch.Tensor:
        """Negative ELBO summed over the batch (the scale of pyro's Trace_ELBO loss)."""
        model, guide, times = self.model, self.guide, self.model.times
        context = guide.encoder(xs)
        loc, raw = guide.z0_net(context[:, 0]).chunk(2, dim=-1)
        scale = torch.nn.functional.softplus(raw) + 1e-4
        self._drift = guide.drift.bind(times, context)
        z0 = loc + scale * torch.randn_like(loc)
        zs, log_ratio = torchsde.sdeint(
            self, z0, times, method="euler", dt=self.dt, logqp=True
        )  # zs (T, B, d), log_ratio (T - 1, B)
        x_dist = dist.Laplace(model.decoder(zs), model.obs_scale)
        log_lik = x_dist.log_prob(xs.transpose(0, 1)).sum(dim=(0, 2))
        q0 = dist.Normal(loc, scale).to_event(1)
        p0 = dist.Normal(model.z0_loc, model.z0_scale).to_event(1)
        kl0 = q0.log_prob(z0) - p0.log_prob(z0)
        return -(log_lik - kl0 - log_ratio.sum(0)).sum()


def make_pair(times, seed):
    # module-local PyroParams: several LatentSDE instances live at once here, and with Pyro's
    # global param store they would share (and silently overwrite) z0_loc / z0_scale
    pyro.settings.set(module_local_params=True)
    pyro.set_rng_seed(seed)
    model = LatentSDE(3, times, latent_dim=4, hidden=128, substeps=2)
    guide = PosteriorSDE(model, context_dim=64, hidden=128)
    return model, guide


def pyrovi_step(state, xs):
    model, guide, opt, elbo = state
    opt.zero_grad()
    loss = elbo.differentiable_loss(model, guide, xs)
    loss.backward()
    opt.step()
    return float(loss.detach())


def torchsde_step(state, xs):
    system, opt = state
    opt.zero_grad()
    loss = system.loss(xs)
    loss.backward()
    opt.step()
    return float(loss.detach())


def build(kind, times, seed, lr):
    model, guide = make_pair(times, seed)
    params = [*model.parameters(), *guide.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    if kind == "pyrovi":
        return (model, guide, opt, Trace_ELBO()), pyrovi_step
    return (TorchsdeLatentSDE(model, guide, dt=0.01), opt), torchsde_step


def time_batch(batch, data, times, args):
    states = {k: build(k, times, args.seed, args.lr) for k in ("pyrovi", "torchsde")}
    gen = torch.Generator().manual_seed(args.seed)
    per_iter = {k: [] for k in states}
    order = ["pyrovi", "torchsde"]
    for rep in range(args.repeats + 1):
        for kind in order if rep % 2 == 0 else order[::-1]:
            state, step = states[kind]
            idx = torch.randint(len(data), (args.steps, batch), generator=gen)
            t0 = time.perf_counter()
            for i in range(args.steps):
                step(state, data[idx[i]])
            elapsed = (time.perf_counter() - t0) / args.steps
            if rep:  # the first round is warm-up
                per_iter[kind].append(elapsed)
        print(
            f"  batch {batch} repeat {rep}: "
            + ", ".join(f"{k} {v[-1] * 1e3:.0f} ms" for k, v in per_iter.items() if v),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in per_iter.items()}
    return {
        "batch": batch,
        "ms_per_iteration": {k: v * 1e3 for k, v in med.items()},
        "all_ms": {k: [x * 1e3 for x in v] for k, v in per_iter.items()},
        "torchsde_over_pyrovi": med["torchsde"] / med["pyrovi"],
    }


def train_both(data, times, args):
    out = {}
    for kind in ("pyrovi", "torchsde"):
        state, step = build(kind, times, args.seed, args.lr)
        gen = torch.Generator().manual_seed(args.seed + 1)
        pyro.set_rng_seed(args.seed + 2)
        losses = []
        for _ in range(args.train_iters):
            idx = torch.randint(len(data), (args.train_batch,), generator=gen)
            losses.append(step(state, data[idx]) / args.train_batch)
        tail = losses[-10:]
        out[kind] = {
            "elbo_per_series_last10": -sum(tail) / len(tail),
            "elbo_history": [-x for x in losses],
        }
        print(
            f"  {kind}: ELBO per series after {args.train_iters} iterations "
            f"{out[kind]['elbo_per_series_last10']:.1f}",
            flush=True,
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batches", default="1024,128")
    parser.add_argument("--steps", type=int, default=3, help="iterations per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-iters", type=int, default=200)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--num-series", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "results" / "latent_sde_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    times = torch.linspace(0, 2, 101)
    data = stochastic_lorenz(args.num_series, times, normalize=True, obs_noise=0.01, seed=0).values
    report = {"settings": vars(args), "timing": [], "training": None}
    with pyro.validation_enabled(False):
        for batch in (int(b) for b in args.batches.split(",")):
            res = time_batch(batch, data, times, args)
            print(
                f"batch {batch}: pyrovi {res['ms_per_iteration']['pyrovi']:.0f} ms, torchsde "
                f"{res['ms_per_iteration']['torchsde']:.0f} ms per iteration -> torchsde/pyrovi "
                f"{res['torchsde_over_pyrovi']:.3f}",
                flush=True,
            )
            report["timing"].append(res)
        if args.train_iters:
            report["training"] = train_both(data, times, args)
    report["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "torchsde": torchsde.__version__,
        "threads": args.threads,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
