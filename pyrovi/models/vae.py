"""Variational autoencoder as a Pyro model: ``z ~ N(0, I)``, ``x ~ p(x | decoder(z))``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn

from pyrovi._checks import check_bool
from pyrovi._validation import positive_int
from pyrovi.models._checks import (
    check_features,
    check_likelihood,
    check_number,
    check_output,
    check_values,
    reversed_hidden,
)
from pyrovi.nn import MLP, ConvDecoder, submodule
from pyrovi.nn.conv import _check_image_shape

__all__ = ["VAE"]


def make_likelihood(likelihood: str, out: torch.Tensor, scale: torch.Tensor | None):
    """``p(x | ·)`` with event shape ``(x_dim,)`` from decoder outputs (logits or means)."""
    if likelihood == "bernoulli":
        # validate_args=False: grey levels in [0, 1] are scored by the same cross-entropy.
        return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
    return dist.Normal(out, scale).to_event(1)


class VAE(PyroModule):
    """A VAE written as a Pyro model with latent site ``"z"`` and observed site ``"x"``.

    ``forward(x)`` is the model: inside ``pyro.plate("data", batch)`` it samples
    ``z ~ N(0, I_{z_dim})`` and scores ``x`` under ``p(x | decoder(z))``. Pair it with an amortized
    guide such as :class:`pyrovi.guides.AmortizedNormal` and train with :func:`pyrovi.infer.fit`
    or Pyro's ``SVI``.

    Args:
        x_dim: Number of observed features D (e.g. 784 for flattened 28×28 images).
        z_dim: Latent dimension.
        likelihood: ``"bernoulli"`` (decoder gives logits; binary data for
            :func:`~pyrovi.infer.fit`, which refuses grey levels; called directly, the model
            scores values in [0, 1] by the same cross-entropy) or ``"gaussian"`` (decoder gives
            means).
        decoder: ``None`` for an MLP with ``reversed(hidden_dims)``, ``"conv"`` for a
            :class:`~pyrovi.nn.ConvDecoder` (needs ``image_shape``), or any module mapping
            ``(..., z_dim) -> (..., x_dim)``.
        hidden_dims: Hidden widths of the encoder side; the MLP decoder uses them reversed.
        beta: Weight of the KL term (β-VAE). :func:`~pyrovi.infer.fit` applies it to the latent
            sites of model and guide; with stock ``SVI`` wrap both in
            :func:`pyrovi.infer.latent_scale`.
        scale: Standard deviation of the Gaussian likelihood (initial value when learned).
        learn_scale: Learn a per-feature Gaussian standard deviation.
        image_shape: ``(H, W)`` for the convolutional decoder.
    """

    def __init__(
        self,
        x_dim: int,
        z_dim: int,
        likelihood: str = "bernoulli",
        decoder: nn.Module | str | None = None,
        hidden_dims: Sequence[int] = (512, 256),
        beta: float = 1.0,
        scale: float = 1.0,
        learn_scale: bool = False,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("x_dim", x_dim), ("z_dim", z_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.likelihood = check_likelihood(likelihood)
        beta = check_number("beta", beta)
        scale = check_number("scale", scale, positive=True)
        self.x_dim, self.z_dim, self.beta = x_dim, z_dim, float(beta)
        hidden = reversed_hidden(hidden_dims)
        if decoder is None:
            decoder = MLP(z_dim, hidden, x_dim)
        elif isinstance(decoder, str) and decoder == "conv":
            if image_shape is not None:
                image_shape = _check_image_shape(image_shape)
            if image_shape is None or math.prod(image_shape) != x_dim:
                raise ValueError(
                    f"decoder='conv' needs image_shape with H*W == x_dim={x_dim}, "
                    f"got {image_shape!r}"
                )
            decoder = ConvDecoder(z_dim, image_shape)
        elif isinstance(decoder, str):
            raise ValueError(f"decoder must be None, 'conv' or an nn.Module, got {decoder!r}")
        check_output("decoder", decoder, z_dim, x_dim)
        self.decoder = decoder
        self.register_buffer("prior_loc", torch.zeros(z_dim))
        self.register_buffer("prior_scale", torch.ones(z_dim))
        self.learn_scale = check_bool("learn_scale", learn_scale)
        if self.learn_scale:
            self.log_scale = nn.Parameter(torch.full((x_dim,), math.log(scale)))
        else:
            self.register_buffer("fixed_scale", torch.full((x_dim,), float(scale)))

    @property
    def obs_scale(self) -> torch.Tensor | None:
        """Standard deviation of the Gaussian likelihood, shape ``(x_dim,)`` (None if Bernoulli)."""
        if self.likelihood != "gaussian":
            return None
        return self.log_scale.exp() if self.learn_scale else self.fixed_scale

    def check_data(self, x: torch.Tensor, *args: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(batch, x_dim)``, finite, [0, 1] if Bernoulli."""
        check_features("x", x, self.x_dim)
        check_values("x", x, self.likelihood)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model. ``x``: ``(batch, x_dim)``. Returns the latent sample ``(batch, z_dim)``."""
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x, self.likelihood)
        prior = dist.Normal(self.prior_loc, self.prior_scale).to_event(1)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            out = submodule(self, "decoder")(z)
            pyro.sample("x", make_likelihood(self.likelihood, out, self.obs_scale), obs=x)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | z)``: ``(..., z_dim) -> (..., x_dim)`` (probabilities for Bernoulli)."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def sample_prior(self, num_samples: int) -> torch.Tensor:
        """Decoded means of ``num_samples`` draws from the prior, ``(num_samples, x_dim)``."""
        num_samples = positive_int("num_samples", num_samples)
        z = dist.Normal(self.prior_loc, self.prior_scale).sample((num_samples,))
        return self.decode(z)
