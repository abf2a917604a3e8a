"""Network building blocks (plain ``torch.nn`` modules)."""

from pyrovi.nn.conv import ConvDecoder, ConvEncoder
from pyrovi.nn.embedding import (
    SeriesConvEmbedding,
    SeriesGRUEmbedding,
    Standardize,
    embedding_net,
)
from pyrovi.nn.mlp import MLP
from pyrovi.nn.quantum_drifts import (
    CoulombCusp,
    CoulombFeatures,
    EquivariantDrift,
    HarmonicSkip,
    ResNetDrift,
    drift_for,
)
from pyrovi.nn.registration import skip_param_registration, submodule
from pyrovi.nn.sde_nets import ContextDrift, DiagonalDiffusion, DriftMLP, OUDrift, SeriesEncoder
from pyrovi.nn.wavefunctions import GradientDrift, NeuralLogPsi, log_psi_for, log_psi_terms

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
    "ResNetDrift",
    "EquivariantDrift",
    "CoulombCusp",
    "CoulombFeatures",
    "HarmonicSkip",
    "drift_for",
    "NeuralLogPsi",
    "GradientDrift",
    "log_psi_for",
    "log_psi_terms",
    "Standardize",
    "SeriesConvEmbedding",
    "SeriesGRUEmbedding",
    "embedding_net",
]
