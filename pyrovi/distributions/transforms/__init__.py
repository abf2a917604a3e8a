"""Normalizing-flow transforms in the nflows convention.

``forward(inputs, context)`` is the density direction (data -> noise, used by
``nflows.flows.Flow.log_prob``) and ``inverse(inputs, context)`` the sampling direction (noise ->
data, used by ``Flow.sample``); both return ``(outputs, logabsdet)`` with ``logabsdet`` of shape
``(batch,)``, the log absolute Jacobian determinant of that call's direction.

- :class:`PlanarTransform`, :class:`RadialTransform`: Rezende & Mohamed (2015) flows, closed form
  when sampling, optionally conditional (parameters from a linear map of the context).
- :class:`HyperTransform`: their base, parameters either free or from a linear hypernetwork of
  the context.
- :class:`LULinear`: an invertible linear layer ``W = P L U`` that, unlike nflows' own, does not
  use deprecated torch solvers.
"""

from pyrovi.distributions.transforms.hyper import HyperTransform
from pyrovi.distributions.transforms.linear import LULinear
from pyrovi.distributions.transforms.planar import PlanarTransform
from pyrovi.distributions.transforms.radial import RadialTransform

__all__ = ["PlanarTransform", "RadialTransform", "HyperTransform", "LULinear"]
