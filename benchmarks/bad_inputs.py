#!/usr/bin/env python
"""A census of bad inputs: how pyrovi's public entry points answer wrong arguments and data.

Every case calls one public entry point with one bad argument (a wrong shape, dtype, count, a
non-finite value, an empty input, a bad option, a corrupted file, ...) and everything else
valid. Each case runs in its own forked process (``fork`` after the imports, so a case costs a
few milliseconds), with a time limit and a memory limit, and is classified:

``clear``     a ``ValueError``/``TypeError`` (or one of pyrovi's own error types) whose message
              names the argument (any of the case's words, case-insensitive); or, for inputs that
              are accepted by documented design (an integer tensor cast to float, say), a normal
              return with finite results;
``obscure``   any other exception, or one whose message does not name the argument;
``silent``    a normal return for an input that should have been refused (or non-finite output);
``hang``      the time limit passed;
``crash``     the process died (a signal, the memory limit).

Usage::

    python benchmarks/bad_inputs.py                 # all cases, ~3-6 min on 2 cores
    python benchmarks/bad_inputs.py --only fit,elbo --verbose
    python benchmarks/bad_inputs.py --out ''        # print only

Writes ``benchmarks/results/bad_inputs.json`` (counts per class and per entry point, and every
case with its outcome and message) unless ``--out ''``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


_DEFAULT = object()  # "use the valid default" (None is a bad value of its own)


@dataclass
class Case:
    """One bad input: ``call()`` should raise an error naming one of ``names``."""

    entry: str
    label: str
    call: Callable[[], Any]
    names: tuple[str, ...]
    accept: bool = False  # a documented, unambiguous conversion: returning finite results is fine
    timeout: float = 30.0


@dataclass
class Outcome:
    entry: str
    label: str
    kind: str
    error: str = ""
    message: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- shared fixtures


def _binary(n: int = 32, d: int = 16, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.3).float()


def _vae(d: int = 16, z: int = 2):
    import pyro
    import torch

    from pyrovi.guides import AmortizedNormal
    from pyrovi.models import VAE

    pyro.clear_param_store()
    torch.manual_seed(0)
    return VAE(d, z, hidden_dims=(8,)), AmortizedNormal(d, z, hidden_dims=(8,))


def _conjugate():
    """mu ~ N(0, 1); x_i ~ N(mu, 1) in plate "data"; AutoNormal guide."""
    import pyro
    import pyro.distributions as dist
    from pyro.infer.autoguide import AutoNormal

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)

    pyro.clear_param_store()
    return model, AutoNormal(model)


def _finite(value: Any) -> bool:
    """Whether every number reachable in ``value`` is finite (tensors, arrays, floats, fields)."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all()) if value.is_floating_point() else True
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all()) if value.dtype.kind == "f" else True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return all(_finite(getattr(value, k)) for k in value.__dataclass_fields__)
    return True


# --------------------------------------------------------------------------- bad values

COUNT = [("0", 0), ("-1", -1), ("2.5", 2.5), ("True", True), ("'3'", "3"), ("nan", float("nan"))]
POSITIVE = [("0", 0.0), ("-1", -1.0), ("nan", float("nan")), ("inf", float("inf")), ("'x'", "x")]


def _bad_tensors(n: int, d: int) -> list[tuple[str, Callable[[], Any], bool]]:
    """Wrong data for a model of ``(n, d)`` float data: (label, factory, acceptable)."""
    import numpy as np
    import torch

    def with_nan():
        x = _binary(n, d)
        x[1, 2] = float("nan")
        return x

    def with_inf():
        x = _binary(n, d)
        x[0, 0] = float("inf")
        return x

    return [
        ("wrong width", lambda: _binary(n, d + 1), False),
        ("1-D", lambda: _binary(n, d)[:, 0], False),
        ("3-D", lambda: _binary(n, d)[:, None, :], False),
        ("NaN entry", with_nan, False),
        ("inf entry", with_inf, False),
        ("empty (0 rows)", lambda: _binary(n, d)[:0], False),
        ("0-d tensor", lambda: torch.tensor(1.0), False),
        ("list", lambda: _binary(n, d).tolist(), False),
        ("string", lambda: "data.npy", False),
        ("None", lambda: None, False),
        ("int64 tensor", lambda: _binary(n, d).long(), True),
        ("bool tensor", lambda: _binary(n, d).bool(), True),
        ("float64 tensor", lambda: _binary(n, d).double(), True),
        ("numpy array", lambda: np.asarray(_binary(n, d)), True),
    ]


def _cases_from(entry: str, names, bad, build: Callable[[Any], Any]) -> list[Case]:
    return [
        Case(entry, f"{names[0]}={label}", (lambda v=v: build(v)), tuple(names)) for label, v in bad
    ]


# --------------------------------------------------------------------------- fit


