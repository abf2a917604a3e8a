"""Guides: amortized encoders ``q(z | x)`` written as Pyro guides."""

from pyrovi.guides.encoders import AmortizedMultivariateNormal, AmortizedNormal

__all__ = ["AmortizedNormal", "AmortizedMultivariateNormal"]
