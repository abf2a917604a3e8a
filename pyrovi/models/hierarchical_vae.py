"""Hierarchical VAE with stacked Gaussian latent layers (Burda, Grosse & Salakhutdinov 2015).

The generative model with ``L`` stochastic layers is

``z_L ~ N(0, I)``, ``z_l | z_{l+1} ~ N(μ_l(z_{l+1}), diag σ_l(z_{l+1})²)``,
``x | z_1 ~ p(x | z_1)``.

With ``z_dims=(100, 50)``, ``hidden_dims=((200, 200), (100, 100))`` it is the two-layer
architecture of Burda et al. (2015): 784-200-200-100-100-50. Sites are ``"z1"`` (next to the
data) … ``"zL"`` (top) and ``"x"``, all inside ``pyro.plate("data", batch)``, so the model works
with :func:`pyrovi.infer.fit`, :func:`pyrovi.infer.elbo` and
:func:`pyrovi.infer.log_marginal_likelihood`. Guides: :class:`pyrovi.guides.BottomUpGuide`
and :class:`pyrovi.guides.TopDownGuide`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import check_hidden_dims, check_nonnegative
from pyrovi._validation import positive_int
from pyrovi.models._checks import check_features, check_likelihood, check_number, check_values
from pyrovi.models.vae import make_likelihood
from pyrovi.nn import MLP, submodule

__all__ = ["HierarchicalVAE", "GaussianLayer", "latent_site_names"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def latent_site_names(num_layers: int) -> tuple[str, ...]:
    """``("z1", ..., "zL")``: latent site names from the data side to the top."""
    return tuple(f"z{i + 1}" for i in range(num_layers))


def check_positive_ints(name: str, values: Sequence[int], allow_empty: bool = False) -> tuple:
    """``values`` as a tuple of positive ints, or ``ValueError`` naming ``name``."""
    try:
        out = tuple(values)
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of positive integers, got {values!r}"
        ) from None
    if (not out and not allow_empty) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out
    ):
        raise ValueError(f"{name} must be a sequence of positive integers, got {values!r}")
    return out


def check_hidden(
    name: str, hidden_dims: Sequence[Sequence[int]] | None, default: Sequence[tuple], n: int
) -> tuple[tuple[int, ...], ...]:
    """One tuple of hidden widths per layer (``n`` of them), or ``ValueError`` naming ``name``."""
    if hidden_dims is None:
        return tuple(tuple(h) for h in default)
    try:
        hidden = tuple(check_positive_ints(name, h, allow_empty=True) for h in hidden_dims)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of {n} sequences of positive integers (one per layer), "
            f"got {hidden_dims!r}"
        ) from None
    if len(hidden) != n:
        raise ValueError(f"{name} must have {n} entries (one per layer), got {len(hidden)}")
    return hidden


def activation_factory(activation: str) -> Callable[[], nn.Module]:
    """``nn.ReLU`` or ``nn.Tanh`` from its name, or ``ValueError`` naming ``activation``."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(_ACTIVATIONS)}, got {activation!r}")
    return _ACTIVATIONS[activation]