def fit_cases() -> list[Case]:
    from pyrovi.infer import fit

    def run(**over):
        model, guide = _vae()
        kw = dict(epochs=1, batch_size=8, progress=False, seed=0)
        data = over.pop("data", _DEFAULT)
        kw.update(over)
        return fit(model, guide, _binary() if data is _DEFAULT else data, **kw)

    cases = []
    for label, make, accept in _bad_tensors(32, 16):
        cases.append(
            Case("fit", f"data: {label}", lambda m=make: run(data=m()), ("data", "x"), accept)
        )
        if label == "None":
            continue  # val_data=None is the default: no validation
        cases.append(
            Case(
                "fit",
                f"val_data: {label}",
                lambda m=make: run(val_data=m()),
                ("val_data", "x"),
                accept,
            )
        )
    cases.append(
        Case(
            "fit",
            "data: values outside [0, 1] (Bernoulli)",
            lambda: run(data=_binary() * 3),
            ("data", "x", "[0, 1]"),
        )
    )
    for arg in ("epochs", "batch_size", "num_particles"):
        cases += _cases_from("fit", (arg,), COUNT, lambda v, a=arg: run(**{a: v}))
    cases += _cases_from("fit", ("lr",), POSITIVE + [("True", True)], lambda v: run(lr=v))
    cases += _cases_from(
        "fit",
        ("clip_norm",),
        [p for p in POSITIVE if p[0] != "inf"] + [("True", True)],  # inf: no clipping, valid
        lambda v: run(clip_norm=v),
    )
    cases += _cases_from(
        "fit",
        ("kl_annealing",),
        [("0", 0), ("-1", -1), ("'x'", "x"), ("nan", float("nan"))],
        lambda v: run(kl_annealing=v),
    )
    cases += _cases_from("fit", ("seed",), [("2.5", 2.5), ("'x'", "x")], lambda v: run(seed=v))
    cases += _cases_from("fit", ("plate",), [("3", 3), ("None", None)], lambda v: run(plate=v))
    cases += _cases_from(
        "fit", ("transform",), [("3", 3), ("'binarize'", "binarize")], lambda v: run(transform=v)
    )
    cases += _cases_from(
        "fit", ("unpack",), [("3", 3), ("returns a tensor", lambda b: b)], lambda v: run(unpack=v)
    )
    cases += _cases_from(
        "fit",
        ("scheduler",),
        [("'step'", "step"), ("factory returning 3", lambda o: 3)],
        lambda v: run(scheduler=v),
    )
    cases += _cases_from(
        "fit",
        ("optimizer",),
        [("'adam'", "adam"), ("factory returning 3", lambda p: 3)],
        lambda v: run(optimizer=v),
    )
    cases += _cases_from(
        "fit",
        ("loss",),
        [("'elbo'", "elbo"), ("Trace_ELBO class", __import__("pyro").infer.Trace_ELBO)],
        lambda v: run(loss=v),
    )
    cases += _cases_from(
        "fit",
        ("device",),
        [("'cuda' without CUDA", "cuda"), ("'bogus'", "bogus")],
        lambda v: run(device=v),
    )
    cases.append(
        Case(
            "fit",
            "resume=True without checkpoint",
            lambda: run(resume=True),
            ("resume", "checkpoint"),
        )
    )
    cases.append(
        Case("fit", "checkpoint is a directory", lambda: run(checkpoint="/tmp"), ("checkpoint",))
    )
    cases.append(
        Case(
            "fit",
            "guide=3",
            lambda: __import__("pyrovi.infer", fromlist=["fit"]).fit(
                _vae()[0], 3, _binary(), epochs=1, progress=False
            ),
            ("guide",),
        )
    )
    cases.append(
        Case(
            "fit",
            "model=None",
            lambda: __import__("pyrovi.infer", fromlist=["fit"]).fit(
                None, _vae()[1], _binary(), epochs=1, progress=False
            ),
            ("model",),
        )
    )
    cases.append(
        Case(
            "fit",
            "tuple of mismatched lengths",
            lambda: run(data=(_binary(), _binary(31))),
            ("data", "leading"),
        )
    )
    return cases


# --------------------------------------------------------------------------- evidence


def evidence_cases() -> list[Case]:
    import torch

    from pyrovi.infer import elbo, log_importance_weights, log_marginal_likelihood

    cases = []
    for name, fn in (("elbo", elbo), ("log_marginal_likelihood", log_marginal_likelihood)):

        def run(fn=fn, **over):
            model, guide = _vae()
            data = over.pop("data", _DEFAULT)
            return fn(model, guide, _binary() if data is _DEFAULT else data, **over)

        for label, make, accept in _bad_tensors(32, 16):
            cases.append(
                Case(
                    name, f"data: {label}", lambda m=make, r=run: r(data=m()), ("data", "x"), accept
                )
            )
        for arg in ("num_samples", "batch_size", "max_samples_per_pass"):
            cases += _cases_from(name, (arg,), COUNT, lambda v, a=arg, r=run: r(**{a: v}))
        cases += _cases_from(
            name, ("vectorize",), [("'yes'", "yes")], lambda v, r=run: r(vectorize=v)
        )
        cases += _cases_from(
            name,
            ("plate",),
            [("'nonexistent'", "nonexistent"), ("3", 3)],
            lambda v, r=run: r(plate=v),
        )
        cases.append(
            Case(
                name,
                "guide misses the latent",
                lambda fn=fn: fn(_vae()[0], lambda x: None, _binary()),
                ("guide", "z"),
            )
        )

    def lw(**over):
        model, guide = _vae()
        return log_importance_weights(model, guide, _binary(), **over)

    cases += _cases_from(
        "log_importance_weights", ("num_samples",), COUNT, lambda v: lw(num_samples=v)
    )
    cases.append(
        Case(
            "log_importance_weights",
            "NaN data",
            lambda: log_importance_weights(*_vae(), torch.full((4, 16), float("nan"))),
            ("data", "x", "args"),
        )
    )
    return cases


# --------------------------------------------------------------------------- diagnostics


