"""DDPM: schedules, closed-form noising, and a known-answer test on Gaussian data."""

from __future__ import annotations

import math
import warnings

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrovi.models import DDPM
from pyrovi.models.ddpm import AffineEpsilon, beta_schedule

MU, S = [1.0, -0.5], 0.5


def gaussian_data(n, device):
    mu = torch.tensor(MU, device=device)
    return mu + S * torch.randn(n, 2, device=device)


def exact_log_lik(x):
    mu = torch.tensor(MU, dtype=x.dtype, device=x.device)
    return torch.distributions.Normal(mu, S).log_prob(x).sum(-1)


def plug_in_exact_reverse(model):
    """Set an affine-ε DDPM to the exact reverse conditionals q(z_{t-1} | z_t) of N(μ, s² I)."""
    ab, a, b = model.alpha_bar, model.alphas, model.betas
    mu = torch.tensor(MU, dtype=ab.dtype, device=ab.device)
    m_t = torch.cat([mu[None], ab.sqrt()[:, None] * mu])  # marginal means of z_0..z_T
    v_t = torch.cat([ab.new_tensor([S**2]), ab * S**2 + 1 - ab])  # marginal variances
    slope = a.sqrt() * v_t[:-1] / v_t[1:]  # E[z_{t-1} | z_t] = slope z_t + offset
    offset = m_t[:-1] - slope[:, None] * m_t[1:]
    var = v_t[:-1] - a * v_t[:-1] ** 2 / v_t[1:]
    c = b / (1 - ab).sqrt()  # mean = (z - c ε) / √α
    with torch.no_grad():
        model.network.weight.copy_(((1 - a.sqrt() * slope) / c)[:, None].expand(-1, 2))
        model.network.bias.copy_(-a.sqrt()[:, None] * offset / c[:, None])
        model.log_var.copy_(var.log())


