"""Guides: amortized encoders ``q(z | x)`` and flow autoguides, and the
posterior SDE of a latent SDE, written as Pyro guides."""

from pyrovi.guides.encoders import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.guides.flow_guide import FlowGuide
from pyrovi.guides.flows import AmortizedFlow
from pyrovi.guides.sde import PosteriorSDE

__all__ = [
    "AmortizedNormal",
    "AmortizedMultivariateNormal",
    "AmortizedFlow",
    "FlowGuide",
    "PosteriorSDE",
]
