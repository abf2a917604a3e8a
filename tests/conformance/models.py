"""A corpus of models written the way Pyro's documentation writes them, with known answers.

Each :class:`Case` holds a model, its data, and what is known in closed form: the exact log
evidence (one number for models with global latents, one per datapoint when every latent is
local) and an exact-posterior guide where the model is conjugate. The idioms covered:

=====================  ===========================================================================
case                   idioms
=====================  ===========================================================================
conjugate              global latent, sized plate, constrained ``pyro.param`` exact guide
conjugate_no_plate     global latent, observations as one vector event, no plate
conjugate_masked       ``poutine.mask`` on missing observations
conjugate_unsized      unsized ``pyro.plate("data")`` (size from the data)
conjugate_subsampled   ``pyro.plate("data", N, subsample=idx)``, data and indices as arguments
nested                 nested plates (groups × datapoints), group latents outside the data plate
regression             ``PyroModule[nn.Linear]`` with ``PyroSample`` priors, ``pyro.deterministic``,
                       ``Uniform`` noise scale; not vectorizable (``nn.Linear`` on sampled weights)
eight_schools          global and plate-local latents (``eta`` in plate "schools"),
                       ``pyro.deterministic``, ``HalfCauchy``
vae                    Pyro's VAE example: model/guide as methods of an ``nn.Module``,
                       ``pyro.module``, local latents only (linear-Gaussian: PPCA in closed form)
cvae                   Pyro's CVAE example: masked outputs reshaped by the batch size (not
                       vectorizable), local latents only, closed form
gmm                    discrete latent enumerated in the data plate (``infer={"enumerate":...}``)
=====================  ===========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroSample
from torch import nn

__all__ = ["Case", "CASES", "make_case"]

F64 = torch.float64


@dataclass
class Case:
    """One model of the corpus with its data and known answers.

    Attributes:
        name: Case name.
        model: The Pyro model, called as ``model(*args, **kwargs)``.
        args: Model arguments; ``args[0]`` has the datapoints along dimension 0 where there is a
            data plate.
        kwargs: Model keyword arguments.
        local: Every latent is per-datapoint (inside plate ``plate``): per-datapoint evidence.
        vectorizable: The model broadcasts over an outer particle plate.
        enumerated: Some latent is discrete and enumerated.
        exact_guide: The exact posterior as a guide (conjugate cases), else None.
        log_evidence: Exact ``log p(x)``: 0-d (global latents) or ``(N,)`` (local only).
        posterior: Exact posterior (site -> (mean, sd)) where known.
        amortized: A factory of an amortized guide for local-latent cases (else None).
        plate: The per-datapoint plate's name.
        latents: The latent sites' names.
    """

    name: str
    model: Callable
    args: tuple
    kwargs: dict = field(default_factory=dict)
    local: bool = False
    vectorizable: bool = True
    enumerated: bool = False
    exact_guide: Callable | None = None
    log_evidence: torch.Tensor | None = None
    posterior: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
    amortized: Callable[[], Any] | None = None
    plate: str = "data"
    latents: tuple[str, ...] = ()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- conjugate normal

S0, S = 2.0, 1.0  # prior sd of mu, observation sd


def _conjugate_posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    precision = torch.tensor(1 / S0**2 + x.numel() / S**2, dtype=F64)
    return x.sum() / S**2 / precision, precision**-0.5


def _conjugate_evidence(x: torch.Tensor) -> torch.Tensor:
    n = x.numel()
    cov = S**2 * torch.eye(n, dtype=F64) + S0**2 * torch.ones(n, n, dtype=F64)
    return dist.MultivariateNormal(torch.zeros(n, dtype=F64), cov).log_prob(x)


def _exact_mu_guide(mean: torch.Tensor, sd: torch.Tensor) -> Callable:
    """A guide with constrained ``pyro.param`` sites initialized at the exact posterior."""

    def guide(*args: Any, **kwargs: Any) -> None:
        loc = pyro.param("mu_loc", mean.clone())
        scale = pyro.param("mu_scale", sd.clone(), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    return guide


def _mu_prior(x: torch.Tensor) -> torch.Tensor:
    return pyro.sample("mu", dist.Normal(x.new_zeros(()), S0))


def conjugate_model(x: torch.Tensor) -> None:
    """mu ~ N(0, S0²); x_i ~ N(mu, S²) in a sized data plate."""
    mu = _mu_prior(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mu, S), obs=x)


def conjugate_no_plate_model(x: torch.Tensor) -> None:
    """The same model with the observations as one vector-valued site."""
    mu = _mu_prior(x)
    pyro.sample("obs", dist.Normal(mu, S).expand([x.shape[0]]).to_event(1), obs=x)


def conjugate_unsized_model(x: torch.Tensor) -> None:
    """The same model with an unsized plate (its size comes from the observations)."""
    mu = _mu_prior(x)
    with pyro.plate("data"):
        pyro.sample("obs", dist.Normal(mu, S), obs=x)


def conjugate_masked_model(x: torch.Tensor, observed: torch.Tensor) -> None:
    """The same model with missing observations masked out (``poutine.mask``)."""
    mu = _mu_prior(x)
    with pyro.plate("data", x.shape[0]), poutine.mask(mask=observed):
        pyro.sample("obs", dist.Normal(mu, S), obs=x)


N_SUB = 40


def conjugate_subsampled_model(x: torch.Tensor, idx: torch.Tensor) -> None:
    """The same model written for Pyro's own minibatching: the plate knows the full size."""
    mu = _mu_prior(x)
    with pyro.plate("data", size=N_SUB, subsample=idx):
        pyro.sample("obs", dist.Normal(mu, S), obs=x)


