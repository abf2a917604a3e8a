"""``PosteriorSDE``: the amortized guide of a :class:`~pyrovi.models.LatentSDE` (Li et al. 2020)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from pyrovi._checks import check_int
from pyrovi.distributions.sde import EulerMaruyama
from pyrovi.nn.registration import submodule
from pyrovi.nn.sde_nets import ContextDrift, SeriesEncoder

__all__ = ["PosteriorSDE"]


class PosteriorSDE(PyroModule):
    """``q(z0 | x)`` and a posterior SDE whose drift sees an encoding of the observed series.

    A GRU reads the series backwards (:class:`~pyrovi.nn.SeriesEncoder`); its context at the
    first time gives ``q(z0 | x) = N(μ, σ²)``, and its context at later times drives the posterior
    drift ``f(t, z, c(t))`` (:class:`~pyrovi.nn.ContextDrift`). The diffusion is the model's own
    module, read from the model at every call and not registered as a child of the guide, so
    the two path measures share it (the KL between SDEs with different diffusions is infinite).

    Call as ``guide(xs, mask=None)`` like the model.

    Args:
        model: The :class:`~pyrovi.models.LatentSDE` this guide belongs to.
        context_dim: Context features per time.
        hidden: Width of the GRU and of the drift net.
        encoder: A replacement for the GRU encoder: a module ``(xs, mask) -> (B, T, context_dim)``.
    """

    def __init__(
        self,
        model: nn.Module,
        context_dim: int = 64,
        hidden: int = 128,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not all(hasattr(model, a) for a in ("diffusion", "times", "latent_dim", "obs_dim")):
            raise TypeError(
                "model must be a LatentSDE (with diffusion, times, latent_dim and obs_dim), got "
                f"{type(model).__name__}"
            )
        object.__setattr__(self, "_model", model)  # shared, not a child: no double registration
        context_dim, hidden = check_int("context_dim", context_dim), check_int("hidden", hidden)
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module or None, got {type(encoder).__name__}")
        d = model.latent_dim
        self.encoder = (
            encoder if encoder is not None else SeriesEncoder(model.obs_dim, hidden, context_dim)
        )
        self.z0_net = nn.Linear(context_dim, 2 * d)
        self.drift = ContextDrift(d, context_dim, hidden)

    @property
    def model(self) -> nn.Module:
        """The model whose diffusion the guide shares."""
        return self._model

    def forward(self, xs: torch.Tensor, mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Sample ``z0`` and the path ``z`` given series ``xs`` ``(B, T, D)``; returns the path."""
        model = self._model
        times = model.times
        if hasattr(model, "check_data"):
            model.check_data(xs, mask)  # shapes, dtype and finiteness, named
        context = submodule(self, "encoder")(xs, mask)
        loc, raw_scale = submodule(self, "z0_net")(context[:, 0]).chunk(2, dim=-1)
        scale = nn.functional.softplus(raw_scale) + 1e-4
        drift = submodule(self, "drift").bind(times, context)
        with pyro.plate("data", xs.shape[0]):
            z0 = pyro.sample("z0", dist.Normal(loc, scale).to_event(1))
            sde = EulerMaruyama(
                drift,
                submodule(model, "diffusion"),
                z0,
                times,
                model.substeps,
                kl_estimator=model.kl_estimator,
            )
            return pyro.sample("z", sde)
