#!/usr/bin/env python
"""Per-step overhead of pyrovi's ``fit`` (and of stock Pyro SVI) against a plain PyTorch VAE loop.

Every method trains the same VAE on the same data with the same optimizer:

* encoder ``pyrovi.nn.MLP`` trunk 784-512-256 (+ReLU) and a linear head to ``2 * z`` (loc and
  softplus scale, as in :class:`pyrovi.guides.AmortizedNormal`), decoder ``MLP`` z-256-512-784
  with Bernoulli logits; batch 128, z = 32;
* ``torch.optim.Adam(lr=1e-3)`` (``pyro.optim.Adam`` for stock SVI, Pyro's wrapper of it);
* Fashion-MNIST (binarized dynamically by default), minibatches indexed from one tensor through a
  fresh random permutation per block, exactly as ``fit`` does;
* the Trace_ELBO estimator with one reparameterized sample, log-densities scaled by N / B.

Methods (``--methods``):

``plain``       hand-written PyTorch loop: ``loss = -(N/B) Σ [log p(x|z) + log N(z; 0, I)
                - log N(z; loc, scale)]`` with ``z = loc + scale * eps`` (single-sample MC KL).
``fit``         ``pyrovi.infer.fit`` with its default loss (FastTrace_ELBO).
``fit_trace``   ``fit(..., loss=pyro.infer.Trace_ELBO())``.
``fit_jit``     ``fit(..., loss=pyro.infer.JitTrace_ELBO())``.
``svi``         stock ``pyro.infer.SVI`` + ``Trace_ELBO`` + ``pyro.optim.Adam``, model and guide
                wrapped in ``poutine.scale(N / B)``, Pyro validation off (as in fit's loop).
``svi_jit``     the same with ``JitTrace_ELBO``.

Timing: the methods run round-robin (the starting method rotates every repeat); each repeat runs
one block of ``--steps`` optimizer steps per method after ``--warmup`` untimed blocks. A ``fit``
block is one call ``fit(model, guide, x_block, epochs=1, batch_size=B, progress=False)`` on a
fixed subset of ``steps * B`` images, so it takes exactly ``--steps`` steps. Its time per step is
``FitResult.timings["train_s"] / steps`` (fit's own clock around the epoch loop: shuffling, batch
indexing, transform, loss and gradients, optimizer step; fit's setup before the loop -- data
checks, the validated first pass, building the optimizer -- is excluded and reported separately).
The plain and SVI loops are timed the same way from outside (permutation + ``--steps`` steps).
The median over repeats of the per-step times is reported as a ratio to the plain loop; a second
column compares ``FitResult.timings["step_ms"]`` (median of single steps, excluding the batch
indexing) with the same per-step median measured inside the other loops.

Optimizer state: by default each method keeps one Adam for all its blocks, as in one long
training run (fit is given it through ``optimizer=<factory returning that Adam>``; the factory
path builds nothing else, so the loop is fit's default loop). ``--optimizer-state fresh`` instead
starts a new ``torch.optim.Adam`` every block for every method (fit too, through the factory:
fit's default ``optimizer=None`` would build torch's fused Adam, a different kernel from the
plain loop's). The two differ for a reason unrelated to Pyro: right after a
restart, many Adam second moments are exactly 0 (pixels that are 0 in every image so far, dead
ReLUs), and ``Tensor.sqrt`` of exact zeros is ~10x slower than of other values on this CPU
(AVX-512 build of torch 2.13), which adds ~1 ms per step to the method whose Adam was restarted.

``--check-equal`` first checks on a small problem (batch 16, 5 steps) that, with the same seed
and the same initial weights, the plain loop's losses and final weights equal those of ``fit``
(FastTrace_ELBO and Trace_ELBO) and of stock SVI: the plain loop draws the same random numbers in
the same order (fit's validated first pass draws one batch's binarization and one eps).
``--profile`` runs cProfile over a few blocks of ``--profile-methods`` and prints, for each
method against the plain loop, the call sites that account for the difference in time per step.

Usage::

    python benchmarks/vae_overhead.py --check-equal      # full run (~3 min on 1 CPU thread)
    python benchmarks/vae_overhead.py --repeats 3 --steps 20 --out ''   # quick look
    python benchmarks/vae_overhead.py --device cuda --threads 4
    python benchmarks/vae_overhead.py --profile --repeats 0 --out ''

Writes ``benchmarks/results/vae_overhead.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import datetime
import gc
import io
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO
from torch import nn
from torch.nn import functional as F

from pyrovi.data import DynamicBinarization, binarize, load_fashion_mnist
from pyrovi.guides import AmortizedNormal
from pyrovi.infer import FastTrace_ELBO, fit
from pyrovi.models import VAE
from pyrovi.nn import MLP

METHODS = ("plain", "fit", "fit_trace", "fit_jit", "svi", "svi_jit")
DESCRIPTIONS = {
    "plain": "plain PyTorch loop",
    "fit": "pyrovi fit (FastTrace_ELBO)",
    "fit_trace": "pyrovi fit + Trace_ELBO",
    "fit_jit": "pyrovi fit + JitTrace_ELBO",
    "svi": "stock SVI + Trace_ELBO",
    "svi_jit": "stock SVI + JitTrace_ELBO",
}
HIDDEN = (512, 256)
X_DIM = 784
MIN_SCALE = 1e-4  # AmortizedNormal's default floor on the scale
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant of torch's Normal.log_prob
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "vae_overhead.json"


# --------------------------------------------------------------------------- networks


class PlainVAE(nn.Module):
    """The same networks as VAE + AmortizedNormal, with the Trace_ELBO estimator written out."""

    def __init__(self, x_dim: int, z_dim: int, hidden=HIDDEN) -> None:
        super().__init__()
        hidden = tuple(hidden)
        self.encoder = nn.Sequential(MLP(x_dim, hidden[:-1], hidden[-1]), nn.ReLU())
        self.head = nn.Linear(hidden[-1], 2 * z_dim)
        self.decoder = MLP(z_dim, tuple(reversed(hidden)), x_dim)

    def load_from(self, model: VAE, guide: AmortizedNormal) -> None:
        self.encoder.load_state_dict(guide.encoder.state_dict())
        self.head.load_state_dict(guide.head.state_dict())
        self.decoder.load_state_dict(model.decoder.state_dict())

    def loss(self, x: torch.Tensor, data_scale: float) -> torch.Tensor:
        """Negative single-sample ELBO, summed over the batch and scaled by N / B.

        Written with the same operations, in the same order, as Pyro's Normal / Bernoulli
        ``log_prob`` and Trace_ELBO's sum (model sites z, x; then guide site z), so with the same
        random draws the values agree with ``fit`` to the last bit.
        """
        loc, raw = self.head(self.encoder(x)).chunk(2, dim=-1)
        scale = F.softplus(raw) + MIN_SCALE
        eps = torch.empty(loc.shape, dtype=loc.dtype, device=loc.device).normal_()
        z = loc + eps * scale  # Normal.rsample
        logits = self.decoder(z)
        log_pz = (-(z**2) / 2 - _LOG_SQRT_2PI).sum(-1)
        log_px = (-F.binary_cross_entropy_with_logits(logits, x, reduction="none")).sum(-1)
        log_qz = (-((z - loc) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI).sum(-1)
        elbo = (log_pz * data_scale).sum() + (log_px * data_scale).sum()
        elbo = elbo - (log_qz * data_scale).sum()
        return -elbo


def make_pyro_pair(z_dim: int, device: torch.device) -> tuple[VAE, AmortizedNormal]:
    model = VAE(X_DIM, z_dim, hidden_dims=HIDDEN).to(device)
    guide = AmortizedNormal(X_DIM, z_dim, hidden_dims=HIDDEN, min_scale=MIN_SCALE).to(device)
    return model, guide


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- data


def load_data(binarization: str, seed: int) -> tuple[torch.Tensor, str]:
    """Fashion-MNIST training images (N, 784) in [0, 1] (binary when ``static``)."""
    try:
        x = load_fashion_mnist().x_train
        source = "fashion-mnist (/usr/share/datasets/fashion-mnist)"
    except (FileNotFoundError, OSError, ValueError) as err:
        print(
            f"NOTE: Fashion-MNIST not available ({err}); using random binary data of the same "
            "shape (60000, 784) instead -- timings are unaffected, loss values are not "
            "comparable with real data."
        )
        gen = torch.Generator().manual_seed(seed + 12345)  # not the binarization's stream
        x = torch.bernoulli(torch.full((60000, X_DIM), 0.5), generator=gen)
        source = "random (Fashion-MNIST folder missing)"
    if binarization == "static":
        x = binarize(x, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(), source


# --------------------------------------------------------------------------- one block per method


class Method:
    """One training setup with persistent state (weights, optimizer, param store scope)."""

    def __init__(
        self,
        name: str,
        base_model: VAE,
        base_guide: AmortizedNormal,
        *,
        lr: float,
        batch_size: int,
        n: int,
        device: torch.device,
        transform: Callable | None,
        fresh_optimizer: bool = False,
    ) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.n = n
        self.lr = lr
        self.transform = transform
        self.scope: dict = {"params": {}, "constraints": {}}  # private Pyro param store
        self.generator = torch.Generator().manual_seed(1000 + METHODS.index(name))
        self.model = copy.deepcopy(base_model)
        self.guide = copy.deepcopy(base_guide)
        self.fresh_optimizer = fresh_optimizer
        self.optim: torch.optim.Optimizer | None = None
        if name == "plain":
            self.net = PlainVAE(X_DIM, base_model.z_dim).to(device)
            self.net.load_from(self.model, self.guide)
        elif name.startswith("fit"):
            self.loss = {
                "fit": None,
                "fit_trace": Trace_ELBO(),
                "fit_jit": JitTrace_ELBO(ignore_jit_warnings=True),
            }[name]
        elif name.startswith("svi"):
            jit = name == "svi_jit"
            self.loss = JitTrace_ELBO(ignore_jit_warnings=True) if jit else Trace_ELBO()
            self.svi: SVI | None = None
            factor = n / batch_size  # built once: JitTrace_ELBO caches its trace per model id
            self.scaled = (poutine.scale(self.model, factor), poutine.scale(self.guide, factor))
        else:
            raise ValueError(f"unknown method {name!r}")

    def _optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """torch.optim.Adam(lr) over ``params``; the same instance every block unless fresh."""
        if self.optim is None or self.fresh_optimizer:
            self.optim = torch.optim.Adam(params, lr=self.lr)
        else:
            held = [p for group in self.optim.param_groups for p in group["params"]]
            if [id(p) for p in held] != [id(p) for p in params]:
                raise RuntimeError(f"{self.name}: the parameters changed between blocks")
        return self.optim

    def _svi(self) -> SVI:
        if self.svi is None or self.fresh_optimizer:
            self.svi = SVI(*self.scaled, pyro.optim.Adam({"lr": self.lr}), self.loss)
        return self.svi

    def run_block(self, x: torch.Tensor) -> dict[str, float]:
        """Train for ``len(x) // batch_size`` steps; return per-step times in ms."""
        store = pyro.get_param_store()
        with store.scope(self.scope), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
            _sync(self.device)
            t0 = time.perf_counter()
            if self.name.startswith("fit"):
                result = fit(
                    self.model,
                    self.guide,
                    x,
                    epochs=1,
                    batch_size=self.batch_size,
                    lr=self.lr,
                    loss=self.loss,
                    progress=False,
                    optimizer=self._optimizer,
                    transform=self.transform,
                    device=self.device,
                )
                _sync(self.device)
                outside = time.perf_counter() - t0
                steps = result.steps
                return {
                    "loop_ms": 1e3 * result.timings["train_s"] / steps,
                    "step_median_ms": result.timings["step_ms"],
                    "call_ms": 1e3 * outside / steps,
                    "setup_ms": 1e3 * (outside - result.timings["total_s"]),
                    "last_loss": -result.history["train_elbo"][-1] * self.n,
                }
            step_times = self._loop(x)
            _sync(self.device)
            wall = time.perf_counter() - t0
        step_times.sort()
        return {
            "loop_ms": 1e3 * wall / len(step_times),
            "step_median_ms": 1e3 * step_times[len(step_times) // 2],
            "call_ms": 1e3 * wall / len(step_times),
            "setup_ms": 0.0,
            "last_loss": self.last_loss,
        }

    def _loop(self, x: torch.Tensor) -> list[float]:
        """The plain / SVI loop, shaped like fit's inner loop (same clock placement)."""
        b, n = self.batch_size, x.shape[0]
        steps = n // b
        order = torch.randperm(n, generator=self.generator).to(self.device)
        times = []
        transform = self.transform
        if self.name == "plain":
            net, factor = self.net, n / b
            opt = self._optimizer(list(net.parameters()))
            for i in range(steps):
                batch = x[order[i * b : (i + 1) * b]]
                t = time.perf_counter()
                if transform is not None:
                    batch = transform(batch)
                opt.zero_grad(set_to_none=True)
                loss = net.loss(batch, factor)
                loss.backward()
                value = float(loss.detach())  # fit reads the loss every step too
                if not math.isfinite(value):
                    raise FloatingPointError(f"plain loop: loss {value}")
                opt.step()
                times.append(time.perf_counter() - t)
        else:
            svi = self._svi()
            with pyro.validation_enabled(False):
                for i in range(steps):
                    batch = x[order[i * b : (i + 1) * b]]
                    t = time.perf_counter()
                    if transform is not None:
                        batch = transform(batch)
                    value = svi.step(batch)
                    if not math.isfinite(value):
                        raise FloatingPointError(f"{self.name}: loss {value}")
                    times.append(time.perf_counter() - t)
        self.last_loss = value
        return times


# --------------------------------------------------------------------------- same-loss check


def _recording(cls):
    class Recording(cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.values: list[float] = []

        def loss_and_grads(self, model, guide, *args, **kwargs):
            value = super().loss_and_grads(model, guide, *args, **kwargs)
            self.values.append(float(value))
            return value

    Recording.__name__ = f"Recording{cls.__name__}"
    return Recording


def plain_losses(
    net: nn.Module, x, *, batch_size, lr, seed, transform, device, fit_first_pass: bool = True
) -> list[float]:
    """Train ``net`` (with a ``loss(batch, data_scale)`` method) by a plain loop drawing the same
    random numbers, in the same order, as ``fit(seed=...)`` (or stock SVI without the first
    pass); the loss of every step."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n, b = x.shape[0], batch_size
    pyro.set_rng_seed(seed)
    if fit_first_pass:
        # fit's validated first pass: batch 0 of a permutation seeded with 0, transformed, one
        # draw of eps (the pass runs without gradients and changes no weights)
        first = x[torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)[:b]]
        if transform is not None:
            first = transform(first)
        with torch.no_grad():
            net.loss(first, n / b)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)
    values = []
    for i in range(n // b):
        batch = x[order[i * b : (i + 1) * b]]
        if transform is not None:
            batch = transform(batch)
        opt.zero_grad(set_to_none=True)
        loss = net.loss(batch, n / b)
        loss.backward()
        opt.step()
        values.append(float(loss.detach()))
    return values


def _plain_reference(
    base_model, base_guide, x, *, batch_size, lr, seed, transform, device, fit_first_pass: bool
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Plain loop drawing the same random numbers, in the same order, as fit (or stock SVI)."""
    net = PlainVAE(X_DIM, base_model.z_dim).to(device)
    net.load_from(base_model, base_guide)
    values = plain_losses(
        net,
        x,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        transform=transform,
        device=device,
        fit_first_pass=fit_first_pass,
    )
    state = {f"guide.encoder.{k}": v for k, v in net.encoder.state_dict().items()}
    state |= {f"guide.head.{k}": v for k, v in net.head.state_dict().items()}
    state |= {f"model.decoder.{k}": v for k, v in net.decoder.state_dict().items()}
    return values, state


def _pyro_state(model, guide) -> dict[str, torch.Tensor]:
    state = {f"guide.encoder.{k}": v for k, v in guide.encoder.state_dict().items()}
    state |= {f"guide.head.{k}": v for k, v in guide.head.state_dict().items()}
    state |= {f"model.decoder.{k}": v for k, v in model.decoder.state_dict().items()}
    return state


def check_equal(x_all: torch.Tensor, args, device: torch.device, transform) -> dict:
    """Same seed + same initial weights: compare per-step losses and final weights."""
    b, steps, seed = args.check_batch, args.check_steps, args.seed
    x = x_all[: b * steps].to(device)
    pyro.set_rng_seed(seed)
    base_model, base_guide = make_pyro_pair(args.z_dim, device)
    ref_fit = _plain_reference(
        base_model,
        base_guide,
        x,
        batch_size=b,
        lr=args.lr,
        seed=seed,
        transform=transform,
        device=device,
        fit_first_pass=True,
    )
    ref_svi = _plain_reference(
        base_model,
        base_guide,
        x,
        batch_size=b,
        lr=args.lr,
        seed=seed,
        transform=transform,
        device=device,
        fit_first_pass=False,
    )
    out: dict = {
        "batch_size": b,
        "steps": steps,
        "n": x.shape[0],
        "seed": seed,
        "plain_losses": ref_fit[0],
        "plain_losses_svi_order": ref_svi[0],
        "methods": {},
    }
    runs = {
        "fit": _recording(FastTrace_ELBO),
        "fit_trace": _recording(Trace_ELBO),
        "svi": _recording(Trace_ELBO),
    }
    for name, cls in runs.items():
        model, guide = copy.deepcopy(base_model), copy.deepcopy(base_guide)
        loss = cls()
        with pyro.get_param_store().scope():
            if name.startswith("fit"):
                fit(
                    model,
                    guide,
                    x,
                    epochs=1,
                    batch_size=b,
                    lr=args.lr,
                    optimizer=torch.optim.Adam,  # the plain loop's (fit's default is fused)
                    loss=loss,
                    progress=False,
                    seed=seed,
                    transform=transform,
                    device=device,
                )
                ref_losses, ref_state = ref_fit
            else:
                pyro.set_rng_seed(seed)
                factor = x.shape[0] / b
                svi = SVI(
                    poutine.scale(model, factor),
                    poutine.scale(guide, factor),
                    pyro.optim.Adam({"lr": args.lr}),
                    loss,
                )
                order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
                order = order.to(device)
                with pyro.validation_enabled(False):
                    for i in range(steps):
                        batch = x[order[i * b : (i + 1) * b]]
                        svi.step(transform(batch) if transform is not None else batch)
                ref_losses, ref_state = ref_svi
        state = _pyro_state(model, guide)
        loss_diff = [abs(a - r) / max(1.0, abs(r)) for a, r in zip(loss.values, ref_losses)]
        param_diff = max(float((state[k] - ref_state[k]).abs().max()) for k in ref_state)
        out["methods"][name] = {
            "losses": loss.values,
            "max_rel_loss_diff": max(loss_diff) if loss_diff else float("nan"),
            "bitwise_equal_losses": loss.values == ref_losses,
            "max_abs_param_diff": param_diff,
        }
    return out


def print_check(check: dict) -> bool:
    print(
        f"\nSame-loss check (seed {check['seed']}, N={check['n']}, batch {check['batch_size']}, "
        f"{check['steps']} steps, same initial weights):"
    )
    print(f"  {'plain loop':30s} " + " ".join(f"{v:12.4f}" for v in check["plain_losses"]))
    ok = True
    for name, r in check["methods"].items():
        print(f"  {DESCRIPTIONS[name]:30s} " + " ".join(f"{v:12.4f}" for v in r["losses"]))
        good = r["max_rel_loss_diff"] < 1e-5 and r["max_abs_param_diff"] < 1e-5
        ok &= good
        print(
            f"    -> max rel. loss diff {r['max_rel_loss_diff']:.2e} "
            f"(bitwise equal: {r['bitwise_equal_losses']}), max |param diff| after "
            f"{check['steps']} steps {r['max_abs_param_diff']:.2e}: "
            f"{'MATCH' if good else 'MISMATCH'}"
        )
    if "svi" in check["methods"]:
        print(
            "  (stock SVI has no validated first pass, so it is compared with a plain loop "
            "that skips those draws: "
            + " ".join(f"{v:.4f}" for v in check["plain_losses_svi_order"])
            + ")"
        )
    return ok


# --------------------------------------------------------------------------- profiling


def _site(key: tuple) -> str:
    path, line, func = key
    root = str(Path(__file__).resolve().parents[1]) + "/"
    path = path.split("site-packages/")[-1].replace(root, "")
    return f"{path}:{line}({func})"


def profile_methods(
    methods: dict[str, Method], x: torch.Tensor, top: int, blocks: int = 3
) -> dict[str, str]:
    """cProfile ``blocks`` blocks of each method (interleaved); print, per method, the sites with
    the most own time and, against the plain loop, the sites that account for the difference."""
    profiles = {name: cProfile.Profile() for name in methods}
    steps = 0
    for _ in range(blocks):
        for name, m in methods.items():
            profiles[name].enable()
            m.run_block(x)
            profiles[name].disable()
        steps += x.shape[0] // next(iter(methods.values())).batch_size
    texts = {}
    tables = {}
    for name, prof in profiles.items():
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("tottime").print_stats(top)
        texts[name] = buf.getvalue()
        tables[name] = {_site(k): (v[1], v[2], v[3]) for k, v in stats.stats.items()}
        print(
            f"\n==================== cProfile: {DESCRIPTIONS[name]} ({blocks} blocks, {steps} "
            f"steps) ===================="
        )
        print(texts[name])
    if "plain" in tables:
        base = tables["plain"]
        for name, table in tables.items():
            if name == "plain":
                continue
            rows = []
            for site in set(base) | set(table):
                nb, tb, cb = base.get(site, (0, 0.0, 0.0))
                nm, tm, cm = table.get(site, (0, 0.0, 0.0))
                rows.append((tm - tb, site, nb, tb, nm, tm, cm))
            rows.sort(reverse=True)
            total = sum(r[0] for r in rows)
            lines = [
                f"\n---- {DESCRIPTIONS[name]} minus plain loop: own time per step by call "
                f"site (cProfile; total {1e3 * total / steps:+.3f} ms/step incl. profiler "
                "overhead) ----",
                f"{'diff ms':>8s} {'plain ms':>9s} {name + ' ms':>10s} {'calls/step':>16s} "
                f"{'cum ms':>8s}  site",
            ]
            for d, site, nb, tb, nm, tm, cm in rows[:top]:
                once = "  [once per fit call: setup]" if 0 < nm / steps < 0.5 else ""
                lines.append(
                    f"{1e3 * d / steps:+8.3f} {1e3 * tb / steps:9.3f} "
                    f"{1e3 * tm / steps:10.3f} {nb / steps:7.2f} ->{nm / steps:7.2f} "
                    f"{1e3 * cm / steps:8.3f}  {site}{once}"
                )
            lines.append(
                "   ... sites where the plain loop spends more (its own work, e.g. the "
                "loss arithmetic, is counted in benchmarks/vae_overhead.py):"
            )
            for d, site, nb, tb, nm, tm, cm in rows[-6:]:
                lines.append(
                    f"{1e3 * d / steps:+8.3f} {1e3 * tb / steps:9.3f} "
                    f"{1e3 * tm / steps:10.3f} {nb / steps:7.2f} ->{nm / steps:7.2f} "
                    f"{1e3 * cm / steps:8.3f}  {site}"
                )
            text = "\n".join(lines)
            texts[f"{name}-minus-plain"] = text
            print(text)
    return texts


# --------------------------------------------------------------------------- main


def machine_info(args, device: torch.device) -> dict:
    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import pyrovi

        info["pyrovi"] = pyrovi.__version__
    except Exception:  # noqa: BLE001
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["library"] = library_state()
    return info


def library_state() -> dict:
    """Git commit and uncommitted changes of the library, and hashes of the files timed here."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parents[1]
    state: dict = {}
    try:
        state["git_head"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        state["modified_pyrovi_files"] = subprocess.run(
            ["git", "status", "--porcelain", "--", "pyrovi"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")[:-1]
    except (OSError, subprocess.SubprocessError):
        pass
    for rel in (
        "pyrovi/infer/fit.py",
        "pyrovi/infer/losses.py",
        "pyrovi/models/vae.py",
        "pyrovi/guides/encoders.py",
    ):
        path = root / rel
        if path.is_file():
            state[f"sha1:{rel}"] = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    return state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (plain is always run)",
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=50, help="optimizer steps per timed block")
    p.add_argument("--repeats", type=int, default=25, help="timed blocks per method")
    p.add_argument("--warmup", type=int, default=2, help="untimed blocks per method first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument(
        "--binarize",
        choices=("dynamic", "static"),
        default="dynamic",
        help="dynamic: DynamicBinarization transform on every batch (all methods); "
        "static: binarize the images once",
    )
    p.add_argument(
        "--optimizer-state",
        choices=("persistent", "fresh"),
        default="persistent",
        help="persistent: each method keeps one Adam across its blocks (fit gets it "
        "through optimizer=<factory returning it>), like one long training run; "
        "fresh: a new torch.optim.Adam every block for every method",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--check-equal",
        action="store_true",
        help="first check that plain loop, fit and SVI give the same losses",
    )
    p.add_argument("--check-batch", type=int, default=16)
    p.add_argument("--check-steps", type=int, default=5)
    p.add_argument(
        "--profile",
        action="store_true",
        help="print cProfile summaries of one block of each method (after timing)",
    )
    p.add_argument("--profile-methods", default="plain,fit")
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument("--profile-blocks", type=int, default=3)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file ('' for none)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    methods = ["plain"] + [m for m in METHODS if m in methods and m != "plain"]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    pyro.set_rng_seed(args.seed)

    x_all, source = load_data(args.binarize, args.seed)
    transform = DynamicBinarization() if args.binarize == "dynamic" else None
    b = args.batch_size
    n_block = args.steps * b
    if n_block > x_all.shape[0]:
        raise SystemExit(f"--steps * --batch-size = {n_block} exceeds the {x_all.shape[0]} images")
    x_block = x_all[:n_block].to(device)
    info = machine_info(args, device)
    print(
        f"torch {info['torch']}, pyro {info['pyro']}, {info['torch_threads']} thread(s), "
        f"{info['cpu_count']} CPUs ({info['cpu_model']}), device {device}"
    )
    print(
        f"data: {source}, binarization {args.binarize}; batch {b}, z {args.z_dim}, "
        f"{args.steps} steps/block, {args.repeats} repeats, {args.warmup} warm-up block(s)"
    )

    results: dict = {"machine": info, "args": vars(args), "data": source}
    check_ok = None
    if args.check_equal:
        results["check_equal"] = check_equal(x_all, args, device, transform)
        check_ok = print_check(results["check_equal"])

    pyro.set_rng_seed(args.seed)
    base_model, base_guide = make_pyro_pair(args.z_dim, device)
    runners = {
        name: Method(
            name,
            base_model,
            base_guide,
            lr=args.lr,
            batch_size=b,
            n=n_block,
            device=device,
            transform=transform,
            fresh_optimizer=args.optimizer_state == "fresh",
        )
        for name in methods
    }
    t_start = time.perf_counter()
    for _ in range(args.warmup):
        for m in runners.values():
            m.run_block(x_block)
    raw: dict[str, list[dict]] = {name: [] for name in methods}
    for r in range(args.repeats):
        order = methods[r % len(methods) :] + methods[: r % len(methods)]
        for name in order:
            raw[name].append(runners[name].run_block(x_block))
        line = "  ".join(f"{n}={raw[n][-1]['loop_ms']:.2f}" for n in methods)
        print(f"repeat {r + 1:2d}/{args.repeats}: ms/step {line}", flush=True)
    elapsed = time.perf_counter() - t_start

    summary: dict = {}
    if args.repeats:
        keys = ("loop_ms", "step_median_ms", "call_ms", "setup_ms")
        for name in methods:
            summary[name] = {k: statistics.median(r[k] for r in raw[name]) for k in keys}
        base = summary["plain"]
        for name in methods:
            s = summary[name]
            s["ratio"] = s["loop_ms"] / base["loop_ms"]
            s["ratio_step_median"] = s["step_median_ms"] / base["step_median_ms"]
            per = [r["loop_ms"] for r in raw[name]]
            s["loop_ms_min"], s["loop_ms_max"] = min(per), max(per)
            # ratio per repeat (same repeat = same neighbourhood in time), then the median
            s["ratio_paired_median"] = statistics.median(
                r["loop_ms"] / p["loop_ms"] for r, p in zip(raw[name], raw["plain"])
            )
        print(
            f"\nTime per step, median of {args.repeats} blocks of {args.steps} steps "
            f"(batch {b}, z {args.z_dim}, {info['torch_threads']} thread(s), {device}); "
            f"timed runs took {elapsed:.0f} s"
        )
        hdr = (
            f"{'method':30s} {'ms/step':>8s} {'min':>7s} {'max':>7s} {'x plain':>8s} "
            f"{'paired':>7s} {'median step':>12s} {'x plain':>8s} {'fit setup':>10s}"
        )
        print(hdr)
        print("-" * len(hdr))
        for name in methods:
            s = summary[name]
            setup = f"{s['setup_ms']:8.1f}ms" if name.startswith("fit") else ""
            print(
                f"{DESCRIPTIONS[name]:30s} {s['loop_ms']:8.2f} {s['loop_ms_min']:7.2f} "
                f"{s['loop_ms_max']:7.2f} {s['ratio']:7.3f}x {s['ratio_paired_median']:6.3f}x "
                f"{s['step_median_ms']:10.2f}ms {s['ratio_step_median']:7.3f}x {setup:>10s}"
            )
        print(
            "ms/step: in-loop time per step (fit: FitResult.timings['train_s'] / steps). "
            "paired: median over repeats of the per-repeat ratio. median step: median single "
            "step (fit: timings['step_ms']). fit setup: time of one fit call outside its loop."
        )
        if "fit" in summary:
            verdict = "MEETS" if summary["fit"]["ratio"] <= 1.10 else "MISSES"
            print(
                f"fit (Trace_ELBO semantics) / plain = {summary['fit']['ratio']:.3f}x: "
                f"{verdict} the 1.10x target"
            )
    results.update({"summary": summary, "raw": raw, "timed_seconds": elapsed})
    if hasattr(os, "getloadavg"):
        info["load_average_at_end"] = os.getloadavg()
    if check_ok is not None:
        results["check_equal_ok"] = check_ok

    if args.profile:
        chosen = [m.strip() for m in args.profile_methods.split(",") if m.strip() in runners]
        results["profile"] = profile_methods(
            {m: runners[m] for m in chosen}, x_block, args.profile_top, args.profile_blocks
        )

    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
