"""Markov-chain autoencoder against a linear-Gaussian chain whose posterior is known exactly."""

from __future__ import annotations

import math
import warnings

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from pyrovi.guides import BackwardChain
from pyrovi.infer.evidence import elbo as elbo_per_point
from pyrovi.models import MarkovChainVAE
from pyrovi.models.markov_chain import AffineGaussianTransition

T, D = 4, 2
DT = 0.25
THETA = torch.tensor([1.0, 2.5], dtype=torch.float64)  # OU mean reversion per coordinate
MU = torch.tensor([0.5, -1.0], dtype=torch.float64)
G = torch.tensor([0.8, 1.2], dtype=torch.float64)  # diffusion
M0 = torch.tensor([-1.0, 0.3], dtype=torch.float64)
S0 = torch.tensor([0.6, 0.9], dtype=torch.float64)


def ou_chain(device):
    """Euler–Maruyama OU transitions z' = a z + b + σ ε, per coordinate."""
    a = 1 - THETA * DT
    b = THETA * MU * DT
    sigma = G * math.sqrt(DT)
    return a.to(device), b.to(device), sigma.to(device)


def joint_gaussian(device):
    """Mean ``(T+1, D)`` and covariance ``(D, T+1, T+1)`` of (z_0, ..., z_T) per coordinate."""
    a, b, sigma = ou_chain(device)
    mean = [M0.to(device)]
    cov = torch.zeros(D, T + 1, T + 1, dtype=torch.float64, device=device)
    cov[:, 0, 0] = S0.to(device) ** 2
    for t in range(T):
        mean.append(a * mean[-1] + b)
        # Cov(z_{t+1}, z_s) = a Cov(z_t, z_s) for s <= t
        cov[:, t + 1, : t + 1] = a[:, None] * cov[:, t, : t + 1]
        cov[:, : t + 1, t + 1] = cov[:, t + 1, : t + 1]
        cov[:, t + 1, t + 1] = a**2 * cov[:, t, t] + sigma**2
    return torch.stack(mean), cov


def condition(mean, cov, target, given):
    """Weights ``(D, len(given))``, bias ``(D,)`` and variance ``(D,)`` of z_target | z_given."""
    s_gg = cov[:, given][:, :, given]
    s_tg = cov[:, target, given]
    w = torch.linalg.solve(s_gg, s_tg.unsqueeze(-1)).squeeze(-1)
    bias = mean[target] - (w * mean[given].T).sum(-1)
    var = cov[:, target, target] - (w * s_tg).sum(-1)
    return w, bias, var


def build_model(device):
    a, b, sigma = ou_chain(device)
    transition = AffineGaussianTransition(
        T,
        D,
        weight=a.expand(T, 1, D),
        bias=b.expand(T, D),
        scale=sigma.expand(T, D),
        learn=False,
    )
    model = MarkovChainVAE(T, D, transition=transition, prior_loc=M0, prior_scale=S0)
    return model.to(device)


def exact_reverse_guide(device):
    mean, cov = joint_gaussian(device)
    weight = torch.zeros(T, 1, D, dtype=torch.float64, device=device)
    bias = torch.zeros(T, D, dtype=torch.float64, device=device)
    scale = torch.zeros(T, D, dtype=torch.float64, device=device)
    for t in range(T):  # q(z_t | z_{t+1}) = p(z_t | z_{t+1}): the chain is Markov backwards too
        w, c, v = condition(mean, cov, t, [t + 1])
        weight[t, 0], bias[t], scale[t] = w[:, 0], c, v.sqrt()
    transition = AffineGaussianTransition(T, D, weight=weight, bias=bias, scale=scale, learn=False)
    return BackwardChain(T, D, transition=transition).to(device)


def exact_model_order_guide(device):
    mean, cov = joint_gaussian(device)
    weight = torch.zeros(T, 2, D, dtype=torch.float64, device=device)
    bias = torch.zeros(T, D, dtype=torch.float64, device=device)
    scale = torch.zeros(T, D, dtype=torch.float64, device=device)
    for t in range(T):  # q(z_t | z_{t-1}, x) = p(z_t | z_{t-1}, z_T)
        given = [T] if t == 0 else [t - 1, T]
        w, c, v = condition(mean, cov, t, given)
        if t > 0:
            weight[t, 0] = w[:, 0]
        weight[t, 1], bias[t], scale[t] = w[:, -1], c, v.sqrt()
    transition = AffineGaussianTransition(
        T, D, num_inputs=2, weight=weight, bias=bias, scale=scale, learn=False
    )
    return BackwardChain(T, D, transition=transition, order="model").to(device)


