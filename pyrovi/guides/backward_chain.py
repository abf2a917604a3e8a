"""``BackwardChain``: the backward (encoding) chain of a :class:`~pyrovi.models.MarkovChainVAE`.

``order="reverse"`` (default) is the lecture's backward model
``p_B = p_D(x) Π_t q_φ(z_t | z_{t+1})``: starting from ``z_T = x`` it samples ``z_{T-1}``, then
``z_{T-2}``, ..., ``z_0``, each from a Gaussian ``N(μ_φ(t, z_{t+1}), diag σ_φ(t, z_{t+1})²)``.
With the model, ``Trace_ELBO`` is the Markov-chain autoencoder loss.

``order="model"`` writes the same kind of posterior in the model's order,
``q(z_0 | x) Π_t q(z_{t+1} | z_t, x)`` (the exact posterior of a Markov chain has this form
too). Model and guide then condition every site on the same earlier variables, so
``TraceMeanField_ELBO`` replaces each step's Monte Carlo log-ratio by the closed-form Gaussian KL
``KL(q(z_{t+1} | z_t, x) ‖ p(z_{t+1} | z_t))``. With ``order="reverse"`` this substitution would
be biased (the model's ``p(z_t | z_{t-1})`` is conditioned on a variable the guide samples
*after* ``z_t``); Pyro warns about the differing site order in that case.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrovi.models.markov_chain import make_transition
from pyrovi.nn.registration import submodule

__all__ = ["BackwardChain"]

ORDERS = ("reverse", "model")


class BackwardChain(PyroModule):
    """Gaussian backward transitions ``q_φ(z_t | z_{t+1})`` sampled from ``x`` down to ``z_0``.

    Call as ``guide(x)`` with ``x`` ``(B, x_dim)``; samples the sites ``"z_{T-1}"``, ...,
    ``"z_0"`` (``order="reverse"``) or ``"z_0"``, ..., ``"z_{T-1}"`` (``order="model"``) inside
    ``pyro.plate("data", B)`` and returns ``z_0``.

    Args:
        T: Number of transitions of the model (latent states ``z_0 ... z_{T-1}``).
        x_dim: Dimension d of the data and of every latent state.
        hidden: Hidden width of the default MLP transitions.
        transition: ``"mlp"``, ``"affine"`` or a module. With ``order="reverse"`` it is called
            as ``transition(t, z_{t+1}) -> (loc, scale)`` and gives ``q(z_t | z_{t+1})``
            (``z_T = x``); with ``order="model"`` as ``transition(t, z_{t-1}, x)`` and gives
            ``q(z_t | z_{t-1}, x)`` (``z_{-1}`` is a tensor of zeros).
        order: ``"reverse"`` or ``"model"`` (see the module docstring).
    """

    def __init__(
        self,
        T: int,
        x_dim: int,
        hidden: int = 64,
        *,
        transition: str | nn.Module = "mlp",
        order: str = "reverse",
    ) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise ValueError(f"x_dim must be a positive integer, got {x_dim!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.T, self.x_dim, self.order = T, x_dim, order
        num_inputs = 1 if order == "reverse" else 2
        self.transition = make_transition(transition, T, x_dim, num_inputs, hidden)

    def step(self, t: int, *inputs: torch.Tensor) -> dist.Distribution:
        """``q(z_t | z_{t+1})`` (reverse) or ``q(z_t | z_{t-1}, x)`` (model order)."""
        loc, scale = submodule(self, "transition")(t, *inputs)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The guide; returns ``z_0`` ``(..., B, d)``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != self.x_dim:
            raise ValueError(
                f"x must be a tensor of shape (batch, x_dim={self.x_dim}), got "
                f"{getattr(x, 'shape', type(x).__name__)}"
            )
        with pyro.plate("data", x.shape[0]):
            if self.order == "reverse":
                z = x
                for t in reversed(range(self.T)):
                    z = pyro.sample(f"z_{t}", self.step(t, z))
                return z
            z = torch.zeros_like(x)
            first = None
            for t in range(self.T):
                z = pyro.sample(f"z_{t}", self.step(t, z, x))
                first = z if first is None else first
            return first
