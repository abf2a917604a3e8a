"""Network building blocks (plain ``torch.nn`` modules)."""

from pyrovi.nn.conv import ConvDecoder, ConvEncoder
from pyrovi.nn.mlp import MLP

__all__ = ["MLP", "ConvEncoder", "ConvDecoder"]