def _conjugate_cases() -> list[Case]:
    x = 1.0 + torch.randn(30, generator=_gen(0), dtype=F64)
    mean, sd = _conjugate_posterior(x)
    common = {"latents": ("mu",), "posterior": {"mu": (mean, sd)}}
    evidence = _conjugate_evidence(x)
    observed = torch.arange(30) % 3 != 0
    m_mean, m_sd = _conjugate_posterior(x[observed])
    xs = 1.0 + torch.randn(N_SUB, generator=_gen(1), dtype=F64)
    s_mean, s_sd = _conjugate_posterior(xs)
    return [
        Case(
            "conjugate",
            conjugate_model,
            (x,),
            exact_guide=_exact_mu_guide(mean, sd),
            log_evidence=evidence,
            **common,
        ),
        Case(
            "conjugate_no_plate",
            conjugate_no_plate_model,
            (x,),
            exact_guide=_exact_mu_guide(mean, sd),
            log_evidence=evidence,
            **common,
        ),
        Case(
            "conjugate_unsized",
            conjugate_unsized_model,
            (x,),
            exact_guide=_exact_mu_guide(mean, sd),
            log_evidence=evidence,
            **common,
        ),
        Case(
            "conjugate_masked",
            conjugate_masked_model,
            (x, observed),
            exact_guide=_exact_mu_guide(m_mean, m_sd),
            log_evidence=_conjugate_evidence(x[observed]),
            latents=("mu",),
            posterior={"mu": (m_mean, m_sd)},
        ),
        Case(
            "conjugate_subsampled",
            conjugate_subsampled_model,
            (xs, torch.arange(N_SUB)),
            exact_guide=_exact_mu_guide(s_mean, s_sd),
            log_evidence=_conjugate_evidence(xs),
            latents=("mu",),
            posterior={"mu": (s_mean, s_sd)},
        ),
    ]


# --------------------------------------------------------------------------- nested plates

G = 3


def nested_model(x: torch.Tensor) -> None:
    """theta_g ~ N(0, S0²) per group; x_{ig} ~ N(theta_g, S²); x is (N, G)."""
    with pyro.plate("groups", x.shape[1], dim=-1):
        theta = pyro.sample("theta", dist.Normal(x.new_zeros(()), S0))
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("obs", dist.Normal(theta, S), obs=x)


def _nested_case() -> Case:
    x = torch.randn(12, G, generator=_gen(2), dtype=F64) + torch.tensor([-1.0, 0.0, 2.0], dtype=F64)
    posts = [_conjugate_posterior(x[:, g]) for g in range(G)]
    mean = torch.stack([p[0] for p in posts])
    sd = torch.stack([p[1] for p in posts])

    def guide(x: torch.Tensor) -> None:
        loc = pyro.param("theta_loc", mean.clone())
        scale = pyro.param("theta_scale", sd.clone(), constraint=constraints.positive)
        with pyro.plate("groups", x.shape[1], dim=-1):
            pyro.sample("theta", dist.Normal(loc, scale))

    evidence = sum(_conjugate_evidence(x[:, g]) for g in range(G))
    return Case(
        "nested",
        nested_model,
        (x,),
        exact_guide=guide,
        log_evidence=evidence,
        posterior={"theta": (mean, sd)},
        latents=("theta",),
    )


# --------------------------------------------------------------------------- regression