def diagnostics_cases() -> list[Case]:
    import numpy as np
    import torch

    from pyrovi.diagnostics import (
        active_units,
        inference_gaps,
        kl_per_dimension,
        pareto_khat,
        posterior_collapse,
        psis,
        psis_khat,
        to_inference_data,
    )

    cases = []

    def khat(**over):
        model, guide = _vae()
        data = over.pop("data", _DEFAULT)
        return psis_khat(model, guide, _binary() if data is _DEFAULT else data, **over)

    for label, make, accept in _bad_tensors(32, 16):
        cases.append(
            Case(
                "psis_khat",
                f"data: {label}",
                lambda m=make: khat(data=m()),
                ("data", "x", "args"),
                accept,
            )
        )
    cases += _cases_from(
        "psis_khat", ("num_samples",), COUNT + [("10 (< 21)", 10)], lambda v: khat(num_samples=v)
    )
    cases += _cases_from(
        "psis_khat", ("plate",), [("'nonexistent'", "nonexistent")], lambda v: khat(plate=v)
    )
    cases += _cases_from(
        "psis_khat", ("vectorize",), [("'yes'", "yes")], lambda v: khat(vectorize=v)
    )

    def idata(**over):
        model, guide = _vae()
        data = over.pop("data", _DEFAULT)
        return to_inference_data(
            model,
            guide,
            _binary() if data is _DEFAULT else data,
            num_samples=over.pop("num_samples", 20),
            **over,
        )

    for label, make, accept in _bad_tensors(32, 16):
        cases.append(
            Case(
                "to_inference_data",
                f"data: {label}",
                lambda m=make: idata(data=m()),
                ("data", "x", "args"),
                accept,
            )
        )
    cases += _cases_from(
        "to_inference_data", ("num_samples",), COUNT, lambda v: idata(num_samples=v)
    )
    cases += _cases_from(
        "to_inference_data", ("coords",), [("list", [1, 2])], lambda v: idata(coords=v)
    )
    cases += _cases_from(
        "to_inference_data", ("dims",), [("list", [1, 2])], lambda v: idata(dims=v)
    )
    cases += _cases_from(
        "to_inference_data",
        ("plate",),
        [("'nonexistent'", "nonexistent")],
        lambda v: idata(plate=v),
    )

    def gaps(**over):
        model, guide = _vae()
        data = over.pop("data", _DEFAULT)
        kw = dict(num_samples=20, refine_steps=2)
        kw.update(over)
        return inference_gaps(model, guide, _binary() if data is _DEFAULT else data, **kw)

    for label, make, accept in _bad_tensors(32, 16):
        cases.append(
            Case(
                "inference_gaps",
                f"data: {label}",
                lambda m=make: gaps(data=m()),
                ("data", "x"),
                accept,
            )
        )
    for arg in ("num_samples", "refine_particles", "batch_size"):
        cases += _cases_from("inference_gaps", (arg,), COUNT, lambda v, a=arg: gaps(**{a: v}))
    cases += _cases_from(  # refine_steps=0 is valid: the encoder's own parameters
        "inference_gaps", ("refine_steps",), COUNT[1:], lambda v: gaps(refine_steps=v)
    )
    cases += _cases_from("inference_gaps", ("refine_lr",), POSITIVE, lambda v: gaps(refine_lr=v))
    cases.append(
        Case(
            "inference_gaps",
            "global-latent model",
            lambda: inference_gaps(*_conjugate(), torch.randn(10), num_samples=10, refine_steps=2),
            ("inference_gaps", "global", "local"),
        )
    )

    def collapse(**over):
        model, guide = _vae()
        data = over.pop("data", _DEFAULT)
        return posterior_collapse(model, guide, _binary() if data is _DEFAULT else data, **over)

    for label, make, accept in _bad_tensors(32, 16):
        cases.append(
            Case(
                "posterior_collapse",
                f"data: {label}",
                lambda m=make: collapse(data=m()),
                ("data", "x"),
                accept,
            )
        )
    cases += _cases_from(
        "posterior_collapse",
        ("threshold",),
        [("-1", -1.0), ("nan", float("nan")), ("'x'", "x")],
        lambda v: collapse(threshold=v),
    )
    cases += _cases_from(
        "posterior_collapse", ("site",), [("'w'", "w"), ("3", 3)], lambda v: collapse(site=v)
    )
    cases += _cases_from(
        "posterior_collapse", ("batch_size",), COUNT, lambda v: collapse(batch_size=v)
    )
    cases += _cases_from(
        "active_units",
        ("num_samples",),
        COUNT,
        lambda v: active_units(_vae()[1], _binary(), num_samples=v),
    )
    cases += _cases_from(
        "kl_per_dimension",
        ("batch_size",),
        COUNT,
        lambda v: kl_per_dimension(*_vae(), _binary(), batch_size=v),
    )

    lw = np.random.default_rng(0).normal(size=(100, 3))
    bad_lw = [
        ("NaN weight", np.where(np.arange(300).reshape(100, 3) == 5, np.nan, lw)),
        ("+inf weight", np.where(np.arange(300).reshape(100, 3) == 5, np.inf, lw)),
        ("10 draws", lw[:10]),
        ("0-d", np.float64(1.0)),
        ("strings", np.array(["a"] * 30)),
        ("empty", lw[:0]),
    ]
    cases += _cases_from("psis", ("log_weights",), bad_lw, lambda v: psis(v))
    cases += _cases_from(
        "psis",
        ("r_eff",),
        [("0", 0.0), ("-1", -1.0), ("nan", float("nan")), ("'x'", "x")],
        lambda v: psis(lw, r_eff=v),
    )
    cases += _cases_from("pareto_khat", ("log_weights",), bad_lw[:3], lambda v: pareto_khat(v))
    return cases


# --------------------------------------------------------------------------- models, guides, nn