def test_schedules():
    lin = beta_schedule("linear", 1000)
    assert lin.dtype == torch.float64 and lin.shape == (1000,)
    assert math.isclose(lin[0], 1e-4) and math.isclose(lin[-1], 0.02)
    assert (lin[1:] > lin[:-1]).all()
    cos = beta_schedule("cosine", 100)
    alpha_bar = torch.cumprod(1 - cos, 0)
    s = 0.008
    f = lambda t: math.cos((t / 100 + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    assert math.isclose(alpha_bar[49], f(50) / f(0), rel_tol=1e-10)
    assert cos.max() <= 0.999 and (cos > 0).all()
    with pytest.raises(ValueError, match="schedule must be one of"):
        beta_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        beta_schedule("linear", 0)
    with pytest.raises(ValueError, match="need 0 < beta_start <= beta_end"):
        beta_schedule("linear", 10, beta_start=0.5, beta_end=0.1)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_q_matches_chained_steps(schedule, device):
    torch.set_default_dtype(torch.float64)
    model = DDPM(2, 40, schedule).to(device)
    x = torch.tensor([[1.5, -2.0]], device=device)
    # exact: chaining z_t = √(1-β_t) z_{t-1} + √β_t ε gives a mean coefficient and a variance
    coef, var = torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    z = x.expand(200_000, 2).clone()
    for t in range(1, model.T + 1):
        beta = model.betas[t - 1].cpu()
        coef, var = coef * (1 - beta).sqrt(), (1 - beta) * var + beta
        z = (1 - beta).sqrt() * z + beta.sqrt() * torch.randn_like(z)
        mean_t, var_t = model.q_mean_var(x, t)
        torch.testing.assert_close(mean_t, coef.to(device) * x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var_t, var.to(device).reshape(1), rtol=1e-12, atol=1e-12)
        if t in (1, 10, 40):  # and by sampling
            torch.testing.assert_close(z.mean(0), mean_t[0], atol=0.01, rtol=0)
            torch.testing.assert_close(z.var(0), var_t[0].expand(2), atol=0, rtol=0.02)


def test_exact_reverse_gives_exact_elbo(device):
    """With the exact reverse conditionals, E[ELBO] = E[log p(x)] − KL(q(z_T) ‖ N(0, I))."""
    torch.set_default_dtype(torch.float64)
    for schedule in ("linear", "cosine"):
        model = DDPM(2, 50, schedule, network="affine").to(device)
        plug_in_exact_reverse(model)
        x = gaussian_data(4000, device)
        with torch.no_grad():
            gap = (-model.nll_bound(x, num_samples=4) - exact_log_lik(x)).mean() / 2
        assert abs(float(gap)) < 0.01, (schedule, gap)
        samples = model.sample(20000)
        torch.testing.assert_close(
            samples.mean(0), torch.tensor(MU, device=device), atol=0.02, rtol=0
        )
        torch.testing.assert_close(
            samples.std(0), torch.full((2,), S, device=device), atol=0.02, rtol=0
        )


@pytest.mark.slow
def test_trained_ddpm_on_gaussian_data(device):
    torch.set_default_dtype(torch.float64)
    model = DDPM(AffineEpsilon(2, 50), 50, "linear").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 250)
    for _ in range(250):
        loss = model.nll_bound(gaussian_data(256, device)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    x = gaussian_data(20000, device)
    with torch.no_grad():
        elbo = -model.nll_bound(x, num_samples=2)
        bpd = model.bits_per_dim(x[:10])
    gap_per_dim = float((exact_log_lik(x) - elbo).mean()) / 2
    assert -0.01 < gap_per_dim < 0.02, gap_per_dim
    assert bpd.shape == (10,) and torch.isfinite(bpd).all()
    samples = model.sample(20000)
    torch.testing.assert_close(samples.mean(0), torch.tensor(MU, device=device), atol=0.03, rtol=0)
    torch.testing.assert_close(
        samples.std(0), torch.full((2,), S, device=device), atol=0.03, rtol=0
    )


def test_pyro_elbos_agree_with_nll_bound(device):
    """Trace_ELBO (Monte Carlo) and TraceMeanField_ELBO (closed-form KLs) estimate −nll_bound."""
    torch.set_default_dtype(torch.float64)
    model = DDPM(2, 10, "cosine", hidden=16).to(device)
    x = gaussian_data(32, device)
    with torch.no_grad():
        bound = float(model.nll_bound(x, num_samples=500).sum())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # guide samples in the model's order
            mf = TraceMeanField_ELBO(num_particles=500, vectorize_particles=True)
            analytic = mf.loss(model, model.guide, x)
        mc = Trace_ELBO(num_particles=500, vectorize_particles=True).loss(model, model.guide, x)
    assert abs(analytic - bound) < 0.02 * abs(bound) + 0.5
    assert abs(mc - bound) < 0.02 * abs(bound) + 1.0
    samples = pyro.poutine.trace(model).get_trace(None, num_samples=5).nodes["x"]["value"]
    assert samples.shape == (5, 2)


@pytest.mark.parametrize("kind", ["elbo", "simple", "hybrid"])
def test_losses_train(kind, device):
    model = DDPM(2, 20, "cosine", hidden=32).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = gaussian_data(256, device)
    for _ in range(60):
        loss = model.loss(x, kind).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    if kind == "simple":  # the simple loss does not see the variances
        assert model.log_var.grad is None or model.log_var.grad.abs().sum() == 0
    else:
        assert model.log_var.grad.abs().sum() > 0
    assert model.sample(3, return_chain=True).shape == (3, 21, 2)


def test_argument_errors():
    with pytest.raises(ValueError, match="variance must be one of"):
        DDPM(2, 10, variance="huge")
    with pytest.raises(ValueError, match="x_dim is needed"):
        DDPM(None, 10)
    with pytest.raises(ValueError, match="schedule must be one of"):
        DDPM(2, 10, "sigmoid")
    with pytest.raises(ValueError, match=r"schedule: a tensor of T=10 values"):
        DDPM(2, 10, torch.full((5,), 0.1))
    model = DDPM(2, 10)
    with pytest.raises(ValueError, match="kind must be one of"):
        model.loss(torch.zeros(4, 2), "l2")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\), got \(4, 3\)"):
        model.nll_bound(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="t: integer steps in 1..T=10"):
        model.q_mean_var(torch.zeros(4, 2), 0)


def test_nll_bound_in_chunks_of_steps(monkeypatch, device):
    import pyrovi.models.ddpm as ddpm_module

    torch.set_default_dtype(torch.float64)
    model = DDPM(2, 30, "linear", network="affine").to(device)
    plug_in_exact_reverse(model)
    x = gaussian_data(4000, device)
    monkeypatch.setattr(ddpm_module, "NLL_CHUNK_ROWS", 8000)  # one step per network call
    with torch.no_grad():
        chunked = model.nll_bound(x, num_samples=2)
    assert chunked.shape == (4000,)
    gap_per_dim = float((-chunked - exact_log_lik(x)).mean()) / 2
    assert abs(gap_per_dim) < 0.015, gap_per_dim
