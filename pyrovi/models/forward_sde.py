"""``ForwardSDE``: the continuous-time limit of the Markov-chain autoencoder's forward model.

The forward (generative) model is an Itô SDE on ``[0, t_end]`` discretized by Euler–Maruyama on
the grid ``t_k = k Δt`` (``k = 0..K``, ``Δt = t_end / K``)::

    z(0) ~ p(z_0),   dz = f_θ(t, z) dt + g(t, z) dW,   x = z(t_end)

Sites, inside ``pyro.plate("data", B)``:

* ``"z"``: the latent path ``z(t_0), ..., z(t_{K−1})`` as one :class:`EulerMaruyama` sample,
  shape ``(B, K, d)``, stored **in forward time** (row k is ``z(t_k)``);
* ``"x"``: the final Euler–Maruyama step ``N(z_{K−1} + f Δt, g² Δt)``, observed.

Its guide is :class:`~pyrovi.guides.BackwardSDE`, an SDE run from ``x`` backwards in time (see
there for the time-reversal convention). Both score paths with the exact Euler–Maruyama
transition densities on the same grid, so ``Trace_ELBO`` is the Markov-chain autoencoder loss of
:class:`~pyrovi.models.MarkovChainVAE` with Euler–Maruyama transitions in both directions; as
``Δt → 0`` with a shared diffusion it becomes the path-space KL between the two SDEs.

Uses: learn the drift (a generative model; with a fixed noising backward SDE this is a
continuous-time diffusion model), or fix the dynamics (``learn=False``, e.g. a known force
field from :mod:`pyrovi.models.potentials`) and learn only the backward SDE, which then infers
the trajectories that led to measured end states.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.distributions import Distribution
from torch.nn import functional as F

from pyrovi._checks import check_bool, check_output, check_positive
from pyrovi.distributions.sde import EulerMaruyama
from pyrovi.models._checks import batch_of
from pyrovi.models._checks import positive_int as _positive_int

__all__ = ["ForwardSDE", "TimeMLP", "ConstantDiffusion"]


class TimeMLP(nn.Module):
    """``h(t, x) = MLP([x, t])``: a time-dependent vector field ``(..., d) -> (..., d)``.

    ``t`` is a tensor broadcastable against ``x[..., :1]`` (the :class:`EulerMaruyama`
    convention). The output layer starts at zero.

    Args:
        dim: State dimension d.
        hidden: Hidden width (two SiLU layers).
        t_scale: Times are divided by this before entering the net (e.g. ``t_end``).
    """

    def __init__(self, dim: int, hidden: int = 64, t_scale: float = 1.0) -> None:
        super().__init__()
        self.dim, hidden = _positive_int("dim", dim), _positive_int("hidden", hidden)
        self.t_scale = check_positive("t_scale", t_scale)
        self.inp = nn.Linear(dim + 1, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device) / self.t_scale
        t = t.reshape(t.shape + (1,) * max(0, x.dim() - t.dim())) if t.dim() else t
        h = self.inp(torch.cat([x, t.expand(x.shape[:-1] + (1,))], dim=-1))
        return self.out(F.silu(self.mid(F.silu(h))))


class ConstantDiffusion(nn.Module):
    """A constant diagonal diffusion ``g(t, x) = σ`` (scalar or ``(d,)``), optionally learned.

    Args:
        sigma: Positive value(s), units of x per √time.
        learn: Learn ``log σ``.
    """

    def __init__(self, sigma: float | torch.Tensor, learn: bool = False) -> None:
        super().__init__()
        check_bool("learn", learn)
        sigma = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
        if sigma.dim() > 1 or not (sigma > 0).all() or not torch.isfinite(sigma).all():
            raise ValueError(f"diffusion: a constant must be positive, scalar or (d,), got {sigma}")
        log_sigma = sigma.reshape(-1).log()
        if learn:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.log_sigma.exp().to(dtype=x.dtype)


class ForwardSDE(PyroModule):
    """Forward-time SDE model whose final state is the observation (see the module docstring).

    Call as ``model(x)`` with ``x`` ``(B, x_dim)``, or ``model(None, num_samples=B)`` to simulate
    (returns ``x``). The grid is the buffer ``times`` ``(K + 1,)``.

    Args:
        x_dim: State dimension d.
        t_end: Final time (the time of ``x``).
        num_steps: Euler–Maruyama steps K (≥ 2).
        drift: ``"mlp"`` (a :class:`TimeMLP`) or a callable / module ``f(t, z)`` in forward time.
        diffusion: A positive constant (scalar or ``(d,)``) or a module ``g(t, z)``; the guide
            shares this object.
        init: ``p(z_0)``: a distribution with event shape ``(d,)`` (default ``N(0, I)``).
        learn: Learn the drift and diffusion parameters (``False`` freezes them: known dynamics).
        learn_diffusion: Learn a constant diffusion's ``log σ`` (with ``learn``).
        hidden: Hidden width of the default drift net.
    """

    def __init__(
        self,
        x_dim: int,
        t_end: float = 1.0,
        num_steps: int = 50,
        *,
        drift: str | Callable | nn.Module = "mlp",
        diffusion: float | torch.Tensor | nn.Module = 1.0,
        init: Distribution | None = None,
        learn: bool = True,
        learn_diffusion: bool = False,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.x_dim = _positive_int("x_dim", x_dim)
        check_bool("learn", learn)
        check_bool("learn_diffusion", learn_diffusion)
        if not (isinstance(t_end, int | float) and math.isfinite(t_end) and t_end > 0):
            raise ValueError(f"t_end must be a positive number, got {t_end!r}")
        num_steps = _positive_int("num_steps", num_steps)
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        self.t_end, self.num_steps = float(t_end), num_steps
        self.register_buffer(
            "times", torch.linspace(0.0, self.t_end, num_steps + 1, dtype=torch.get_default_dtype())
        )
        if isinstance(drift, str):
            if drift != "mlp":
                raise ValueError(f"drift must be 'mlp' or a callable f(t, z), got {drift!r}")
            drift = TimeMLP(x_dim, hidden, self.t_end)
        elif not callable(drift):
            raise ValueError(f"drift must be 'mlp' or a callable f(t, z), got {drift!r}")
        self.drift = drift
        if not isinstance(diffusion, nn.Module):
            diffusion = ConstantDiffusion(diffusion, learn=learn_diffusion)
        self.diffusion = diffusion
        if init is not None and (
            not isinstance(init, Distribution) or tuple(init.event_shape) != (x_dim,)
        ):
            raise ValueError(
                f"init must be a distribution with event_shape ({x_dim},), got {init!r}"
            )
        self._init = init
        if not learn:
            for module in (self.drift, self.diffusion):
                if isinstance(module, nn.Module):
                    module.requires_grad_(False)

    @property
    def dt(self) -> float:
        """Step Δt = t_end / K."""
        return self.t_end / self.num_steps

    def initial(self) -> Distribution:
        """``p(z_0)`` (event shape ``(d,)``)."""
        if self._init is not None:
            return self._init
        zeros = torch.zeros(self.x_dim, dtype=self.times.dtype, device=self.times.device)
        return dist.Normal(zeros, 1.0).to_event(1)

    def path_distribution(self) -> EulerMaruyama:
        """The prior over the latent path ``z(t_0..t_{K−1})`` (event ``(K, d)``)."""
        return EulerMaruyama(self.drift, self.diffusion, self.initial(), self.times[:-1])

    def last_step(self, z: torch.Tensor) -> dist.Distribution:
        """``p(x | z_{K−1})``: the final Euler–Maruyama step (event ``(d,)``)."""
        t = self.times[-2].to(z.dtype)
        shape = tuple(z.shape)
        f = check_output("drift", self.drift(t, z), shape, last=self.x_dim, what=f"{shape}")
        g = self.diffusion(t, z)
        if isinstance(g, torch.Tensor) and g.dim() == 0:
            g = g.reshape(1)
        g = check_output("diffusion", g, shape, what=f"{shape}, (..., 1) or (d,)")
        loc = z + f * self.dt
        scale = (g * math.sqrt(self.dt)).expand_as(loc)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor | None = None, *, num_samples: int | None = None):
        """The model; returns ``x``."""
        batch = batch_of(x, self.x_dim, num_samples)
        with pyro.plate("data", batch):
            path = pyro.sample("z", self.path_distribution())
            return pyro.sample("x", self.last_step(path[..., -1, :]), obs=x)

    @torch.no_grad()
    def simulate(self, num_samples: int) -> torch.Tensor:
        """Forward paths including the final state: ``(num_samples, K + 1, d)``."""
        path = self.path_distribution().expand([_positive_int("num_samples", num_samples)])
        z = path.sample()
        x = self.last_step(z[..., -1, :]).sample()
        return torch.cat([z, x.unsqueeze(-2)], dim=-2)
