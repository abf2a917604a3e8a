"""Amortized guides for :class:`pyrovi.models.HierarchicalVAE`: bottom-up and top-down.

Both sample the sites ``"z1"`` … ``"zL"`` inside ``pyro.plate("data", batch)``.

* :class:`BottomUpGuide` (Burda et al. 2015): ``q(z1 | x) q(z2 | z1) … q(zL | z_{L-1})``, each
  layer a Gaussian whose parameters come from an MLP of the sample below.
* :class:`TopDownGuide` (in the spirit of the ladder VAE, Sønderby et al. 2016): a deterministic
  bottom-up pass ``h1 = f1(x)``, ``h_l = f_l(h_{l-1})``, then sampling top-down:
  ``q(zL | hL)``, ``q(z_l | h_l, z_{l+1})``. The posterior of each layer sees both the data
  (through ``h_l``) and the sample above, the same direction as the generative model.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn

from pyrovi._checks import check_plate_name
from pyrovi.models._checks import check_features, check_values
from pyrovi.models.hierarchical_vae import (
    GaussianLayer,
    activation_factory,
    check_hidden,
    check_positive_ints,
    latent_site_names,
)
from pyrovi.nn import MLP, submodule

__all__ = ["BottomUpGuide", "TopDownGuide"]


class _HierarchicalGuide(PyroModule):
    def __init__(
        self,
        x_dim: int,
        z_dims: Sequence[int],
        hidden_dims: Sequence[Sequence[int]] | None,
        activation: str,
        plate: str,
    ) -> None:
        super().__init__()
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise ValueError(f"x_dim must be a positive integer, got {x_dim!r}")
        self.x_dim = x_dim
        self.z_dims = check_positive_ints("z_dims", z_dims)
        n = len(self.z_dims)
        self.hidden_dims = check_hidden(
            "hidden_dims", hidden_dims, [(200, 200)] + [(100, 100)] * (n - 1), n
        )
        self.act = activation_factory(activation)
        self.sites = latent_site_names(n)
        self.plate = check_plate_name(plate, "plate", allow_none=False)

    def _check(self, x: torch.Tensor) -> None:
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)


class BottomUpGuide(_HierarchicalGuide):
    """``q(z1 | x) Π_l q(z_l | z_{l-1})``, diagonal Gaussians (Burda et al. 2015).

    Args:
        x_dim: Observed features D.
        z_dims: Latent dimensions from the data side up (as in the model).
        hidden_dims: Hidden widths of each layer's network, one tuple per layer (default
            ``(200, 200)`` then ``(100, 100)``, as in the model).
        activation: ``"relu"`` or ``"tanh"``.
        plate: Name of the per-datapoint plate.
        min_scale: Floor added to the posterior scales.
    """

    def __init__(
        self,
        x_dim: int,
        z_dims: Sequence[int] = (100, 50),
        hidden_dims: Sequence[Sequence[int]] | None = None,
        activation: str = "relu",
        plate: str = "data",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(x_dim, z_dims, hidden_dims, activation, plate)
        ins = (x_dim, *self.z_dims[:-1])
        self.layers = nn.ModuleList(
            GaussianLayer(i, h, z, self.act, min_scale)
            for i, h, z in zip(ins, self.hidden_dims, self.z_dims)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of ``q(z1 | x)``, each ``(batch, z_dims[0])``."""
        self._check(x)
        return self.layers[0](x)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> list[torch.Tensor]:
        """The guide. ``x``: ``(batch, x_dim)``. Returns ``[z1, ..., zL]``."""
        self._check(x)
        layers = submodule(self, "layers")
        zs = []
        h = x
        with pyro.plate(self.plate, x.shape[0]):
            for site, layer in zip(self.sites, layers):
                loc, scale = layer(h)
                h = pyro.sample(site, dist.Normal(loc, scale).to_event(1))
                zs.append(h)
        return zs


class TopDownGuide(_HierarchicalGuide):
    """Deterministic bottom-up features, then ``q(zL | hL) Π_l q(z_l | h_l, z_{l+1})``.

    Args:
        x_dim: Observed features D.
        z_dims: Latent dimensions from the data side up (as in the model).
        hidden_dims: Widths of the deterministic bottom-up networks, one tuple per layer
            (``h_l = f_l(h_{l-1})`` with ``h_0 = x``; its last width is ``h_l``'s size). Default
            ``(200, 200)`` then ``(100, 100)``.
        activation: ``"relu"`` or ``"tanh"``.
        plate: Name of the per-datapoint plate.
        min_scale: Floor added to the posterior scales.
    """

    def __init__(
        self,
        x_dim: int,
        z_dims: Sequence[int] = (100, 50),
        hidden_dims: Sequence[Sequence[int]] | None = None,
        activation: str = "relu",
        plate: str = "data",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__(x_dim, z_dims, hidden_dims, activation, plate)
        if any(not h for h in self.hidden_dims):
            raise ValueError(
                f"hidden_dims of a TopDownGuide needs at least one width per layer, got "
                f"{hidden_dims!r}"
            )
        ins = (x_dim, *(h[-1] for h in self.hidden_dims[:-1]))
        self.features = nn.ModuleList(
            nn.Sequential(MLP(i, h[:-1], h[-1], self.act), self.act())
            for i, h in zip(ins, self.hidden_dims)
        )
        n = len(self.z_dims)
        # heads[l] gives q(z_{l+1} | h_{l+1}, z_{l+2}); the top one sees h_L only.
        self.heads = nn.ModuleList(
            GaussianLayer(
                self.hidden_dims[i][-1] + (self.z_dims[i + 1] if i < n - 1 else 0),
                (),
                self.z_dims[i],
                self.act,
                min_scale,
            )
            for i in range(n)
        )

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        hs, h = [], x
        for f in submodule(self, "features"):
            h = f(h)
            hs.append(h)
        return hs

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of ``q(z1 | x, z2)`` at the posterior means of the layers above."""
        self._check(x)
        hs = self._features(x)
        z = None
        for i in reversed(range(len(self.z_dims))):
            inp = hs[i] if z is None else torch.cat([hs[i], z], dim=-1)
            loc, scale = self.heads[i](inp)
            z = loc
        return loc, scale

    def forward(self, x: torch.Tensor, *args, **kwargs) -> list[torch.Tensor]:
        """The guide. ``x``: ``(batch, x_dim)``. Returns ``[z1, ..., zL]``."""
        self._check(x)
        hs = self._features(x)
        heads = submodule(self, "heads")
        n = len(self.z_dims)
        zs: list[torch.Tensor] = [x] * n
        z = None
        with pyro.plate(self.plate, x.shape[0]):
            for i in reversed(range(n)):
                h = hs[i]
                if z is not None:
                    h = torch.cat([h.expand(z.shape[:-1] + h.shape[-1:]), z], dim=-1)
                loc, scale = heads[i](h)
                z = pyro.sample(self.sites[i], dist.Normal(loc, scale).to_event(1))
                zs[i] = z
        return zs
