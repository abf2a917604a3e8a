"""Stacks of flow layers by name: ``"iaf"``, ``"maf"``, ``"nsf"``, ``"realnvp"``, ``"planar"``,
``"radial"``, built from nflows transforms and pyrovi's own where nflows lacks or breaks one."""

from __future__ import annotations

import math

import torch
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    InverseTransform,
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    ReversePermutation,
    Transform,
)

from pyrovi._checks import check_int, check_positive

__all__ = ["FLOW_KINDS", "flow_layers"]

FLOW_KINDS = ("iaf", "maf", "nsf", "realnvp", "planar", "radial")
"""Names accepted by :func:`flow_layers`."""


def _coupling_mask(features: int, layer: int) -> torch.Tensor:
    mask = torch.arange(features) % 2
    return mask if layer % 2 == 0 else 1 - mask


def _net_factory(hidden: int, context: int | None, blocks: int):
    def make(in_features: int, out_features: int) -> ResidualNet:
        return ResidualNet(
            in_features, out_features, hidden, context_features=context, num_blocks=blocks
        )

    return make


def _near_identity(transform: MaskedAffineAutoregressiveTransform):
    """Start an affine autoregressive layer as the identity map.

    nflows' default initialization makes the shifts and scales depend strongly on the inputs and
    sets the scale to softplus(0) ≈ 0.69, so a stack of layers used in the direction that divides
    by the scales maps data of scale 1 to 1e5 and beyond (log-densities of -1e7 at
    initialization). Zero output weights, zero shift biases and scale biases with
    softplus(b) + ε = 1 give exactly the identity; the hidden layers start learning after the
    first step, once the output weights move.
    """
    final = transform.autoregressive_net.final_layer
    eps = transform._epsilon
    with torch.no_grad():
        final.weight.zero_()
        final.bias.zero_()
        # outputs are (scale, shift) pairs per feature: even entries are unconstrained scales
        final.bias[0::2] = math.log(math.expm1(1.0 - eps))
    return transform


def _layer(
    kind: str,
    features: int,
    hidden: int,
    context: int | None,
    index: int,
    num_bins: int,
    tail_bound: float,
) -> Transform:
    if kind == "maf":
        return _near_identity(
            MaskedAffineAutoregressiveTransform(features, hidden, context_features=context)
        )
    if kind == "iaf":
        # the sampling direction (nflows' inverse) is one MADE pass: an inverse autoregressive flow
        return InverseTransform(
            _near_identity(
                MaskedAffineAutoregressiveTransform(features, hidden, context_features=context)
            )
        )
    if kind == "nsf":
        if features == 1:
            return MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                features,
                hidden,
                context_features=context,
                num_bins=num_bins,
                tails="linear",
                tail_bound=tail_bound,
            )
        return PiecewiseRationalQuadraticCouplingTransform(
            _coupling_mask(features, index),
            _net_factory(hidden, context, 2),
            num_bins=num_bins,
            tails="linear",
            tail_bound=tail_bound,
        )
    if kind == "realnvp":
        if features == 1:
            raise ValueError("flow='realnvp' needs at least 2 features (a coupling layer)")
        return AffineCouplingTransform(
            _coupling_mask(features, index), _net_factory(hidden, context, 2)
        )
    if kind in ("planar", "radial"):
        from pyrovi.distributions.transforms import PlanarTransform, RadialTransform

        cls = PlanarTransform if kind == "planar" else RadialTransform
        return cls(features, context_features=context)
    raise ValueError(f"flow must be one of {FLOW_KINDS}, got {kind!r}")


def flow_layers(
    kind: str,
    features: int,
    num_layers: int = 4,
    hidden_features: int = 64,
    context_features: int | None = None,
    *,
    num_bins: int = 8,
    tail_bound: float = 5.0,
) -> CompositeTransform:
    """A stack of ``num_layers`` flow layers of one kind (nflows density direction).

    Autoregressive layers (``iaf``, ``maf``) alternate with feature reversals; coupling layers
    (``nsf``, ``realnvp``) alternate their masks. ``iaf`` samples in one network pass (its density
    needs D passes), ``maf`` the other way round; ``nsf`` uses rational-quadratic spline couplings
    (linear tails beyond ±``tail_bound``); ``planar`` and ``radial`` are Rezende & Mohamed (2015)
    flows whose parameters come from the context when there is one.

    Args:
        kind: One of :data:`FLOW_KINDS`.
        features: Dimension D of the variable.
        num_layers: Number of flow layers.
        hidden_features: Width of the conditioner networks.
        context_features: C, for conditional flows (context passed at call time).
        num_bins: Spline bins (``nsf``).
        tail_bound: Spline interval half-width (``nsf``).

    Returns:
        ``nflows.transforms.CompositeTransform``.
    """
    if kind not in FLOW_KINDS:
        raise ValueError(f"flow must be one of {FLOW_KINDS}, got {kind!r}")
    for name, value in (
        ("features", features),
        ("num_layers", num_layers),
        ("hidden_features", hidden_features),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if context_features is not None:
        check_int("context_features", context_features)
    num_bins = check_int("num_bins", num_bins)
    tail_bound = check_positive("tail_bound", tail_bound)
    layers: list[Transform] = []
    for i in range(num_layers):
        layers.append(
            _layer(kind, features, hidden_features, context_features, i, num_bins, tail_bound)
        )
        if kind in ("iaf", "maf") and features > 1 and i < num_layers - 1:
            layers.append(ReversePermutation(features))
    return CompositeTransform(layers)
