"""Edge cases that once made pyrovi's own code warn: they must run with warnings as errors."""

import math
import warnings

import numpy as np
import pytest
import torch

from pyrovi.diagnostics import pareto_khat, psis


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_psis_of_a_set_without_a_finite_weight_does_not_warn(no_warnings):
    """All weights zero (log weights -inf): -inf - -inf was computed and warned (psis.py)."""
    smoothed, khat = psis(torch.full((100,), -math.inf, dtype=torch.float64))
    assert khat.item() == math.inf and (smoothed == -math.inf).all()
    smoothed, khat = psis(np.full((100,), -np.inf))
    assert khat.item() == math.inf


def test_psis_with_one_empty_set_among_others_does_not_warn_nor_change(no_warnings):
    lw = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    alone = [psis(lw[:, j]) for j in (0, 2)]
    lw[:, 1] = -math.inf
    smoothed, khat = psis(lw)
    assert khat[1].item() == math.inf and (smoothed[:, 1] == -math.inf).all()
    for j, (s, k) in zip((0, 2), alone, strict=True):  # the other sets are untouched
        assert khat[j].item() == k.item() and torch.equal(smoothed[:, j], s)


def test_psis_with_some_zero_weights_and_constant_weights_does_not_warn(no_warnings):
    lw = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lw[::3] = -math.inf  # some draws outside the posterior's support
    assert math.isfinite(pareto_khat(lw).item())
    assert pareto_khat(torch.full((100,), 2.5, dtype=torch.float64)).item() == -math.inf


def test_vectorized_particles_do_not_log_pyros_plate_guess(capfd):
    """Pyro logs "Guessed max_plate_nesting" at INFO to stderr; fit's default loss hides it."""
    import pyro
    import pyro.distributions as dist

    from pyrovi.infer import FastTrace_ELBO

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(pyro.param("m", torch.tensor(0.0)), 1.0))

    pyro.clear_param_store()
    for validation in (True, False):
        with pyro.validation_enabled(validation):
            loss = FastTrace_ELBO(num_particles=4, vectorize_particles=True)
            assert torch.isfinite(loss.differentiable_loss(model, guide, torch.zeros(3)))
    assert "Guessed max_plate_nesting" not in capfd.readouterr().err
    pyro.clear_param_store()
