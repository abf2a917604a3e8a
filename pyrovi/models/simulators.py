"""Simulators as Pyro models for simulation-based inference: the Ricker population model (with
Wood's 2010 summary statistics) and a Gaussian linear simulator with an analytic posterior."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyrovi._checks import check_int, check_positive, check_tensor
from pyrovi._validation import all_finite

__all__ = [
    "RickerModel",
    "ricker_population",
    "wood_summaries",
    "WoodSummary",
    "GaussianLinear",
    "RICKER_TRUTH",
    "simulate_ricker_at",
]

RICKER_TRUTH: dict[str, float] = {"log_r": 3.8, "sigma": 0.3, "phi": 10.0}
"""Reference parameters of the Ricker model (Wood 2010): ``log r = 3.8, σ = 0.3, φ = 10``."""


def ricker_population(log_r: torch.Tensor, noise: torch.Tensor, n0: float = 1.0) -> torch.Tensor:
    """Ricker population sizes ``N_1..N_T`` from ``N_{t+1} = r N_t exp(−N_t + e_t)``.

    Computed in log space, ``log N_{t+1} = log r + log N_t − N_t + e_t``, so that overflow cannot
    occur; an extinct population (``N`` underflowing to 0, ``log N = −inf``) stays extinct.

    Args:
        log_r: Growth rate ``log r``, shape ``batch``.
        noise: Process noise ``e_t`` (already scaled by σ), shape ``batch + (T,)``.
        n0: Initial population ``N_0``.

    Returns:
        ``N`` of shape ``batch + (T,)``.
    """
    log_r = torch.as_tensor(log_r, dtype=noise.dtype, device=noise.device)
    if log_r.shape != noise.shape[:-1]:
        log_r = log_r.expand(noise.shape[:-1])
    log_n = torch.full_like(noise[..., 0], float(n0)).log()
    out = []
    for t in range(noise.shape[-1]):
        log_n = log_r + log_n - log_n.exp() + noise[..., t]
        out.append(log_n)
    return torch.stack(out, -1).exp()


class RickerModel(PyroModule):
    """The Ricker model of Wood (2010) as a Pyro model with sites ``log_r``, ``sigma``, ``phi``,
    ``eps`` (standard normal process noise, ``(T,)``) and the observed counts ``y`` (``(T,)``).

    ``N_{t+1} = r N_t exp(−N_t + σ ε_t)``, ``ε_t ~ N(0, 1)``, ``N_0 = 1``, and
    ``y_t ~ Poisson(φ N_t)`` for ``t = 1..T``. Priors: ``log r ~ U(3, 5)``, ``σ ~ U(0, 0.8)``,
    ``φ ~ U(4, 20)``. The prior bounds are buffers, so ``model.to(device)`` moves the simulator.
    Vectorizes over leading batch dimensions (``Predictive(..., parallel=True)``).

    Args:
        num_steps: T, the length of the observed series.
        n0: Initial population ``N_0``.
    """

    params = ("log_r", "sigma", "phi")

    def __init__(self, num_steps: int = 50, n0: float = 1.0) -> None:
        super().__init__()
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
            raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
        self.num_steps, self.n0 = num_steps, check_positive("n0", n0)
        self.register_buffer("low", torch.tensor([3.0, 0.0, 4.0]))
        self.register_buffer("high", torch.tensor([5.0, 0.8, 20.0]))

    def prior(self, name: str) -> dist.Uniform:
        """The uniform prior of parameter ``name`` (one of :attr:`params`)."""
        i = self.params.index(name)
        return dist.Uniform(self.low[i], self.high[i])

    def forward(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample (or condition on) the counts ``y`` of shape ``(T,)``; returns ``N`` ``(T,)``."""
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape[-1:] != (self.num_steps,)):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must have shape (..., {self.num_steps}), got {got}")
        log_r = pyro.sample("log_r", self.prior("log_r"))
        sigma = pyro.sample("sigma", self.prior("sigma"))
        phi = pyro.sample("phi", self.prior("phi"))
        zero = torch.zeros((), device=self.low.device)
        eps = pyro.sample(
            "eps", dist.Normal(zero, 1.0).expand(log_r.shape + (self.num_steps,)).to_event(1)
        )
        n = ricker_population(log_r, sigma.unsqueeze(-1) * eps, self.n0)
        pyro.sample(
            "y", dist.Poisson(phi.unsqueeze(-1) * n, validate_args=False).to_event(1), obs=y
        )
        return n


