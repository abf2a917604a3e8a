#!/usr/bin/env python
"""Training-step time of small Pyro models: ``fit`` and stock Pyro SVI against hand-written
PyTorch loops computing the same ELBO (the small-model part of ``benchmarks/step_time.py``).

On a model with a handful of latent sites there is no network to hide behind: a training step is
Pyro's per-site machinery, the ``torch.distributions`` objects and the optimizer. Models (written
in Pyro's documented idioms; data generated here, seeded):

``eight_schools``       non-centred eight schools (μ ~ N(0, 5), τ ~ HalfCauchy(5), η_j ~ N(0, 1)
                        in ``pyro.plate("schools", 8)``, y_j ~ N(μ + τ η_j, σ_j)) with Pyro's
                        ``AutoNormal``.
``eight_schools_flow``  the same model with :class:`pyrovi.guides.FlowGuide` (IAF, 2 layers of
                        width 16).
``regression``          the shape of Pyro's Bayesian-regression tutorial: ``PyroModule[nn.Linear]``
                        (3 → 1) with ``PyroSample`` priors on weight and bias, σ ~ U(0, 10),
                        170 rows in ``pyro.plate("data")``; ``AutoNormal``.
``gmm``                 a 1-d mixture of K = 2 Gaussians, the assignment enumerated
                        (``infer={"enumerate": "parallel"}``), weights ~ Dirichlet, scale ~
                        LogNormal, locs ~ N(0, 10) in a components plate, 200 points;
                        ``AutoNormal`` on the globals; ``TraceEnum_ELBO(max_plate_nesting=1)``.
``ddpm``                :class:`pyrovi.models.DDPM` (2-d, T = 100, MLP of width 128) on a 2-d
                        mixture, batch 128.

Methods, per optimizer step:

``plain``      the hand-written loop: the same single-sample ELBO with ``torch.distributions``
               (no Pyro), with the guide's parameterization (per-site loc and softplus scale in
               the unconstrained space and the support transforms' log-Jacobians, as
               ``AutoNormal`` does; the flow guide's own flow module; the mixture marginalized
               with ``logsumexp``), ``torch.optim.Adam``. For the DDPM, ``DDPM.loss(x)`` (one
               random step per datapoint, closed-form KLs) + Adam: the non-Pyro way to train it.
``fit``        ``pyrovi.infer.fit(model, guide, data, epochs=steps, batch_size=N)``: full batch,
               so an epoch is one step and fit's per-epoch bookkeeping (history, best state,
               parameter checks) is paid every step, as a user of a small model pays it; time
               per step = ``FitResult.timings["train_s"] / steps``. Default loss (the
               fused-guide fast path), except ``TraceEnum_ELBO`` for the mixture and
               ``StochasticStep_ELBO`` for the DDPM (one block of ``steps`` batches = one epoch).
``fit_pyro``   the same with ``FastTrace_ELBO(fused=False)`` (the guide through Pyro's handlers,
               as before the fast path); for the DDPM, the full-chain default loss (few steps).
``svi``        stock ``pyro.infer.SVI`` + ``Trace_ELBO`` (``TraceEnum_ELBO`` for the mixture) +
               ``pyro.optim.Adam``.

Timing: blocks of ``--steps`` steps per method, round-robin with the first method rotating every
repeat, after one untimed block each; medians over ``--repeats`` blocks; ratios to ``plain`` of
the medians and medians of the per-repeat ratios. Same-ELBO check (unless ``--no-check``), in
float64: from the same seed and the same initial parameters, the plain loop's ELBO equals Pyro's
``Trace_ELBO`` (``TraceEnum_ELBO``) and ``FastTrace_ELBO``'s (relative difference reported); for
the DDPM the estimators differ (closed-form against Monte Carlo KLs) and
``tests/infer/test_step_elbo.py`` checks that they agree in expectation instead.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/step_time.py --models small       # via step_time
    python benchmarks/step_time_small.py --models eight_schools --repeats 3 --out ''
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroSample
from torch.distributions import biject_to
from torch.nn import functional as F

import pyrovi
from pyrovi.infer import FastTrace_ELBO, fit

SMALL_MODELS = ("eight_schools", "eight_schools_flow", "regression", "gmm", "ddpm")
RESULTS = Path(__file__).resolve().parent / "results"
Y8 = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SIGMA8 = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


# ------------------------------------------------------------------------------ the models


def eight_schools(y: torch.Tensor, sigma: torch.Tensor) -> None:
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(y)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu + tau * eta, sigma), obs=y)


class Regression(PyroModule):
    """Bayesian linear regression, 3 inputs, as Pyro's tutorial writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = PyroModule[torch.nn.Linear](3, 1)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([1]).to_event(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        mean = self.linear(x).squeeze(-1)
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("obs", dist.Normal(mean, sigma), obs=y)