def exact_log_px(x, device):
    mean, cov = joint_gaussian(device)
    return torch.distributions.Normal(mean[T], cov[:, T, T].sqrt()).log_prob(x).sum(-1)


def sample_x(n, device):
    model = build_model(device)
    return model(None, num_samples=n).detach()


def test_exact_backward_transitions_give_elbo_equal_to_log_px(device):
    torch.set_default_dtype(torch.float64)
    model, guide = build_model(device), exact_reverse_guide(device)
    x = sample_x(64, device)
    est = elbo_per_point(model, guide, x, num_samples=8)
    assert est.dtype == torch.float64
    torch.testing.assert_close(est, exact_log_px(x, device), rtol=0, atol=1e-6)
    loss = Trace_ELBO().loss(model, guide, x)  # single draw: exact, not just in expectation
    assert abs(-loss - float(exact_log_px(x, device).sum())) < 1e-6


def test_model_order_guide_with_closed_form_kl(device):
    torch.set_default_dtype(torch.float64)
    model, guide = build_model(device), exact_model_order_guide(device)
    x = sample_x(16, device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean field restriction" warning: same site order
        est = TraceMeanField_ELBO(num_particles=4000, vectorize_particles=True).loss(
            model, guide, x
        )
    exact = float(exact_log_px(x, device).sum())
    assert abs(-est - exact) < 0.05  # Monte Carlo only in log p(x | z_{T-1}) and z_t
    with pytest.warns(UserWarning, match="mean field"):
        TraceMeanField_ELBO().loss(model, exact_reverse_guide(device), x)


def test_trained_backward_chain_matches_exact_posterior(device):
    torch.set_default_dtype(torch.float64)
    pyro.set_rng_seed(1)
    model = build_model(device)
    guide = BackwardChain(T, D, transition="affine").to(device)
    x_train = sample_x(256, device)
    optim = pyro.optim.ClippedAdam({"lr": 0.08, "lrd": 0.99})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(300):
        svi.step(x_train)
    x_test = torch.tensor([[-1.5, 0.0], [0.4, -1.1], [1.2, -2.0]], device=device)
    est = elbo_per_point(model, guide, x_test, num_samples=4000)
    gap = exact_log_px(x_test, device) - est
    assert (gap > -5e-3).all() and (gap < 0.01).all(), gap
    mean, cov = joint_gaussian(device)
    with pyro.plate("draws", 20000, dim=-2), torch.no_grad():
        trace = pyro.poutine.trace(guide).get_trace(x_test)
    for t in range(T):
        w, c, v = condition(mean, cov, t, [T])
        exact_mean = w[:, 0] * x_test + c
        z = trace.nodes[f"z_{t}"]["value"]
        torch.testing.assert_close(z.mean(0), exact_mean, atol=0.03, rtol=0)
        torch.testing.assert_close(z.var(0), v.expand_as(exact_mean), atol=0, rtol=0.06)


def test_mlp_chain_trains_and_samples(device):
    model = MarkovChainVAE(3, 2, hidden=16).to(device)
    guide = BackwardChain(3, 2, hidden=16).to(device)
    x = torch.randn(128, 2, device=device) * 0.5 + 1.0
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    losses = [svi.step(x) for _ in range(150)]
    assert sum(losses[-20:]) < sum(losses[:20])
    chain = model.sample_chain(10)
    assert chain.shape == (10, 4, 2) and torch.isfinite(chain).all()
    params = {n for n, p in model.named_parameters()} | {n for n, p in guide.named_parameters()}
    assert params and all(p.grad is not None for p in guide.parameters())


def test_argument_errors():
    with pytest.raises(ValueError, match="T must be a positive integer"):
        MarkovChainVAE(0, 2)
    with pytest.raises(ValueError, match="x_dim must be a positive integer"):
        BackwardChain(3, 0)
    with pytest.raises(ValueError, match="order must be one of"):
        BackwardChain(3, 2, order="sideways")
    with pytest.raises(ValueError, match="transition must be one of"):
        MarkovChainVAE(3, 2, transition="spline")
    with pytest.raises(ValueError, match="prior_scale must be positive"):
        MarkovChainVAE(3, 2, prior_scale=-1.0)
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(batch, x_dim=2\)"):
        MarkovChainVAE(3, 2)(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="num_samples is needed"):
        MarkovChainVAE(3, 2)()
    with pytest.raises(ValueError, match=r"scale must have shape \(3, 2\)"):
        AffineGaussianTransition(3, 2, scale=torch.ones(2))
