"""EulerMaruyama: path density, shapes, path KL through Trace_ELBO, torchsde solvers, errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyrovi.distributions import EulerMaruyama


def _ou_drift(theta):
    return lambda t, x: -theta * x


def test_ou_log_prob_matches_hand_computed_transitions(device):
    torch.set_default_dtype(torch.float64)
    theta, sigma = 0.7, 0.4
    times = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.6], device=device)
    init = dist.Normal(torch.zeros(2, device=device), 1.0).to_event(1)
    sde = EulerMaruyama(_ou_drift(theta), sigma, init, times)
    for path in (sde.rsample((3,)), torch.randn(3, 5, 2, device=device)):
        expected = init.log_prob(path[:, 0])
        for k in range(4):
            dt = times[k + 1] - times[k]
            x = path[:, k]
            step = dist.Normal(x - theta * x * dt, sigma * dt.sqrt()).to_event(1)
            expected = expected + step.log_prob(path[:, k + 1])
        assert torch.allclose(sde.log_prob(path), expected, atol=1e-10)
        assert torch.allclose(sde.log_prob(path.clone()), expected, atol=1e-10)


@pytest.mark.parametrize("dt, close", [(0.01, True), (0.25, False)])
def test_ou_marginal_approaches_exact_as_dt_shrinks(dt, close, device):
    torch.set_default_dtype(torch.float64)
    theta, sigma, t_end, n = 1.0, 1.0, 2.0, 20000
    times = torch.tensor([0.0, t_end], device=device)
    x0 = torch.ones(1, device=device)
    sde = EulerMaruyama(_ou_drift(theta), sigma, x0, times, substeps=round(t_end / dt))
    x = sde.sample((n,))[:, -1, 0]
    mean, var = math.exp(-theta * t_end), sigma**2 / (2 * theta) * (1 - math.exp(-2 * t_end))
    se_mean, se_var = math.sqrt(var / n), var * math.sqrt(2 / (n - 1))
    z_mean = abs(float(x.mean()) - mean) / se_mean
    z_var = abs(float(x.var()) - var) / se_var
    if close:
        assert z_mean < 4 and z_var < 4
    else:
        assert z_var > 10  # the Euler-Maruyama variance bias at dt = 0.25 is visible


def test_shapes_sample_shape_batch_and_expand(device):
    init = dist.Normal(torch.zeros(3, 2, device=device), 1.0).to_event(1)
    times = torch.linspace(0, 1, 6, device=device)
    sde = EulerMaruyama(lambda t, x: -x, torch.tensor([0.5, 1.0], device=device), init, times, 2)
    assert sde.batch_shape == (3,) and sde.event_shape == (6, 2) and sde.num_steps == 10
    x = sde.rsample((4,))
    assert x.shape == (4, 3, 6, 2) and x.device.type == device.type
    assert sde.log_prob(x).shape == (4, 3)
    big = sde.expand((5, 3))
    y = big.rsample()
    assert y.shape == (5, 3, 6, 2) and big.log_prob(y).shape == (5, 3)
    # a fixed initial state (tensor) is the first row of every path
    fixed = EulerMaruyama(lambda t, x: -x, 0.5, torch.ones(2, device=device), times)
    z = fixed.expand((7,)).rsample((2,))
    assert z.shape == (2, 7, 6, 2) and torch.all(z[..., 0, :] == 1)
    assert fixed.log_prob(z).shape == (2, 7)


def test_time_dependent_coefficients_are_called_with_broadcastable_times(device):
    torch.set_default_dtype(torch.float64)
    drift = lambda t, x: torch.sin(t) * x  # noqa: E731
    diffusion = lambda t, x: 0.2 + 0.1 * t * torch.ones_like(x)  # noqa: E731
    times = torch.linspace(0, 1, 5, device=device)
    sde = EulerMaruyama(drift, diffusion, torch.zeros(2, device=device), times)
    path = sde.rsample((4,))
    # external copy -> vectorized evaluation over all steps; must equal the sampler's record
    assert torch.allclose(sde.log_prob(path), sde.log_prob(path.clone()), atol=1e-10)


def test_pyro_plate_and_vectorized_particles(device):
    times = torch.linspace(0, 1, 5, device=device)
    drift_p = lambda t, x: -x  # noqa: E731

    def model(data):
        with pyro.plate("data", data.shape[0]):
            init = dist.Normal(torch.zeros(2, device=device), 1.0).to_event(1)
            path = pyro.sample("path", EulerMaruyama(drift_p, 0.3, init, times))
            pyro.sample("obs", dist.Normal(path[..., -1, :], 0.1).to_event(1), obs=data)

    loc = torch.zeros(2, device=device, requires_grad=True)

    def guide(data):
        with pyro.plate("data", data.shape[0]):
            init = dist.Normal(loc, 1.0).to_event(1)
            pyro.sample("path", EulerMaruyama(lambda t, x: -x + loc, 0.3, init, times))

    data = torch.randn(6, 2, device=device)
    elbo = Trace_ELBO(num_particles=7, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, data)
    loss.backward()
    assert torch.isfinite(loss) and loc.grad is not None and loc.grad.abs().sum() > 0
    tr = poutine.trace(guide).get_trace(data)
    assert tr.nodes["path"]["value"].shape == (6, 5, 2)


def _linear_sde_pair(device, estimator, substeps=1):
    a_p, b_p, a_q, b_q, sigma = -1.0, 0.0, -0.3, 0.8, 0.6
    times = torch.linspace(0, 1.0, 11, device=device, dtype=torch.float64)
    init = dist.Normal(torch.full((2,), 0.2, device=device, dtype=torch.float64), 0.5).to_event(1)
    p = EulerMaruyama(
        lambda t, x: a_p * x + b_p, sigma, init, times, substeps, kl_estimator=estimator
    )
    q = EulerMaruyama(lambda t, x: a_q * x + b_q, sigma, init, times, substeps)
    # exact KL of the two Euler-Maruyama chains: Σ E_q[½ u² Δt], u = (f_q - f_p) / σ
    dt = float(times[1] - times[0]) / substeps
    m, v, kl = 0.2, 0.25, 0.0
    da, db = a_q - a_p, b_q - b_p
    for _ in range(10 * substeps):
        kl += 0.5 * dt / sigma**2 * (da**2 * (v + m**2) + 2 * da * db * m + db**2)
        m, v = m * (1 + a_q * dt) + b_q * dt, v * (1 + a_q * dt) ** 2 + sigma**2 * dt
    return p, q, 2 * kl  # two independent coordinates


@pytest.mark.parametrize("estimator", ["full", "quadratic"])
@pytest.mark.parametrize("substeps", [1, 4])
def test_path_kl_through_trace_elbo_matches_exact(estimator, substeps, device):
    p, q, exact = _linear_sde_pair(device, estimator, substeps)
    n = 4000

    def model():
        with pyro.plate("particles", n):
            pyro.sample("path", p)

    def guide():
        with pyro.plate("particles", n):
            pyro.sample("path", q)

    guide_tr = poutine.trace(guide).get_trace()
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace()
    value = guide_tr.nodes["path"]["value"]
    log_ratio = q.log_prob(value) - model_tr.nodes["path"]["fn"].log_prob(value)
    est, se = float(log_ratio.mean()), float(log_ratio.std()) / math.sqrt(n)
    assert abs(est - exact) < 3 * se, (est, exact, se)
    # Trace_ELBO's loss is the same estimator (the model has no observation): loss = KL estimate
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().loss(model, guide)
    assert abs(loss / n - exact) < 3 * se
    if estimator == "quadratic":  # the quadratic part is positive for every path
        assert bool((log_ratio > 0).all())


def test_full_log_ratio_is_girsanov_sum(device):
    torch.set_default_dtype(torch.float64)
    p, q, _ = _linear_sde_pair(device, "full")
    path = q.rsample((5,))
    from pyrovi.distributions.sde import _recall

    rec = _recall(path)
    u = (rec.drift - (-1.0 * rec.path[:-1])) / 0.6
    dt = rec.dt.reshape(-1, 1, 1)
    girsanov = (u * rec.dw + 0.5 * u**2 * dt).sum(dim=(0, -1))
    assert torch.allclose(q.log_prob(path) - p.log_prob(path), girsanov, atol=1e-9)
    # the same value through the plain Euler-Maruyama density of the (uncached) copy
    assert torch.allclose(p.log_prob(path), p.log_prob(path.clone()), atol=1e-9)


@pytest.mark.parametrize("solver", ["euler", "milstein", "srk", "reversible_heun"])
def test_torchsde_solvers_give_paths_and_the_same_estimator(solver, device):
    torch.set_default_dtype(torch.float64)
    times = torch.linspace(0, 1, 6, device=device)
    init = dist.Normal(torch.zeros(2, device=device), 1.0).to_event(1)

    def diffusion(t, x):
        return 0.5 + 0.1 * torch.tanh(x)

    q = EulerMaruyama(lambda t, x: 1 - x, diffusion, init, times, 2, solver=solver)
    p = EulerMaruyama(lambda t, x: -x, diffusion, init, times, 2)
    path = q.rsample((3,))
    assert path.shape == (3, 6, 2) and torch.isfinite(path).all()
    from pyrovi.distributions.sde import _recall

    rec = _recall(path)
    u = (rec.drift - (-rec.path[:-1])) / rec.diffusion
    expected = (u * rec.dw + 0.5 * u**2 * rec.dt.reshape(-1, 1, 1)).sum(dim=(0, -1))
    assert torch.allclose(q.log_prob(path) - p.log_prob(path), expected, atol=1e-9)
    if solver == "euler":  # torchsde's Euler step is the Euler-Maruyama step
        em = rec.path[:-1] + rec.drift * rec.dt.reshape(-1, 1, 1) + rec.diffusion * rec.dw
        assert torch.allclose(rec.path[1:], em, atol=1e-8)


def test_adjoint_gradients_match_direct(device):
    torch.set_default_dtype(torch.float64)
    times = torch.linspace(0, 1, 5, device=device)
    net = torch.nn.Linear(2, 2).to(device)
    x0 = torch.ones(2, device=device)
    grads = []
    for adjoint in (False, True):
        pyro.set_rng_seed(3)
        sde = EulerMaruyama(
            lambda t, x: net(x),
            0.3,
            x0,
            times,
            50,
            solver="euler",
            adjoint=adjoint,
            adjoint_params=tuple(net.parameters()),
        )
        net.zero_grad()
        sde.rsample((4,)).pow(2).sum().backward()
        grads.append(net.weight.grad.clone())
    # the adjoint solves a backward SDE: it agrees with backpropagation through the solver up to
    # the discretization error, O(dt)
    assert torch.allclose(grads[0], grads[1], rtol=2e-2, atol=1e-4)


def test_gradients_reach_drift_diffusion_and_init(device):
    drift_net = torch.nn.Linear(2, 2).to(device)
    diff_net = torch.nn.Linear(2, 2).to(device)
    loc = torch.zeros(2, device=device, requires_grad=True)
    sde = EulerMaruyama(
        lambda t, x: drift_net(x),
        lambda t, x: torch.nn.functional.softplus(diff_net(x)) + 0.1,
        dist.Normal(loc, 1.0).to_event(1),
        torch.linspace(0, 1, 4, device=device),
    )
    x = sde.rsample((8,))
    (x.pow(2).sum() + sde.log_prob(x).sum()).backward()
    for t in (*drift_net.parameters(), *diff_net.parameters(), loc):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_different_diffusions_raise_under_validation(device):
    times = torch.linspace(0, 1, 4, device=device)
    x0 = torch.zeros(2, device=device)
    q = EulerMaruyama(lambda t, x: -x, 0.5, x0, times)
    p = EulerMaruyama(lambda t, x: -x, 0.7, x0, times)
    path = q.rsample((2,))
    with pyro.validation_enabled(True):
        with pytest.raises(ValueError, match="mutually singular"):
            p.log_prob(path)


def test_different_grids_raise(device):
    x0 = torch.zeros(2, device=device)
    q = EulerMaruyama(lambda t, x: -x, 0.5, x0, torch.linspace(0, 1, 4, device=device), 2)
    p = EulerMaruyama(lambda t, x: x, 0.5, x0, torch.linspace(0, 1, 4, device=device), 3)
    with pytest.raises(ValueError, match="different time grid"):
        p.log_prob(q.rsample())
    with pytest.raises(ValueError, match="substeps=1"):
        p.log_prob(torch.zeros(4, 2, device=device))


def test_bad_input_messages(device):
    x0 = torch.zeros(2, device=device)
    times = torch.linspace(0, 1, 4, device=device)
    with pytest.raises(ValueError, match="strictly increasing"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="1-D tensor of at least 2"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, torch.tensor([0.0]))
    with pytest.raises(ValueError, match="diffusion must be positive"):
        EulerMaruyama(lambda t, x: -x, -0.5, x0, times)
    with pytest.raises(ValueError, match="substeps must be an integer"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, times, substeps=0)
    with pytest.raises(ValueError, match="kl_estimator must be one of"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, times, kl_estimator="ito")
    with pytest.raises(ValueError, match="solver must be one of"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, times, solver="rk4")
    with pytest.raises(ValueError, match="adjoint=True needs a torchsde solver"):
        EulerMaruyama(lambda t, x: -x, 0.5, x0, times, adjoint=True)
    with pytest.raises(ValueError, match="event_shape"):
        EulerMaruyama(lambda t, x: -x, 0.5, dist.Normal(0.0, 1.0), times)
    with pytest.raises(TypeError, match="init must be a torch Distribution or a tensor"):
        EulerMaruyama(lambda t, x: -x, 0.5, [0.0, 0.0], times)
    sde = EulerMaruyama(lambda t, x: -x, 0.5, x0, times, validate_args=True)
    with pytest.raises(ValueError, match=r"expected paths of shape \(\.\.\., 4, 2\)"):
        sde.log_prob(torch.zeros(3, 2, device=device))
    negative = EulerMaruyama(
        lambda t, x: -x, lambda t, x: -torch.ones_like(x), x0, times, validate_args=True
    )
    with pytest.raises(ValueError, match="must be positive along the path"):
        negative.rsample()
    with pytest.raises(ValueError, match="fixed initial state"):
        sde.log_prob(torch.ones(4, 2, device=device))
