"""Distributions: normalizing flows (on ``nflows``) as Pyro distributions, and flow transforms.

``NFlowsDistribution`` wraps any nflows ``Flow``; :func:`flow_layers` builds stacks of named
flow layers (``iaf``, ``maf``, ``nsf``, ``realnvp``, ``planar``, ``radial``);
:mod:`pyrovi.distributions.transforms` holds transforms nflows lacks (planar, radial) or ships
broken on current torch (``LULinear``). ``EulerMaruyama`` makes discretized SDE paths sample sites.
"""

from pyrovi.distributions import transforms
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.feynman_kac import ACTION_ESTIMATORS, FeynmanKac
from pyrovi.distributions.flow import NFlowsDistribution
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers
from pyrovi.distributions.sde import KL_ESTIMATORS, SOLVERS, EulerMaruyama

__all__ = [
    "NFlowsDistribution",
    "ElementwiseAffine",
    "FLOW_KINDS",
    "flow_layers",
    "transforms",
    "EulerMaruyama",
    "KL_ESTIMATORS",
    "SOLVERS",
    "FeynmanKac",
    "ACTION_ESTIMATORS",
]
