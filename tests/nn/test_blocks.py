"""Network blocks: shapes and argument checks."""

import pytest
import torch

from pyrovi.nn import MLP, ConvDecoder, ConvEncoder


def test_mlp_shapes():
    net = MLP(4, (8, 8), 3)
    assert net(torch.rand(2, 5, 4)).shape == (2, 5, 3)
    assert len([m for m in net if isinstance(m, torch.nn.Linear)]) == 3
    assert MLP(4, (), 3)(torch.rand(1, 4)).shape == (1, 3)
    with pytest.raises(ValueError, match="hidden_dims must be a sequence of positive integers"):
        MLP(4, (0,), 3)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28)])
def test_conv_blocks_round_trip_shapes(shape):
    d = shape[0] * shape[1]
    assert ConvEncoder(shape, 10)(torch.rand(3, d)).shape == (3, 10)
    assert ConvDecoder(5, shape)(torch.rand(4, 3, 5)).shape == (4, 3, d)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvDecoder(5, (6, 6))


@pytest.mark.parametrize(
    "hidden_dims, error, match",
    [
        ("16", TypeError, r"hidden_dims must be a sequence .* got the string '16'"),
        (16, TypeError, "hidden_dims must be a sequence of positive integers"),
        (None, TypeError, "hidden_dims must be a sequence of positive integers"),
        ((16.0,), ValueError, "hidden_dims .* entry 0 is 16.0"),
        ((8, 2.5), ValueError, "hidden_dims .* entry 1 is 2.5"),
        ((0,), ValueError, "hidden_dims .* entry 0 is 0"),
        ((-3,), ValueError, "hidden_dims .* entry 0 is -3"),
        ((True,), ValueError, "hidden_dims .* entry 0 is True"),
    ],
)
def test_mlp_refuses_bad_hidden_dims(hidden_dims, error, match):
    with pytest.raises(error, match=match):
        MLP(4, hidden_dims, 3)


def test_mlp_names_bad_sizes_and_inputs():
    for kwargs, match in [
        ({"in_dim": 2.5}, "in_dim must be a positive integer, got 2.5"),
        ({"in_dim": 0}, "in_dim must be a positive integer, got 0"),
        ({"out_dim": True}, "out_dim must be a positive integer, got True"),
        ({"out_dim": "3"}, "out_dim must be a positive integer"),
    ]:
        args = {"in_dim": 4, "hidden_dims": (8,), "out_dim": 3, **kwargs}
        with pytest.raises(ValueError, match=match):
            MLP(**args)
    with pytest.raises(TypeError, match="activation must be a factory"):
        MLP(4, (8,), 3, activation=3)
    with pytest.raises(
        ValueError, match=r"x: this MLP maps \(\.\.\., 4\) inputs, got shape \(2, 5\)"
    ):
        MLP(4, (8,), 3)(torch.zeros(2, 5))


def test_conv_blocks_name_bad_arguments():
    with pytest.raises(ValueError, match="out_dim must be a positive integer, got 0"):
        ConvEncoder((8, 8), 0)
    with pytest.raises(ValueError, match=r"channels\[0\] must be a positive integer, got 2.5"):
        ConvEncoder((8, 8), 3, channels=(2.5, 4))
    with pytest.raises(TypeError, match="channels must be a pair"):
        ConvDecoder(3, (8, 8), channels=8)
    with pytest.raises(ValueError, match="image_shape must be .* got \\(8.5, 8\\)"):
        ConvEncoder((8.5, 8), 3)
    with pytest.raises(TypeError, match="image_shape must be"):
        ConvEncoder("88", 3)
    with pytest.raises(ValueError, match="in_dim must be a positive integer, got 2.5"):
        ConvDecoder(2.5, (8, 8))
    with pytest.raises(ValueError, match=r"x: expected \(\.\.\., 64\) \(flattened 8x8 images\)"):
        ConvEncoder((8, 8), 3)(torch.zeros(2, 63))
    with pytest.raises(ValueError, match=r"z: expected \(\.\.\., 3\)"):
        ConvDecoder(3, (8, 8))(torch.zeros(2, 4))


def test_sde_nets_and_embeddings_name_bad_arguments():
    from pyrovi.nn import (
        DiagonalDiffusion,
        DriftMLP,
        HarmonicSkip,
        OUDrift,
        ResNetDrift,
        SeriesEncoder,
        Standardize,
        embedding_net,
    )

    nan, inf = float("nan"), float("inf")
    cases = [
        (lambda: DriftMLP(2, "16"), TypeError, "hidden must be a sequence .* the string '16'"),
        (lambda: OUDrift(2, inf), ValueError, "theta must be a positive number, got inf"),
        (lambda: OUDrift(2, "1"), ValueError, "theta must be a positive number, got '1'"),
        (lambda: DiagonalDiffusion(2, 4, inf), ValueError, "scale must be a positive number"),
        (lambda: HarmonicSkip(nan), ValueError, "omega must be a finite number, got nan"),
        (lambda: ResNetDrift(4, features=torch.nn.Identity()), TypeError, "features must be"),
        (lambda: SeriesEncoder(2, 4, 3)(torch.zeros(2, 5)), ValueError, r"xs must have shape"),
        (
            lambda: SeriesEncoder(2, 4, 3)(torch.zeros(2, 5, 2), torch.ones(2, 4)),
            ValueError,
            r"mask must have shape \(2, 5\)",
        ),
        (lambda: Standardize((3,)).fit(torch.empty(0, 3)), ValueError, r"x is empty"),
        (
            lambda: Standardize((3,)).fit(torch.tensor([[0.0, nan, 1.0]])),
            ValueError,
            "x contains NaN or infinite values",
        ),
        (
            lambda: Standardize((3,)).fit(torch.rand(5, 4)),
            ValueError,
            r"x must have shape \(N, \*\(3,\)\), got \(5, 4\)",
        ),
        (lambda: Standardize((3,)).fit(torch.rand(5, 3), -1.0), ValueError, "min_std must be"),
        (lambda: Standardize((3,))(torch.rand(5, 4)), ValueError, r"x must have shape"),
        (lambda: embedding_net("mlp", 0), ValueError, "in_features must be a positive integer"),
        (lambda: embedding_net("mlp", 4, 0), ValueError, "out_features must be a positive integer"),
        (lambda: embedding_net("mlp", 4, hidden=2.5), ValueError, "hidden must be a positive"),
        (
            lambda: embedding_net(torch.nn.Linear(3, 2), 4),
            ValueError,
            r"embedding must map \(batch, 4\) to \(batch, features\); calling it .* failed",
        ),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()


def test_standardize_fit_of_one_row_gives_unit_scale():
    from pyrovi.nn import Standardize

    s = Standardize((2,)).fit(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(s.std, torch.ones(2))
    torch.testing.assert_close(s(torch.tensor([[1.0, 2.0]])), torch.zeros(1, 2))