def construction_cases() -> list[Case]:
    import torch

    from pyrovi.guides import AmortizedFlow, AmortizedMultivariateNormal, AmortizedNormal, FlowGuide
    from pyrovi.models import (
        DDPM,
        RBM,
        VAE,
        VQVAE,
        ConditionalVAE,
        FlowDensity,
        HierarchicalVAE,
        LatentSDE,
        MarkovChainVAE,
    )
    from pyrovi.nn import MLP, ConvEncoder

    cases = []
    dims = [("0", 0), ("-2", -2), ("2.5", 2.5), ("'16'", "16"), ("True", True), ("None", None)]
    hidden = [
        ("'16'", "16"),
        ("(0,)", (0,)),
        ("(-4,)", (-4,)),
        ("(2.5,)", (2.5,)),
        ("16 (int)", 16),
        ("(True,)", (True,)),
    ]
    cases += _cases_from("VAE", ("x_dim",), dims, lambda v: VAE(v, 2, hidden_dims=(8,)))
    cases += _cases_from("VAE", ("z_dim",), dims, lambda v: VAE(16, v, hidden_dims=(8,)))
    cases += _cases_from("VAE", ("hidden_dims",), hidden, lambda v: VAE(16, 2, hidden_dims=v))
    cases += _cases_from(
        "VAE",
        ("likelihood",),
        [("'poisson'", "poisson"), ("3", 3)],
        lambda v: VAE(16, 2, likelihood=v, hidden_dims=(8,)),
    )
    cases += _cases_from(
        "VAE",
        ("beta",),
        [("-1", -1.0), ("nan", float("nan")), ("'x'", "x")],
        lambda v: VAE(16, 2, beta=v, hidden_dims=(8,)),
    )
    cases += _cases_from(
        "VAE",
        ("decoder",),
        [("'transformer'", "transformer"), ("3", 3)],
        lambda v: VAE(16, 2, decoder=v, hidden_dims=(8,)),
    )
    cases.append(
        Case(
            "VAE",
            "forward: x of wrong width",
            lambda: VAE(16, 2, hidden_dims=(8,))(torch.rand(4, 15)),
            ("x",),
        )
    )
    cases.append(
        Case(
            "VAE",
            "forward: NaN x",
            lambda: VAE(16, 2, hidden_dims=(8,))(torch.full((4, 16), float("nan"))),
            ("x",),
        )
    )
    cases += _cases_from(
        "ConditionalVAE", ("c_dim",), dims, lambda v: ConditionalVAE(16, v, 2, hidden_dims=(8,))
    )
    cases += _cases_from(
        "ConditionalVAE",
        ("prior",),
        [("'bogus'", "bogus")],
        lambda v: ConditionalVAE(16, 4, 2, prior=v, hidden_dims=(8,)),
    )
    cases += _cases_from(
        "HierarchicalVAE",
        ("z_dims",),
        [("()", ()), ("(0, 2)", (0, 2)), ("'4'", "4"), ("(2.5,)", (2.5,))],
        lambda v: HierarchicalVAE(16, z_dims=v),
    )
    cases += _cases_from(
        "VQVAE", ("num_codes",), dims, lambda v: VQVAE(16, num_codes=v, hidden_dims=(8,))
    )
    cases += _cases_from(
        "VQVAE", ("code_dim",), dims[:3], lambda v: VQVAE(16, code_dim=v, hidden_dims=(8,))
    )
    cases += _cases_from("RBM", ("num_hidden",), dims, lambda v: RBM(16, v))
    cases += _cases_from(
        "RBM", ("visible",), [("'poisson'", "poisson")], lambda v: RBM(16, 8, visible=v)
    )
    cases += _cases_from(
        "RBM", ("sigma",), POSITIVE, lambda v: RBM(16, 8, visible="gaussian", sigma=v)
    )
    cases += _cases_from(
        "FlowDensity", ("flow",), [("'glow'", "glow"), ("3", 3)], lambda v: FlowDensity(2, flow=v)
    )
    cases += _cases_from(
        "FlowDensity", ("num_layers",), COUNT, lambda v: FlowDensity(2, num_layers=v)
    )
    cases += _cases_from(
        "FlowDensity", ("hidden_features",), COUNT, lambda v: FlowDensity(2, hidden_features=v)
    )
    cases += _cases_from(
        "LatentSDE",
        ("times",),
        [
            ("decreasing", [1.0, 0.5, 0.0]),
            ("one time", [0.0]),
            ("NaN", [0.0, float("nan")]),
            ("2-D", [[0.0, 1.0]]),
        ],
        lambda v: LatentSDE(3, v, latent_dim=2, hidden=8),
    )
    cases += _cases_from(
        "LatentSDE",
        ("latent_dim",),
        dims[:3],
        lambda v: LatentSDE(3, [0.0, 0.5, 1.0], latent_dim=v, hidden=8),
    )
    cases += _cases_from("MarkovChainVAE", ("T",), dims[:3], lambda v: MarkovChainVAE(v, 4))
    cases += _cases_from("DDPM", ("T",), dims[:3], lambda v: DDPM(4, T=v))
    cases += _cases_from(
        "DDPM",
        ("schedule",),
        [("'bogus'", "bogus"), ("betas > 1", torch.full((10,), 1.5))],
        lambda v: DDPM(4, T=10, schedule=v),
    )
    cases += _cases_from(
        "AmortizedNormal", ("z_dim",), dims, lambda v: AmortizedNormal(16, v, hidden_dims=(8,))
    )
    cases += _cases_from(
        "AmortizedNormal", ("hidden_dims",), hidden, lambda v: AmortizedNormal(16, 2, hidden_dims=v)
    )
    cases += _cases_from(
        "AmortizedNormal",
        ("context_dim",),
        [("-1", -1), ("2.5", 2.5)],
        lambda v: AmortizedNormal(16, 2, hidden_dims=(8,), context_dim=v),
    )
    cases.append(
        Case(
            "AmortizedNormal",
            "forward: x of wrong width",
            lambda: AmortizedNormal(16, 2, hidden_dims=(8,))(torch.rand(4, 15)),
            ("x",),
        )
    )
    cases += _cases_from(
        "AmortizedMultivariateNormal",
        ("z_dim",),
        dims[:3],
        lambda v: AmortizedMultivariateNormal(16, v, hidden_dims=(8,)),
    )
    cases += _cases_from(
        "AmortizedFlow",
        ("flow",),
        [("'glow'", "glow")],
        lambda v: AmortizedFlow(16, 2, flow=v, hidden_dims=(8,)),
    )
    cases += _cases_from(
        "AmortizedFlow",
        ("num_layers",),
        COUNT,
        lambda v: AmortizedFlow(16, 2, num_layers=v, hidden_dims=(8,)),
    )
    model, _ = _conjugate()
    cases += _cases_from(
        "FlowGuide", ("flow",), [("'glow'", "glow")], lambda v: FlowGuide(model, flow=v)
    )
    cases += _cases_from(
        "FlowGuide", ("num_layers",), COUNT, lambda v: FlowGuide(model, num_layers=v)
    )
    cases += _cases_from(
        "FlowGuide",
        ("num_quantile_samples",),
        COUNT,
        lambda v: FlowGuide(model, num_quantile_samples=v),
    )

    def fg_quantiles(q):
        import pyro

        pyro.clear_param_store()
        guide = FlowGuide(model, num_layers=1, hidden_features=4)
        guide(torch.randn(5))
        return guide.quantiles(q)

    cases += _cases_from(
        "FlowGuide.quantiles",
        ("quantiles",),
        [("[1.5]", [1.5]), ("[]", []), ("[[0.5]]", [[0.5]]), ("'median'", "median")],
        fg_quantiles,
    )
    cases += _cases_from("MLP", ("hidden_dims",), hidden, lambda v: MLP(4, v, 2))
    cases += _cases_from("MLP", ("in_dim",), dims, lambda v: MLP(v, (8,), 2))
    cases += _cases_from("MLP", ("out_dim",), dims, lambda v: MLP(4, (8,), v))
    cases += _cases_from(
        "ConvEncoder",
        ("image_shape",),
        [("(28,)", (28,)), ("(0, 28)", (0, 28)), ("'28x28'", "28x28")],
        lambda v: ConvEncoder(v, 4),
    )
    return cases


# --------------------------------------------------------------------------- SDEs, ground states


