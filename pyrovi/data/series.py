"""Synthetic time series from stochastic differential equations, observed at given times.

Four simulators return :class:`SeriesData` with paths of shape ``(num_series, len(times), dim)``:

- :func:`ornstein_uhlenbeck` and :func:`geometric_brownian_motion` use the exact transition
  between consecutive observation times, so irregular time grids are simulated without error;
- :func:`stochastic_lorenz` (the setting of torchsde's latent-SDE Lorenz example) and
  :func:`double_well` (overdamped Langevin dynamics in a quartic double well) use Euler–Maruyama
  on a fine internal step ``dt``, each gap between observation times being split into equal steps
  no longer than ``dt``.

Conventions shared by all simulators:

- ``times`` is a 1-D strictly increasing tensor or sequence; ``times[0]`` is the time of ``x0``.
  :func:`irregular_times` draws a sorted random grid.
- Randomness comes from ``generator`` (a ``torch.Generator``) or, for convenience, ``seed``
  (a generator on ``device`` seeded with it); with neither, torch's global generator is used.
  Noise is drawn on the generator's device and moved to ``device`` if they differ.
- ``normalize=True`` standardizes each coordinate over the whole data set (all series and
  times, unbiased std, as torchsde's example does) and records ``mean`` and ``std`` in the
  result, so :meth:`SeriesData.denormalize` undoes it. ``obs_noise`` adds i.i.d. Gaussian noise
  of that standard deviation to the returned values, after normalization when both are asked.
- Everything is simulated without autograd, in ``dtype`` (default float32) on ``device``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SeriesData",
    "irregular_times",
    "ornstein_uhlenbeck",
    "geometric_brownian_motion",
    "stochastic_lorenz",
    "double_well",
]

TimesLike = Tensor | Sequence[float]
StateLike = float | Tensor | Sequence[float] | None


@dataclass(frozen=True)
class SeriesData:
    """Paths of a simulated process at observation times.

    Attributes:
        times: Observation times, shape ``(T,)``; ``times[0]`` is the time of the initial state.
        values: Observed values, shape ``(num_series, T, dim)`` (normalized and/or noisy when
            the simulator was asked for it).
        mean: Per-coordinate mean subtracted by ``normalize=True``, shape ``(dim,)``; ``None``
            when the values were not normalized.
        std: Per-coordinate standard deviation divided out by ``normalize=True``, shape
            ``(dim,)``; ``None`` when the values were not normalized.
        name: Short name of the simulator, e.g. ``"ornstein_uhlenbeck"``.
    """

    times: Tensor
    values: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None
    name: str = ""

    @property
    def num_series(self) -> int:
        """Number of independent paths, ``values.shape[0]``."""
        return self.values.shape[0]

    @property
    def dim(self) -> int:
        """Dimension of the state, ``values.shape[-1]``."""
        return self.values.shape[-1]

    def denormalize(self, values: Tensor) -> Tensor:
        """Map normalized values back to the units of the simulated process.

        Args:
            values: Values in normalized units, shape ``(..., dim)``, e.g. ``self.values`` or a
                model's predictions.

        Returns:
            ``values * std + mean``, same shape; ``values`` itself when no normalization was
            applied.
        """
        if self.mean is None or self.std is None:
            return values
        return values * self.std + self.mean

    def to(self, device: torch.device | str) -> SeriesData:
        """Return a copy with every tensor moved to ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            times=self.times.to(device),
            values=self.values.to(device),
            mean=move(self.mean),
            std=move(self.std),
        )


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_real(name: str, value: float, *, nonnegative: bool = False, positive: bool = False):
    try:
        x = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    if nonnegative and x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