class GaussianLayer(nn.Module):
    """``input -> (loc, scale)`` of a diagonal Gaussian through an MLP trunk and a linear head.

    Args:
        in_dim: Input features.
        hidden_dims: Widths of the trunk (empty: a linear map straight to the head).
        out_dim: Dimension of the Gaussian.
        activation: Factory of the trunk's nonlinearity.
        min_scale: Floor added to the softplus scale.

    Shapes:
        input ``(..., in_dim)`` -> ``loc``, ``scale`` each ``(..., out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        hidden = check_hidden_dims(hidden_dims)
        if hidden:
            self.trunk: nn.Module = nn.Sequential(
                MLP(in_dim, hidden[:-1], hidden[-1], activation=activation), activation()
            )
            features = hidden[-1]
        else:
            self.trunk = nn.Identity()
            features = in_dim
        self.head = nn.Linear(features, 2 * out_dim)
        self.min_scale = check_nonnegative("min_scale", min_scale)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        loc, raw = self.head(self.trunk(h)).chunk(2, dim=-1)
        return loc, F.softplus(raw) + self.min_scale


class HierarchicalVAE(PyroModule):
    """A VAE with ``L = len(z_dims)`` stacked stochastic layers, written as a Pyro model.

    ``forward(x)`` samples ``z_L ~ N(0, I)``, then ``z_l ~ N(μ_l(z_{l+1}), σ_l(z_{l+1})²)`` down
    to ``z_1``, and scores ``x`` under ``p(x | decoder(z_1))``, all inside
    ``pyro.plate("data", batch)``. ``L = 1`` is an ordinary VAE with site ``"z1"``.

    Args:
        x_dim: Observed features D.
        z_dims: Latent dimensions from the data side up, e.g. ``(100, 50)`` (Burda et al.).
        hidden_dims: Hidden widths of each layer's network on the encoder side, one tuple per
            layer (layer l maps the layer below, x or z_{l-1}, to z_l). The generative networks
            use them reversed: ``p(x | z1)`` uses ``reversed(hidden_dims[0])``, ``p(z_l | z_{l+1})``
            uses ``reversed(hidden_dims[l])``. Default: ``(200, 200)`` for the first layer and
            ``(100, 100)`` for the others.
        likelihood: ``"bernoulli"`` (decoder gives logits) or ``"gaussian"`` (means, unit scale
            times ``scale``).
        activation: ``"relu"`` or ``"tanh"`` (Burda et al. used tanh).
        beta: Weight of the KL terms (all latent sites); :func:`pyrovi.infer.fit` applies it.
        scale: Standard deviation of the Gaussian likelihood.
        min_scale: Floor of the conditional prior scales σ_l.
    """

    def __init__(
        self,
        x_dim: int,
        z_dims: Sequence[int] = (100, 50),
        hidden_dims: Sequence[Sequence[int]] | None = None,
        likelihood: str = "bernoulli",
        activation: str = "relu",
        beta: float = 1.0,
        scale: float = 1.0,
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise ValueError(f"x_dim must be a positive integer, got {x_dim!r}")
        self.z_dims = check_positive_ints("z_dims", z_dims)
        n = len(self.z_dims)
        self.hidden_dims = check_hidden(
            "hidden_dims", hidden_dims, [(200, 200)] + [(100, 100)] * (n - 1), n
        )
        self.likelihood = check_likelihood(likelihood)
        act = activation_factory(activation)
        beta = check_number("beta", beta)
        scale = check_number("scale", scale, positive=True)
        min_scale = check_nonnegative("min_scale", min_scale)
        self.x_dim, self.beta, self.activation = x_dim, float(beta), activation
        self.sites = latent_site_names(n)
        self.decoder = MLP(self.z_dims[0], tuple(reversed(self.hidden_dims[0])), x_dim, act)
        # priors[l - 1] is p(z_l | z_{l+1}) for l = 1 .. L-1.
        self.priors = nn.ModuleList(
            GaussianLayer(
                self.z_dims[i + 1],
                tuple(reversed(self.hidden_dims[i + 1])),
                self.z_dims[i],
                act,
                min_scale,
            )
            for i in range(n - 1)
        )
        self.register_buffer("top_loc", torch.zeros(self.z_dims[-1]))
        self.register_buffer("top_scale", torch.ones(self.z_dims[-1]))
        self.register_buffer("obs_scale_", torch.full((x_dim,), float(scale)))

    @property
    def num_layers(self) -> int:
        """Number of stochastic layers L."""
        return len(self.z_dims)

    @property
    def obs_scale(self) -> torch.Tensor | None:
        """Standard deviation of the Gaussian likelihood ``(x_dim,)``, None if Bernoulli."""
        return self.obs_scale_ if self.likelihood == "gaussian" else None

    def check_data(self, x: torch.Tensor, *args: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(batch, x_dim)``, finite, [0, 1] if Bernoulli."""
        check_features("x", x, self.x_dim)
        check_values("x", x, self.likelihood)

    def conditional_prior(self, layer: int, z_above: torch.Tensor) -> dist.Distribution:
        """``p(z_layer | z_{layer+1})`` for ``layer`` in ``1 .. L-1`` (1-based), event ``(z_dim,)``.

        Args:
            layer: Index of the lower layer (1 = next to the data).
            z_above: ``(..., z_dims[layer])``, a sample of the layer above.
        """
        if not 1 <= layer < self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers - 1}, got {layer!r}")
        loc, scale = submodule(self, "priors")[layer - 1](z_above)
        return dist.Normal(loc, scale).to_event(1)

    def top_prior(self) -> dist.Distribution:
        """``p(z_L) = N(0, I)`` with event shape ``(z_dims[-1],)``."""
        return dist.Normal(self.top_loc, self.top_scale).to_event(1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The model. ``x``: ``(batch, x_dim)``. Returns ``[z1, ..., zL]`` (``(batch, z_l)``)."""
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x, self.likelihood)
        zs: list[torch.Tensor] = [x] * self.num_layers
        priors = submodule(self, "priors")
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(self.sites[-1], self.top_prior())
            zs[-1] = z
            for i in reversed(range(self.num_layers - 1)):
                loc, scale = priors[i](z)
                z = pyro.sample(self.sites[i], dist.Normal(loc, scale).to_event(1))
                zs[i] = z
            out = submodule(self, "decoder")(z)
            pyro.sample("x", make_likelihood(self.likelihood, out, self.obs_scale), obs=x)
        return zs

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | z1)``: ``(..., z_dims[0]) -> (..., x_dim)``."""
        out = self.decoder(z1)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def sample_prior(self, num_samples: int) -> torch.Tensor:
        """Decoded means of ancestral samples ``z_L -> ... -> z_1``, ``(num_samples, x_dim)``."""
        with torch.no_grad():
            z = self.top_prior().sample((positive_int("num_samples", num_samples),))
            for i in reversed(range(self.num_layers - 1)):
                loc, scale = self.priors[i](z)
                z = dist.Normal(loc, scale).sample()
            return self.decode(z)
