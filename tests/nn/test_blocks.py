"""Network blocks: shapes and argument checks."""

import pytest
import torch

from pyrovi.nn import MLP, ConvDecoder, ConvEncoder


def test_mlp_shapes():
    net = MLP(4, (8, 8), 3)
    assert net(torch.rand(2, 5, 4)).shape == (2, 5, 3)
    assert len([m for m in net if isinstance(m, torch.nn.Linear)]) == 3
    assert MLP(4, (), 3)(torch.rand(1, 4)).shape == (1, 3)
    with pytest.raises(ValueError, match="hidden_dims must be positive integers"):
        MLP(4, (0,), 3)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28)])
def test_conv_blocks_round_trip_shapes(shape):
    d = shape[0] * shape[1]
    assert ConvEncoder(shape, 10)(torch.rand(3, d)).shape == (3, 10)
    assert ConvDecoder(5, shape)(torch.rand(4, 3, 5)).shape == (4, 3, d)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvDecoder(5, (6, 6))
