"""Amortized Gaussian guides: shapes, valid Cholesky factors, context, errors."""

import pyro
import pytest
import torch
from pyro import poutine

from pyrovi.guides import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.nn import MLP, ConvEncoder


@pytest.mark.parametrize("cls", [AmortizedNormal, AmortizedMultivariateNormal])
def test_guide_site_shapes(cls, device):
    guide = cls(20, 3, hidden_dims=(16,)).to(device)
    trace = poutine.trace(guide).get_trace(torch.rand(6, 20, device=device))
    site = trace.nodes["z"]
    assert site["value"].shape == (6, 3)
    assert site["fn"].batch_shape == (6,) and site["fn"].event_shape == (3,)
    assert site["fn"].has_rsample


def test_mvn_scale_tril_is_a_valid_cholesky_factor():
    guide = AmortizedMultivariateNormal(8, 4, hidden_dims=(16,))
    with torch.no_grad():
        guide.head.bias.normal_(0, 3)  # extreme raw outputs still give a valid factor
    loc, tril = guide.encode(torch.rand(5, 8))
    assert loc.shape == (5, 4) and tril.shape == (5, 4, 4)
    assert torch.equal(tril, tril.tril())
    assert (torch.diagonal(tril, dim1=-2, dim2=-1) > 0).all()
    assert torch.isfinite(torch.cholesky_inverse(tril)).all()


def test_linear_encoder_and_custom_encoder():
    linear = AmortizedNormal(5, 2, hidden_dims=())
    assert linear.features == 5
    conv = AmortizedNormal(64, 2, encoder=ConvEncoder((8, 8), 32))
    assert conv.features == 32
    loc, scale = conv.encode(torch.rand(3, 64))
    assert loc.shape == scale.shape == (3, 2) and (scale > 0).all()
    custom = AmortizedNormal(5, 2, encoder=torch.nn.Sequential(MLP(5, (), 7)))
    assert custom.features == 7


def test_context_is_concatenated_and_checked():
    guide = AmortizedNormal(5, 2, hidden_dims=(8,), context_dim=3)
    z = guide(torch.rand(4, 5), torch.rand(4, 3))
    assert z.shape == (4, 2)
    with pytest.raises(ValueError, match=r"call it as guide\(x, c\)"):
        guide(torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"c must have shape \(4, 3\), got \(4, 2\)"):
        guide(torch.rand(4, 5), torch.rand(4, 2))


def test_guide_ignores_model_arguments_without_context():
    guide = AmortizedNormal(5, 2, hidden_dims=(8,))
    assert guide(torch.rand(4, 5), torch.arange(4)).shape == (4, 2)


def test_custom_site_and_plate_names():
    guide = AmortizedNormal(5, 2, hidden_dims=(8,), site="w", plate="batch")
    trace = poutine.trace(guide).get_trace(torch.rand(4, 5))
    assert "w" in trace.nodes and "batch" in trace.nodes


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x_dim": -1}, "x_dim must be a positive integer"),
        ({"z_dim": 0}, "z_dim must be a positive integer"),
        ({"context_dim": -1}, "context_dim must be a non-negative integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"x_dim": 5, "z_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        AmortizedNormal(**args)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 5\)"):
        AmortizedNormal(5, 2)(torch.rand(3, 4))
    pyro.clear_param_store()
