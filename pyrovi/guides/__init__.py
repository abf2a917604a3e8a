"""Guides: amortized encoders ``q(z | x)`` and flow autoguides, written as Pyro guides."""

from pyrovi.guides.encoders import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.guides.flow_guide import FlowGuide
from pyrovi.guides.flows import AmortizedFlow

__all__ = ["AmortizedNormal", "AmortizedMultivariateNormal", "AmortizedFlow", "FlowGuide"]
