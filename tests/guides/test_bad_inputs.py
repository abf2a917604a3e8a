"""Bad arguments and data of the guides (issue 17): named in the message, never iterated as a
string, truncated or passed on as NaN."""

import pytest
import torch

from pyrovi.guides import (
    AmortizedFlow,
    AmortizedMultivariateNormal,
    AmortizedNormal,
    BottomUpGuide,
    FlowGuide,
    PosteriorSDE,
    TopDownGuide,
    VQEncoder,
)
from pyrovi.models import VQVAE, LatentSDE

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "make",
    [
        lambda h: AmortizedNormal(4, 2, h),
        lambda h: AmortizedMultivariateNormal(4, 2, h),
        lambda h: AmortizedFlow(4, 2, hidden_dims=h),
        lambda h: AmortizedNormal(4, 2, h, encoder=torch.nn.Linear(4, 8)),  # checked anyway
        lambda h: VQEncoder(VQVAE(4, hidden_dims=(8,)), h),
    ],
)
@pytest.mark.parametrize(
    "hidden, error, match",
    [
        ("16", TypeError, "hidden_dims must be a sequence .* the string '16'"),
        (16, TypeError, "hidden_dims must be a sequence of positive integers"),
        ((2.5,), ValueError, "hidden_dims .* entry 0 is 2.5"),
        ((0,), ValueError, "hidden_dims .* entry 0 is 0"),
        ((8, -1), ValueError, "hidden_dims .* entry 1 is -1"),
        ((False,), ValueError, "hidden_dims .* entry 0 is False"),
    ],
)
def test_every_hidden_dims_is_checked(make, hidden, error, match):
    with pytest.raises(error, match=match):
        make(hidden)


def test_hierarchical_guides_name_bad_widths_and_scales():
    with pytest.raises(ValueError, match="hidden_dims must be a sequence of 1 sequences"):
        TopDownGuide(4, (2,), "16")
    with pytest.raises(ValueError, match="min_scale must be a non-negative number, got -1.0"):
        BottomUpGuide(4, (2,), ((8,),), min_scale=-1.0)
    with pytest.raises(TypeError, match="plate must be the name of a pyro.plate"):
        BottomUpGuide(4, (2,), ((8,),), plate=3)
    with pytest.raises(ValueError, match="x contains NaN"):
        BottomUpGuide(4, (2,), ((8,),))(torch.tensor([[0.0, NAN, 0.0, 0.0]]))


def test_amortized_guide_options_and_data():
    cases = [
        (lambda: AmortizedNormal(4, 2, (8,), min_scale=INF), ValueError, "min_scale must be a"),
        (lambda: AmortizedNormal(4, 2, (8,), site=3), TypeError, "site must be the name of a"),
        (lambda: AmortizedNormal(4, 2, (8,), plate=""), TypeError, "plate must be the name"),
        (lambda: AmortizedNormal(4, 2, encoder=3), TypeError, "encoder must be an nn.Module"),
        (lambda: AmortizedNormal(4, 2, (8,))(torch.empty(0, 4)), ValueError, r"x is empty"),
        (
            lambda: AmortizedNormal(4, 2, (8,))(torch.ones(3, 4, dtype=torch.long)),
            TypeError,
            "x must be a floating-point tensor",
        ),
        (
            lambda: AmortizedNormal(4, 2, (8,))(torch.full((3, 4), NAN)),
            ValueError,
            "x contains NaN or infinite values",
        ),
        (
            lambda: VQEncoder(VQVAE(4, hidden_dims=(8,)), commitment=INF),
            ValueError,
            "commitment must be a non-negative number, got inf",
        ),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()


def test_flow_guide_checks_its_sizes_at_construction():
    def model():
        pass

    with pytest.raises(ValueError, match="num_layers must be a positive integer, got 2.5"):
        FlowGuide(model, num_layers=2.5)
    with pytest.raises(ValueError, match="hidden_features must be a positive integer, got 0"):
        FlowGuide(model, hidden_features=0)
    with pytest.raises(TypeError, match="model must be a Pyro model"):
        FlowGuide(3)


def test_posterior_sde_names_bad_sizes_and_series():
    model = LatentSDE(2, torch.linspace(0, 1, 5), latent_dim=2, hidden=8)
    with pytest.raises(ValueError, match="context_dim must be a positive integer, got 0"):
        PosteriorSDE(model, 0)
    with pytest.raises(ValueError, match="hidden must be a positive integer, got 2.5"):
        PosteriorSDE(model, 4, 2.5, encoder=torch.nn.Identity())
    with pytest.raises(TypeError, match="encoder must be an nn.Module"):
        PosteriorSDE(model, 4, 8, encoder=3)
    guide = PosteriorSDE(model, 4, 8)
    with pytest.raises(ValueError, match=r"xs must have shape \(batch, len\(times\)=5"):
        guide(torch.zeros(2, 6, 2))
    with pytest.raises(ValueError, match="xs contains NaN or infinite values"):
        guide(torch.full((2, 5, 2), NAN))
