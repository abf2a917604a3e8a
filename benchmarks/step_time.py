#!/usr/bin/env python
"""Training-step time of pyrovi's ``fit`` against the same model in plain PyTorch, by batch size.

Three models, each trained by ``pyrovi.infer.fit`` (default loss ``FastTrace_ELBO``) and by a
hand-written PyTorch loop with the same networks (deep copies of the same initial weights), the
same single-sample ELBO estimator scaled by N / B, the same ``torch.optim.Adam(lr)`` and the same
minibatching (a fresh random permutation per block, batches indexed from one tensor):

``vae``   :class:`pyrovi.models.VAE` (784, z, hidden 512-256, Bernoulli decoder) with
          :class:`pyrovi.guides.AmortizedNormal`; Fashion-MNIST with dynamic binarization. The
          plain loop is ``PlainVAE`` from ``benchmarks/vae_overhead.py``.
``flow``  the same VAE with :class:`pyrovi.guides.AmortizedFlow` (``--flow`` layers, default two
          IAF layers of width 64). The plain loop runs the guide's own encoder and nflows
          transform (``flow._transform.inverse`` on N(0, I) noise, log q = log N(ε) − log|det|)
          and the model's decoder, without Pyro.
``sde``   :class:`pyrovi.models.LatentSDE` (Lorenz data, latent 4, hidden 128, Laplace
          likelihood, quadratic path-KL estimator) with :class:`pyrovi.guides.PosteriorSDE`
          (context 64), as in ``benchmarks/latent_sde_speed.py``. The plain loop is an
          Euler–Maruyama loop over the guide's encoder, q(z0|x) head, posterior drift and the
          model's diffusion, then the prior drift over all steps at once (with pyrovi's
          ``_over_steps`` chunking, as the model's ``log_prob`` does), the decoder and
          ``ELBO = log p(x|z) + log p(z0) − log q(z0) − Σ ½|u|² Δt``, u = (f_q − f_p) / g.

Timing (as in ``benchmarks/vae_overhead.py``): for every model and batch size B, ``fit`` and the
plain loop run blocks of ``--steps`` (``--sde-steps`` for the SDE) optimizer steps, round-robin,
the one going first alternating every repeat, after ``--warmup`` untimed blocks each; the median
over ``--repeats`` blocks is reported. A ``fit`` block is one call ``fit(model, guide, x_block,
epochs=1, batch_size=B)`` on ``steps * B`` data points; its time per step is
``FitResult.timings["train_s"] / steps`` (fit's own clock around the epoch loop, so fit's setup --
data checks, the validated first pass -- is excluded; it is reported separately as
``setup_ms``). The plain loop is timed from outside the same way (permutation + steps). Each
method keeps one Adam across its blocks (fit receives it through ``optimizer=<factory>``), as
one long run would. On CUDA, ``torch.cuda.synchronize`` is called before and after every block.

Reported per model and B: ms/step of each, the ratio fit / plain (median of the per-repeat
ratios as well), data points (images or series) per second, and how the time per step scales
with B (ms/step divided by that at the smallest B).

Before timing (unless ``--no-check``), on a small batch (``--check-batch``, ``--check-steps``),
with the same seed and initial weights, the plain loop is run drawing the same random numbers in
the same order as ``fit`` (including fit's validated first pass); the maximum relative
difference of the per-step losses is stored in the JSON (the VAE is expected to agree to the last
bit; the flow and SDE up to float32 rounding, since the sums are taken in another order).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/step_time.py                 # CPU, ~7 min
    python benchmarks/step_time.py --device cuda                           # lent GPU
    python benchmarks/step_time.py --models vae --batch-sizes 128 --repeats 3 --out ''

Writes ``benchmarks/results/step_time_<device type>.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import importlib.util
import json
import math
import os
import statistics
import time
import warnings
from pathlib import Path
from types import ModuleType

import pyro
import torch
from torch import nn
from torch.distributions import Laplace, Normal
from torch.nn import functional as F

from pyrovi.data import DynamicBinarization, load_dataset, stochastic_lorenz
from pyrovi.distributions.sde import _over_steps
from pyrovi.guides import AmortizedFlow, PosteriorSDE
from pyrovi.infer import FastTrace_ELBO, fit
from pyrovi.models import VAE, LatentSDE


def _load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` by file path (the benchmarks are scripts, not a package)."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pyrovi_benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the VAE's plain loop, its same-loss reference and the timing helpers of vae_overhead.py
_vo = _load_benchmark("vae_overhead")
HIDDEN, MIN_SCALE, X_DIM = _vo.HIDDEN, _vo.MIN_SCALE, _vo.X_DIM
PlainVAE, make_pyro_pair, machine_info, _sync = (
    _vo.PlainVAE,
    _vo.make_pyro_pair,
    _vo.machine_info,
    _vo._sync,
)

# the small models (eight schools, regression, enumerated mixture, DDPM) and their plain loops
_small = _load_benchmark("step_time_small")

MODELS = ("vae", "flow", "sde")
TITLES = {
    "vae": "VAE (AmortizedNormal)",
    "flow": "flow VAE (AmortizedFlow)",
    "sde": "latent SDE (PosteriorSDE)",
}
METHODS = ("fit", "plain")
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------- plain models


def _vae_elbo_terms(z, logits, x, log_qz, data_scale):
    """``-ELBO`` from z, decoder logits and log q(z|x), in the order of PlainVAE.loss."""
    log_pz = (-(z**2) / 2 - _LOG_SQRT_2PI).sum(-1)
    log_px = (-F.binary_cross_entropy_with_logits(logits, x, reduction="none")).sum(-1)
    elbo = (log_pz * data_scale).sum() + (log_px * data_scale).sum()
    elbo = elbo - (log_qz * data_scale).sum()
    return -elbo


class PlainFlowVAE(nn.Module):
    """VAE + AmortizedFlow with the ELBO written out; runs the guide's own modules."""

    def __init__(self, model: VAE, guide: AmortizedFlow) -> None:
        super().__init__()
        self.encoder = guide.encoder
        self.transform = guide.flow._transform  # density direction; inverse samples
        self.embedding = guide.flow._embedding_net
        self.decoder = model.decoder
        self.z_dim = guide.z_dim

    def loss(self, x: torch.Tensor, data_scale: float) -> torch.Tensor:
        """Negative single-sample ELBO summed over the batch, scaled by N / B."""
        context = self.embedding(self.encoder(x))
        noise = torch.randn(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
        base_lp = -0.5 * noise.pow(2).sum(-1) - 0.5 * self.z_dim * math.log(2 * math.pi)
        z, logabsdet = self.transform.inverse(noise, context=context)
        log_qz = base_lp - logabsdet
        return _vae_elbo_terms(z, self.decoder(z), x, log_qz, data_scale)


class PlainLatentSDE(nn.Module):
    """LatentSDE + PosteriorSDE trained by a hand-written Euler–Maruyama loop (no Pyro)."""

    def __init__(self, model: LatentSDE, guide: PosteriorSDE) -> None:
        super().__init__()
        if model.substeps != 1 or model.kl_estimator != "quadratic":
            raise ValueError("PlainLatentSDE reproduces substeps=1, kl_estimator='quadratic'")
        self.model, self.guide = model, guide

    def loss(self, xs: torch.Tensor, data_scale: float) -> torch.Tensor:
        """Negative ELBO (reconstruction, z0 KL sample, quadratic path KL), scaled by N / B."""
        model, guide = self.model, self.guide
        times = model.times
        context = guide.encoder(xs, None)
        loc, raw = guide.z0_net(context[:, 0]).chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-4
        drift = guide.drift.bind(times, context)
        z0 = loc + torch.empty(loc.shape, dtype=loc.dtype, device=loc.device).normal_() * scale
        dt = times[1:] - times[:-1]
        dw = torch.randn((len(dt), *z0.shape), dtype=z0.dtype, device=z0.device)
        dw = dw * dt.sqrt().reshape(-1, 1, 1)
        x, xs_, fs, gs = z0, [z0], [], []
        for k, h in enumerate(dt.tolist()):
            t = times[k]
            f = drift(t, x)
            g = model.diffusion(t, x)
            x = torch.addcmul(torch.add(x, f, alpha=h), g, dw[k])
            xs_.append(x)
            fs.append(f)
            gs.append(g.expand_as(x))
        path = torch.stack(xs_)  # (T, B, d)
        u = (torch.stack(fs) - _over_steps(model.prior_drift, times[:-1], path[:-1])) / torch.stack(
            gs
        )
        path_kl = (0.5 * u.pow(2) * dt.reshape(-1, 1, 1)).sum(dim=(0, -1))
        loc_x = model.decoder(path.movedim(0, -2))  # (B, T, D)
        log_px = Laplace(loc_x, model.obs_scale, validate_args=False).log_prob(xs).sum((-2, -1))
        p0 = Normal(model.z0_loc, model.z0_scale, validate_args=False)
        log_p0 = p0.log_prob(z0).sum(-1)
        log_q0 = Normal(loc, scale, validate_args=False).log_prob(z0).sum(-1)
        elbo = (log_p0 * data_scale).sum() + (log_px * data_scale).sum()
        elbo = elbo - (log_q0 * data_scale).sum() - (path_kl * data_scale).sum()
        return -elbo


# --------------------------------------------------------------------------- builders


def build_pair(kind: str, args, device: torch.device, times: torch.Tensor | None):
    """The Pyro model and guide of ``kind`` on ``device`` (seeded by the caller)."""
    if kind == "vae":
        return make_pyro_pair(args.z_dim, device)
    if kind == "flow":
        model = VAE(X_DIM, args.z_dim, hidden_dims=HIDDEN).to(device)
        guide = AmortizedFlow(
            X_DIM,
            args.z_dim,
            flow=args.flow,
            num_layers=args.flow_layers,
            hidden_features=args.flow_hidden,
            hidden_dims=HIDDEN,
            min_scale=MIN_SCALE,
        ).to(device)
        return model, guide
    model = LatentSDE(3, times, latent_dim=4, hidden=128, substeps=1)
    guide = PosteriorSDE(model, context_dim=64, hidden=128)
    return model.to(device), guide.to(device)


def plain_net(kind: str, model, guide) -> nn.Module:
    """The plain-PyTorch module of ``kind`` over (copies of) the pair's weights."""
    if kind == "vae":
        net = PlainVAE(X_DIM, model.z_dim).to(next(model.parameters()).device)
        net.load_from(model, guide)
        return net
    if kind == "flow":
        return PlainFlowVAE(model, guide)
    return PlainLatentSDE(model, guide)


# --------------------------------------------------------------------------- data


def load_images(args) -> tuple[torch.Tensor, str]:
    """Fashion-MNIST training images (N, 784) in [0, 1], or random binary ones."""
    if args.data == "fashion-mnist":
        try:
            return load_dataset("fashion-mnist").x_train.contiguous(), "fashion-mnist"
        except (FileNotFoundError, OSError, ValueError) as err:
            print(f"NOTE: Fashion-MNIST not available ({err}); using random binary images.")
    gen = torch.Generator().manual_seed(args.seed + 12345)
    n = max(args.random_images, args.check_batch * args.check_steps)
    return torch.bernoulli(torch.full((n, X_DIM), 0.5), generator=gen), "random binary images"


def load_series(n: int, times: torch.Tensor) -> torch.Tensor:
    """Normalized stochastic-Lorenz series (n, T, 3) with observation noise 0.01."""
    return stochastic_lorenz(n, times, normalize=True, obs_noise=0.01, seed=0).values


# --------------------------------------------------------------------------- one method


class Runner:
    """One method (fit or plain) on its own copy of the weights, with a persistent Adam."""

    def __init__(self, name, kind, model, guide, *, lr, batch_size, device, transform, seed):
        self.name, self.kind, self.lr = name, kind, lr
        self.batch_size, self.device, self.transform = batch_size, device, transform
        self.model, self.guide = copy.deepcopy((model, guide))  # keeps shared submodules shared
        self.net = plain_net(kind, self.model, self.guide) if name == "plain" else None
        self.optim: torch.optim.Optimizer | None = None
        self.generator = torch.Generator().manual_seed(seed + 1000 + METHODS.index(name))
        self.last_loss = float("nan")

    def _optimizer(self, params) -> torch.optim.Optimizer:
        params = list(params)
        if self.optim is None:
            self.optim = torch.optim.Adam(params, lr=self.lr)
        else:
            held = [p for group in self.optim.param_groups for p in group["params"]]
            if [id(p) for p in held] != [id(p) for p in params]:
                raise RuntimeError(f"{self.name}: the parameters changed between blocks")
        return self.optim

    def run_block(self, x: torch.Tensor) -> dict[str, float]:
        """``len(x) // batch_size`` optimizer steps; per-step times in ms."""
        b = self.batch_size
        steps = x.shape[0] // b
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _sync(self.device)
            t0 = time.perf_counter()
            if self.name == "fit":
                result = fit(
                    self.model,
                    self.guide,
                    x,
                    epochs=1,
                    batch_size=b,
                    lr=self.lr,
                    optimizer=self._optimizer,
                    transform=self.transform,
                    progress=False,
                    device=self.device,
                )
                _sync(self.device)
                outside = time.perf_counter() - t0
                return {
                    "ms_per_step": 1e3 * result.timings["train_s"] / result.steps,
                    "step_median_ms": result.timings["step_ms"],
                    "call_ms_per_step": 1e3 * outside / result.steps,
                    "setup_ms": 1e3 * (outside - result.timings["total_s"]),
                    "last_loss": -result.history["train_elbo"][-1] * x.shape[0],
                }
            times = self._plain_loop(x, steps)
            _sync(self.device)
            wall = time.perf_counter() - t0
        times.sort()
        return {
            "ms_per_step": 1e3 * wall / steps,
            "step_median_ms": 1e3 * times[len(times) // 2],
            "call_ms_per_step": 1e3 * wall / steps,
            "setup_ms": 0.0,
            "last_loss": self.last_loss,
        }

    def _plain_loop(self, x: torch.Tensor, steps: int) -> list[float]:
        """Shaped like fit's inner loop (same clock placement, loss read every step)."""
        b, n, net, transform = self.batch_size, x.shape[0], self.net, self.transform
        opt = self._optimizer(net.parameters())
        order = torch.randperm(n, generator=self.generator).to(self.device)
        times = []
        for i in range(steps):
            batch = x[order[i * b : (i + 1) * b]]
            t = time.perf_counter()
            if transform is not None:
                batch = transform(batch)
            opt.zero_grad(set_to_none=True)
            loss = net.loss(batch, n / b)
            loss.backward()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"plain {self.kind} loop: loss {value}")
            opt.step()
            times.append(time.perf_counter() - t)
        self.last_loss = value
        return times


# --------------------------------------------------------------------------- same-loss check


def check_same_loss(kind, x_all, args, device, transform, times) -> dict:
    """Per-step losses of fit and of the plain loop from the same seed and initial weights."""
    b, steps, seed = args.check_batch, args.check_steps, args.seed
    x = x_all[: b * steps].to(device)
    pyro.set_rng_seed(seed)
    base_model, base_guide = build_pair(kind, args, device, times)
    common = {"batch_size": b, "lr": args.lr, "seed": seed, "transform": transform}
    out: dict = {"batch_size": b, "steps": steps, "n": x.shape[0], "seed": seed}
    param_diff = None
    if kind == "vae":  # vae_overhead's reference also returns the final weights
        plain, ref_state = _vo._plain_reference(
            base_model, base_guide, x, device=device, fit_first_pass=True, **common
        )
    else:
        model, guide = copy.deepcopy((base_model, base_guide))
        plain = _vo.plain_losses(plain_net(kind, model, guide), x, device=device, **common)
    model, guide = copy.deepcopy((base_model, base_guide))
    loss = _vo._recording(FastTrace_ELBO)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(
            model,
            guide,
            x,
            epochs=1,
            progress=False,
            loss=loss,
            device=device,
            optimizer=torch.optim.Adam,  # the plain loop's (fit's default is fused)
            **common,
        )
    if kind == "vae":
        state = _vo._pyro_state(model, guide)
        param_diff = max(float((state[k] - ref_state[k]).abs().max()) for k in ref_state)
    rel = [abs(a - r) / max(1.0, abs(r)) for a, r in zip(loss.values, plain)]
    out |= {
        "fit_losses": loss.values,
        "plain_losses": plain,
        "max_rel_loss_diff": max(rel) if rel else float("nan"),
        "bitwise_equal_losses": loss.values == plain,
    }
    if param_diff is not None:
        out["max_abs_param_diff"] = param_diff
    return out


# --------------------------------------------------------------------------- timing


def time_model(kind, data, args, device, transform, times) -> dict:
    """Timing of fit and the plain loop for every batch size of ``kind``."""
    sizes = args.sde_batch_sizes if kind == "sde" else args.batch_sizes
    steps = args.sde_steps if kind == "sde" else args.steps
    out: dict = {}
    for b in sizes:
        x_block = data[: steps * b].to(device)
        pyro.set_rng_seed(args.seed)
        base = build_pair(kind, args, device, times)
        runners = {
            name: Runner(
                name,
                kind,
                *base,
                lr=args.lr,
                batch_size=b,
                device=device,
                transform=transform,
                seed=args.seed,
            )
            for name in METHODS
        }
        del base
        t_start = time.perf_counter()
        for _ in range(args.warmup):
            for runner in runners.values():
                runner.run_block(x_block)
        raw: dict[str, list[dict]] = {name: [] for name in METHODS}
        for r in range(args.repeats):
            order = METHODS if r % 2 == 0 else METHODS[::-1]
            for name in order:
                raw[name].append(runners[name].run_block(x_block))
            print(
                f"  {kind} B={b} repeat {r + 1}/{args.repeats}: "
                + "  ".join(f"{n} {raw[n][-1]['ms_per_step']:.2f} ms/step" for n in METHODS),
                flush=True,
            )
        entry: dict = {"batch_size": b, "steps_per_block": steps, "raw": raw}
        for name in METHODS:
            per = [r["ms_per_step"] for r in raw[name]]
            med = statistics.median(per)
            entry[name] = {
                "ms_per_step": med,
                "ms_per_step_min": min(per),
                "ms_per_step_max": max(per),
                "step_median_ms": statistics.median(r["step_median_ms"] for r in raw[name]),
                "setup_ms": statistics.median(r["setup_ms"] for r in raw[name]),
                "items_per_s": 1e3 * b / med,
            }
        entry["ratio_fit_over_plain"] = entry["fit"]["ms_per_step"] / entry["plain"]["ms_per_step"]
        entry["ratio_paired_median"] = statistics.median(
            f["ms_per_step"] / p["ms_per_step"] for f, p in zip(raw["fit"], raw["plain"])
        )
        entry["timed_seconds"] = time.perf_counter() - t_start
        out[str(b)] = entry
        del runners, x_block
    smallest = out[str(min(sizes))]
    for entry in out.values():
        for name in METHODS:
            entry[name]["scaling_vs_smallest_batch"] = (
                entry[name]["ms_per_step"] / smallest[name]["ms_per_step"]
            )
    return out


# --------------------------------------------------------------------------- report


def print_table(results: dict, device: torch.device, threads: int) -> None:
    print(
        f"\nTime per training step, median over repeats ({device}, {threads} thread(s)); "
        "scaling = ms/step / ms/step at the smallest batch"
    )
    hdr = (
        f"{'model':26s} {'batch':>6s} {'fit ms':>9s} {'plain ms':>9s} {'fit/plain':>9s} "
        f"{'paired':>7s} {'fit items/s':>12s} {'plain items/s':>13s} {'scale fit':>9s} "
        f"{'scale plain':>11s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for kind, per_batch in results.items():
        for b, e in per_batch.items():
            print(
                f"{TITLES[kind]:26s} {b:>6s} {e['fit']['ms_per_step']:9.2f} "
                f"{e['plain']['ms_per_step']:9.2f} {e['ratio_fit_over_plain']:8.3f}x "
                f"{e['ratio_paired_median']:6.3f}x {e['fit']['items_per_s']:12.0f} "
                f"{e['plain']['items_per_s']:13.0f} "
                f"{e['fit']['scaling_vs_smallest_batch']:8.2f}x "
                f"{e['plain']['scaling_vs_smallest_batch']:10.2f}x"
            )
    print(
        "fit ms: FitResult.timings['train_s'] / steps (fit's setup excluded); plain ms: the "
        "hand-written loop timed the same way; paired: median of per-repeat ratios; "
        "items/s: images (VAE, flow) or series (SDE) per second."
    )


def environment(args, device: torch.device) -> dict:
    info = machine_info(args, device)  # torch, pyro, cpu model/count, gpu name, git head, ...
    info["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    info["git_head"] = info.get("library", {}).get("git_head")
    info["device_name"] = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else info["cpu_model"]
    )
    info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    return info


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--models",
        default=",".join((*MODELS, "small")),
        help=f"subset of {','.join(MODELS)}, 'small' (all of {', '.join(_small.SMALL_MODELS)}) "
        "or some of those (benchmarks/step_time_small.py)",
    )
    p.add_argument(
        "--small-steps", type=int, default=200, help="optimizer steps per block (small models)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--batch-sizes", type=_int_list, default="128,512,2048", help="VAE and flow")
    p.add_argument("--sde-batch-sizes", type=_int_list, default="64,256,1024")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per block (VAE, flow)")
    p.add_argument("--sde-steps", type=int, default=5, help="optimizer steps per block (SDE)")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per method")
    p.add_argument("--warmup", type=int, default=1, help="untimed blocks per method first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (all models)")
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--flow", default="iaf", help="AmortizedFlow kind")
    p.add_argument("--flow-layers", type=int, default=2)
    p.add_argument("--flow-hidden", type=int, default=64)
    p.add_argument("--sde-times", type=int, default=101, help="observation times on [0, 2]")
    p.add_argument("--data", choices=("fashion-mnist", "random"), default="fashion-mnist")
    p.add_argument("--random-images", type=int, default=60000, help="with --data random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="skip the same-loss check")
    p.add_argument("--check-batch", type=int, default=16)
    p.add_argument("--check-steps", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON file ('' for none; default by device)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    small = (
        _small.SMALL_MODELS
        if "small" in models
        else [m for m in models if m in _small.SMALL_MODELS]
    )
    models = [m for m in models if m != "small" and m not in _small.SMALL_MODELS]
    choices = (*MODELS, "small", *_small.SMALL_MODELS)
    if not (models or small) or set(models) - set(MODELS):
        raise SystemExit(f"--models: choose from {choices}, got {args.models!r}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    report: dict = {}
    if small:
        if device.type != "cpu":
            print(f"small models ({','.join(small)}) are timed on the CPU only; skipped")
        else:
            report["small"] = _run_small(args, small)
    if not models:
        return report
    return {**_main_networks(args, models, device), **report}


def _run_small(args, small: list[str]) -> dict:
    """The small models of ``benchmarks/step_time_small.py`` (their own JSON file)."""
    if args.out is None:
        out = str(RESULTS / "step_time_small.json")
    elif args.out == "":
        out = ""
    else:  # beside the networks' file
        path = Path(args.out)
        out = str(path.with_name(f"{path.stem}_small{path.suffix or '.json'}"))
    argv = [
        "--models",
        ",".join(small),
        "--steps",
        str(args.small_steps),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--out",
        out,
    ]
    return _small.main(argv + (["--no-check"] if args.no_check else []))


def _main_networks(args, models: list[str], device: torch.device) -> dict:
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print(
            "NOTE: run with OMP_WAIT_POLICY=PASSIVE (sleeping, not spinning, OpenMP threads) "
            "for stable CPU timings"
        )
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        # module-local PyroParams: several LatentSDE copies live at once (z0_loc, z0_scale)
        with pyro.settings.context(module_local_params=True):
            return _run(args, models, device)
    finally:
        torch.set_num_threads(threads_before)


def _run(args, models: list[str], device: torch.device) -> dict:
    info = environment(args, device)
    print(
        f"torch {info['torch']}, pyro {info['pyro']}, {info['torch_threads']} thread(s), "
        f"{info['cpu_count']} CPUs, device {device} ({info['device_name']}), "
        f"git {info['git_head']}"
    )
    report: dict = {"environment": info, "args": vars(args), "data": {}, "check_same_loss": {}}
    results: dict = {}
    image_models = [m for m in models if m in ("vae", "flow")]
    images = source = None
    if image_models:
        images, source = load_images(args)
        need = args.steps * max(args.batch_sizes)
        if need > images.shape[0]:
            raise SystemExit(f"--steps * max(--batch-sizes) = {need} > {images.shape[0]} images")
        report["data"]["images"] = {"source": source, "shape": list(images.shape)}
    times = torch.linspace(0, 2, args.sde_times)
    series = None
    if "sde" in models:
        n = max(args.sde_steps * max(args.sde_batch_sizes), args.check_batch * args.check_steps)
        series = load_series(n, times)
        report["data"]["series"] = {"source": "stochastic_lorenz", "shape": list(series.shape)}
    t_all = time.perf_counter()
    for kind in models:
        data = series if kind == "sde" else images
        transform = None if kind == "sde" else DynamicBinarization()
        dev_times = times.to(device)
        if not args.no_check:
            check = check_same_loss(kind, data, args, device, transform, dev_times)
            report["check_same_loss"][kind] = check
            print(
                f"{TITLES[kind]}: same-loss check over {check['steps']} steps of batch "
                f"{check['batch_size']}: max rel. loss diff {check['max_rel_loss_diff']:.2e} "
                f"(bitwise equal: {check['bitwise_equal_losses']})"
                + (
                    f", max |param diff| {check['max_abs_param_diff']:.2e}"
                    if "max_abs_param_diff" in check
                    else ""
                ),
                flush=True,
            )
        results[kind] = time_model(kind, data, args, device, transform, dev_times)
    report["results"] = results
    report["scaling"] = {
        kind: {
            name: {b: e[name]["scaling_vs_smallest_batch"] for b, e in per.items()}
            for name in METHODS
        }
        for kind, per in results.items()
    }
    report["timed_seconds"] = time.perf_counter() - t_all
    print_table(results, device, args.threads)
    print(f"total {report['timed_seconds']:.0f} s")
    out = args.out
    if out is None:
        out = str(RESULTS / f"step_time_{device.type}.json")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
