"""Network building blocks (plain ``torch.nn`` modules)."""

from pyrovi.nn.conv import ConvDecoder, ConvEncoder
from pyrovi.nn.mlp import MLP
from pyrovi.nn.registration import skip_param_registration, submodule
from pyrovi.nn.sde_nets import ContextDrift, DiagonalDiffusion, DriftMLP, OUDrift, SeriesEncoder

__all__ = [
    "MLP",
    "ConvEncoder",
    "ConvDecoder",
    "skip_param_registration",
    "submodule",
    "DriftMLP",
    "OUDrift",
    "DiagonalDiffusion",
    "ContextDrift",
    "SeriesEncoder",
]
