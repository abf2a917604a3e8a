"""Networks for SDE coefficients and series encoders (the latent SDE of Li et al. 2020).

Every coefficient module is called as ``module(t, x)`` with ``x`` of shape ``(..., d)`` and ``t``
a tensor broadcastable against ``x[..., :1]`` (what :class:`~pyrovi.distributions.EulerMaruyama`
passes), and returns ``(..., d)``.
"""

from __future__ import annotations

import bisect
import math

import torch
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_bool, check_hidden_dims, check_positive
from pyrovi._validation import positive_int as _positive
from pyrovi.nn.mlp import MLP

__all__ = ["DriftMLP", "OUDrift", "DiagonalDiffusion", "ContextDrift", "SeriesEncoder"]


class DriftMLP(nn.Module):
    """A time-homogeneous drift ``f(t, x) = MLP(x)`` with softplus hidden layers.

    Args:
        dim: State dimension d.
        hidden: Widths of the hidden layers.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        hidden = check_hidden_dims(hidden, "hidden")
        self.net = MLP(_positive("dim", dim), hidden, dim, activation=nn.Softplus)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x)


class OUDrift(nn.Module):
    """Ornstein–Uhlenbeck drift ``f(t, x) = −θ (x − μ)`` with θ > 0 (per coordinate).

    Args:
        dim: State dimension d.
        theta: Initial mean-reversion rate (1/time).
        learn: Learn θ and μ (θ through its logarithm) instead of keeping them fixed.
    """

    def __init__(self, dim: int, theta: float = 1.0, learn: bool = False) -> None:
        super().__init__()
        theta = check_positive("theta", theta)
        learn = check_bool("learn", learn)
        log_theta = torch.full((_positive("dim", dim),), math.log(theta))
        mu = torch.zeros(dim)
        if learn:
            self.log_theta, self.mu = nn.Parameter(log_theta), nn.Parameter(mu)
        else:
            self.register_buffer("log_theta", log_theta)
            self.register_buffer("mu", mu)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -self.log_theta.exp() * (x - self.mu)


class DiagonalDiffusion(nn.Module):
    """Diagonal diffusion ``g_i(x_i) = sigmoid(net_i(x_i))`` with one small net per coordinate.

    Each coordinate's diffusion depends on that coordinate only (what diagonal noise with
    Milstein or Stratonovich conversion assumes), through ``1 -> hidden -> 1`` nets with a
    softplus hidden layer, evaluated for all coordinates at once (no Python loop). Values lie in
    ``(0, 1)`` (times ``scale``).

    Args:
        dim: State dimension d.
        hidden: Hidden width of each coordinate's net.
        scale: Upper bound of the diffusion (units of x per sqrt(time)).
    """

    def __init__(self, dim: int, hidden: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        dim, hidden = _positive("dim", dim), _positive("hidden", hidden)
        self.scale = check_positive("scale", scale)
        bound = 1.0 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(dim, hidden).uniform_(-1.0, 1.0))
        self.b1 = nn.Parameter(torch.empty(dim, hidden).uniform_(-1.0, 1.0))
        self.w2 = nn.Parameter(torch.empty(dim, hidden).uniform_(-bound, bound))
        self.b2 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = F.softplus(torch.addcmul(self.b1, x.unsqueeze(-1), self.w1))  # (..., d, hidden)
        g = torch.sigmoid(torch.linalg.vecdot(h, self.w2) + self.b2)
        return g if self.scale == 1.0 else self.scale * g


class ContextDrift(nn.Module):
    """Posterior drift ``f(t, x, c(t))``: an MLP on the state and a time-indexed context.

    ``bind(times, context)`` returns the callable ``(t, x) -> drift`` for one batch of series:
    during ``[times[i], times[i+1])`` the drift sees ``context[:, i + 1]`` (the encoding of the
    observations still to come, from a reversed-time encoder), as in Li et al. (2020). The
    context's contribution to the first layer is computed once per batch, not once per step.

    Args:
        dim: State dimension d.
        context_dim: Context features C.
        hidden: Hidden width (two softplus layers).
    """

    def __init__(self, dim: int, context_dim: int, hidden: int = 128) -> None:
        super().__init__()
        dim, context_dim = _positive("dim", dim), _positive("context_dim", context_dim)
        hidden = _positive("hidden", hidden)
        self.state_in = nn.Linear(dim, hidden)
        self.context_in = nn.Linear(context_dim, hidden, bias=False)
        self.body = nn.Sequential(nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus())
        self.out = nn.Linear(hidden, dim)

    def bind(self, times: torch.Tensor, context: torch.Tensor) -> _BoundContextDrift:
        """The drift for series with context ``(B, T, C)`` observed at ``times`` ``(T,)``."""
        if context.dim() != 3 or context.shape[1] != times.shape[0]:
            raise ValueError(
                f"context must have shape (B, len(times)={times.shape[0]}, C), got "
                f"{tuple(context.shape)}"
            )
        return _BoundContextDrift(self, times, self.context_in(context))


class _BoundContextDrift:
    def __init__(self, net: ContextDrift, times: torch.Tensor, projected: torch.Tensor) -> None:
        self.net, self.times, self.projected = net, times, projected  # projected: (B, T, H)
        self._on_cpu = times.device.type == "cpu"
        self._grid = times.tolist() if self._on_cpu else None
        self._per_time = projected.unbind(1) if self._on_cpu else None

    def _context(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        last = self.projected.shape[1] - 1
        if t.dim() == 0 and self._on_cpu:  # one step of a sampling loop: a cheap lookup
            return self._per_time[min(bisect.bisect_right(self._grid, float(t)), last)]
        times = self.times.to(dtype=x.dtype)
        index = torch.searchsorted(times, t.reshape(-1).to(x.dtype), right=True).clamp(max=last)
        ctx = self.projected.index_select(1, index)  # (B, n, H)
        if t.dim() == 0:
            return ctx.squeeze(1)  # (B, H)
        # t is (n, 1, ..., 1) and x is (n, ..., B, d): put the time axis first
        ctx = ctx.movedim(1, 0)
        return ctx.reshape((ctx.shape[0],) + (1,) * (x.dim() - 3) + ctx.shape[1:])

    def __call__(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.net.state_in(x) + self._context(t, x)
        return self.net.out(self.net.body(h))


class SeriesEncoder(nn.Module):
    """GRU over a series read backwards in time: a context per time for the posterior SDE.

    ``forward(xs)`` with ``xs`` of shape ``(B, T, D)`` returns ``(B, T, C)``, where entry ``i``
    summarizes the observations ``i, i+1, ..., T-1``. Missing observations (``mask`` False) are
    fed as zeros with a missing flag.

    Args:
        obs_dim: Observed features D.
        hidden: GRU width.
        context_dim: Context features C.
    """

    def __init__(self, obs_dim: int, hidden: int = 128, context_dim: int = 64) -> None:
        super().__init__()
        self.obs_dim = _positive("obs_dim", obs_dim)
        self.gru = nn.GRU(self.obs_dim + 1, _positive("hidden", hidden), batch_first=True)
        self.out = nn.Linear(hidden, _positive("context_dim", context_dim))

    def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        if not isinstance(xs, torch.Tensor) or xs.dim() != 3 or xs.shape[-1] != self.obs_dim:
            got = tuple(xs.shape) if isinstance(xs, torch.Tensor) else type(xs).__name__
            raise ValueError(f"xs must have shape (batch, T, obs_dim={self.obs_dim}), got {got}")
        if mask is not None and (
            not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(xs.shape[:2])
        ):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask must have shape {tuple(xs.shape[:2])} (batch, T), got {got}")
        if mask is None:
            seen = xs.new_ones(xs.shape[:-1] + (1,))
        else:
            seen = mask.to(xs.dtype).unsqueeze(-1)
            xs = torch.where(seen > 0, xs, torch.zeros_like(xs))
        inputs = torch.cat([xs, seen], dim=-1).flip(1)
        hidden, _ = self.gru(inputs)
        return self.out(hidden.flip(1))
