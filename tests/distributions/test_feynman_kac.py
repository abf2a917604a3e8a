"""FeynmanKac: Wiener density minus the potential weight, ℓ_T through Trace_ELBO, shapes, errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovi.distributions import EulerMaruyama, FeynmanKac


def _harmonic(x):
    return 0.5 * x.pow(2).sum(-1)


def test_log_prob_of_a_given_path_is_wiener_density_minus_potential(device):
    torch.set_default_dtype(torch.float64)
    times = torch.tensor([0.0, 0.1, 0.25, 0.3], device=device)
    init = dist.Normal(torch.zeros(2, device=device), 1.0).to_event(1)
    fk = FeynmanKac(_harmonic, init, times)
    path = torch.randn(5, 4, 2, device=device)
    expected = init.log_prob(path[:, 0])
    for k in range(3):
        dt = times[k + 1] - times[k]
        step = dist.Normal(path[:, k], dt.sqrt()).to_event(1)
        expected = expected + step.log_prob(path[:, k + 1]) - _harmonic(path[:, k]) * dt
    assert torch.allclose(fk.log_prob(path), expected, atol=1e-10)
    # its own Brownian samples are scored the same way
    own = fk.rsample((3,))
    assert torch.allclose(fk.log_prob(own), fk.log_prob(own.clone()), atol=1e-10)


@pytest.mark.parametrize("substeps", [1, 3])
def test_guide_minus_model_log_prob_is_the_action(substeps, device):
    torch.set_default_dtype(torch.float64)
    times = torch.linspace(0, 0.5, 6, device=device)
    x0 = torch.randn(7, 2, device=device)
    guide = EulerMaruyama(lambda t, x: -x + 0.3, 1.0, x0, times, substeps)
    fk = FeynmanKac(_harmonic, x0, times, substeps)
    path = guide.rsample()
    ell = fk.action(path)
    assert ell.shape == (7,)
    assert torch.allclose(guide.log_prob(path) - fk.log_prob(path), ell, atol=1e-9)
    # by hand on the fine grid from the same Brownian increments
    h = 0.1 / substeps
    torch.manual_seed(11)
    again = guide.rsample()
    torch.manual_seed(11)
    dw = torch.randn(5 * substeps, 7, 2, device=device) * math.sqrt(h)
    x, hand = x0, torch.zeros(7, device=device)
    for k in range(5 * substeps):
        v = -x + 0.3
        hand = hand + (v * dw[k]).sum(-1) + (0.5 * v.pow(2).sum(-1) + _harmonic(x)) * h
        x = x + v * h + dw[k]
    assert torch.allclose(again[:, -1], x, atol=1e-10)
    assert torch.allclose(fk.action(again), hand, atol=1e-9)
    quad = fk.action(again, "quadratic")
    assert not torch.allclose(quad, hand, atol=1e-3)


def test_trace_elbo_loss_per_unit_time_is_the_direct_action(device):
    torch.set_default_dtype(torch.float64)
    walkers, horizon, n = 64, 2.0, 40
    times = torch.linspace(0, horizon, n + 1, device=device)
    x0 = torch.randn(walkers, 3, device=device)
    drift = torch.nn.Linear(3, 3).to(device=device, dtype=torch.float64)

    def model():
        with pyro.plate("walkers", walkers), pyro.poutine.scale(scale=1 / walkers):
            pyro.sample("path", FeynmanKac(_harmonic, x0, times))

    def guide():
        with pyro.plate("walkers", walkers), pyro.poutine.scale(scale=1 / walkers):
            pyro.sample("path", EulerMaruyama(lambda t, x: drift(x), 1.0, x0, times))

    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(model, guide) / horizon
    pyro.set_rng_seed(3)
    dw = torch.randn(n, walkers, 3, device=device) * math.sqrt(horizon / n)
    x, ell = x0, torch.zeros(walkers, device=device)
    with torch.no_grad():
        for k in range(n):
            v = drift(x)
            ell = (
                ell + (v * dw[k]).sum(-1) + (0.5 * v.pow(2).sum(-1) + _harmonic(x)) * (horizon / n)
            )
            x = x + v * horizon / n + dw[k]
    assert loss == pytest.approx(float(ell.mean()) / horizon, rel=1e-9, abs=1e-9)


def test_shapes_expand_and_plate(device):
    times = torch.linspace(0, 1, 5, device=device)
    fk = FeynmanKac(_harmonic, torch.zeros(3, 2, device=device), times, 2)
    assert fk.batch_shape == (3,) and fk.event_shape == (5, 2) and fk.num_steps == 8
    big = fk.expand((4, 3))
    assert isinstance(big, FeynmanKac) and big.potential is _harmonic
    y = big.rsample()
    assert y.shape == (4, 3, 5, 2) and big.log_prob(y).shape == (4, 3)
    assert "FeynmanKac(d=2" in repr(fk)


def test_errors_name_the_argument(device):
    times = torch.linspace(0, 1, 5, device=device)
    x0 = torch.zeros(3, 2, device=device)
    with pytest.raises(TypeError, match="potential must be a callable"):
        FeynmanKac(1.0, x0, times)
    fk = FeynmanKac(_harmonic, x0, times)
    with pytest.raises(ValueError, match="action: value must be a path sampled"):
        fk.action(torch.zeros(3, 5, 2, device=device))
    with pytest.raises(ValueError, match="estimator must be one of"):
        fk.action(fk.rsample(), "nope")
    with pytest.raises(ValueError, match="value: expected paths of shape"):
        fk.log_prob(torch.zeros(3, 4, 2, device=device))
    noisy = EulerMaruyama(lambda t, x: -x, 2.0, x0, times).rsample()
    with pytest.raises(ValueError, match="diffusion 1"):
        fk.action(noisy)
    other = EulerMaruyama(lambda t, x: -x, 1.0, x0, torch.linspace(0, 2, 5, device=device))
    with pytest.raises(ValueError, match="different time grid"):
        fk.action(other.rsample())
