"""Second-order forward jets: a function's value, gradient and Laplacian carried through layers.

A :class:`Jet` of ``F`` features of a point ``x ∈ R^d`` holds

* ``value`` ``(..., F)``,
* ``jac`` ``(d, ..., F)``: the gradient of every feature with respect to ``x`` (the derivative
  index first, so that an affine layer is one matrix product over all ``d`` directions),
* ``lap`` ``(..., F)``: the Laplacian ``Σ_k ∂²/∂x_k²`` of every feature.

Affine layers act linearly on all three; an elementwise activation ``a = σ(z)`` maps them by the
chain rule, ``∇a = σ'(z)∇z`` and ``∇²a = σ'(z)∇²z + σ''(z)|∇z|²``. One forward pass thus gives
``log ψ``, ``∇ log ψ`` and ``∇² log ψ`` of a network, the three parts of a local energy, at the cost
of ``d + 2`` forward passes and without the ``d`` extra backward passes autograd needs for a
Laplacian. The result is the exact derivative (not a finite difference), and it stays
differentiable with respect to the network's parameters. With ``jac`` and ``lap`` left ``None`` a
jet is a plain value (the same code then computes only ``log ψ``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Jet", "jet_linear", "jet_tanh", "jet_mlp"]


@dataclass
class Jet:
    """Value ``(..., F)``, gradient ``(d, ..., F)`` and Laplacian ``(..., F)`` of F features.

    ``jac`` and ``lap`` are both ``None`` for a value-only jet.
    """

    value: torch.Tensor
    jac: torch.Tensor | None = None
    lap: torch.Tensor | None = None

    @property
    def has_derivatives(self) -> bool:
        """Whether the gradient and Laplacian are carried."""
        return self.jac is not None

    def __add__(self, other: Jet) -> Jet:
        if self.jac is None or other.jac is None:
            return Jet(self.value + other.value)
        return Jet(self.value + other.value, self.jac + other.jac, self.lap + other.lap)


def jet_linear(jet: Jet, layer: nn.Linear) -> Jet:
    """``layer(x)`` on a jet: ``z = W h + b``, ``∇z = W ∇h``, ``∇²z = W ∇²h``."""
    value = layer(jet.value)
    if jet.jac is None:
        return Jet(value)
    weight_t = layer.weight.T
    return Jet(value, jet.jac @ weight_t, jet.lap @ weight_t)


def jet_tanh(jet: Jet) -> Jet:
    """``tanh`` on a jet (elementwise chain rule to second order)."""
    a = torch.tanh(jet.value)
    if jet.jac is None:
        return Jet(a)
    d1 = 1.0 - a * a
    d2 = -2.0 * a * d1
    jac = d1 * jet.jac
    lap = d1 * jet.lap + d2 * (jet.jac * jet.jac).sum(0)
    return Jet(a, jac, lap)


def jet_mlp(jet: Jet, layers: nn.ModuleList) -> Jet:
    """``Linear → tanh → … → Linear`` (tanh between the layers, none after the last)."""
    for k, layer in enumerate(layers):
        if k:
            jet = jet_tanh(jet)
        jet = jet_linear(jet, layer)
    return jet