def sde_cases() -> list[Case]:
    import torch

    from pyrovi.distributions import EulerMaruyama, FeynmanKac
    from pyrovi.models import GroundState, hamiltonians, train_ground_state

    times = torch.linspace(0, 1, 6)

    def em(**over):
        kw = dict(drift=lambda t, z: -z, diffusion=0.5, init=torch.zeros(2), times=times)
        kw.update(over)
        d = EulerMaruyama(
            kw.pop("drift"), kw.pop("diffusion"), kw.pop("init"), kw.pop("times"), **kw
        )
        return d.rsample((3,))

    cases = []
    cases += _cases_from(
        "EulerMaruyama",
        ("drift",),
        [
            ("returns NaN", lambda t, z: z * float("nan")),
            ("wrong shape", lambda t, z: z[..., :1].expand(*z.shape[:-1], 5)),
            ("'x'", "x"),  # (a number is a valid constant drift)
        ],
        lambda v: em(drift=v),
    )
    cases += _cases_from(
        "EulerMaruyama",
        ("diffusion",),
        [
            ("-1", -1.0),
            ("nan", float("nan")),
            ("'x'", "x"),
            ("returns NaN", lambda t, z: z * float("nan")),
        ],
        lambda v: em(diffusion=v),
    )
    cases += _cases_from(
        "EulerMaruyama",
        ("times",),
        [
            ("decreasing", torch.linspace(1, 0, 6)),
            ("NaN", torch.tensor([0.0, float("nan"), 1.0])),
            ("one time", torch.zeros(1)),
            ("2-D", times[None]),
        ],
        lambda v: em(times=v),
    )
    cases += _cases_from("EulerMaruyama", ("substeps",), COUNT, lambda v: em(substeps=v))
    cases += _cases_from("EulerMaruyama", ("solver",), [("'rk45'", "rk45")], lambda v: em(solver=v))
    cases += _cases_from(
        "EulerMaruyama", ("kl_estimator",), [("'bogus'", "bogus")], lambda v: em(kl_estimator=v)
    )
    cases += _cases_from(
        "EulerMaruyama",
        ("init",),
        [("NaN", torch.full((2,), float("nan"))), ("'x'", "x")],
        lambda v: em(init=v),
    )

    def fk(potential):
        return FeynmanKac(potential, torch.zeros(1), times).rsample((3,))

    cases += _cases_from(
        "FeynmanKac",
        ("potential",),
        [
            ("returns NaN", lambda r: r.sum(-1) * float("nan")),
            ("wrong shape", lambda r: r),
            ("3", 3),
        ],
        fk,
    )

    def gs(**over):
        kw = dict(num_walkers=8, horizon=0.1, dt=0.05)
        kw.update(over)
        return GroundState(hamiltonians.harmonic_oscillator(), **kw)

    cases += _cases_from("GroundState", ("num_walkers",), COUNT, lambda v: gs(num_walkers=v))
    cases += _cases_from("GroundState", ("horizon",), POSITIVE, lambda v: gs(horizon=v))
    cases += _cases_from(
        "GroundState", ("dt",), POSITIVE + [("dt > horizon", 1.0)], lambda v: gs(dt=v)
    )
    cases += _cases_from(
        "GroundState.estimate", ("dt",), POSITIVE, lambda v: gs().estimate(4, dt=v)
    )
    cases += _cases_from("GroundState.estimate", ("num_paths",), COUNT, lambda v: gs().estimate(v))
    cases += _cases_from(
        "train_ground_state",
        ("clip_norm",),
        [("-1", -1.0), ("0", 0.0), ("nan", float("nan"))],
        lambda v: train_ground_state(gs(), 2, clip_norm=v),
    )
    cases += _cases_from(
        "train_ground_state", ("steps",), COUNT, lambda v: train_ground_state(gs(), v)
    )
    cases += _cases_from(
        "train_ground_state", ("lr",), POSITIVE, lambda v: train_ground_state(gs(), 2, lr=v)
    )
    cases += qmc_cases()
    return cases


def qmc_cases() -> list[Case]:
    """Trial wave functions, the variational and projected estimators, blocking."""
    import torch

    from pyrovi.diagnostics import blocking
    from pyrovi.models import (
        hamiltonians,
        projected_energy,
        projected_extrapolation,
        variational_energy,
    )
    from pyrovi.nn import GradientDrift, NeuralLogPsi

    ham = hamiltonians.hydrogen()

    def vmc(**over):
        kw = dict(log_psi=ham.log_psi, walkers=8, steps=3, burn_in=1, progress=False)
        kw.update(over)
        return variational_energy(ham, kw.pop("log_psi"), kw.pop("walkers"), **kw)

    def dmc(**over):
        kw = dict(walkers=8, steps=3, burn_in=1, progress=False)
        kw.update(over)
        return projected_energy(ham, ham.log_psi, kw.pop("walkers"), **kw)

    walkers = [
        ("(8, 2)", torch.zeros(8, 2)),
        ("NaN", torch.full((8, 3), float("nan"))),
        ("1 walker", torch.zeros(1, 3)),
        ("int tensor", torch.zeros(8, 3, dtype=torch.long)),
        ("'x'", "x"),
    ]
    log_psis = [
        ("returns NaN", lambda x: x.sum(-1) * float("nan")),
        ("wrong shape", lambda x: x),
        ("3", 3),
    ]
    cases = []
    cases += _cases_from("variational_energy", ("dt",), POSITIVE, lambda v: vmc(dt=v))
    cases += _cases_from("variational_energy", ("steps",), COUNT, lambda v: vmc(steps=v))
    cases += _cases_from(
        "variational_energy", ("walkers",), COUNT + walkers, lambda v: vmc(walkers=v)
    )
    cases += _cases_from("variational_energy", ("log_psi",), log_psis, lambda v: vmc(log_psi=v))
    cases += _cases_from("projected_energy", ("dt",), POSITIVE, lambda v: dmc(dt=v))
    cases += _cases_from("projected_energy", ("burn_in",), COUNT[1:], lambda v: dmc(burn_in=v))
    cases += _cases_from(
        "projected_energy",
        ("resample_below",),
        [("0", 0.0), ("1.5", 1.5), ("nan", float("nan")), ("'x'", "x")],
        lambda v: dmc(resample_below=v),
    )
    cases += _cases_from(
        "projected_extrapolation",
        ("dts",),
        [("one step", (0.1,)), ("repeated", (0.1, 0.1)), ("negative", (0.1, -0.1))],
        lambda v: projected_extrapolation(ham, ham.log_psi, 8, dts=v, time_per_dt=0.2),
    )
    cases += _cases_from(
        "projected_extrapolation",
        ("time_per_dt",),
        POSITIVE,
        lambda v: projected_extrapolation(ham, ham.log_psi, 8, time_per_dt=v),
    )
    cases += _cases_from(
        "blocking",
        ("series",),
        [
            ("2-D", torch.zeros(4, 2)),
            ("one value", torch.zeros(1)),
            ("NaN", torch.tensor([1.0, float("nan"), 2.0])),
            ("'x'", "x"),
        ],
        blocking,
    )
    cases += _cases_from("NeuralLogPsi", ("num_particles",), COUNT, lambda v: NeuralLogPsi(v, 3))
    cases += _cases_from("NeuralLogPsi", ("width",), COUNT, lambda v: NeuralLogPsi(1, 3, width=v))
    cases += _cases_from(
        "NeuralLogPsi", ("depth",), COUNT[1:], lambda v: NeuralLogPsi(1, 3, depth=v)
    )
    cases += _cases_from(
        "NeuralLogPsi",
        ("nuclei",),
        [("(2, 2)", torch.zeros(2, 2)), ("NaN", torch.full((1, 3), float("nan")))],
        lambda v: NeuralLogPsi(1, 3, nuclei=v, charges=torch.ones(len(v))),
    )
    cases += _cases_from(
        "GradientDrift", ("log_psi",), [("a lambda", lambda x: x), ("3", 3)], GradientDrift
    )
    return cases