class BayesianRegression(PyroModule):
    """Linear regression with priors on the layer's weight and bias (``PyroSample``)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, 1).double()
        self.linear.weight = PyroSample(
            dist.Normal(torch.tensor(0.0, dtype=F64), 1.0).expand([1, in_features]).to_event(2)
        )
        self.linear.bias = PyroSample(
            dist.Normal(torch.tensor(0.0, dtype=F64), 10.0).expand([1]).to_event(1)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        sigma = pyro.sample("sigma", dist.Uniform(torch.tensor(0.0, dtype=F64), 10.0))
        mean = pyro.deterministic("mean", self.linear(x).squeeze(-1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def _regression_case() -> Case:
    g = _gen(3)
    x = torch.randn(50, 3, generator=g, dtype=F64)
    y = (
        x @ torch.tensor([1.0, -2.0, 0.5], dtype=F64)
        + 0.7
        + 0.3 * torch.randn(50, generator=g, dtype=F64)
    )
    return Case(
        "regression",
        BayesianRegression(3),
        (x, y),
        vectorizable=False,
        latents=("linear.weight", "linear.bias", "sigma"),
    )


# --------------------------------------------------------------------------- eight schools

EIGHT_Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
EIGHT_SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]


def eight_schools_model(sigma: torch.Tensor, y: torch.Tensor | None = None) -> None:
    """Non-centered eight schools: theta_j = mu + tau · eta_j."""
    mu = pyro.sample("mu", dist.Normal(sigma.new_zeros(()), 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(sigma.new_tensor(5.0)))
    with pyro.plate("schools", sigma.shape[0]):
        eta = pyro.sample("eta", dist.Normal(sigma.new_zeros(()), 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def _eight_schools_case() -> Case:
    sigma, y = torch.tensor(EIGHT_SIGMA, dtype=F64), torch.tensor(EIGHT_Y, dtype=F64)
    return Case(
        "eight_schools",
        eight_schools_model,
        (sigma, y),
        plate="schools",
        latents=("mu", "tau", "eta"),
    )


# --------------------------------------------------------------------------- VAE and CVAE

D, K, NOISE = 6, 2, 0.5


def _decoder(d_out: int) -> nn.Linear:
    """A fixed linear decoder whose two columns are correlated (0.9), so the posterior of z is
    too: a diagonal Gaussian guide then has an approximation gap of about 0.4 nats."""
    torch.manual_seed(4)
    dec = nn.Linear(K, d_out).double()
    w = torch.randn(d_out, K, generator=_gen(5), dtype=F64)
    w[:, 1] = 0.9 * w[:, 0] + (1 - 0.9**2) ** 0.5 * w[:, 1]
    with torch.no_grad():
        dec.weight.copy_(w)
        dec.bias.copy_(0.3 * torch.randn(d_out, generator=_gen(6), dtype=F64))
    return dec


def _linear_gaussian(dec: nn.Linear, rows: torch.Tensor | None = None):
    """Exact marginal and posterior of z ~ N(0, I), y = W z + b + N(0, NOISE²) (rows of W)."""
    w, b = dec.weight.detach(), dec.bias.detach()
    if rows is not None:
        w, b = w[rows], b[rows]
    m = w.T @ w + NOISE**2 * torch.eye(K, dtype=F64)
    marginal = dist.MultivariateNormal(b, w @ w.T + NOISE**2 * torch.eye(len(b), dtype=F64))
    post_cov = NOISE**2 * torch.linalg.inv(m)
    return marginal, (lambda y: torch.linalg.solve(m, w.T @ (y - b).T).T), post_cov


class VAEExample(nn.Module):
    """Pyro's VAE example, linear-Gaussian: ``model`` and ``guide`` are methods, the networks are
    registered with ``pyro.module``."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = _decoder(D)
        self.decoder_net = self.decoder
        torch.manual_seed(7)
        self.encoder = nn.Linear(D, 2 * K).double()

    def model(self, x: torch.Tensor) -> None:
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], K), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), NOISE).to_event(1), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        pyro.module("encoder", self.encoder)
        loc, log_scale = self.encoder(x).split(K, dim=-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def _exact_z_guide(
    posterior_mean: Callable, cov: torch.Tensor, *, data_arg: int, sized: bool = True
) -> Callable:
    chol = torch.linalg.cholesky(cov)

    def guide(*args: torch.Tensor) -> None:
        loc = posterior_mean(args[data_arg])
        with pyro.plate("data", loc.shape[0] if sized else None):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=chol))

    return guide


