"""Guides: amortized encoders ``q(z | x)`` and flow autoguides, and the
posterior SDE of a latent SDE, written as Pyro guides."""

from pyrovi.guides.backward_chain import BackwardChain
from pyrovi.guides.backward_sde import BackwardSDE
from pyrovi.guides.encoders import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.guides.flow_guide import FlowGuide
from pyrovi.guides.flows import AmortizedFlow
from pyrovi.guides.hierarchical import BottomUpGuide, TopDownGuide
from pyrovi.guides.sde import PosteriorSDE
from pyrovi.guides.vq import VQEncoder

__all__ = [
    "AmortizedNormal",
    "AmortizedMultivariateNormal",
    "AmortizedFlow",
    "FlowGuide",
    "PosteriorSDE",
    "BackwardChain",
    "BackwardSDE",
    "BottomUpGuide",
    "TopDownGuide",
    "VQEncoder",
]