def _check_dtype(dtype: torch.dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _check_times(times: TimesLike) -> list[float]:
    """Validate observation times; return them as Python floats (float64 precision)."""
    try:
        t = torch.as_tensor(times).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"times must be a 1-D tensor or sequence of observation times, got {times!r}"
        ) from None
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(
            "times must be a non-empty 1-D tensor or sequence of observation times, "
            f"got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError("times must be finite, got NaN or infinite entries")
    gaps = t.diff()
    if (gaps <= 0).any():
        i = int(torch.nonzero(gaps <= 0)[0]) + 1
        raise ValueError(
            f"times must be strictly increasing, but times[{i}] = {t[i].item()} "
            f"<= times[{i - 1}] = {t[i - 1].item()}"
        )
    return t.tolist()


def _make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    if seed is not None:
        seed = _check_count("seed", seed, minimum=0)
        return torch.Generator(device=device).manual_seed(seed)
    return generator


def _initial_state(
    x0: float | Tensor | Sequence[float],
    num_series: int,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    *,
    positive: bool = False,
) -> Tensor:
    """Broadcast ``x0`` (a number, shape ``(dim,)`` or ``(num_series, dim)``) to ``(N, dim)``."""
    try:
        x = torch.as_tensor(x0, dtype=dtype).detach().to(device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"x0 must be a number or a tensor, got {x0!r}") from None
    if x.shape not in ((), (dim,), (num_series, dim)):
        raise ValueError(
            f"x0 must be a number or have shape (dim,) = ({dim},) or (num_series, dim) = "
            f"({num_series}, {dim}), got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("x0 must be finite, got NaN or infinite entries")
    if positive and (x <= 0).any():
        raise ValueError("x0 must be > 0 everywhere (the process stays positive)")
    return x.expand(num_series, dim).clone()


# --------------------------------------------------------------------------------------------
# shared machinery


def _randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Standard normal draws on ``device``, made on the generator's device when one is given."""
    if generator is None:
        return torch.randn(shape, dtype=dtype, device=device)
    z = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
    return z.to(device)


def _num_steps(gap: float, dt: float) -> int:
    """Smallest number of equal steps of length ``<= dt`` covering ``gap`` (up to rounding)."""
    return max(1, math.ceil(gap / dt - 1e-9))


def _euler_maruyama(
    drift: Callable[[Tensor], Tensor],
    diffusion: Callable[[Tensor], Tensor],
    x0: Tensor,
    times: list[float],
    dt: float,
    generator: torch.Generator | None,
) -> Tensor:
    """Euler–Maruyama for an autonomous SDE with diagonal noise, ``dX = f(X) dt + g(X) ⊙ dW``.

    Args:
        drift: ``f``, maps states ``(N, D)`` to ``(N, D)``.
        diffusion: ``g``, maps states ``(N, D)`` to the diagonal of the diffusion ``(N, D)``.
        x0: Initial states at ``times[0]``, shape ``(N, D)``.
        times: Strictly increasing observation times, length ``T``.
        dt: Largest internal step; each gap is split into equal steps no longer than ``dt``.
        generator: Source of the Brownian increments.

    Returns:
        States at ``times``, shape ``(N, T, D)``.
    """
    x = x0
    out = [x]
    for t0, t1 in zip(times[:-1], times[1:]):
        n = _num_steps(t1 - t0, dt)
        h = (t1 - t0) / n
        sqrt_h = math.sqrt(h)
        for _ in range(n):
            dw = _randn(tuple(x.shape), generator, x.dtype, x.device) * sqrt_h
            x = x + drift(x) * h + diffusion(x) * dw
        out.append(x)
    return torch.stack(out, dim=1)


def _finish(
    name: str,
    times: list[float],
    values: Tensor,
    normalize: bool,
    obs_noise: float,
    generator: torch.Generator | None,
) -> SeriesData:
    """Normalize per coordinate and add observation noise; package the result."""
    mean = std = None
    if normalize:
        if values.shape[0] * values.shape[1] < 2:
            raise ValueError("normalize=True needs at least two observed values per coordinate")
        mean = values.mean(dim=(0, 1))
        std = values.std(dim=(0, 1))
        if not (std > 0).all():
            raise ValueError("normalize=True needs values that vary; a coordinate has zero std")
        values = (values - mean) / std
    if obs_noise > 0:
        values = values + obs_noise * _randn(
            tuple(values.shape), generator, values.dtype, values.device
        )
    t = torch.tensor(times, dtype=torch.float64).to(dtype=values.dtype, device=values.device)
    return SeriesData(times=t, values=values, mean=mean, std=std, name=name)


def _common(num_series, times, obs_noise, dtype, device, generator, seed):
    num_series = _check_count("num_series", num_series)
    ts = _check_times(times)
    obs_noise = _check_real("obs_noise", obs_noise, nonnegative=True)
    dtype = _check_dtype(dtype)
    device = torch.device(device)
    gen = _make_generator(generator, seed, device)
    return num_series, ts, obs_noise, dtype, device, gen


# --------------------------------------------------------------------------------------------
# public API


@torch.no_grad()
def irregular_times(
    num: int,
    t_end: float,
    *,
    t_start: float = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Random irregular observation times: ``t_start`` then sorted uniform times after it.

    Args:
        num: Number of times ``T >= 1`` (including ``t_start``).
        t_end: End of the interval; the ``T - 1`` random times lie in ``(t_start, t_end)``.
        t_start: First time, the time of the initial state.
        generator: Source of randomness.
        seed: Alternatively, a seed for a fresh generator on ``device``.
        dtype: Floating-point dtype of the result.
        device: Device of the result.

    Returns:
        Strictly increasing times, shape ``(num,)``, with ``times[0] == t_start``.

    Raises:
        ValueError: If ``num < 1`` or ``t_end <= t_start``.
        RuntimeError: If ``dtype`` cannot resolve ``num`` distinct times in the interval.
    """
    num = _check_count("num", num)
    t_start = _check_real("t_start", t_start)
    t_end = _check_real("t_end", t_end)
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start = {t_start}, got {t_end}")
    dtype = _check_dtype(dtype)
    device = torch.device(device)
    gen = _make_generator(generator, seed, device)
    for _ in range(10):  # redraw in the (rare) case that rounding to dtype makes a tie
        if gen is None:
            u = torch.rand(num - 1, dtype=torch.float64)
        else:
            u = torch.rand(num - 1, generator=gen, dtype=torch.float64, device=gen.device)
        u = u.cpu().sort().values
        t = torch.cat([torch.zeros(1, dtype=torch.float64), u]) * (t_end - t_start) + t_start
        t = t.to(dtype)
        if (t.diff() > 0).all():
            return t.to(device)
    raise RuntimeError(
        f"could not draw {num} distinct times in ({t_start}, {t_end}) at {dtype}; "
        "use fewer times or a wider dtype"
    )


@torch.no_grad()
def ornstein_uhlenbeck(
    num_series: int,
    times: TimesLike,
    theta: float = 1.0,
    mu: float = 0.0,
    sigma: float = 0.5,
    x0: StateLike = None,
    dim: int = 1,
    *,
    obs_noise: float = 0.0,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SeriesData:
    """Ornstein–Uhlenbeck paths ``dX = θ(μ − X) dt + σ dW``, simulated exactly.

    Coordinates are independent. Between observation times ``s < t`` the exact transition is
    ``X_t = μ + (X_s − μ) e^{−θ(t−s)} + σ sqrt((1 − e^{−2θ(t−s)}) / (2θ)) Z`` with
    ``Z ~ N(0, I)``, so irregular grids carry no discretization error.

    Args:
        num_series: Number of independent paths ``N >= 1``.
        times: Observation times, shape ``(T,)``, strictly increasing; ``times[0]`` is the time
            of ``x0`` (time units are those of ``1 / theta``).
        theta: Mean-reversion rate ``θ > 0`` (per unit time).
        mu: Long-run mean ``μ``.
        sigma: Diffusion coefficient ``σ >= 0``; the stationary variance is ``σ² / (2θ)``.
        x0: Initial state: a number, shape ``(dim,)`` or ``(N, dim)``; ``None`` draws it from
            the stationary law ``N(μ, σ² / (2θ))``.
        dim: State dimension ``D >= 1``.
        obs_noise: Standard deviation of additive Gaussian observation noise (``>= 0``).
        normalize: Standardize each coordinate over the data set (see the module docstring).
        generator: Source of randomness.
        seed: Alternatively, a seed for a fresh generator on ``device``.
        dtype: Floating-point dtype of the result.
        device: Device of the result.

    Returns:
        :class:`SeriesData` with ``values`` of shape ``(N, T, D)``.
    """
    num_series, ts, obs_noise, dtype, device, gen = _common(
        num_series, times, obs_noise, dtype, device, generator, seed
    )
    theta = _check_real("theta", theta, positive=True)
    mu = _check_real("mu", mu)
    sigma = _check_real("sigma", sigma, nonnegative=True)
    dim = _check_count("dim", dim)
    stationary_sd = sigma / math.sqrt(2 * theta)
    if x0 is None:
        x = mu + stationary_sd * _randn((num_series, dim), gen, dtype, device)
    else:
        x = _initial_state(x0, num_series, dim, dtype, device)
    out = [x]
    for t0, t1 in zip(ts[:-1], ts[1:]):
        decay = math.exp(-theta * (t1 - t0))
        sd = stationary_sd * math.sqrt(-math.expm1(-2 * theta * (t1 - t0)))
        x = mu + (x - mu) * decay + sd * _randn((num_series, dim), gen, dtype, device)
        out.append(x)
    return _finish("ornstein_uhlenbeck", ts, torch.stack(out, 1), normalize, obs_noise, gen)


@torch.no_grad()
def geometric_brownian_motion(
    num_series: int,
    times: TimesLike,
    mu: float = 0.1,
    sigma: float = 0.2,
    x0: float | Tensor | Sequence[float] = 1.0,
    dim: int = 1,
    *,
    obs_noise: float = 0.0,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SeriesData:
    """Geometric Brownian motion ``dX = μ X dt + σ X dW``, simulated exactly.

    Coordinates are independent; between ``s < t``,
    ``X_t = X_s exp((μ − σ²/2)(t − s) + σ (W_t − W_s))``, so ``E[X_t] = x0 e^{μ (t − t_0)}``.

    Args:
        num_series: Number of independent paths ``N >= 1``.
        times: Observation times, shape ``(T,)``, strictly increasing; ``times[0]`` is the time
            of ``x0``.
        mu: Drift rate ``μ`` (per unit time).
        sigma: Volatility ``σ >= 0`` (per square root of unit time).
        x0: Positive initial state: a number, shape ``(dim,)`` or ``(N, dim)``.
        dim: State dimension ``D >= 1``.
        obs_noise: Standard deviation of additive Gaussian observation noise (``>= 0``).
        normalize: Standardize each coordinate over the data set (see the module docstring).
        generator: Source of randomness.
        seed: Alternatively, a seed for a fresh generator on ``device``.
        dtype: Floating-point dtype of the result.
        device: Device of the result.

    Returns:
        :class:`SeriesData` with ``values`` of shape ``(N, T, D)``.
    """
    num_series, ts, obs_noise, dtype, device, gen = _common(
        num_series, times, obs_noise, dtype, device, generator, seed
    )
    mu = _check_real("mu", mu)
    sigma = _check_real("sigma", sigma, nonnegative=True)
    dim = _check_count("dim", dim)
    if x0 is None:
        raise TypeError("x0 must be a positive number or tensor for geometric_brownian_motion")
    x = _initial_state(x0, num_series, dim, dtype, device, positive=True)
    gaps = torch.tensor(ts, dtype=torch.float64).diff().to(dtype=dtype, device=device)
    z = _randn((num_series, len(ts) - 1, dim), gen, dtype, device)
    increments = (mu - 0.5 * sigma**2) * gaps[:, None] + sigma * gaps.sqrt()[:, None] * z
    log_x = torch.cat([torch.zeros_like(x)[:, None], increments.cumsum(1)], 1) + x.log()[:, None]
    return _finish("geometric_brownian_motion", ts, log_x.exp(), normalize, obs_noise, gen)


@torch.no_grad()
def stochastic_lorenz(
    num_series: int,
    times: TimesLike,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    noise: Sequence[float] = (0.1, 0.28, 0.3),
    x0: StateLike = None,
    *,
    dt: float = 1e-3,
    obs_noise: float = 0.0,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SeriesData:
    """Stochastic Lorenz attractor (Itô) with diagonal multiplicative noise, by Euler–Maruyama.

    ``dx = σ(y − x) dt + b₁ x dW₁``, ``dy = (x(ρ − z) − y) dt + b₂ y dW₂``,
    ``dz = (xy − βz) dt + b₃ z dW₃``, with ``(b₁, b₂, b₃) = noise``. This is the data of
    torchsde's latent-SDE Lorenz example (Li et al. 2020, §7.2), which uses
    ``times = linspace(0, 2, 100)``, ``x0 ~ N(0, I)``, ``normalize=True`` and
    ``obs_noise=0.01``; here the defaults return the clean, unnormalized process.

    Args:
        num_series: Number of independent paths ``N >= 1``.
        times: Observation times, shape ``(T,)``, strictly increasing; ``times[0]`` is the time
            of ``x0``.
        sigma: Prandtl number ``σ`` of the drift.
        rho: Rayleigh number ``ρ`` of the drift.
        beta: Geometric factor ``β`` of the drift.
        noise: Diffusion coefficients ``(b₁, b₂, b₃)``, each ``>= 0``.
        x0: Initial state: a number, shape ``(3,)`` or ``(N, 3)``; ``None`` draws
            ``x0 ~ N(0, I)``.
        dt: Largest internal Euler–Maruyama step (``> 0``); each gap between observation times
            is split into equal steps no longer than ``dt``.
        obs_noise: Standard deviation of additive Gaussian observation noise (``>= 0``), in
            normalized units when ``normalize=True``.
        normalize: Standardize each coordinate over the data set (see the module docstring).
        generator: Source of randomness.
        seed: Alternatively, a seed for a fresh generator on ``device``.
        dtype: Floating-point dtype of the result.
        device: Device of the result.

    Returns:
        :class:`SeriesData` with ``values`` of shape ``(N, T, 3)``.
    """
    num_series, ts, obs_noise, dtype, device, gen = _common(
        num_series, times, obs_noise, dtype, device, generator, seed
    )
    s = _check_real("sigma", sigma)
    r = _check_real("rho", rho)
    b = _check_real("beta", beta)
    dt = _check_real("dt", dt, positive=True)
    if isinstance(noise, str | bytes) or not isinstance(noise, Sequence | Tensor):
        raise TypeError(f"noise must be a sequence of 3 numbers, got {noise!r}")
    if len(noise) != 3:
        raise ValueError(f"noise must be a sequence of 3 numbers, got {len(noise)}")
    b123 = [_check_real(f"noise[{i}]", v, nonnegative=True) for i, v in enumerate(noise)]
    scale = torch.tensor(b123, dtype=dtype, device=device)
    if x0 is None:
        x = _randn((num_series, 3), gen, dtype, device)
    else:
        x = _initial_state(x0, num_series, 3, dtype, device)

    def drift(u: Tensor) -> Tensor:
        x1, x2, x3 = u.unbind(-1)
        return torch.stack([s * (x2 - x1), x1 * (r - x3) - x2, x1 * x2 - b * x3], -1)

    def diffusion(u: Tensor) -> Tensor:
        return u * scale

    values = _euler_maruyama(drift, diffusion, x, ts, dt, gen)
    return _finish("stochastic_lorenz", ts, values, normalize, obs_noise, gen)


@torch.no_grad()
def double_well(
    num_series: int,
    times: TimesLike,
    sigma: float = 1.0,
    barrier: float = 1.0,
    x0: StateLike = None,
    dim: int = 1,
    *,
    dt: float = 1e-3,
    obs_noise: float = 0.0,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SeriesData:
    """Overdamped Langevin dynamics in a double well, by Euler–Maruyama.

    Each coordinate follows ``dX = −U'(X) dt + σ dW`` with ``U(x) = h (x² − 1)²``
    (``h = barrier``, minima at ``±1``, barrier height ``h`` at 0), so
    ``U'(x) = 4 h x (x² − 1)`` and the stationary density is ``∝ exp(−2 U(x) / σ²)``
    (inverse temperature ``β = 2 / σ²``).

    Args:
        num_series: Number of independent paths ``N >= 1``.
        times: Observation times, shape ``(T,)``, strictly increasing; ``times[0]`` is the time
            of ``x0``.
        sigma: Diffusion coefficient ``σ >= 0``.
        barrier: Barrier height ``h >= 0`` of the potential.
        x0: Initial state: a number, shape ``(dim,)`` or ``(N, dim)``; ``None`` draws
            ``x0 ~ N(0, I)``.
        dim: Number of independent coordinates ``D >= 1``.
        dt: Largest internal Euler–Maruyama step (``> 0``); each gap between observation times
            is split into equal steps no longer than ``dt``.
        obs_noise: Standard deviation of additive Gaussian observation noise (``>= 0``).
        normalize: Standardize each coordinate over the data set (see the module docstring).
        generator: Source of randomness.
        seed: Alternatively, a seed for a fresh generator on ``device``.
        dtype: Floating-point dtype of the result.
        device: Device of the result.

    Returns:
        :class:`SeriesData` with ``values`` of shape ``(N, T, D)``.
    """
    num_series, ts, obs_noise, dtype, device, gen = _common(
        num_series, times, obs_noise, dtype, device, generator, seed
    )
    sigma = _check_real("sigma", sigma, nonnegative=True)
    h = _check_real("barrier", barrier, nonnegative=True)
    dim = _check_count("dim", dim)
    dt = _check_real("dt", dt, positive=True)
    if x0 is None:
        x = _randn((num_series, dim), gen, dtype, device)
    else:
        x = _initial_state(x0, num_series, dim, dtype, device)

    def drift(u: Tensor) -> Tensor:
        return -4.0 * h * u * (u * u - 1.0)

    def diffusion(u: Tensor) -> Tensor:
        return torch.full_like(u, sigma)

    values = _euler_maruyama(drift, diffusion, x, ts, dt, gen)
    return _finish("double_well", ts, values, normalize, obs_noise, gen)
