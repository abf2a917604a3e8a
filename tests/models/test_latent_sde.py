"""LatentSDE and PosteriorSDE: Pyro sites, gradients, fit, Predictive, forecasting, errors."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO

from pyrovi.data import ornstein_uhlenbeck
from pyrovi.guides import PosteriorSDE
from pyrovi.infer import fit
from pyrovi.models import LatentSDE


def _pair(device, **kwargs):
    times = torch.linspace(0, 1, 8)
    model = LatentSDE(2, times, latent_dim=3, hidden=16, **kwargs).to(device)
    guide = PosteriorSDE(model, context_dim=8, hidden=16).to(device)
    return model, guide


def test_sites_and_shapes(device):
    model, guide = _pair(device, substeps=2)
    xs = torch.randn(5, 8, 2, device=device)
    tr = poutine.trace(guide).get_trace(xs)
    assert tr.nodes["z0"]["value"].shape == (5, 3)
    assert tr.nodes["z"]["value"].shape == (5, 8, 3)
    mtr = poutine.trace(poutine.replay(model, trace=tr)).get_trace(xs)
    assert mtr.nodes["x"]["fn"].event_shape == (8, 2)
    assert mtr.nodes["z"]["fn"].num_steps == 14
    prior = model(None, num_series=4)
    assert prior.shape == (4, 8, 3)


def test_gradients_reach_every_part(device):
    model, guide = _pair(device, prior="learned")
    xs = torch.randn(6, 8, 2, device=device)
    loss = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    loss.differentiable_loss(model, guide, xs).backward()
    for name, module in (
        ("prior drift", model.prior_drift),
        ("diffusion", model.diffusion),
        ("decoder", model.decoder),
        ("encoder", guide.encoder),
        ("posterior drift", guide.drift),
        ("q(z0|x)", guide.z0_net),
    ):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_diffusion_is_shared_not_owned_by_the_guide(device):
    model, guide = _pair(device)
    names = {n for n, _ in guide.named_parameters()}
    assert not any(n.startswith("diffusion") for n in names)
    assert guide.model is model


def test_fit_lowers_the_loss_and_forecasts(device):
    times = torch.linspace(0, 2, 12)
    data = ornstein_uhlenbeck(64, times, theta=1.5, sigma=0.3, x0=1.0, seed=0).values.to(device)
    model = LatentSDE(1, times, latent_dim=2, hidden=16, likelihood="gaussian", obs_scale=0.1)
    guide = PosteriorSDE(model, context_dim=8, hidden=16)
    model.to(device), guide.to(device)
    result = fit(
        model, guide, data, epochs=25, batch_size=32, lr=1e-2, kl_annealing=5, progress=False
    )
    elbos = result.history["train_elbo"]
    assert elbos[-1] > elbos[0] + 100  # per-epoch ELBO of the whole data set
    out = model.forecast(guide, data[:4], torch.tensor([2.2, 2.5]), num_samples=3)
    assert out["z"].shape == (3, 4, 2, 2) and out["mean"].shape == (3, 4, 2, 1)
    assert torch.isfinite(out["mean"]).all()
    pred = Predictive(model, guide=guide, num_samples=3, return_sites=["z", "x"])(data[:4])
    assert pred["z"].shape == (3, 4, 12, 2)


def test_mask_drops_missing_observations(device):
    model, guide = _pair(device)
    xs = torch.randn(3, 8, 2, device=device)
    mask = torch.ones(3, 8, dtype=torch.bool, device=device)
    mask[:, 3] = False
    tr = poutine.trace(guide).get_trace(xs, mask)
    mtr = poutine.trace(poutine.replay(model, trace=tr)).get_trace(xs, mask)
    changed = xs.clone()
    changed[:, 3] = 100.0
    mtr2 = poutine.trace(poutine.replay(model, trace=tr)).get_trace(changed, mask)
    lp1 = mtr.nodes["x"]["fn"].log_prob(xs)
    lp2 = mtr2.nodes["x"]["fn"].log_prob(changed)
    assert torch.allclose(lp1, lp2)


def test_bad_input_messages(device):
    model, guide = _pair(device)
    with pytest.raises(ValueError, match=r"xs must have shape \(batch, len\(times\)=8"):
        with pyro.validation_enabled(True):
            model(torch.zeros(2, 7, 2, device=device))
    bad = torch.zeros(2, 8, 2, device=device)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.check_data(bad)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model.check_data(torch.zeros(2, 8, 2), torch.ones(2, 8))
    with pytest.raises(ValueError, match="num_series is needed"):
        model(None)
    with pytest.raises(ValueError, match="prior must be one of"):
        LatentSDE(2, torch.linspace(0, 1, 3), prior="gp")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        LatentSDE(2, torch.linspace(0, 1, 3), likelihood="poisson")
    with pytest.raises(ValueError, match="strictly increasing"):
        LatentSDE(2, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(TypeError, match="model must be a LatentSDE"):
        PosteriorSDE(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="future_times must be"):
        model.forecast(guide, torch.zeros(2, 8, 2, device=device), torch.tensor([0.5]))
