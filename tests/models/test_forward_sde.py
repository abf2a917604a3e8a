"""ForwardSDE / BackwardSDE: time convention, exact time reversal, training in both modes."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrovi.guides import BackwardSDE
from pyrovi.guides.backward_sde import TimeReversedPath
from pyrovi.infer.evidence import elbo
from pyrovi.models import ForwardSDE
from pyrovi.models.potentials import DoubleWell, MullerBrown

THETA, G, M0, S0, T_END = 1.5, 0.8, -1.0, 0.5, 1.0


def ou_model(num_steps, device):
    init = dist.Normal(torch.tensor([M0], device=device), torch.tensor([S0], device=device))
    return ForwardSDE(
        1,
        T_END,
        num_steps,
        drift=lambda t, z: -THETA * z,
        diffusion=G,
        init=init.to_event(1),
        learn=False,
    ).to(device)


def ou_marginals(num_steps, device):
    """Means and variances of the Euler–Maruyama OU chain at t_0..t_K (exact, Gaussian)."""
    dt = T_END / num_steps
    a = 1 - THETA * dt
    m, v = [M0], [S0**2]
    for _ in range(num_steps):
        m.append(a * m[-1])
        v.append(a * a * v[-1] + G * G * dt)
    return torch.tensor(m, device=device), torch.tensor(v, device=device)


def exact_reversal_guide(model, num_steps, device):
    """b(s, y) = −f + g² ∇log p_t(y): the time reversal of the OU chain's SDE (Anderson)."""
    m, v = ou_marginals(num_steps, device)
    dt = T_END / num_steps

    def drift(s, y):
        k = torch.round((T_END - s) / dt).long()
        return THETA * y - G * G * (y - m[k]) / v[k]

    return BackwardSDE(model, drift=drift)


def log_px(x, num_steps, device):
    m, v = ou_marginals(num_steps, device)
    return dist.Normal(m[-1], v[-1].sqrt()).log_prob(x).squeeze(-1)


def test_guide_path_is_in_forward_time(device):
    model = ou_model(8, device)
    guide = BackwardSDE(model, drift=lambda s, y: torch.zeros_like(y))
    x = torch.tensor([[3.0], [-3.0]], device=device)
    trace = pyro.poutine.trace(guide).get_trace(x)
    path = trace.nodes["z"]["value"]
    assert path.shape == (2, 8, 1)  # z(t_0..t_7); z(t_8) = x is the observed site
    assert isinstance(trace.nodes["z"]["fn"], TimeReversedPath)
    # zero backward drift: z(t_7) = x + one step of noise; the path wanders away from x
    assert ((path[:, -1] - x).abs() < 1.5).all()
    lp = trace.nodes["z"]["fn"].log_prob(path)
    steps = torch.cat([x.unsqueeze(1), path.flip(1)], 1).diff(dim=1)
    expected = dist.Normal(0.0, G * (T_END / 8) ** 0.5).log_prob(steps).sum((1, 2))
    torch.testing.assert_close(lp, expected)


def test_exact_time_reversal_gives_tight_elbo(device):
    """With the exact reversed drift the gap to log p(x) is small and vanishes as Δt → 0."""
    torch.set_default_dtype(torch.float64)
    x = torch.linspace(-1.5, 1.0, 6, device=device).unsqueeze(-1)
    gaps = []
    for num_steps in (10, 40):
        model = ou_model(num_steps, device)
        guide = exact_reversal_guide(model, num_steps, device)
        gap = log_px(x, num_steps, device) - elbo(model, guide, x, num_samples=20000)
        gaps.append(gap)
    assert (gaps[0] > -2e-3).all() and (gaps[0] < 0.1).all(), gaps[0]
    assert (gaps[1] > -2e-3).all() and (gaps[1] < 0.01).all(), gaps[1]
    assert gaps[1].mean() < gaps[0].mean() / 4


def test_trained_backward_sde_recovers_log_px(device):
    """Fixed forward dynamics, learned backward SDE (trajectory inference): ELBO → log p(x)."""
    torch.set_default_dtype(torch.float64)
    pyro.set_rng_seed(0)
    num_steps = 10
    model = ou_model(num_steps, device)
    guide = BackwardSDE(model, hidden=16).to(device)
    x_train = model(None, num_samples=128).detach()
    optim = pyro.optim.ClippedAdam({"lr": 0.03, "lrd": 0.99})
    svi = SVI(model, guide, optim, Trace_ELBO(num_particles=2, vectorize_particles=True))
    for _ in range(150):
        svi.step(x_train)
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.linspace(-1.5, 1.0, 6, device=device).unsqueeze(-1)
    gap = log_px(x, num_steps, device) - elbo(model, guide, x, num_samples=4000)
    assert (gap > -0.01).all() and (gap < 0.05).all(), gap


def test_fixed_backward_learns_forward(device):
    """Fix the backward (noising OU) SDE and learn only the forward drift: a diffusion model."""
    pyro.set_rng_seed(0)
    model = ForwardSDE(1, 3.0, 15, hidden=16).to(device)
    guide = BackwardSDE(model, drift=lambda s, y: -0.5 * y, learn=False).to(device)
    assert not list(guide.parameters())
    data = 2.0 + 0.3 * torch.randn(256, 1, device=device)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step(data) / 256 for _ in range(120)]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    x = model.simulate(2000)[:, -1, 0]
    assert abs(float(x.mean()) - 2.0) < 0.3 and float(x.std()) < 0.8


def test_potentials_forces_are_minus_gradients():
    torch.set_default_dtype(torch.float64)
    z = torch.randn(7, 2, requires_grad=True)
    for pot in (DoubleWell(1.3), MullerBrown(0.05)):
        (grad,) = torch.autograd.grad(pot.energy(z).sum(), z)
        torch.testing.assert_close(pot(0.0, z), -grad)
    mb = MullerBrown(1.0)
    for minimum in MullerBrown.MINIMA:  # force vanishes at the minima
        assert mb(0.0, torch.tensor(minimum)).norm() < 0.5


def test_argument_errors():
    with pytest.raises(ValueError, match="num_steps must be >= 2"):
        ForwardSDE(1, 1.0, 1)
    with pytest.raises(ValueError, match="t_end must be a positive number"):
        ForwardSDE(1, -1.0)
    with pytest.raises(ValueError, match="diffusion: a constant must be positive"):
        ForwardSDE(1, diffusion=-0.5)
    with pytest.raises(ValueError, match=r"init must be a distribution with event_shape \(2,\)"):
        ForwardSDE(2, init=dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="drift must be 'mlp' or a callable"):
        ForwardSDE(1, drift="linear")
    model = ForwardSDE(1)
    with pytest.raises(ValueError, match="drift must be 'score', 'mlp' or a callable"):
        BackwardSDE(model, drift="ou")
    with pytest.raises(TypeError, match="model must be a ForwardSDE"):
        BackwardSDE(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"x must be a tensor of shape \(batch, x_dim=1\)"):
        BackwardSDE(model)(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="barrier must be a positive number"):
        DoubleWell(0.0)