# --------------------------------------------------------------------------- simulation inference


def sbi_cases() -> list[Case]:
    import pyro
    import pyro.distributions as dist
    import torch

    from pyrovi.infer import NPE, abc_rejection, c2st, sbc_ranks

    def model():
        theta = pyro.sample("theta", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return pyro.sample("y", dist.Normal(theta, 0.5).to_event(1))

    def npe(**over):
        kw = dict(flow="maf", num_layers=1, hidden_features=8)
        kw.update(over)
        return NPE(model, ["theta"], "y", **kw)

    cases = []
    cases += _cases_from(
        "NPE",
        ("params",),
        [("['phi']", ["phi"]), ("'theta'", "theta"), ("[]", [])],
        lambda v: NPE(model, v, "y").train(50, max_epochs=1, progress=False),
    )
    cases += _cases_from(
        "NPE",
        ("observed",),
        [("'z'", "z"), ("3", 3)],
        lambda v: NPE(model, ["theta"], v).train(50, max_epochs=1, progress=False),
    )
    cases += _cases_from(
        "NPE.train",
        ("num_simulations",),
        COUNT,
        lambda v: npe().train(v, max_epochs=1, progress=False),
    )
    cases += _cases_from(
        "NPE.train", ("max_epochs",), COUNT, lambda v: npe().train(50, max_epochs=v, progress=False)
    )
    cases.append(
        Case(
            "NPE.posterior",
            "before train",
            lambda: npe().posterior(torch.zeros(2)).sample((5,)),
            ("train",),
        )
    )
    cases.append(
        Case(
            "NPE.load",
            "missing file",
            lambda: NPE.load("/nonexistent/npe.pt", model),
            ("/nonexistent/npe.pt", "path"),
        )
    )
    cases.append(
        Case(
            "NPE.load",
            "text file",
            lambda: NPE.load(_text_file(), model),
            ("npe_census", "checkpoint", "path"),
        )
    )

    def trained():
        n = npe()
        n.train(64, max_epochs=1, progress=False)
        return n

    cases += _cases_from(
        "NPE.posterior",
        ("y_obs",),
        [("wrong shape", torch.zeros(3)), ("NaN", torch.full((2,), float("nan")))],
        lambda v: trained().posterior(v).sample((5,)),
    )

    from pyrovi.infer import NLE, ensemble_mcmc

    def nle(**over):
        kw = dict(flow="maf", num_layers=1, hidden_features=8)
        kw.update(over)
        return NLE(model, ["theta"], "y", **kw)

    def trained_nle():
        n = nle()
        n.train(64, max_epochs=1, progress=False)
        return n

    cases += _cases_from(
        "NLE",
        ("params",),
        [("['phi']", ["phi"]), ("'theta'", "theta"), ("[]", [])],
        lambda v: NLE(model, v, "y").train(50, max_epochs=1, progress=False),
    )
    cases += _cases_from("NLE", ("flow",), [("'glow'", "glow"), ("3", 3)], lambda v: nle(flow=v))
    cases += _cases_from(
        "NLE.train", ("num_simulations",), COUNT, lambda v: nle().train(v, progress=False)
    )
    cases.append(
        Case(
            "NLE.likelihood",
            "before train",
            lambda: nle().likelihood(torch.zeros(2)).log_prob(torch.zeros(2)),
            ("train",),
        )
    )
    cases += _cases_from(
        "NLE.likelihood",
        ("theta",),
        [
            ("wrong size", torch.zeros(3)),
            ("NaN", torch.full((2,), float("nan"))),
            ("integer", torch.zeros(2, dtype=torch.long)),
            ("mapping without the site", {"mu": torch.zeros(2)}),
            ("list", [0.0, 0.0]),
        ],
        lambda v: trained_nle().likelihood(v).log_prob(torch.zeros(2)),
    )
    cases += _cases_from(
        "NLE.likelihood",
        ("value",),
        [("wrong shape", torch.zeros(3)), ("list", [0.0, 0.0])],
        lambda v: trained_nle().likelihood(torch.zeros(2)).log_prob(v),
    )
    cases += _cases_from(
        "NLE.posterior",
        ("y_obs",),
        [
            ("wrong shape", torch.zeros(3)),
            ("NaN", torch.full((2,), float("nan"))),
            ("3-d batch", torch.zeros(2, 2, 2)),
        ],
        lambda v: trained_nle().posterior(v).sample((5,)),
    )
    cases += _cases_from(
        "NLE.posterior",
        ("num_chains",),
        COUNT,
        lambda v: trained_nle().posterior(torch.zeros(2), num_chains=v).sample((5,)),
    )
    cases += _cases_from(
        "NLE.train_rounds",
        ("num_rounds",),
        COUNT,
        lambda v: nle().train_rounds(torch.zeros(2), v, 50, progress=False, max_epochs=1),
    )
    cases += _cases_from(
        "NPE.train_rounds",
        ("quantile",),
        [("0", 0.0), ("1.5", 1.5), ("nan", float("nan"))],
        lambda v: npe().train_rounds(torch.zeros(2), 2, 50, quantile=v, progress=False),
    )
    cases += _cases_from(
        "NPE.train_rounds",
        ("num_simulations",),
        COUNT,
        lambda v: npe().train_rounds(torch.zeros(2), 2, v, progress=False, max_epochs=1),
    )
    cases += _cases_from(
        "ensemble_mcmc",
        ("init",),
        [
            ("3 chains", torch.zeros(3, 2)),
            ("NaN", torch.full((8, 2), float("nan"))),
            ("1-d", torch.zeros(8)),
        ],
        lambda v: ensemble_mcmc(lambda x: -(x**2).sum(-1), v, 10, progress=False),
    )
    cases += _cases_from(
        "ensemble_mcmc",
        ("num_samples",),
        COUNT,
        lambda v: ensemble_mcmc(lambda x: -(x**2).sum(-1), torch.randn(8, 2), v, progress=False),
    )
    cases += _cases_from(
        "ensemble_mcmc",
        ("log_density",),
        [("wrong output shape", lambda x: x.sum())],
        lambda v: ensemble_mcmc(v, torch.randn(8, 2), 10, progress=False),
    )

    def abc(**over):
        kw = dict(num_simulations=200, quantile=0.1)
        y = over.pop("y_obs", torch.zeros(2))
        kw.update(over)
        return abc_rejection(model, ["theta"], "y", y, **kw)

    cases += _cases_from(
        "abc_rejection",
        ("y_obs",),
        [
            ("wrong shape", torch.zeros(3)),
            ("NaN", torch.full((2,), float("nan"))),
            ("batch of 2", torch.zeros(2, 2)),
        ],
        lambda v: abc(y_obs=v),
    )
    cases += _cases_from(
        "abc_rejection",
        ("quantile",),
        [("0", 0.0), ("1.5", 1.5), ("nan", float("nan"))],
        lambda v: abc(quantile=v),
    )
    cases += _cases_from(
        "abc_rejection", ("num_simulations",), COUNT, lambda v: abc(num_simulations=v)
    )

    def sbc(sample=None, theta=None, y=None, **kw):
        theta = torch.randn(20, 2) if theta is None else theta
        y = torch.randn(20, 2) if y is None else y
        sample = sample or (lambda yy, num: torch.randn(num, yy.shape[0], 2))
        return sbc_ranks(sample, theta, y, **kw)

    cases.append(
        Case(
            "sbc_ranks",
            "sampler returns NaN",
            lambda: sbc(sample=lambda yy, num: torch.full((num, yy.shape[0], 2), float("nan"))),
            ("sample", "NaN", "finite"),
        )
    )
    cases.append(
        Case(
            "sbc_ranks",
            "theta and y of different N",
            lambda: sbc(y=torch.randn(19, 2)),
            ("theta", "y"),
        )
    )
    cases += _cases_from(
        "sbc_ranks", ("num_posterior_samples",), COUNT, lambda v: sbc(num_posterior_samples=v)
    )
    from pyrovi.infer import expected_coverage, tarp

    def coverage(check, sample=None, theta=None, y=None, **kw):
        theta = torch.randn(20, 2) if theta is None else theta
        y = torch.randn(20, 2) if y is None else y
        sample = sample or (lambda yy, num: torch.randn(num, yy.shape[0], 2))
        return check(sample, theta, y, **kw)

    for entry, check in (("expected_coverage", expected_coverage), ("tarp", tarp)):
        cases.append(
            Case(
                entry,
                "sampler returns NaN",
                lambda check=check: coverage(
                    check, sample=lambda yy, num: torch.full((num, yy.shape[0], 2), float("nan"))
                ),
                ("sample", "NaN", "finite"),
            )
        )
        cases.append(
            Case(
                entry,
                "sampler returns (L, B, 3)",
                lambda check=check: coverage(
                    check, sample=lambda yy, num: torch.randn(num, yy.shape[0], 3)
                ),
                ("sample",),
            )
        )
        cases += _cases_from(
            entry,
            ("num_posterior_samples",),
            COUNT,
            lambda v, check=check: coverage(check, num_posterior_samples=v),
        )
        cases += _cases_from(
            entry,
            ("levels",),
            [("[0, 0.5]", [0.0, 0.5]), ("[1.5]", [1.5]), ("[]", [])],
            lambda v, check=check: coverage(check, levels=v),
        )
    cases += _cases_from(
        "tarp",
        ("references",),
        [("(3, 2)", torch.zeros(3, 2)), ("NaN", torch.full((20, 2), float("nan")))],
        lambda v: coverage(tarp, references=v),
    )
    cases.append(
        Case(
            "expected_coverage",
            "log_prob of the wrong shape",
            lambda: coverage(expected_coverage, log_prob=lambda th, yy: th),
            ("log_prob",),
        )
    )
    cases.append(
        Case(
            "c2st",
            "x and y of different widths",
            lambda: c2st(torch.randn(50, 2), torch.randn(50, 3)),
            ("x", "y"),
        )
    )
    cases.append(
        Case(
            "c2st",
            "NaN in x",
            lambda: c2st(torch.full((50, 2), float("nan")), torch.randn(50, 2)),
            ("x",),
        )
    )
    cases += _cases_from(
        "c2st", ("folds",), COUNT, lambda v: c2st(torch.randn(50, 2), torch.randn(50, 2), folds=v)
    )
    return cases


def _text_file() -> str:
    path = Path("/tmp/npe_census.txt")
    path.write_text("not a checkpoint\n")
    return str(path)


# --------------------------------------------------------------------------- files and streams


def file_cases() -> list[Case]:
    import torch

    from pyrovi.data import DynamicBinarization, binarize, load_digits, load_mnist, read_idx
    from pyrovi.infer import load_checkpoint, save_checkpoint

    tmp = Path("/tmp/pyrovi_census")
    tmp.mkdir(exist_ok=True)
    good = tmp / "good.pt"
    save_checkpoint(good, {"epoch": 1, "params": {"a": torch.zeros(3)}})
    raw = good.read_bytes()
    files = {
        "missing file": tmp / "missing.pt",
        "empty file": _write(tmp / "empty.pt", b""),
        "truncated file": _write(tmp / "truncated.pt", raw[: len(raw) // 2]),
        "random bytes": _write(tmp / "random.pt", os.urandom(2000)),
        "text file": _write(tmp / "text.pt", b"hello\n"),
        "a directory": tmp,
    }
    foreign = tmp / "foreign.pt"
    torch.save({"a": 1}, foreign)
    files["foreign torch file"] = foreign
    cases = [
        Case("load_checkpoint", label, lambda p=p: load_checkpoint(p), (str(p), p.name))
        for label, p in files.items()
    ]

    def resume(path):
        from pyrovi.infer import fit

        model, guide = _vae()
        return fit(
            model,
            guide,
            _binary(),
            epochs=2,
            batch_size=8,
            progress=False,
            checkpoint=path,
            resume=True,
        )

    for label in ("empty file", "truncated file", "random bytes", "foreign torch file"):
        cases.append(
            Case(
                "fit(resume=True)",
                label,
                lambda p=files[label]: resume(p),
                (files[label].name, "checkpoint"),
            )
        )
    cases.append(
        Case(
            "fit(resume=True)",
            "checkpoint of another model",
            lambda: resume(good),
            (good.name, "checkpoint"),
        )
    )
    cases += [
        Case(
            "load_mnist",
            "missing folder",
            lambda: load_mnist(tmp / "no_such_dir"),
            ("no_such_dir", "root"),
        )
    ]
    cases += [
        Case("read_idx", label, lambda p=p: read_idx(p), (p.name, "path", "idx"))
        for label, p in (
            ("random bytes", files["random bytes"]),
            ("empty file", files["empty file"]),
        )
    ]
    cases += _cases_from(
        "binarize",
        ("x",),
        [("values in [0, 3]", torch.rand(4, 4) * 3), ("NaN", torch.full((4, 4), float("nan")))],
        lambda v: binarize(v),
    )
    cases += _cases_from(
        "binarize",
        ("method",),
        [("'otsu'", "otsu")],
        lambda v: binarize(torch.rand(4, 4), method=v),
    )
    cases += _cases_from(
        "DynamicBinarization",
        ("x",),
        [("values in [0, 3]", torch.rand(4, 4) * 3), ("NaN", torch.full((4, 4), float("nan")))],
        lambda v: DynamicBinarization()(v),
    )
    cases += _cases_from(
        "load_digits",
        ("test_fraction",),
        [("0", 0.0), ("1.5", 1.5), ("nan", float("nan"))],
        lambda v: load_digits(test_fraction=v),
    )
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def compress_cases() -> list[Case]:
    import torch

    from pyrovi.compress import decode, encode, load_vae

    def model_guide():
        model, guide = _vae(16, 2)
        return model.eval(), guide.eval()

    def blob():
        model, guide = model_guide()
        return encode(model, guide, _binary(20, 16))

    def corrupt(fn):
        def run():
            data = bytearray(blob())
            model, guide = model_guide()
            return decode(model, guide, bytes(fn(data)))

        return run

    def flip(i):
        def f(b):
            b[i % len(b)] ^= 0xFF
            return b

        return f

    cases = []
    cases += _cases_from(
        "encode",
        ("data",),
        [
            ("values in [0, 3]", _binary(20, 16) * 3),
            ("NaN", torch.full((20, 16), float("nan"))),
            ("wrong width", _binary(20, 15)),
            ("empty", _binary(20, 16)[:0]),
            ("1-D", _binary(20, 16)[0]),
        ],
        lambda v: encode(*model_guide(), v),
    )
    for label, fn in [
        ("empty stream", lambda b: b[:0]),
        ("truncated to half", lambda b: b[: len(b) // 2]),
        ("last byte dropped", lambda b: b[:-1]),
        ("garbage appended", lambda b: b + b"garbage"),
        ("random bytes", lambda b: bytearray(os.urandom(len(b)))),
    ] + [(f"byte {i} flipped", flip(i)) for i in (0, 4, 8, 12, 16, 20, 24, 28, 40, 64)]:
        cases.append(
            Case("decode", label, corrupt(fn), ("blob", "stream", "corrupt"), timeout=20.0)
        )
    cases.append(Case("decode", "blob is a str", lambda: decode(*model_guide(), "abc"), ("blob",)))
    for label in ("empty file", "random bytes", "text file"):
        p = (
            Path("/tmp/pyrovi_census")
            / {"empty file": "empty.pt", "random bytes": "random.pt", "text file": "text.pt"}[label]
        )
        cases.append(Case("load_vae", label, lambda p=p: load_vae(p), (p.name, "path")))
    return cases


GROUPS: dict[str, Callable[[], list[Case]]] = {
    "fit": fit_cases,
    "evidence": evidence_cases,
    "diagnostics": diagnostics_cases,
    "construction": construction_cases,
    "sde": sde_cases,
    "sbi": sbi_cases,
    "files": file_cases,
    "compress": compress_cases,
}


# --------------------------------------------------------------------------- running


def _own_error(err: BaseException) -> bool:
    return type(err).__module__.startswith("pyrovi")


def _classify(
    case: Case, result: Any = None, err: BaseException | None = None
) -> tuple[str, str, str]:
    if err is None:
        if case.accept and _finite(result):
            return "clear", "", "accepted (documented conversion), finite result"
        return "silent", "", "returned " + type(result).__name__
    message = str(err)
    named = any(n.lower() in message.lower() for n in case.names)
    # a missing file named in a FileNotFoundError is as clear as a ValueError
    typed = isinstance(err, ValueError | TypeError | FileNotFoundError) or _own_error(err)
    kind = "clear" if typed and named else "obscure"
    return kind, type(err).__name__, message


def _child(case: Case, conn) -> None:
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    limit = 6 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = case.call()
        kind, name, message = _classify(case, result=result)
    except BaseException as err:  # noqa: BLE001 - every failure is an outcome to classify
        kind, name, message = _classify(case, err=err)
        if kind == "obscure":
            message += "\n" + "".join(traceback.format_exception(err)[-3:])
    conn.send((kind, name, message[:2000]))
    conn.close()


def run_case(case: Case) -> Outcome:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    start = time.perf_counter()
    proc = ctx.Process(target=_child, args=(case, child))
    proc.start()
    child.close()
    if parent.poll(case.timeout):
        kind, name, message = parent.recv()
        proc.join(5)
    else:
        proc.kill()
        proc.join()
        if proc.exitcode is not None and proc.exitcode < 0 and proc.exitcode != -9:
            kind, name, message = "crash", "", f"signal {-proc.exitcode}"
        elif proc.exitcode not in (None, -9):
            kind, name, message = "crash", "", f"exit code {proc.exitcode}"
        else:
            kind, name, message = "hang", "", f"no answer within {case.timeout:.0f} s"
    seconds = time.perf_counter() - start
    return Outcome(case.entry, case.label, kind, name, message, seconds)


def collect(groups: Iterable[str]) -> list[Case]:
    cases = []
    for g in groups:
        cases += GROUPS[g]()
    return cases


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma-separated case groups")
    parser.add_argument("--only", default="", help="comma-separated entry points (all when empty)")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    parser.add_argument(
        "--out", default=str(HERE / "results" / "bad_inputs.json"), help="JSON file ('' for none)"
    )
    args = parser.parse_args(argv)
    import pyrovi  # noqa: F401 - imported before forking, so every case starts warm

    cases = collect([g for g in args.groups.split(",") if g])
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.entry in wanted]
    t0 = time.perf_counter()
    outcomes = []
    for i, case in enumerate(cases):
        out = run_case(case)
        outcomes.append(out)
        if args.verbose or out.kind != "clear":
            first = out.message.splitlines()[0][:150] if out.message else ""
            print(
                f"[{i + 1}/{len(cases)}] {out.kind:8s} {case.entry}: {case.label} -> "
                f"{out.error}: {first}",
                flush=True,
            )
    counts = Counter(o.kind for o in outcomes)
    by_entry: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        by_entry[o.entry][o.kind] += 1
    total = len(outcomes)
    print(f"\n{total} bad inputs in {time.perf_counter() - t0:.0f} s:")
    for kind in ("clear", "obscure", "silent", "hang", "crash"):
        print(f"  {kind:8s} {counts[kind]:4d}  ({100 * counts[kind] / max(total, 1):.1f}%)")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "python": sys.version.split()[0],
        "total": total,
        "counts": dict(counts),
        "share_clear": counts["clear"] / max(total, 1),
        "by_entry": {k: dict(v) for k, v in sorted(by_entry.items())},
        "cases": [o.__dict__ for o in outcomes],
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
