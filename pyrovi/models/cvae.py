"""Conditional VAE: ``p(z | c)``, ``p(x | z, c)``, paired with a guide ``q(z | x, c)``."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.nn import functional as F

from pyrovi._validation import positive_int
from pyrovi.models._checks import (
    check_features,
    check_likelihood,
    check_number,
    check_output,
    check_values,
    reversed_hidden,
)
from pyrovi.models.vae import make_likelihood
from pyrovi.nn import MLP, submodule

__all__ = ["ConditionalVAE"]


class ConditionalVAE(PyroModule):
    """A conditional VAE written as a Pyro model ``forward(x, c)``.

    The condition ``c`` is any feature vector: a one-hot class label, or the visible part of an
    image whose hidden part is ``x`` (the lecture's quadrant example). The prior ``p(z | c)`` is a
    learned diagonal Gaussian (or ``N(0, I)`` with ``prior="standard"``); the decoder sees
    ``[z, c]``. Pair it with ``AmortizedNormal(x_dim, z_dim, context_dim=c_dim)``.

    Args:
        x_dim: Observed features D.
        c_dim: Condition features C.
        z_dim: Latent dimension.
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        hidden_dims: Hidden widths; the decoder uses them reversed, the prior network as given.
        prior: ``"learned"`` (p(z|c) from an MLP on c) or ``"standard"`` (N(0, I)).
        beta: KL weight (see :class:`~pyrovi.models.VAE`).
        scale: Standard deviation of the Gaussian likelihood.
        decoder: Optional module mapping ``(..., z_dim + c_dim) -> (..., x_dim)``.
    """

    def __init__(
        self,
        x_dim: int,
        c_dim: int,
        z_dim: int,
        likelihood: str = "bernoulli",
        hidden_dims: Sequence[int] = (512, 256),
        prior: str = "learned",
        beta: float = 1.0,
        scale: float = 1.0,
        decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("x_dim", x_dim), ("c_dim", c_dim), ("z_dim", z_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if prior not in ("learned", "standard"):
            raise ValueError(f"prior must be 'learned' or 'standard', got {prior!r}")
        beta = check_number("beta", beta)
        scale = check_number("scale", scale, positive=True)
        self.likelihood = check_likelihood(likelihood)
        self.x_dim, self.c_dim, self.z_dim, self.beta = x_dim, c_dim, z_dim, float(beta)
        hidden = reversed_hidden(hidden_dims)  # the decoder's widths
        if decoder is None:
            decoder = MLP(z_dim + c_dim, hidden, x_dim)
        check_output("decoder", decoder, z_dim + c_dim, x_dim)
        self.decoder = decoder
        self.prior_net = MLP(c_dim, hidden[:1], 2 * z_dim) if prior == "learned" else None
        self.register_buffer("fixed_scale", torch.full((x_dim,), float(scale)))

    def check_data(self, x: torch.Tensor, c: torch.Tensor, *args: torch.Tensor) -> None:
        """Raise ``ValueError`` on bad shapes, non-finite values, Bernoulli data outside [0, 1]."""
        check_features("x", x, self.x_dim)
        check_features("c", c, self.c_dim)
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"c must have the batch size of x ({x.shape[0]}), got {c.shape[0]}")
        check_values("x", x, self.likelihood)
        check_values("c", c)

    def prior(self, c: torch.Tensor) -> dist.Distribution:
        """``p(z | c)`` with batch shape ``c.shape[:-1]`` and event shape ``(z_dim,)``."""
        if self.prior_net is None:
            loc = c.new_zeros(c.shape[:-1] + (self.z_dim,))
            return dist.Normal(loc, torch.ones_like(loc)).to_event(1)
        loc, raw = submodule(self, "prior_net")(c).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + 1e-4).to_event(1)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | z, c)``; ``c`` is broadcast against ``z``'s sample dimensions."""
        c = c.expand(z.shape[:-1] + c.shape[-1:])
        out = self.decoder(torch.cat([z, c], dim=-1))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The model. ``x``: ``(batch, x_dim)``, ``c``: ``(batch, c_dim)``; returns ``z``."""
        check_features("x", x, self.x_dim)
        check_features("c", c, self.c_dim)
        if c.shape[0] != x.shape[0]:
            raise ValueError(f"c must have the batch size of x ({x.shape[0]}), got {c.shape[0]}")
        if is_validation_enabled():
            check_values("x", x, self.likelihood)
            check_values("c", c)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(c))
            cz = c.expand(z.shape[:-1] + c.shape[-1:])
            out = submodule(self, "decoder")(torch.cat([z, cz], dim=-1))
            scale = self.fixed_scale if self.likelihood == "gaussian" else None
            pyro.sample("x", make_likelihood(self.likelihood, out, scale), obs=x)
        return z

    def sample(self, c: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Means of ``p(x | z, c)`` for ``z ~ p(z | c)``: ``(num_samples, batch, x_dim)``."""
        if not isinstance(c, torch.Tensor) or c.dim() == 0 or c.shape[-1] != self.c_dim:
            got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"c must have shape (..., c_dim={self.c_dim}), got {got}")
        z = self.prior(c).sample((positive_int("num_samples", num_samples),))
        return self.decode(z, c)