def _vae_case() -> Case:
    vae = VAEExample()
    marginal, post_mean, post_cov = _linear_gaussian(vae.decoder)
    x = _sample(marginal, 25, seed=8)
    return Case(
        "vae",
        vae.model,
        (x,),
        local=True,
        latents=("z",),
        exact_guide=_exact_z_guide(post_mean, post_cov, data_arg=0),
        log_evidence=marginal.log_prob(x),
        amortized=lambda: vae.guide,
    )


def _sample(d: dist.MultivariateNormal, n: int, seed: int) -> torch.Tensor:
    eps = torch.randn(n, d.loc.shape[-1], generator=_gen(seed), dtype=F64)
    return d.loc + eps @ d.scale_tril.T


MASKED = torch.tensor([False, False, True, True, True, True])  # the outputs to predict


class CVAEExample(nn.Module):
    """Pyro's CVAE example, linear-Gaussian: inputs with the outputs to predict set to −1; the
    model scores only those, selected and reshaped by the batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.generation_net = _decoder(D)
        self.decoder_net = self.generation_net
        torch.manual_seed(9)
        self.recognition_net = nn.Linear(2 * D, 2 * K).double()

    def model(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        pyro.module("generation_net", self.generation_net)
        batch_size = xs.shape[0]
        with pyro.plate("data"):
            zs = pyro.sample("z", dist.Normal(xs.new_zeros(batch_size, K), 1.0).to_event(1))
            loc = self.generation_net(zs)
            if ys is not None:
                mask_loc = loc[(xs == -1).view(-1, D)].view(batch_size, -1)
                mask_ys = ys[xs == -1].view(batch_size, -1)
                pyro.sample("y", dist.Normal(mask_loc, NOISE).to_event(1), obs=mask_ys)

    def guide(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        pyro.module("recognition_net", self.recognition_net)
        with pyro.plate("data"):
            h = self.recognition_net(torch.cat([xs, ys], dim=-1))
            loc, log_scale = h.split(K, dim=-1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def _cvae_case() -> Case:
    cvae = CVAEExample()
    full, _, _ = _linear_gaussian(cvae.generation_net)
    ys = _sample(full, 20, seed=10)
    xs = torch.where(MASKED, torch.full_like(ys, -1.0), ys)
    marginal, post_mean, post_cov = _linear_gaussian(cvae.generation_net, rows=MASKED)
    return Case(
        "cvae",
        cvae.model,
        (xs, ys),
        local=True,
        vectorizable=False,
        latents=("z",),
        exact_guide=_exact_z_guide(
            lambda y: post_mean(y[:, MASKED]), post_cov, data_arg=1, sized=False
        ),
        log_evidence=marginal.log_prob(ys[:, MASKED]),
        amortized=lambda: cvae.guide,
    )


# --------------------------------------------------------------------------- mixture


WEIGHTS = torch.tensor([0.3, 0.7], dtype=F64)


def gmm_model(x: torch.Tensor) -> None:
    """Two-component mixture with known weights; the assignment is enumerated."""
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(x.new_zeros(()), 10.0))
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("k", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(locs[k], 1.0), obs=x)


def gmm_log_joint(x: torch.Tensor, locs: torch.Tensor) -> torch.Tensor:
    """``log p(x, locs)`` with the assignments summed out; ``locs`` is ``(S, 2)`` -> ``(S,)``."""
    comp = dist.Normal(locs[:, None, :], 1.0).log_prob(x[None, :, None]) + WEIGHTS.log()
    prior = dist.Normal(0.0, 10.0).log_prob(locs).sum(-1)
    return torch.logsumexp(comp, -1).sum(-1) + prior


def _gmm_case() -> Case:
    g = _gen(11)
    x = torch.cat(
        [
            torch.randn(6, generator=g, dtype=F64) - 3.0,
            torch.randn(14, generator=g, dtype=F64) + 3.0,
        ]
    )
    return Case("gmm", gmm_model, (x,), enumerated=True, latents=("locs",))


_FACTORIES: dict[str, Callable[[], Case]] = {}
for _case in _conjugate_cases():
    _FACTORIES[_case.name] = (lambda name: lambda: {c.name: c for c in _conjugate_cases()}[name])(
        _case.name
    )
_FACTORIES.update(
    {
        "nested": _nested_case,
        "regression": _regression_case,
        "eight_schools": _eight_schools_case,
        "vae": _vae_case,
        "cvae": _cvae_case,
        "gmm": _gmm_case,
    }
)
CASES = tuple(_FACTORIES)


def make_case(name: str) -> Case:
    """A fresh case (new modules and data) by name."""
    return _FACTORIES[name]()


def log_mean_exp(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log mean exp`` along ``dim``."""
    return torch.logsumexp(t, dim) - math.log(t.shape[dim])