K = 2


def gmm(x: torch.Tensor) -> None:
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K, dtype=x.dtype)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(locs[z], scale), obs=x)


def make_data(kind: str, dtype: torch.dtype, args) -> tuple:
    g = torch.Generator().manual_seed(args.seed)
    if kind.startswith("eight_schools"):
        return (torch.tensor(Y8, dtype=dtype), torch.tensor(SIGMA8, dtype=dtype))
    if kind == "regression":
        x = torch.randn(170, 3, generator=g, dtype=dtype)
        w = torch.tensor([1.5, -0.7, 0.3], dtype=dtype)
        return (x, x @ w + 2.0 + 0.5 * torch.randn(170, generator=g, dtype=dtype))
    if kind == "gmm":
        comp = torch.rand(200, generator=g) < 0.4
        x = torch.where(comp, torch.tensor(-2.0), torch.tensor(3.0)) + torch.randn(200, generator=g)
        return (x.to(dtype),)
    if kind == "ddpm":
        n = args.ddpm_batch * args.steps
        centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
        idx = torch.randint(4, (n,), generator=g)
        return ((centres[idx] + 0.3 * torch.randn(n, 2, generator=g)).to(dtype),)
    raise ValueError(kind)


def model_and_guide(kind: str, data: tuple, dtype: torch.dtype) -> tuple[Callable, Callable]:
    """A fresh model and guide (parameters initialized by one guide call)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if kind == "eight_schools":
            model, guide = eight_schools, AutoNormal(eight_schools)
        elif kind == "eight_schools_flow":
            model = eight_schools
            guide = pyrovi.guides.FlowGuide(eight_schools, flow="iaf", hidden_features=16)
        elif kind == "regression":
            model = Regression()
            guide = AutoNormal(model)
        elif kind == "gmm":
            model, guide = gmm, AutoNormal(poutine.block(gmm, hide=["z"]))
        elif kind == "ddpm":
            model = pyrovi.models.DDPM(2, T=100, hidden=128)
            return model, model.guide
        else:
            raise ValueError(kind)
        with pyro.validation_enabled(False):
            guide(*data)
    finally:
        torch.set_default_dtype(before)
    return model, guide


# ------------------------------------------------------------------------ the plain loops


class _Sites:
    """AutoNormal's parameterization of a list of (name, shape, support) sites, plain tensors."""

    def __init__(self, guide: AutoNormal, names: list[str]) -> None:
        self.names = names
        self.locs = [_unconstrained(guide, "locs", n) for n in names]
        self.scales = [_unconstrained(guide, "scales", n) for n in names]
        proto = dict(guide.prototype_trace.iter_stochastic_nodes())
        self.transforms = [biject_to(proto[n]["fn"].support) for n in names]

    def params(self) -> list[torch.Tensor]:
        return self.locs + self.scales

    def draw(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Values of the sites (constrained) and log q, drawing in AutoNormal's order."""
        values, log_q = {}, 0.0
        for name, loc, s, tr in zip(self.names, self.locs, self.scales, self.transforms):
            scale = F.softplus(s)
            u = loc + torch.randn_like(loc) * scale
            log_q = log_q + torch.distributions.Normal(loc, scale).log_prob(u).sum()
            value = tr(u)
            log_q = log_q + tr.inv.log_abs_det_jacobian(value, u).sum()
            values[name] = value
        return values, log_q


def _unconstrained(guide: AutoNormal, group: str, name: str) -> torch.Tensor:
    module = getattr(guide, group)
    for part in name.split(".")[:-1]:
        module = module._modules[part]
    p = module._parameters[f"{name.split('.')[-1]}_unconstrained"]
    return p.detach().clone().requires_grad_(True)


def plain_loss_fn(kind: str, model, guide, data: tuple) -> tuple[Callable[[], torch.Tensor], list]:
    """``(loss(), params)``: the hand-written negative ELBO (one draw) and its parameters."""
    if kind == "eight_schools":
        y, sigma = data
        sites = _Sites(guide, ["mu", "tau", "eta"])
        normal5 = torch.distributions.Normal(y.new_tensor(0.0), y.new_tensor(5.0))
        cauchy5 = torch.distributions.HalfCauchy(y.new_tensor(5.0))
        std = torch.distributions.Normal(y.new_tensor(0.0), y.new_tensor(1.0))

        def loss():
            v, log_q = sites.draw()
            log_p = (
                normal5.log_prob(v["mu"])
                + cauchy5.log_prob(v["tau"])
                + std.log_prob(v["eta"]).sum()
                + torch.distributions.Normal(v["mu"] + v["tau"] * v["eta"], sigma).log_prob(y).sum()
            )
            return log_q - log_p

        return loss, sites.params()
    if kind == "eight_schools_flow":
        y, sigma = data
        flow = copy.deepcopy(guide.flow)
        posterior = pyrovi.distributions.NFlowsDistribution(flow, features=guide.latent_dim)
        normal5 = torch.distributions.Normal(y.new_tensor(0.0), y.new_tensor(5.0))
        cauchy5 = torch.distributions.HalfCauchy(y.new_tensor(5.0))
        std = torch.distributions.Normal(y.new_tensor(0.0), y.new_tensor(1.0))

        def loss():
            latent = posterior.rsample()
            log_q = posterior.log_prob(latent)
            mu, tau_u, eta = latent[0], latent[1], latent[2:]
            tau = tau_u.exp()
            log_q = log_q - tau_u  # Delta's log|d u / d tau| of the exp transform
            log_p = (
                normal5.log_prob(mu)
                + cauchy5.log_prob(tau)
                + std.log_prob(eta).sum()
                + torch.distributions.Normal(mu + tau * eta, sigma).log_prob(y).sum()
            )
            return log_q - log_p

        return loss, list(flow.parameters())
    if kind == "regression":
        x, y = data
        sites = _Sites(guide, ["linear.weight", "linear.bias", "sigma"])
        w_prior = torch.distributions.Normal(x.new_tensor(0.0), x.new_tensor(1.0))
        b_prior = torch.distributions.Normal(x.new_tensor(0.0), x.new_tensor(10.0))
        s_prior = torch.distributions.Uniform(x.new_tensor(0.0), x.new_tensor(10.0))

        def loss():
            v, log_q = sites.draw()
            mean = (x @ v["linear.weight"].T + v["linear.bias"]).squeeze(-1)
            log_p = (
                w_prior.log_prob(v["linear.weight"]).sum()
                + b_prior.log_prob(v["linear.bias"]).sum()
                + s_prior.log_prob(v["sigma"])
                + torch.distributions.Normal(mean, v["sigma"]).log_prob(y).sum()
            )
            return log_q - log_p

        return loss, sites.params()
    if kind == "gmm":
        (x,) = data
        sites = _Sites(guide, ["weights", "scale", "locs"])
        w_prior = torch.distributions.Dirichlet(0.5 * torch.ones(K, dtype=x.dtype))
        s_prior = torch.distributions.LogNormal(x.new_tensor(0.0), x.new_tensor(2.0))
        l_prior = torch.distributions.Normal(x.new_tensor(0.0), x.new_tensor(10.0))

        def loss():
            v, log_q = sites.draw()
            comp = torch.distributions.Normal(v["locs"], v["scale"]).log_prob(x.unsqueeze(-1))
            log_lik = torch.logsumexp(comp + v["weights"].log(), -1).sum()
            log_p = (
                w_prior.log_prob(v["weights"])
                + s_prior.log_prob(v["scale"])
                + l_prior.log_prob(v["locs"]).sum()
                + log_lik
            )
            return log_q - log_p

        return loss, sites.params()
    raise ValueError(kind)


# ------------------------------------------------------------------------------- timing


def _block_plain(kind, model, guide, data, args, state) -> float:
    if kind == "ddpm":
        (x,) = data
        net = state.setdefault("net", copy.deepcopy(model))
        opt = state.setdefault("opt", torch.optim.Adam(net.parameters(), lr=args.lr))
        b = args.ddpm_batch
        t0 = time.perf_counter()
        for i in range(0, len(x), b):
            opt.zero_grad()
            (net.loss(x[i : i + b]).sum() * (len(x) / b)).backward()
            opt.step()
        return (time.perf_counter() - t0) / (len(x) // b)
    if "loss" not in state:
        state["loss"], params = plain_loss_fn(kind, model, guide, data)
        state["opt"] = torch.optim.Adam(params, lr=args.lr)
    loss, opt = state["loss"], state["opt"]
    t0 = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    return (time.perf_counter() - t0) / args.steps


def _fit_loss(kind: str, pyro_path: bool):
    if kind == "gmm":
        return TraceEnum_ELBO(max_plate_nesting=1)
    if kind == "ddpm":
        if pyro_path:
            return None  # the full chain, fit's default loss
        from pyrovi.infer import StochasticStep_ELBO

        return StochasticStep_ELBO()
    if pyro_path:
        try:
            return FastTrace_ELBO(fused=False)
        except TypeError:  # a pyrovi without the fused path: its default is the Pyro path
            return None
    return None


def _block_fit(kind, model, guide, data, args, state, pyro_path=False) -> float:
    plate = "schools" if kind.startswith("eight_schools") else "data"
    if kind == "ddpm":
        batch = args.ddpm_batch
        if pyro_path:  # the full chain: a few steps are enough
            data = (data[0][: batch * args.ddpm_full_steps],)
    else:
        batch = len(data[0])
    epochs = 1 if kind == "ddpm" else args.steps
    result = fit(
        model,
        guide,
        data if len(data) > 1 else data[0],
        epochs=epochs,
        batch_size=batch,
        plate=plate,
        lr=args.lr,
        loss=_fit_loss(kind, pyro_path),
        progress=False,
    )
    return result.timings["train_s"] / result.steps


def _block_svi(kind, model, guide, data, args, state) -> float:
    if "svi" not in state:
        loss = TraceEnum_ELBO(max_plate_nesting=1) if kind == "gmm" else Trace_ELBO()
        state["svi"] = SVI(model, guide, pyro.optim.Adam({"lr": args.lr}), loss)
    svi = state["svi"]
    # stock SVI needs the global param store (its guide is the only user of it here)
    with pyro.settings.context(module_local_params=False):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            svi.step(*data)
        seconds = (time.perf_counter() - t0) / args.steps
    pyro.clear_param_store()  # the guide keeps its parameters; fit's stale-name check stays quiet
    return seconds


METHODS = {
    "plain": _block_plain,
    "fit": _block_fit,
    "fit_pyro": lambda *a: _block_fit(*a, pyro_path=True),
    "svi": _block_svi,
}


def methods_of(kind: str) -> list[str]:
    if kind == "ddpm":
        return ["plain", "fit", "fit_pyro"]
    return ["plain", "fit", "fit_pyro", "svi"]


def time_model(kind: str, args) -> dict:
    """Interleaved blocks of every method on one model; ms per step and ratios to plain."""
    dtype = torch.float32
    data = make_data(kind, dtype, args)
    methods = [m for m in methods_of(kind) if m in args.methods]
    if kind == "ddpm" and not hasattr(pyrovi.infer, "StochasticStep_ELBO"):
        methods = [m for m in methods if m != "fit"]
    pairs, states = {}, {}
    for m in methods:  # each method its own model, guide and parameters, same initial values
        pyro.clear_param_store()
        pyro.set_rng_seed(args.seed)
        with pyro.settings.context(module_local_params=True):
            pairs[m] = model_and_guide(kind, data, dtype)
        states[m] = {}
    times: dict[str, list[float]] = {m: [] for m in methods}
    with pyro.settings.context(module_local_params=True):
        for rep in range(args.repeats + 1):
            order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
            for m in order:
                seconds = METHODS[m](kind, *pairs[m], data, args, states[m])
                if rep > 0:  # the first round is warm-up
                    times[m].append(seconds)
    out = {
        m: {"ms_per_step": 1e3 * statistics.median(t), "ms_all": [1e3 * s for s in t]}
        for m, t in times.items()
    }
    if "plain" in out:
        base = times["plain"]
        for m, t in times.items():
            out[m]["ratio_to_plain"] = statistics.median(t) / statistics.median(base)
            out[m]["median_of_ratios"] = statistics.median(a / b for a, b in zip(t, base))
    return out


def check_same_elbo(kind: str, args) -> dict:
    """float64, same seed, same initial parameters: plain ELBO vs Pyro's and FastTrace_ELBO's."""
    if kind == "ddpm":
        return {
            "note": "different estimators (closed-form vs Monte Carlo KLs); unbiasedness of "
            "the stochastic-step ELBO is tested in tests/infer/test_step_elbo.py"
        }
    dtype = torch.float64
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the models' scalar priors (Normal(0., 5.)) in float64 too
    try:
        return _check_same_elbo(kind, dtype, args)
    finally:
        torch.set_default_dtype(before)


def _check_same_elbo(kind: str, dtype: torch.dtype, args) -> dict:
    data = make_data(kind, dtype, args)
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model, guide = model_and_guide(kind, data, dtype)
    loss, _ = plain_loss_fn(kind, model, guide, data)
    out = {}
    ref_cls = TraceEnum_ELBO if kind == "gmm" else Trace_ELBO
    kwargs = {"max_plate_nesting": 1} if kind == "gmm" else {}
    with pyro.validation_enabled(False):
        values = {}
        for name, elbo in (
            ("plain", None),
            ("pyro", ref_cls(**kwargs)),
            ("fasttrace", None if kind == "gmm" else FastTrace_ELBO()),
        ):
            if name != "plain" and elbo is None:
                continue
            pyro.set_rng_seed(args.seed + 1)
            with torch.no_grad():
                values[name] = float(loss()) if name == "plain" else elbo.loss(model, guide, *data)
    for name, v in values.items():
        out[f"{name}_loss"] = v
        if name != "plain":
            out[f"rel_diff_{name}"] = abs(v - values["plain"]) / abs(values["plain"])
    return out


def run(args) -> dict:
    report = {"models": {}, "check_same_elbo": {}}
    for kind in args.small_models:
        if not args.no_check:
            report["check_same_elbo"][kind] = check_same_elbo(kind, args)
            print(f"{kind}: same-ELBO check {report['check_same_elbo'][kind]}", flush=True)
        report["models"][kind] = res = time_model(kind, args)
        line = ", ".join(
            f"{m} {r['ms_per_step']:.2f} ms"
            + (f" ({r['ratio_to_plain']:.2f}×)" if m != "plain" else "")
            for m, r in res.items()
        )
        print(f"{kind:19s} {line}", flush=True)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(SMALL_MODELS), help=",".join(SMALL_MODELS))
    p.add_argument("--methods", default="plain,fit,fit_pyro,svi")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per block")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--ddpm-batch", type=int, default=128)
    p.add_argument("--ddpm-full-steps", type=int, default=3, help="steps of the full-chain fit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "step_time_small.json"))
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.small_models = [m for m in args.models.split(",") if m]
    if set(args.small_models) - set(SMALL_MODELS):
        raise SystemExit(f"--models: choose from {SMALL_MODELS}, got {args.models!r}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report = run(args)
    finally:
        torch.set_num_threads(threads_before)
    report["environment"] = {
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "pyrovi_file": pyrovi.__file__,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    report["args"] = {k: v for k, v in vars(args).items()}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
