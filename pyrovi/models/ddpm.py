"""``DDPM``: denoising diffusion probabilistic models (Ho et al. 2020) as a Markov-chain VAE.

A DDPM is the Markov-chain autoencoder of :mod:`pyrovi.models.markov_chain` whose backward
(noising) chain is *fixed*: ``q(z_t | z_{t-1}) = N(√(1−β_t) z_{t-1}, β_t I)`` with ``z_0 = x``
and a variance schedule ``β_1..β_T``, so that ``q(z_t | x) = N(√ᾱ_t x, (1−ᾱ_t) I)`` with
``ᾱ_t = Π_{s≤t} (1−β_s)`` is known in closed form. Only the forward (generative) chain is learned:

    p(z_T) = N(0, I),  p_θ(z_{t−1} | z_t) = N(μ_θ(z_t, t), σ_t² I),
    p_θ(x | z_1) = N(μ_θ(z_1, 1), σ_1² I)

with the ε-parametrization ``μ_θ = (z_t − β_t / √(1−ᾱ_t) ε_θ(z_t, t)) / √α_t``.

Time indices follow Ho et al.: ``t = 1..T`` with ``z_0 = x`` and ``z_T`` the noise end (the
reverse of :class:`~pyrovi.models.MarkovChainVAE`'s numbering, where the data is the last state).

As a Pyro model/guide pair (sites ``"z_T"``, ..., ``"z_1"`` and the observed ``"x"`` inside
``pyro.plate("data", B)``), :meth:`DDPM.guide` samples the noising chain *in the model's order*:
``z_T ~ q(z_T | x)`` then ``z_{t−1} ~ q(z_{t−1} | z_t, x)``. ``Trace_ELBO`` then estimates the ELBO
by Monte Carlo, and ``TraceMeanField_ELBO`` gives the usual decomposition with every step's KL in
closed form, ``L_T + Σ_{t≥2} KL(q(z_{t−1}|z_t,x) ‖ p_θ(z_{t−1}|z_t)) − log p_θ(x|z_1)``.

Trace_ELBO on this pair evaluates all T steps at every training step. With
:class:`~pyrovi.infer.StochasticStep_ELBO` the model and guide evaluate one uniformly drawn step
``t`` per datapoint instead (they ask for it with :func:`~pyrovi.infer.chain_steps`), with the
sites ``"z_T"``, ``"z_t"`` (``~ q(z_t | x)`` in both: its terms cancel), ``"z_prev"`` (``t ≥ 2``)
and the observed ``"x"`` (``t = 1``), the last two scaled by T: the estimator of
:meth:`DDPM.loss` (``kind="elbo"``, with Monte Carlo instead of closed-form KLs), so
``fit(model, model.guide, x, loss=StochasticStep_ELBO())`` trains at about the cost of
:meth:`DDPM.loss`.

Without Pyro, :meth:`DDPM.loss` gives per-datapoint training losses with a random step per
datapoint (``"elbo"``: an unbiased estimate of −ELBO; ``"simple"``: Ho et al.'s
``‖ε − ε_θ‖²``; ``"hybrid"``: simple + λ·vlb with the mean detached in the vlb term, Nichol &
Dhariwal 2021), :meth:`DDPM.nll_bound` the −ELBO summed over all steps (closed-form KLs), and
:meth:`DDPM.bits_per_dim` that bound in bits per dimension.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_bool, check_nonnegative, check_real
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.step_elbo import chain_steps
from pyrovi.models._checks import check_features, check_values
from pyrovi.nn.registration import registration_skipped, submodule

__all__ = ["DDPM", "beta_schedule", "EpsilonMLP", "AffineEpsilon", "SCHEDULES", "VARIANCES"]

SCHEDULES = ("linear", "cosine")
#: Reverse-step variances: β_t, the posterior variance β̃_t (β_1 at t = 1) or learned per step.
VARIANCES = ("beta", "posterior", "learned")
LOSSES = ("elbo", "simple", "hybrid")
#: Rows (steps × draws × datapoints) per network call in :meth:`DDPM.nll_bound`.
NLL_CHUNK_ROWS = 1 << 18


def beta_schedule(
    schedule: str,
    T: int,
    *,
    beta_start: float | None = None,
    beta_end: float | None = None,
    cosine_offset: float = 0.008,
    max_beta: float = 0.999,
) -> torch.Tensor:
    """Noise variances ``β_1..β_T`` (float64, shape ``(T,)``).

    Args:
        schedule: ``"linear"`` (Ho et al.: β from ``beta_start`` to ``beta_end``, defaults
            ``1e-4·1000/T`` and ``0.02·1000/T``, the T = 1000 schedule rescaled to T steps as in
            Nichol & Dhariwal) or ``"cosine"`` (``ᾱ_t = f(t)/f(0)``,
            ``f(t) = cos²((t/T + s)/(1 + s) · π/2)``, s = ``cosine_offset``).
        T: Number of steps.
        beta_start: First β of the linear schedule.
        beta_end: Last β of the linear schedule.
        cosine_offset: Offset s of the cosine schedule.
        max_beta: Upper clip of every β (< 1).

    Returns:
        Tensor ``(T,)`` with ``0 < β_t ≤ max_beta``.
    """
    T = _positive_int("T", T)
    max_beta = check_real("max_beta", max_beta, low=0.0, high=1.0, low_open=True, high_open=True)
    if schedule == "linear":
        scale = 1000.0 / T
        start = 1e-4 * scale if beta_start is None else _beta("beta_start", beta_start)
        end = 0.02 * scale if beta_end is None else _beta("beta_end", beta_end)
        if not 0 < start <= end:
            raise ValueError(f"need 0 < beta_start <= beta_end, got {start!r} and {end!r}")
        betas = torch.linspace(start, end, T, dtype=torch.float64)
    elif schedule == "cosine":
        s = check_nonnegative("cosine_offset", cosine_offset)
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    return betas.clamp(min=1e-8, max=max_beta)


def _beta(name: str, value: float) -> float:
    return check_real(name, value, low=0.0, high=1.0, low_open=True, high_open=True)


def _time_features(t: torch.Tensor, T: int, num: int) -> torch.Tensor:
    """Sinusoidal features ``(..., 2 num)`` of the step ``t`` (integer tensor, 1..T)."""
    freq = torch.exp(torch.linspace(0.0, math.log(200.0), num, device=t.device))
    phase = (t.to(freq.dtype) / T).unsqueeze(-1) * freq
    return torch.cat([phase.sin(), phase.cos()], dim=-1)


class EpsilonMLP(nn.Module):
    """Noise predictor ``ε_θ(z, t)``: an MLP on the state and sinusoidal step features.

    ``forward(z, t)`` with ``z`` ``(..., d)`` and ``t`` an integer tensor broadcastable against
    ``z[..., 0]`` (values 1..T) returns ``(..., d)``.

    Args:
        dim: Data dimension d.
        T: Number of steps.
        hidden: Hidden width.
        depth: Number of hidden layers.
        time_features: Sinusoid frequencies (the embedding has twice as many features).
    """

    def __init__(
        self, dim: int, T: int, hidden: int = 128, depth: int = 3, time_features: int = 16
    ) -> None:
        super().__init__()
        self.dim, self.T = _positive_int("dim", dim), _positive_int("T", T)
        hidden, depth = _positive_int("hidden", hidden), _positive_int("depth", depth)
        self.time_features = _positive_int("time_features", time_features)
        self.inp = nn.Linear(dim + 2 * time_features, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, dim)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t = torch.as_tensor(t, device=z.device).expand(z.shape[:-1])
        h = F.silu(self.inp(torch.cat([z, _time_features(t, self.T, self.time_features)], -1)))
        for layer in self.layers:
            h = h + F.silu(layer(h))
        return self.out(h)


class AffineEpsilon(nn.Module):
    """Per-step affine noise predictor ``ε_θ(z, t) = w_t ⊙ z + b_t`` (diagonal weights).

    For Gaussian data with a diagonal covariance every exact reverse conditional is Gaussian with
    a mean affine in ``z_t``, so this family contains the optimal DDPM (a known-answer test).

    Args:
        dim: Data dimension d.
        T: Number of steps.
    """

    def __init__(self, dim: int, T: int) -> None:
        super().__init__()
        self.dim, self.T = _positive_int("dim", dim), _positive_int("T", T)
        self.weight = nn.Parameter(torch.zeros(T, dim))
        self.bias = nn.Parameter(torch.zeros(T, dim))

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # noqa: D102
        index = torch.as_tensor(t, device=z.device).expand(z.shape[:-1]) - 1
        return self.weight[index] * z + self.bias[index]


def _normal_kl(m1, v1, m2, v2):
    """KL(N(m1, v1) ‖ N(m2, v2)) per coordinate."""
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


class _RowNormal(dist.TorchDistribution):
    """``N(loc, scale² I)`` with one scale per row: ``loc`` ``(..., d)``, ``scale`` ``(..., 1)``;
    event shape ``(d,)``. The log-density of ``Normal(loc, scale).to_event(1)`` with less
    per-site overhead (construction, Pyro's plate ``expand``, scoring), for the one-step sites
    of :class:`DDPM` that :class:`~pyrovi.infer.StochasticStep_ELBO` evaluates every step."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        self.loc, self.scale = loc, scale
        batch_shape = loc.shape[:-1]
        if scale.shape[:-1] != batch_shape:  # (torch.broadcast_shapes is slow for a hot path)
            batch_shape = torch.broadcast_shapes(batch_shape, scale.shape[:-1])
        super().__init__(batch_shape, loc.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> _RowNormal:  # noqa: D102
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return _RowNormal(
            self.loc.expand(batch_shape + self.event_shape), self.scale.expand(batch_shape + (1,))
        )

    @property
    def mean(self) -> torch.Tensor:  # noqa: D102
        return self.loc.expand(self.batch_shape + self.event_shape)

    @property
    def variance(self) -> torch.Tensor:  # noqa: D102
        return self.scale.pow(2).expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.scale * noise

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d = self.loc.shape[-1]
        sq = ((value - self.loc) / self.scale).square().sum(-1)
        log_norm = self.scale.squeeze(-1).log().add(_HALF_LOG_2PI)
        return torch.add(sq, log_norm, alpha=2 * d).mul(-0.5)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DDPM(PyroModule):
    """A diffusion model: a learned forward chain from noise to data, a fixed noising chain.

    Call as ``model(x)`` (Pyro model, ``x`` ``(B, d)``) with :meth:`guide` as the guide, or
    ``model(None, num_samples=B)`` for ancestral samples. See the module docstring.

    Args:
        x_dim: Data dimension d, or the noise-predictor network itself (as ``network``).
        T: Number of diffusion steps.
        schedule: ``"linear"`` or ``"cosine"`` (:func:`beta_schedule`), or a tensor ``(T,)`` of
            β values in (0, 1).
        network: Noise predictor ``ε_θ(z, t)`` (``(..., d)``, integer ``t`` in 1..T) with a
            ``dim`` attribute; ``"mlp"`` (:class:`EpsilonMLP`, default) or ``"affine"``
            (:class:`AffineEpsilon`) build one.
        hidden: Hidden width of the default MLP.
        variance: Reverse-step variance σ_t²: ``"learned"`` (one log-variance per step, started
            at β̃_t; default, needed for a tight ELBO), ``"beta"`` (β_t) or ``"posterior"``
            (β̃_t, with β_1 at t = 1 so the decoder has a density).
        hybrid_weight: λ of the hybrid loss.
    """

    def __init__(
        self,
        x_dim: int | nn.Module | None = None,
        T: int = 100,
        schedule: str | torch.Tensor = "linear",
        *,
        network: str | nn.Module = "mlp",
        hidden: int = 128,
        variance: str = "learned",
        hybrid_weight: float = 1e-3,
    ) -> None:
        super().__init__()
        self.T = _positive_int("T", T)
        if isinstance(x_dim, nn.Module):
            x_dim, network = None, x_dim
        if isinstance(network, nn.Module):
            dim = getattr(network, "dim", x_dim)
            if dim is None:
                raise ValueError("network: give it a `dim` attribute or pass x_dim")
            self.network = network
        elif network in ("mlp", "affine"):
            if x_dim is None:
                raise ValueError("x_dim is needed with network='mlp' or 'affine'")
            dim = x_dim
            self.network = (
                EpsilonMLP(_positive_int("x_dim", x_dim), T, hidden)
                if network == "mlp"
                else AffineEpsilon(_positive_int("x_dim", x_dim), T)
            )
        else:
            raise ValueError(f"network must be 'mlp', 'affine' or an nn.Module, got {network!r}")
        self.x_dim = _positive_int("x_dim", dim)
        if isinstance(schedule, str):
            betas = beta_schedule(schedule, T)
            self.schedule = schedule
        else:
            betas = torch.as_tensor(schedule, dtype=torch.float64)
            if betas.shape != (T,) or not ((betas > 0) & (betas < 1)).all():
                raise ValueError(f"schedule: a tensor of T={T} values in (0, 1) is needed")
            self.schedule = "custom"
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        self.variance = variance
        self.hybrid_weight = check_nonnegative("hybrid_weight", hybrid_weight)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        post_var = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
        post_var[0] = betas[0]  # β̃_1 = 0: the decoder variance uses β_1 instead
        dtype = torch.get_default_dtype()
        for name, value in {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            "posterior_var": post_var,
            "posterior_coef_x": alpha_bar_prev.sqrt() * betas / (1 - alpha_bar),
            "posterior_coef_z": alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar),
        }.items():
            self.register_buffer(name, value.to(dtype))
        if variance == "learned":
            self.log_var = nn.Parameter(post_var.log().to(dtype))

    # ------------------------------------------------------------------ schedule
    def _at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``name`` at steps ``t`` (1..T), shaped ``t.shape + (1,)`` to broadcast."""
        values = getattr(self, name).to(dtype=like.dtype)
        return values[t - 1].unsqueeze(-1)

    def _steps(self, t: int | torch.Tensor, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        if (
            t.dtype in (torch.float16, torch.float32, torch.float64)
            or ((t < 1) | (t > self.T)).any()
        ):
            raise ValueError(f"t: integer steps in 1..T={self.T} are needed")
        return t

    def reverse_var(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """σ_t² at integer steps ``t``, shape ``t.shape + (1,)``."""
        if self.variance == "learned":
            return self.log_var.to(like.dtype)[t - 1].exp().unsqueeze(-1)
        return self._at("betas" if self.variance == "beta" else "posterior_var", t, like)

    # -------------------------------------------------------------- closed forms
    def q_mean_var(self, x: torch.Tensor, t: int | torch.Tensor):
        """``q(z_t | x) = N(√ᾱ_t x, (1 − ᾱ_t) I)``: mean ``(..., d)`` and variance ``(..., 1)``."""
        t = self._steps(t, x.device)
        ab = self._at("alpha_bar", t, x)
        return ab.sqrt() * x, 1 - ab

    def q_sample(self, x: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None):
        """A draw of ``z_t ~ q(z_t | x)`` (``t`` broadcastable against ``x[..., 0]``)."""
        mean, var = self.q_mean_var(x, t)
        noise = torch.randn_like(mean) if noise is None else noise
        return mean + var.sqrt() * noise

    def q_posterior(self, x: torch.Tensor, z: torch.Tensor, t: int | torch.Tensor):
        """``q(z_{t−1} | z_t, x)`` for ``t ≥ 2``: mean ``(..., d)`` and variance ``(..., 1)``."""
        t = self._steps(t, z.device)
        mean = self._at("posterior_coef_x", t, z) * x + self._at("posterior_coef_z", t, z) * z
        return mean, self._at("posterior_var", t, z)

    def p_mean_var(self, z: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor | None = None):
        """``p_θ(z_{t−1} | z_t)`` (``x`` for t = 1): mean ``(..., d)`` and variance ``(..., 1)``."""
        t = self._steps(t, z.device).expand(z.shape[:-1])
        if eps is None:
            eps = submodule(self, "network")(z, t)
        coef = self._at("betas", t, z) / (1 - self._at("alpha_bar", t, z)).sqrt()
        mean = (z - coef * eps) / self._at("alphas", t, z).sqrt()
        return mean, self.reverse_var(t, z)

    def _step_dist(self, z: torch.Tensor, t: int) -> dist.Distribution:
        mean, var = self.p_mean_var(z, t)
        return dist.Normal(mean, var.sqrt().expand_as(mean)).to_event(1)

    # ----------------------------------------------------------------- Pyro pair
    def _check_x(self, x: torch.Tensor) -> None:
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)

    def forward(self, x: torch.Tensor | None = None, *, num_samples: int | None = None):
        """The Pyro model: ``z_T ~ N(0, I)``, ``z_{t−1} ~ p_θ(· | z_t)``, ``x ~ p_θ(· | z_1)``.

        Under :class:`~pyrovi.infer.StochasticStep_ELBO` (when
        :func:`~pyrovi.infer.chain_steps` returns steps ``t``, ``(B,)``) only one step per
        datapoint: ``z_T ~ N(0, I)``, ``"z_t"`` ``~ q(z_t | x)`` (as in the guide: its terms
        cancel), ``"z_prev"`` ``~ p_θ(z_{t−1} | z_t)`` on rows with ``t ≥ 2`` and the observed
        ``x ~ p_θ(x | z_1 = z_t)`` on rows with ``t = 1``, these two scaled by T.
        """
        if x is not None:
            self._check_x(x)
            batch, like = x.shape[0], x
        elif num_samples is None:
            raise ValueError("num_samples is needed when x is None (sampling from the model)")
        else:
            batch, like = _positive_int("num_samples", num_samples), self.betas
        zeros = torch.zeros(batch, self.x_dim, dtype=like.dtype, device=like.device)
        with pyro.plate("data", batch):
            steps = None if x is None else chain_steps((batch,), self.T, x.device)
            if steps is not None:
                pyro.sample(f"z_{self.T}", _RowNormal(zeros, zeros.new_ones(()).expand(batch, 1)))
                return self._model_step(x, steps)
            z = pyro.sample(f"z_{self.T}", dist.Normal(zeros, 1.0).to_event(1))
            for t in range(self.T, 1, -1):
                z = pyro.sample(f"z_{t - 1}", self._step_dist(z, t))
            return pyro.sample("x", self._step_dist(z, 1), obs=x)

    def guide(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The fixed noising chain in the model's order: ``q(z_T | x)``, ``q(z_{t−1} | z_t, x)``.

        Returns ``z_1`` ``(B, d)``. Under :class:`~pyrovi.infer.StochasticStep_ELBO` (steps ``t``
        from :func:`~pyrovi.infer.chain_steps`): ``z_T ~ q(z_T | x)``, ``"z_t"`` ``~ q(z_t | x)``
        and ``"z_prev"`` ``~ q(z_{t−1} | z_t, x)`` (scaled by T, masked to rows with ``t ≥ 2``);
        returns ``z_t``.
        """
        self._check_x(x)
        with pyro.plate("data", x.shape[0]):
            steps = chain_steps(x.shape[:1], self.T, x.device)
            if steps is not None:
                return self._guide_step(x, steps)
            mean, var = self.q_mean_var(x, self.T)
            z = pyro.sample(
                f"z_{self.T}", dist.Normal(mean, var.sqrt().expand_as(mean)).to_event(1)
            )
            for t in range(self.T, 1, -1):
                mean, var = self.q_posterior(x, z, t)
                scale = var.sqrt().expand(torch.broadcast_shapes(mean.shape, var.shape))
                z = pyro.sample(f"z_{t - 1}", dist.Normal(mean, scale).to_event(1))
            return z

    # ------------------------------------------------- one step per datapoint (Pyro)
    # Under StochasticStep_ELBO: −loss = log p(z_T) − log q(z_T | x) + T · (log p_θ(z_{t−1} | z_t)
    # − log q(z_{t−1} | z_t, x)) for t ≥ 2, T · log p_θ(x | z_1) for t = 1, with z_t ~ q(z_t | x):
    # unbiased for the ELBO, whose terms only depend on the pairwise marginals q(z_t, z_{t−1} | x).
    # The steps t come from chain_steps, already valid: no checks (and no device syncs) here.
    def _step_table(self, like: torch.Tensor) -> torch.Tensor:
        """Schedule columns per step, ``(T, 7)`` in ``like``'s dtype and device (cached): √ᾱ_t,
        √(1 − ᾱ_t), 1/√α_t, β_t / (√(1 − ᾱ_t) √α_t), the posterior coefficients of x and z_t and
        the posterior standard deviation (at t = 1: ``N(x, β_1)``, finite; masked out)."""
        names = ("alpha_bar", "alphas", "betas", "posterior_coef_x", "posterior_coef_z")
        buffers = tuple(self._buffers[name] for name in (*names, "posterior_var"))
        versions = tuple(b._version for b in buffers)
        cached = self.__dict__.get("_step_table_cache")  # (dtype, device, buffers, versions, table)
        if (
            cached is not None
            and cached[0] == like.dtype
            and cached[1] == like.device
            and all(a is b for a, b in zip(cached[2], buffers))
            and cached[3] == versions
        ):
            return cached[4]
        with torch.inference_mode(False), torch.no_grad():  # a plain tensor, even if built there
            ab, a, b, cx, cz, pv = (v.to(device=like.device, dtype=like.dtype) for v in buffers)
            columns = [ab.sqrt(), (1 - ab).sqrt(), a.rsqrt(), b / ((1 - ab) * a).sqrt()]
            table = torch.stack([*columns, cx, cz, pv.sqrt()], dim=-1)
        self.__dict__["_step_table_cache"] = (like.dtype, like.device, buffers, versions, table)
        return table

    def _guide_step(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        table = self._step_table(x)
        last = table[-1:]  # step T
        pyro.sample(f"z_{self.T}", _RowNormal(last[:, 0:1] * x, last[:, 1:2].expand(len(x), 1)))
        sab, s1ab, _, _, cx, cz, sd = table[t - 1].unsqueeze(-1).unbind(-2)
        z = pyro.sample("z_t", _RowNormal(sab * x, s1ab))
        with poutine.scale(scale=float(self.T)), poutine.mask(mask=t > 1):
            pyro.sample("z_prev", _RowNormal(cx * x + cz * z, sd))
        return z

    def _model_step(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sab, s1ab, inv_sa, coef, _, _, _ = self._step_table(x)[t - 1].unsqueeze(-1).unbind(-2)
        z = pyro.sample("z_t", _RowNormal(sab * x, s1ab))
        steps = t.expand(z.shape[:-1])
        eps = submodule(self, "network")(z, steps)  # the one network call
        if self.variance == "learned":
            log_var = self._parameters["log_var"] if registration_skipped() else self.log_var
            sd = (0.5 * log_var.to(z.dtype)[steps - 1]).exp().unsqueeze(-1)
        else:
            sd = self.reverse_var(steps, z).sqrt()
        step = _RowNormal(inv_sa * z - coef * eps, sd)
        with poutine.scale(scale=float(self.T)):
            with poutine.mask(mask=t > 1):
                pyro.sample("z_prev", step)
            with poutine.mask(mask=t == 1):
                return pyro.sample("x", step, obs=x)

    # ------------------------------------------------------------------- losses
    def _terms(self, x: torch.Tensor, t: torch.Tensor, detach_mean: bool = False):
        """Per-step −ELBO terms ``L_{t}`` and the ε errors at steps ``t`` (shape ``t.shape``)."""
        noise = torch.randn(t.shape + (self.x_dim,), dtype=x.dtype, device=x.device)
        z = self.q_sample(x, t, noise)
        eps = submodule(self, "network")(z, t)
        mean, var = self.p_mean_var(z, t, eps)
        if detach_mean:
            mean = mean.detach()
        # t = 1 rows take step 2's posterior, dropped below (T = 1: the finite N(x, β_1))
        q_mean, q_var = self.q_posterior(x, z, t.clamp(min=min(2, self.T)))
        kl = _normal_kl(q_mean, q_var, mean, var).sum(-1)
        nll = -dist.Normal(mean, var.sqrt()).log_prob(x.expand_as(mean)).sum(-1)
        vlb = torch.where(t == 1, nll, kl)
        return vlb, (noise - eps).pow(2).sum(-1)

    def prior_kl(self, x: torch.Tensor) -> torch.Tensor:
        """``L_T = KL(q(z_T | x) ‖ N(0, I))`` per datapoint ``(B,)`` (no parameters)."""
        mean, var = self.q_mean_var(x, self.T)
        return _normal_kl(mean, var, torch.zeros_like(mean), torch.ones_like(var)).sum(-1)

    def loss(self, x: torch.Tensor, kind: str = "elbo") -> torch.Tensor:
        """Per-datapoint training loss ``(B,)`` at one uniformly drawn step per datapoint.

        Args:
            x: Data ``(B, d)``.
            kind: ``"elbo"`` (``L_T + T · L_t``: unbiased for −ELBO, nats), ``"simple"``
                (``‖ε − ε_θ(z_t, t)‖²``) or ``"hybrid"`` (simple + λ · T · L_t with the mean
                detached in L_t, which trains learned variances).
        """
        if kind not in LOSSES:
            raise ValueError(f"kind must be one of {LOSSES}, got {kind!r}")
        self._check_x(x)
        t = torch.randint(1, self.T + 1, x.shape[:1], device=x.device)
        vlb, mse = self._terms(x, t, detach_mean=kind == "hybrid")
        if kind == "elbo":
            return self.prior_kl(x) + self.T * vlb
        if kind == "simple":
            return mse
        return mse + self.hybrid_weight * self.T * vlb

    def nll_bound(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """−ELBO per datapoint ``(B,)`` in nats: every step's term, each KL in closed form.

        ``z_t ~ q(z_t | x)`` is drawn independently per step (``num_samples`` draws averaged), so
        only ``E_q`` over one Gaussian per step is Monte Carlo.
        """
        self._check_x(x)
        num_samples = _positive_int("num_samples", num_samples)
        per_step = num_samples * x.shape[0]
        chunk = max(1, NLL_CHUNK_ROWS // per_step)  # steps per network call: bounded memory
        total = self.prior_kl(x)
        for start in range(1, self.T + 1, chunk):
            t = torch.arange(start, min(start + chunk, self.T + 1), device=x.device)
            t = t.reshape(-1, 1, 1).expand(-1, num_samples, x.shape[0])
            vlb, _ = self._terms(x, t)
            total = total + vlb.sum(0).mean(0)
        return total

    def bits_per_dim(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """:meth:`nll_bound` in bits per dimension, ``(B,)`` (continuous data: a density bound)."""
        return self.nll_bound(x, num_samples) / (self.x_dim * math.log(2))

    @torch.no_grad()
    def sample(self, num_samples: int, *, return_chain: bool = False) -> torch.Tensor:
        """Ancestral samples ``(n, d)`` (or the chain ``(n, T + 1, d)``, from ``z_T`` to ``x``)."""
        n = _positive_int("num_samples", num_samples)
        return_chain = check_bool("return_chain", return_chain)
        z = torch.randn(n, self.x_dim, dtype=self.betas.dtype, device=self.betas.device)
        chain = [z]
        for t in range(self.T, 0, -1):
            mean, var = self.p_mean_var(z, t)
            z = mean + var.sqrt() * torch.randn_like(mean)
            chain.append(z)
        return torch.stack(chain, dim=1) if return_chain else z
