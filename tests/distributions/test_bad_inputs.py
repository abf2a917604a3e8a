"""Bad coefficients and arguments of the distributions (issue 17): a drift, diffusion or potential
that returns NaN or a wrong shape is named, with what was expected and what came."""

import pytest
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform

from pyrovi.distributions import (
    ElementwiseAffine,
    EulerMaruyama,
    FeynmanKac,
    NFlowsDistribution,
    flow_layers,
)

NAN = float("nan")
TIMES = torch.linspace(0.0, 0.1, 3)


def _sde(drift, diffusion=1.0, init=None, **kwargs):
    init = torch.zeros(4, 2) if init is None else init
    return EulerMaruyama(drift, diffusion, init, TIMES, **kwargs)


@pytest.mark.parametrize(
    "drift, diffusion, error, match",
    [
        (lambda t, x: x * NAN, 1.0, ValueError, r"drift returned NaN or infinite values at step 0"),
        (
            lambda t, x: x[..., :1],
            1.0,
            ValueError,
            r"drift returned a tensor of shape \(4, 1\), expected \(4, 2\)",
        ),
        (
            lambda t, x: torch.zeros(3),
            1.0,
            ValueError,
            r"drift returned a tensor of shape \(3,\), expected \(4, 2\)",
        ),
        (lambda t, x: 0.0, 1.0, TypeError, "drift must return a tensor"),
        (
            0.0,
            lambda t, x: torch.full_like(x, NAN),
            ValueError,
            "diffusion returned NaN or infinite values at step 0",
        ),
        (
            0.0,
            lambda t, x: torch.ones(x.shape + (2,)),
            ValueError,
            r"diffusion returned a tensor of shape \(4, 2, 2\), expected \(4, 2\), \(\.\.\., 1\)",
        ),
        (0.0, lambda t, x: 1.0, TypeError, "diffusion must return a tensor"),
    ],
)
@pytest.mark.parametrize("solver", ["em", "euler"])
def test_bad_coefficients_are_named_when_sampling(drift, diffusion, error, match, solver):
    with pytest.raises(error, match=match):
        _sde(drift, diffusion, solver=solver).rsample()


def test_a_later_nan_and_an_overflow_are_located():
    def late_nan(t, x):
        return torch.where(t > 0.04, torch.full_like(x, NAN), torch.zeros_like(x))

    with pytest.raises(ValueError, match=r"drift returned NaN .* at step 1 \(t = 0.05\)"):
        _sde(late_nan).rsample()
    # the drift stays finite (x grows by 5% a step) but the states overflow float32 at step 3
    grow = EulerMaruyama(lambda t, x: x, 1.0, torch.full((4, 2), 3e38), torch.linspace(0, 0.5, 11))
    with pytest.raises(ValueError, match="the path became NaN or infinite at step 3"):
        grow.rsample()


def test_scoring_a_path_checks_the_coefficients_of_the_scoring_sde():
    path = _sde(0.0).rsample()
    for drift, match in [
        (lambda t, x: x * NAN, "drift returned NaN or infinite values on finite states"),
        (lambda t, x: x[..., :1], r"drift returned a tensor of shape \(2, 4, 1\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            _sde(drift).log_prob(path)  # Girsanov ratio against the sampler's path
        with pytest.raises(ValueError, match=match):
            _sde(drift).log_prob(path.clone())  # a plain tensor: the coarse density


def test_bad_constants_and_initial_states():
    cases = [
        (lambda: _sde(0.0, init=torch.full((4, 2), NAN)), ValueError, "init: the initial states"),
        (
            lambda: _sde(torch.zeros(3)),
            ValueError,
            r"drift: a constant vector must have the state dimension d=2 .* got shape \(3,\)",
        ),
        (lambda: _sde(0.0, torch.ones(3)), ValueError, "diffusion: a constant vector"),
        (lambda: _sde("x"), TypeError, "drift must be a callable"),
        (lambda: _sde(0.0, True), TypeError, "diffusion must be a callable"),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()


@pytest.mark.parametrize(
    "potential, error, match",
    [
        (lambda x: x.sum(-1) * NAN, ValueError, "potential returned NaN or infinite values"),
        (
            lambda x: x * x,
            ValueError,
            r"potential returned a tensor of shape \(2, 4, 2\), expected \(2, 4\): one energy per",
        ),
        (lambda x: 1.0, TypeError, "potential must return a tensor"),
    ],
)
def test_feynman_kac_names_a_bad_potential(potential, error, match):
    fk = FeynmanKac(potential, torch.zeros(4, 2), TIMES)
    path = _sde(0.0).rsample()
    with pytest.raises(error, match=match):
        fk.log_prob(path)
    with pytest.raises(error, match=match):
        fk.log_prob(path.clone())


def test_feynman_kac_accepts_a_constant_potential():
    fk = FeynmanKac(lambda x: torch.tensor(2.0), torch.zeros(4, 2), TIMES)
    torch.testing.assert_close(fk.potential_integral(_sde(0.0).rsample()), torch.full((4,), 0.2))


def _flow(features=2):
    return Flow(
        CompositeTransform([flow_layers("maf", features, 1, 8)]), StandardNormal([features])
    )


def test_flow_arguments():
    cases = [
        (lambda: NFlowsDistribution(_flow(), features=2.5), "features must be a positive integer"),
        (lambda: NFlowsDistribution(_flow(), features=0), "features must be a positive integer"),
        (
            lambda: NFlowsDistribution(_flow(), features=3),
            r"features=3 does not match the flow, whose base distribution is over R\^2",
        ),
        (
            lambda: NFlowsDistribution(_flow()).log_prob(torch.full((3, 2), NAN)),
            "value contains NaN or infinite values",
        ),
        (lambda: flow_layers("nsf", 2, 1, 8, num_bins=0), "num_bins must be a positive integer"),
        (lambda: flow_layers("nsf", 2, 1, 8, tail_bound=-1.0), "tail_bound must be a positive"),
        (lambda: flow_layers("maf", 2, 1, 8, 0), "context_features must be a positive integer"),
        (lambda: ElementwiseAffine(0), "features must be a positive integer, got 0"),
        (lambda: ElementwiseAffine(2, min_scale=-1.0), "min_scale must be a non-negative"),
        (lambda: ElementwiseAffine(2, min_scale=1.0), "min_scale must be below 1"),
        (lambda: ElementwiseAffine(2, 2.5), "context_features must be a positive integer"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()
    ElementwiseAffine(2, 3, min_scale=1.0)  # a conditional layer may have any floor
