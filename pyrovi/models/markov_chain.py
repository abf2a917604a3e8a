"""``MarkovChainVAE``: an autoencoder whose forward (generative) model is a T-step Markov chain.

Forward model (lecture 000, "Markov chain autoencoders")::

    p_F(z_0, ..., z_{T-1}, x = z_T) = p(z_0) Π_{t=0}^{T-1} p_θ(z_{t+1} | z_t)

with Gaussian transitions ``p_θ(z_{t+1} | z_t) = N(μ_θ(t, z_t), diag σ_θ(t, z_t)²)``. Paired with
the backward chain ``q_φ(z_t | z_{t+1})`` of :class:`~pyrovi.guides.BackwardChain` (sampled from
``x`` down to ``z_0``), Pyro's ``Trace_ELBO`` is the lecture's loss

    −ELBO = E_{p_B}[ log q(z_0|z_1)/p(z_0) + Σ_t log q(z_{t+1}|z_{t+2}) / p(z_{t+1}|z_t) ]

(with ``z_T = x``; the last transition ``p(x | z_{T-1})`` is the observed site). With
``BackwardChain(order="model")`` — the posterior written as ``q(z_0|x) Π q(z_{t+1}|z_t, x)`` —
``TraceMeanField_ELBO`` uses the closed-form Gaussian KL of every step instead (see
:mod:`pyrovi.guides.backward_chain` for why that needs the model's order).

Sites, inside ``pyro.plate("data", B)``: ``"z_0"``, ..., ``"z_{T-1}"`` (each ``(B, d)``, event
``(d,)``) and the observed ``"x"`` ``(B, d)``.

A transition is any callable ``transition(t, *inputs) -> (loc, scale)`` with ``t`` the integer
step index and ``inputs`` tensors of shape ``(..., d)`` (broadcast against each other);
:class:`GaussianTransitionMLP` and :class:`AffineGaussianTransition` are the two built in.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_bool
from pyrovi.models._checks import batch_of
from pyrovi.models._checks import positive_int as _positive_int
from pyrovi.nn.registration import submodule

__all__ = ["MarkovChainVAE", "GaussianTransitionMLP", "AffineGaussianTransition"]

TRANSITIONS = ("mlp", "affine")


def _check_step(t: int, num_steps: int) -> None:
    if not 0 <= t < num_steps:
        raise IndexError(f"t: step index {t} out of range for {num_steps} steps")


class GaussianTransitionMLP(nn.Module):
    """A Gaussian transition ``N(loc, diag scale²)`` whose parameters an MLP computes.

    ``forward(t, *inputs)``: the inputs ``(..., d_i)`` are broadcast and concatenated, the step
    index ``t`` enters through a learned embedding added to the first hidden layer. The mean is
    residual on the first input when it has the output dimension (``loc = inputs[0] + Δ``), which
    starts the chain near the identity map.

    Args:
        in_dim: Total input features (the sum of the inputs' last dimensions).
        out_dim: Output dimension d.
        num_steps: Number of step indices ``t`` (0 ≤ t < num_steps).
        hidden: Hidden width (two softplus layers).
        min_scale: Lower bound added to the softplus of the scale.
        init_scale: Scale at initialization (approximately).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_steps: int,
        hidden: int = 64,
        *,
        min_scale: float = 1e-4,
        init_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_dim = _positive_int("in_dim", in_dim)
        self.out_dim = _positive_int("out_dim", out_dim)
        self.num_steps = _positive_int("num_steps", num_steps)
        hidden = _positive_int("hidden", hidden)
        if not (
            isinstance(min_scale, int | float)
            and isinstance(init_scale, int | float)
            and math.isfinite(init_scale)
            and 0 <= min_scale < init_scale
        ):
            raise ValueError(
                f"need 0 <= min_scale < init_scale, got min_scale={min_scale!r}, "
                f"init_scale={init_scale!r}"
            )
        self.min_scale = float(min_scale)
        self.inp = nn.Linear(in_dim, hidden)
        self.step = nn.Embedding(num_steps, hidden)
        nn.init.normal_(self.step.weight, std=0.1)
        self.body = nn.Sequential(nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus())
        self.out = nn.Linear(hidden, 2 * out_dim)
        nn.init.zeros_(self.out.weight)
        raw = math.log(math.expm1(init_scale - min_scale))
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[out_dim:] = raw

    def forward(self, t: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        _check_step(t, self.num_steps)
        parts = torch.broadcast_tensors(*inputs) if len(inputs) > 1 else inputs
        h = self.inp(torch.cat(parts, dim=-1)) + self.step.weight[t]
        delta, raw = self.out(self.body(h)).chunk(2, dim=-1)
        first = parts[0]
        loc = first + delta if first.shape[-1] == self.out_dim else delta
        return loc, F.softplus(raw) + self.min_scale


class AffineGaussianTransition(nn.Module):
    """A per-step affine Gaussian transition with diagonal weights.

    ``forward(t, *inputs)`` returns ``loc = Σ_i weight[t, i] ⊙ inputs[i] + bias[t]`` and
    ``scale = exp(log_scale[t])``; every input has the output dimension d. This family contains
    the exact backward (and forward-order posterior) transitions of a linear-Gaussian chain with
    independent coordinates.

    Args:
        num_steps: Number of step indices.
        dim: Dimension d of the inputs and the output.
        num_inputs: Number of inputs.
        weight: Initial weights ``(num_steps, num_inputs, d)`` (default: 1 for the first input,
            0 for the others).
        bias: Initial biases ``(num_steps, d)`` (default 0).
        scale: Initial scales ``(num_steps, d)``, positive (default 0.5).
        learn: Learn the parameters (``False`` keeps them as fixed buffers).
    """

    def __init__(
        self,
        num_steps: int,
        dim: int,
        num_inputs: int = 1,
        *,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        learn: bool = True,
    ) -> None:
        super().__init__()
        self.num_steps = _positive_int("num_steps", num_steps)
        self.dim = _positive_int("dim", dim)
        self.num_inputs = _positive_int("num_inputs", num_inputs)
        check_bool("learn", learn)
        shapes = {
            "weight": (num_steps, num_inputs, dim),
            "bias": (num_steps, dim),
            "scale": (num_steps, dim),
        }
        if weight is None:
            weight = torch.zeros(shapes["weight"])
            weight[:, 0] = 1.0
        if bias is None:
            bias = torch.zeros(shapes["bias"])
        if scale is None:
            scale = torch.full(shapes["scale"], 0.5)
        values = {"weight": weight, "bias": bias, "scale": scale}
        for name, value in values.items():
            value = torch.as_tensor(value)
            if tuple(value.shape) != shapes[name]:
                raise ValueError(f"{name} must have shape {shapes[name]}, got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} must be finite")
        if not (torch.as_tensor(scale) > 0).all():
            raise ValueError("scale must be positive")
        tensors = {
            "weight": torch.as_tensor(weight).clone(),
            "bias": torch.as_tensor(bias).clone(),
            "log_scale": torch.as_tensor(scale).log(),
        }
        for name, value in tensors.items():
            if learn:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def forward(self, t: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        _check_step(t, self.num_steps)
        if len(inputs) != self.num_inputs:
            raise ValueError(f"expected {self.num_inputs} inputs, got {len(inputs)}")
        loc = self.bias[t]
        for i, z in enumerate(inputs):
            loc = loc + self.weight[t, i] * z
        scale = self.log_scale[t].exp()
        return loc, scale.expand_as(loc)


def make_transition(
    transition: str | nn.Module,
    num_steps: int,
    dim: int,
    num_inputs: int,
    hidden: int,
    name: str = "transition",
) -> nn.Module:
    """A transition module from a name (``"mlp"``, ``"affine"``) or the module itself."""
    hidden = _positive_int("hidden", hidden)
    if isinstance(transition, nn.Module):
        return transition
    if transition == "mlp":
        return GaussianTransitionMLP(num_inputs * dim, dim, num_steps, hidden)
    if transition == "affine":
        return AffineGaussianTransition(num_steps, dim, num_inputs)
    raise ValueError(f"{name} must be one of {TRANSITIONS} or an nn.Module, got {transition!r}")


def _prior_tensor(name: str, value: float | torch.Tensor, dim: int) -> torch.Tensor:
    """A finite scalar or ``(dim,)`` value as a ``(dim,)`` tensor, or ``ValueError``."""
    try:
        t = torch.as_tensor(value, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name} must be a number or a tensor of shape ({dim},), got {value!r}"
        ) from None
    if t.shape not in ((), (dim,), (1,)):
        raise ValueError(f"{name} must be a number or have shape ({dim},), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t.expand(dim)


class MarkovChainVAE(PyroModule):
    """Forward model ``p(z_0) Π_t p_θ(z_{t+1} | z_t)`` with ``x = z_T`` observed.

    Call as ``model(x)`` with ``x`` of shape ``(B, x_dim)``, or ``model(None, num_samples=B)`` to
    sample from the model (returns ``x``). Pair with :class:`~pyrovi.guides.BackwardChain`.

    Args:
        T: Number of transitions (latent states ``z_0 ... z_{T-1}``; ``z_T = x``).
        x_dim: Dimension d of the data and of every latent state.
        hidden: Hidden width of the default MLP transitions.
        transition: ``"mlp"`` (:class:`GaussianTransitionMLP`), ``"affine"``
            (:class:`AffineGaussianTransition`) or a module ``(t, z_t) -> (loc, scale)`` for
            ``t = 0..T-1`` (e.g. fixed Euler–Maruyama transitions of a known SDE).
        prior_loc: Mean of ``p(z_0) = N(prior_loc, prior_scale²)`` (scalar or ``(d,)``).
        prior_scale: Its standard deviation (positive).
        learn_prior: Learn the prior's mean and log-scale.
    """

    def __init__(
        self,
        T: int,
        x_dim: int,
        hidden: int = 64,
        *,
        transition: str | nn.Module = "mlp",
        prior_loc: float | torch.Tensor = 0.0,
        prior_scale: float | torch.Tensor = 1.0,
        learn_prior: bool = False,
    ) -> None:
        super().__init__()
        self.T = _positive_int("T", T)
        self.x_dim = _positive_int("x_dim", x_dim)
        check_bool("learn_prior", learn_prior)
        self.transition = make_transition(transition, T, x_dim, 1, hidden)
        loc = _prior_tensor("prior_loc", prior_loc, x_dim).clone()
        scale = _prior_tensor("prior_scale", prior_scale, x_dim)
        if not (scale > 0).all():
            raise ValueError(f"prior_scale must be positive, got {prior_scale!r}")
        if learn_prior:
            self.prior_loc = nn.Parameter(loc)
            self.prior_log_scale = nn.Parameter(scale.log().clone())
        else:
            self.register_buffer("prior_loc", loc)
            self.register_buffer("prior_log_scale", scale.log().clone())

    @property
    def site_names(self) -> list[str]:
        """Latent site names in the model's order: ``["z_0", ..., "z_{T-1}"]``."""
        return [f"z_{t}" for t in range(self.T)]

    def prior(self) -> dist.Distribution:
        """``p(z_0)``: a Normal with event shape ``(d,)``."""
        return dist.Normal(self.prior_loc, self.prior_log_scale.exp()).to_event(1)

    def step(self, t: int, z: torch.Tensor) -> dist.Distribution:
        """``p_θ(z_{t+1} | z_t)`` for ``z_t`` of shape ``(..., d)``; event shape ``(d,)``."""
        loc, scale = submodule(self, "transition")(t, z)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor | None = None, *, num_samples: int | None = None):
        """The model; returns ``x`` (the observed or sampled final state)."""
        batch = batch_of(x, self.x_dim, num_samples)
        prior = self.prior()
        with pyro.plate("data", batch):
            z = pyro.sample("z_0", prior)
            for t in range(self.T - 1):
                z = pyro.sample(f"z_{t + 1}", self.step(t, z))
            return pyro.sample("x", self.step(self.T - 1, z), obs=x)

    @torch.no_grad()
    def sample_chain(self, num_samples: int) -> torch.Tensor:
        """Ancestral samples of the whole chain ``(num_samples, T + 1, d)`` (last entry: x)."""
        z = self.prior().sample((_positive_int("num_samples", num_samples),))
        states = [z]
        for t in range(self.T):
            z = self.step(t, z).sample()
            states.append(z)
        return torch.stack(states, dim=-2)