def _lag_products(x: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Autocovariances ``(1/T) Σ_t (x_t − x̄)(x_{t+k} − x̄)`` for ``k = 0..max_lag``."""
    xc = x - x.mean(-1, keepdim=True)
    n = x.shape[-1]
    return torch.stack(
        [(xc[..., : n - k] * xc[..., k:]).sum(-1) / n for k in range(max_lag + 1)], -1
    )


def _cubic_design(reference: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse ``(4, T−1)`` of the cubic design on the reference's sorted differences."""
    d = torch.sort(torch.diff(reference.to(torch.float64)))[0]
    scale = d.abs().max().clamp_min(1.0)
    x = d / scale
    design = torch.stack([torch.ones_like(x), x, x**2, x**3], -1)
    return torch.linalg.pinv(design)


def wood_summaries(y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The 13 summary statistics of Wood (2010) for Ricker-type count series.

    In order: autocovariances of ``y`` at lags 0..5 (6); the linear, quadratic and cubic
    coefficients of the least-squares regression of the sorted differences ``y_{t+1} − y_t`` on
    the sorted differences of ``reference`` (the observed series in Wood's synthetic likelihood;
    3); the coefficients β1, β2 of the autoregression
    ``y_{t+1}^{0.3} = β1 y_t^{0.3} + β2 y_t^{0.6} + ε_t`` (2, least squares by pseudo-inverse, so
    an all-zero series gives 0); the mean of ``y`` (1); the number of zeros (1).

    All statistics are finite for any finite non-negative series, extinct (all-zero) ones
    included.

    Args:
        y: Counts, shape ``batch + (T,)``.
        reference: Reference series ``(T,)`` for the ordered-difference regression.

    Returns:
        Statistics of shape ``batch + (13,)`` in ``y``'s floating dtype (float32 for integer y).
    """
    if not isinstance(y, torch.Tensor) or y.dim() < 1 or y.shape[-1] < 7:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must have shape (..., T) with T >= 7, got {got}")
    if not isinstance(reference, torch.Tensor):
        raise TypeError(
            f"reference must be a tensor ({y.shape[-1]},), got {type(reference).__name__}"
        )
    if reference.shape != y.shape[-1:]:
        raise ValueError(
            f"reference must have shape ({y.shape[-1]},) like a series of y, got "
            f"{tuple(reference.shape)}"
        )
    if y.is_floating_point() and not all_finite(y):
        raise ValueError("y contains NaN or infinite values (counts must be finite)")
    if reference.is_floating_point() and not all_finite(reference):
        raise ValueError("reference contains NaN or infinite values")
    dtype = y.dtype if y.is_floating_point() else torch.get_default_dtype()
    x = y.to(torch.float64)
    acov = _lag_products(x, 5)
    pinv = _cubic_design(reference).to(x.device)
    diffs = torch.sort(torch.diff(x), -1)[0]
    cubic = (diffs @ pinv.T)[..., 1:]
    p = x.pow(0.3)
    regressors = torch.stack([p[..., :-1], p[..., :-1] ** 2], -1)  # (..., T-1, 2)
    beta = (torch.linalg.pinv(regressors) @ p[..., 1:].unsqueeze(-1)).squeeze(-1)
    mean = x.mean(-1, keepdim=True)
    zeros = (x == 0).sum(-1, keepdim=True).to(torch.float64)
    return torch.cat([acov, cubic, beta, mean, zeros], -1).to(dtype)


class WoodSummary(torch.nn.Module):
    """:func:`wood_summaries` with a fixed reference series, as a module (``(…, T) -> (…, 13)``).

    Args:
        reference: Reference series ``(T,)``; default: a series simulated from
            :class:`RickerModel` at :data:`RICKER_TRUTH` with seed ``seed``.
        num_steps: T, when ``reference`` is None.
        seed: Seed of the default reference simulation.
    """

    num_features = 13

    def __init__(
        self, reference: torch.Tensor | None = None, num_steps: int = 50, seed: int = 0
    ) -> None:
        super().__init__()
        if reference is None:
            reference = simulate_ricker_at(RICKER_TRUTH, num_steps, seed)
        if not isinstance(reference, torch.Tensor) or reference.dim() != 1:
            raise ValueError("reference must be a 1-D tensor (T,)")
        check_tensor("reference", reference, finite=True)
        self.register_buffer("reference", reference.detach().to(torch.float64).clone())

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return wood_summaries(y, self.reference)


def simulate_ricker_at(
    params: dict[str, float], num_steps: int = 50, seed: int = 0, n0: float = 1.0
) -> torch.Tensor:
    """One Ricker series ``(T,)`` (float32 counts) at fixed parameters, from a private generator."""
    missing = [k for k in ("log_r", "sigma", "phi") if k not in params]
    if missing:
        raise ValueError(f"params must give log_r, sigma and phi, missing {missing}")
    num_steps = check_int("num_steps", num_steps)
    check_positive("n0", n0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(num_steps, generator=gen, dtype=torch.float64)
    n = ricker_population(
        torch.tensor(float(params["log_r"]), dtype=torch.float64), params["sigma"] * eps, n0
    )
    return torch.poisson(params["phi"] * n, generator=gen).float()


class GaussianLinear(PyroModule):
    """``θ ~ N(0, s_p I_D)``, ``y | θ ~ N(θ, s_n I_D)`` (sites ``theta``, ``y``; variances
    ``s_p = prior_var``, ``s_n = noise_var``, 0.1 each by default as in sbibm's gaussian_linear).

    The posterior is ``N(μ, Σ)`` with ``Σ = (1/s_p + 1/s_n)^{-1} I`` and ``μ = Σ y / s_n``:
    :meth:`posterior`.

    Args:
        dim: D.
        prior_var: Prior variance per coordinate.
        noise_var: Observation-noise variance per coordinate.
    """

    params = ("theta",)

    def __init__(self, dim: int = 10, prior_var: float = 0.1, noise_var: float = 0.1) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        for name, v in (("prior_var", prior_var), ("noise_var", noise_var)):
            check_positive(name, v)
        self.dim = dim
        self.register_buffer("prior_scale", torch.tensor(float(prior_var)).sqrt())
        self.register_buffer("noise_scale", torch.tensor(float(noise_var)).sqrt())

    def forward(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample (or condition on) ``y`` of shape ``(D,)``; returns θ."""
        if y is not None and (not isinstance(y, torch.Tensor) or y.shape[-1:] != (self.dim,)):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must have shape (..., {self.dim}), got {got}")
        zero = torch.zeros(self.dim, dtype=self.prior_scale.dtype, device=self.prior_scale.device)
        theta = pyro.sample("theta", dist.Normal(zero, self.prior_scale).to_event(1))
        pyro.sample("y", dist.Normal(theta, self.noise_scale).to_event(1), obs=y)
        return theta

    def posterior(self, y: torch.Tensor) -> dist.Normal:
        """The exact posterior ``p(θ | y)``: ``Normal`` with event shape ``(D,)``."""
        check_tensor("y", y, floating=True, finite=True)
        if y.dim() < 1 or y.shape[-1] != self.dim:
            raise ValueError(f"y must have shape (..., {self.dim}), got {tuple(y.shape)}")
        sp, sn = self.prior_scale**2, self.noise_scale**2
        var = 1.0 / (1.0 / sp + 1.0 / sn)
        return dist.Normal(var * y / sn, var.sqrt().expand(y.shape)).to_event(1)
