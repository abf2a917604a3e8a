"""``BackwardSDE``: the backward model of a :class:`~pyrovi.models.ForwardSDE`, run from ``x``.

Time convention
---------------
An :class:`~pyrovi.distributions.EulerMaruyama` path is sampled forward in its own time, so the
backward SDE is written in reversed time ``s = t_end − t``: ``y(s) = z(t_end − s)`` solves

    y(0) = x,   dy = b_φ(s, y) ds + g(t_end − s, y) dW(s),   0 ≤ s ≤ t_end

with the model's diffusion ``g`` (the same module object, read from the model at every call)
and the grid ``s_k = t_end − t_{K−k}``, so that guide and model visit the same times. The
sampled path is returned **flipped back to forward time** and without its fixed first point
``x``: the site ``"z"`` has the model's layout ``z(t_0), ..., z(t_{K−1})``. The guide's
log-density of that value is the Euler–Maruyama density of the reversed chain started at ``x``.

Drift parametrizations (``drift=``):

* ``"score"`` (default): ``b(s, y) = −f_θ(t, y) + g(t, y)² h_φ(t, y)`` with ``t = t_end − s`` and
  ``h_φ`` a :class:`~pyrovi.models.forward_sde.TimeMLP`. The exact time reversal of the forward
  SDE has this form with ``h = ∇ log p_t`` (Anderson 1982), the marginal score; started at ``x``
  it is the exact posterior over paths given ``z(t_end) = x`` (the reversed process is Markov).
* ``"mlp"``: ``b(s, y) = h_φ(t_end − s, y)``, independent of the model's drift.
* a callable or module ``b(s, y)`` in the guide's own time ``s``, e.g. a fixed noising
  Ornstein–Uhlenbeck drift ``−y / 2`` (with ``learn=False``: "fix the backward model and learn
  only the forward one", a continuous-time diffusion model).
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from torch import nn

from pyrovi._checks import check_bool, check_int
from pyrovi.distributions.sde import EulerMaruyama
from pyrovi.models.forward_sde import TimeMLP

__all__ = ["BackwardSDE", "TimeReversedPath"]


class TimeReversedPath(TorchDistribution):
    """Paths of a reversed-time :class:`EulerMaruyama` started at a fixed state, flipped.

    ``base`` runs in time ``s`` from the tensor ``base.init`` (``(*batch, d)``). A sample is
    ``base.rsample()[..., 1:, :].flip(-2)``: the path in the original time order with the
    (fixed) starting state dropped, event shape ``(len(base.times) − 1, d)``. ``log_prob``
    restores the starting state and scores the path with ``base``'s Euler–Maruyama density.

    Args:
        base: An :class:`EulerMaruyama` with a tensor ``init`` and ``substeps=1``.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, base: EulerMaruyama, validate_args: bool | None = None) -> None:
        if not isinstance(base, EulerMaruyama) or not isinstance(base.init, torch.Tensor):
            raise ValueError("base must be an EulerMaruyama with a tensor initial state")
        if base.substeps != 1:
            raise ValueError(f"base must have substeps=1, got {base.substeps}")
        self.base = base
        event = torch.Size((len(base.times) - 1, base.state_dim))
        super().__init__(base.batch_shape, event, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> TimeReversedPath:  # noqa: D102
        return TimeReversedPath(self.base.expand(batch_shape), self._validate_args)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        return self.base.rsample(sample_shape)[..., 1:, :].flip(-2)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        start = self.base.init
        start = start.expand(value.shape[:-2] + start.shape[-1:]).unsqueeze(-2)
        return self.base.log_prob(torch.cat([start, value.flip(-2)], dim=-2))


class _ReversedCoefficient:
    """``c(t_end − s, y)``: a forward-time coefficient evaluated in reversed time."""

    def __init__(self, fn: Callable, t_end: float) -> None:
        self.fn, self.t_end = fn, t_end

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(self.t_end - s, y)


class _ScoreDrift:
    """``b(s, y) = −f(t, y) + g(t, y)² h(t, y)`` with ``t = t_end − s``."""

    def __init__(self, model: nn.Module, net: nn.Module) -> None:
        self.model, self.net = model, net

    def __call__(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = self.model.t_end - s
        g = self.model.diffusion(t, y)
        return -self.model.drift(t, y) + g * g * self.net(t, y)


class BackwardSDE(PyroModule):
    """Guide for a :class:`~pyrovi.models.ForwardSDE`: a reversed-time SDE started at ``x``.

    Call as ``guide(x)`` with ``x`` ``(B, d)``; samples the site ``"z"`` ``(B, K, d)`` in forward
    time order and returns it. See the module docstring for the time convention.

    Args:
        model: The :class:`~pyrovi.models.ForwardSDE` (held, not registered: its diffusion is
            shared and its parameters stay the model's).
        drift: ``"score"``, ``"mlp"`` or a callable / module ``b(s, y)`` in reversed time.
        hidden: Hidden width of the default nets.
        learn: Learn the guide's own parameters (``False`` freezes them: a fixed backward model).
    """

    def __init__(
        self,
        model: nn.Module,
        drift: str | Callable | nn.Module = "score",
        hidden: int = 64,
        *,
        learn: bool = True,
    ) -> None:
        super().__init__()
        if not all(hasattr(model, a) for a in ("drift", "diffusion", "times", "t_end", "x_dim")):
            raise TypeError(f"model must be a ForwardSDE, got {type(model).__name__}")
        object.__setattr__(self, "_model", model)  # shared, not a child: no double registration
        hidden = check_int("hidden", hidden)
        learn = check_bool("learn", learn)
        if isinstance(drift, str):
            if drift not in ("score", "mlp"):
                raise ValueError(
                    f"drift must be 'score', 'mlp' or a callable b(s, y), got {drift!r}"
                )
            self.net = TimeMLP(model.x_dim, hidden, model.t_end)
            self.kind = drift
        elif callable(drift):
            self.drift_fn = drift
            self.kind = "given"
        else:
            raise ValueError(f"drift must be 'score', 'mlp' or a callable b(s, y), got {drift!r}")
        if not learn:
            self.requires_grad_(False)

    @property
    def model(self) -> nn.Module:
        """The forward model whose diffusion and grid the guide shares."""
        return self._model

    def drift(self) -> Callable:
        """The reversed-time drift ``b(s, y)``."""
        if self.kind == "score":
            return _ScoreDrift(self._model, self.net)
        if self.kind == "mlp":
            return _ReversedCoefficient(self.net, self._model.t_end)
        return self.drift_fn

    def path_distribution(self, x: torch.Tensor) -> TimeReversedPath:
        """The guide's distribution over the forward-ordered latent path given ``x``."""
        model = self._model
        s_grid = (model.t_end - model.times.flip(0)).clamp(min=0.0).to(x.dtype)
        s_grid[0] = 0.0
        sde = EulerMaruyama(
            self.drift(), _ReversedCoefficient(model.diffusion, model.t_end), x, s_grid
        )
        return TimeReversedPath(sde)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The guide; returns the path ``(B, K, d)`` in forward time."""
        d = self._model.x_dim
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != d:
            raise ValueError(
                f"x must be a tensor of shape (batch, x_dim={d}), got "
                f"{getattr(x, 'shape', type(x).__name__)}"
            )
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.path_distribution(x))
