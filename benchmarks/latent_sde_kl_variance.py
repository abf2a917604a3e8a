#!/usr/bin/env python
"""Standard deviation of the path-KL estimate with and without the Itô term.

Two estimators of ``KL(q ‖ p)`` between path measures with the same diffusion, both with
expectation equal to the KL of the two Euler–Maruyama chains:

``full``       ``Σ_k u_k·ΔW_k + ½|u_k|² Δt``  (log q − log p of the sampled path)
``quadratic``  ``Σ_k ½|u_k|² Δt``             (the zero-mean Itô term dropped; torchsde's logqp)

with ``u = (f_q − f_p) / g`` along the guide's path. Both are evaluated on the *same* sampled
paths (paired), by switching ``kl_estimator`` of the model's ``EulerMaruyama``.

Cases:

``ou``          linear SDE pair in d = 2, dt = 0.01 on [0, 1] (``--ou-pairs`` drifts, from far
                to near each other); the exact chain KL is printed beside the estimates.
``lorenz``      the latent SDE of ``examples/latent_sde.py`` (latent 4, context 64, hidden 128,
                stochastic Lorenz, 75 observation times on [0, 1.5]) at initialization and after
                ``--train-epochs`` epochs of ``fit``: the std over ``--particles`` posterior
                paths per series, averaged over ``--series`` series, of (a) the path KL alone and
                (b) the whole single-sample ELBO of the series (likelihood − KL of z0 − path KL),
                which is what the gradient estimator sees.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/latent_sde_kl_variance.py     # ~5 min, 2 threads

Writes ``benchmarks/results/latent_sde_kl_variance.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from pyrovi.data import stochastic_lorenz
from pyrovi.distributions import EulerMaruyama
from pyrovi.guides import PosteriorSDE
from pyrovi.infer import fit
from pyrovi.models import LatentSDE

ROOT = Path(__file__).resolve().parent


def exact_linear_kl(a_p, b_p, a_q, b_q, sigma, m0, v0, dt, steps, dim):
    """KL of two Euler–Maruyama chains with linear drifts (Gaussian moment recursion)."""
    m, v, kl = m0, v0, 0.0
    da, db = a_q - a_p, b_q - b_p
    for _ in range(steps):
        kl += 0.5 * dt / sigma**2 * (da**2 * (v + m**2) + 2 * da * db * m + db**2)
        m, v = m * (1 + a_q * dt) + b_q * dt, v * (1 + a_q * dt) ** 2 + sigma**2 * dt
    return dim * kl


def paired_estimates(q: EulerMaruyama, p: EulerMaruyama, n: int) -> dict[str, torch.Tensor]:
    path = q.expand((n,)).rsample()
    out = {}
    for kind in ("full", "quadratic"):
        p.kl_estimator = kind
        out[kind] = (q.log_prob(path) - p.log_prob(path)).detach()
    return out


def ou_case(args) -> list[dict]:
    times = torch.linspace(0, 1, 101, dtype=torch.float64)
    sigma, a_p = 0.5, -1.0
    init = dist.Normal(torch.full((2,), 0.5, dtype=torch.float64), 0.3).to_event(1)
    rows = []
    for a_q, b_q in ((0.0, 1.0), (-0.5, 0.3), (-0.9, 0.05), (-0.99, 0.01)):
        p = EulerMaruyama(lambda t, x: a_p * x, sigma, init, times)
        q = EulerMaruyama(lambda t, x, a=a_q, b=b_q: a * x + b, sigma, init, times)
        est = paired_estimates(q, p, args.ou_paths)
        exact = exact_linear_kl(a_p, 0.0, a_q, b_q, sigma, 0.5, 0.09, 0.01, 100, 2)
        row = {"a_q": a_q, "b_q": b_q, "exact_kl": exact}
        for kind, x in est.items():
            row[kind] = {"mean": float(x.mean()), "std": float(x.std())}
        row["std_full_over_quadratic"] = row["full"]["std"] / row["quadratic"]["std"]
        rows.append(row)
        print(
            f"OU q drift {a_q:+.2f}x{b_q:+.2f}: exact KL {exact:.4f}; "
            f"full {row['full']['mean']:.4f}"
            f" ± std {row['full']['std']:.4f}; quadratic {row['quadratic']['mean']:.4f} ± std "
            f"{row['quadratic']['std']:.4f}; std ratio full/quadratic "
            f"{row['std_full_over_quadratic']:.2f}",
            flush=True,
        )
    return rows


def lorenz_stats(model, guide, xs, particles) -> dict:
    """Per-series std over particles of the path KL and of the whole ELBO, for both estimators."""
    with torch.no_grad(), pyro.plate("particles", particles, dim=-2):
        gtr = poutine.trace(guide).get_trace(xs)
        mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(xs)
        value = gtr.nodes["z"]["value"]
        q_path = gtr.nodes["z"]["fn"].log_prob(value)
        p_fn = mtr.nodes["z"]["fn"]
        z0 = gtr.nodes["z0"]["value"]
        kl0 = gtr.nodes["z0"]["fn"].log_prob(z0) - mtr.nodes["z0"]["fn"].log_prob(z0)
        log_lik = mtr.nodes["x"]["fn"].log_prob(xs)
        out = {}
        for kind in ("full", "quadratic"):
            p_fn.kl_estimator = kind
            kl = q_path - p_fn.log_prob(value)  # (particles, B)
            elbo = log_lik - kl0 - kl
            out[kind] = {
                "path_kl_mean": float(kl.mean()),
                "path_kl_std": float(kl.std(0).mean()),
                "elbo_mean": float(elbo.mean()),
                "elbo_std": float(elbo.std(0).mean()),
            }
        p_fn.kl_estimator = model.kl_estimator
    out["path_kl_std_full_over_quadratic"] = (
        out["full"]["path_kl_std"] / out["quadratic"]["path_kl_std"]
    )
    out["elbo_std_full_over_quadratic"] = out["full"]["elbo_std"] / out["quadratic"]["elbo_std"]
    return out


def lorenz_case(args) -> dict:
    times = torch.linspace(0, 2, 100)[:75]
    data = stochastic_lorenz(
        args.num_series, torch.linspace(0, 2, 100), normalize=True, obs_noise=0.01, seed=0
    ).values[:, :75]
    pyro.set_rng_seed(args.seed)
    model = LatentSDE(3, times, latent_dim=4, hidden=128)
    guide = PosteriorSDE(model, context_dim=64, hidden=128)
    xs = data[: args.series]
    res = {"init": lorenz_stats(model, guide, xs, args.particles)}
    print(f"Lorenz latent SDE at initialization: {json.dumps(res['init'])}", flush=True)
    t0 = time.perf_counter()
    fit(
        model,
        guide,
        data,
        epochs=args.train_epochs,
        batch_size=128,
        lr=1e-2,
        kl_annealing=max(1.0, args.train_epochs / 2.5),
        progress=False,
        seed=args.seed,
    )
    res["train_seconds"] = time.perf_counter() - t0
    res["trained"] = lorenz_stats(model, guide, xs, args.particles)
    print(f"after {args.train_epochs} epochs: {json.dumps(res['trained'])}", flush=True)
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ou-paths", type=int, default=20000)
    parser.add_argument("--num-series", type=int, default=512)
    parser.add_argument("--series", type=int, default=32)
    parser.add_argument("--particles", type=int, default=64)
    parser.add_argument("--train-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "latent_sde_kl_variance.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    report = {"settings": vars(args), "ou": ou_case(args), "lorenz": lorenz_case(args)}
    report["environment"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    assert all(math.isfinite(r["full"]["std"]) for r in report["ou"])
    return report


if __name__ == "__main__":
    main()
