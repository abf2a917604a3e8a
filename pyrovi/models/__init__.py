"""Generative models written as Pyro model functions (``PyroModule`` s)."""

from pyrovi.models.cvae import ConditionalVAE
from pyrovi.models.flow_density import FlowDensity
from pyrovi.models.latent_sde import LatentSDE
from pyrovi.models.vae import VAE

__all__ = ["VAE", "ConditionalVAE", "FlowDensity", "LatentSDE"]
