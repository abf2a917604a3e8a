"""Synthetic SDE time series: exact moments (OU, GBM), EM against RK4 (Lorenz), the double
well's stationary law, normalization, reproducibility, dtype/device, and input validation."""

import math

import pytest
import torch

from pyrovi.data import (
    SeriesData,
    double_well,
    geometric_brownian_motion,
    irregular_times,
    ornstein_uhlenbeck,
    stochastic_lorenz,
)
from pyrovi.data.series import _num_steps

F64 = torch.float64
SIMULATORS = {
    "ou": ornstein_uhlenbeck,
    "gbm": geometric_brownian_motion,
    "lorenz": stochastic_lorenz,
    "double_well": double_well,
}


def assert_within_se(estimate, exact, se, k=4.0):
    """|estimate − exact| <= k standard errors, elementwise."""
    estimate, exact, se = (torch.as_tensor(v, dtype=F64) for v in (estimate, exact, se))
    z = (estimate - exact).abs() / se
    assert (z <= k).all(), f"max deviation {z.max():.2f} standard errors"


def check_ou_moments(data, x0, theta, mu, sigma):
    n = data.num_series
    t = data.times.to(F64) - data.times[0].to(F64)
    x = data.values[..., 0].to(F64)  # (N, T)
    mean = mu + (x0 - mu) * torch.exp(-theta * t)
    var = sigma**2 / (2 * theta) * -torch.expm1(-2 * theta * t)
    assert_within_se(x.mean(0), mean, (var / n).sqrt().clamp_min(1e-12))
    later = t > 0
    var_hat = x.var(0)[later]
    assert_within_se(var_hat, var[later], var[later] * math.sqrt(2 / (n - 1)))
    # covariance of consecutive observations: e^{−θ Δt} Var(X_s) (exact transitions)
    s, u = x[:, 1:-1], x[:, 2:]
    cov_hat = ((s - s.mean(0)) * (u - u.mean(0))).mean(0)
    cov = torch.exp(-theta * (t[2:] - t[1:-1])) * var[1:-1]
    se = ((var[1:-1] * var[2:] + cov**2) / n).sqrt()
    assert_within_se(cov_hat, cov, se)


def test_ou_moments_on_a_regular_grid():
    theta, mu, sigma, x0 = 1.3, 0.5, 0.7, 2.0
    times = torch.linspace(0.0, 2.0, 6)
    data = ornstein_uhlenbeck(20000, times, theta, mu, sigma, x0=x0, seed=0, dtype=F64)
    assert isinstance(data, SeriesData) and data.values.shape == (20000, 6, 1)
    assert data.mean is None and data.std is None
    assert (data.values[:, 0] == x0).all()
    check_ou_moments(data, x0, theta, mu, sigma)


def test_ou_moments_on_an_irregular_grid():
    theta, mu, sigma, x0 = 0.8, -1.0, 0.5, 1.0
    times = irregular_times(8, 3.0, t_start=0.5, seed=3, dtype=F64)
    gaps = times.diff()
    assert gaps.max() / gaps.min() > 3  # genuinely irregular
    data = ornstein_uhlenbeck(20000, times, theta, mu, sigma, x0=x0, seed=1, dtype=F64)
    torch.testing.assert_close(data.times, times)
    check_ou_moments(data, x0, theta, mu, sigma)


def test_ou_default_start_is_stationary_in_every_coordinate():
    theta, mu, sigma = 2.0, 1.0, 0.6
    data = ornstein_uhlenbeck(20000, [0.0, 0.3, 2.0], theta, mu, sigma, dim=3, seed=0, dtype=F64)
    x = data.values.to(F64)
    var = sigma**2 / (2 * theta)
    assert_within_se(x.mean(0), torch.full((3, 3), mu), math.sqrt(var / 20000))
    assert_within_se(x.var(0), torch.full((3, 3), var), var * math.sqrt(2 / 19999))


def test_ou_per_series_initial_state():
    x0 = torch.arange(6, dtype=F64).reshape(3, 2)
    data = ornstein_uhlenbeck(3, [0.0, 1.0], x0=x0, dim=2, seed=0, dtype=F64)
    torch.testing.assert_close(data.values[:, 0], x0)


def test_gbm_moments():
    mu, sigma, x0, n = 0.3, 0.4, 1.5, 20000
    times = torch.tensor([0.0, 0.25, 1.0, 1.5])
    data = geometric_brownian_motion(n, times, mu, sigma, x0=x0, seed=0, dtype=F64)
    assert data.values.shape == (n, 4, 1) and (data.values > 0).all()
    t = times.to(F64)[1:]
    x = data.values[:, 1:, 0]
    mean = x0 * torch.exp(mu * t)
    var = x0**2 * torch.exp(2 * mu * t) * torch.expm1(sigma**2 * t)
    assert_within_se(x.mean(0), mean, (var / n).sqrt())
    log_mean = math.log(x0) + (mu - sigma**2 / 2) * t
    log_var = sigma**2 * t
    assert_within_se(x.log().mean(0), log_mean, (log_var / n).sqrt())
    assert_within_se(x.log().var(0), log_var, log_var * math.sqrt(2 / (n - 1)))
    # independent Gaussian log-increments on the irregular grid
    inc = data.values[:, 1:, 0].log() - data.values[:, :-1, 0].log()
    corr = torch.corrcoef(inc.T)
    assert (corr - torch.eye(3, dtype=F64)).abs().max() < 4 / math.sqrt(n)


def _lorenz_rhs(u, s=10.0, r=28.0, b=8.0 / 3.0):
    x, y, z = u.unbind(-1)
    return torch.stack([s * (y - x), x * (r - z) - y, x * y - b * z], -1)


def _rk4(x, times, h):
    out = [x]
    for t0, t1 in zip(times[:-1], times[1:]):
        n = round((t1 - t0) / h)
        k = (t1 - t0) / n
        for _ in range(n):
            k1 = _lorenz_rhs(x)
            k2 = _lorenz_rhs(x + k / 2 * k1)
            k3 = _lorenz_rhs(x + k / 2 * k2)
            k4 = _lorenz_rhs(x + k * k3)
            x = x + k / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(x)
    return torch.stack(out, 1)


def test_lorenz_without_noise_converges_to_rk4_at_first_order():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 3, generator=g, dtype=F64)
    times = torch.linspace(0.0, 1.0, 11, dtype=F64)
    reference = _rk4(x0, times.tolist(), 1e-3)
    errors = []
    for dt in (4e-4, 2e-4):
        data = stochastic_lorenz(8, times, noise=(0, 0, 0), x0=x0, dt=dt, seed=0, dtype=F64)
        assert data.values.shape == (8, 11, 3)
        errors.append(float((data.values - reference).abs().max() / reference.abs().max()))
    assert errors[1] < 5e-3
    assert 1.7 < errors[0] / errors[1] < 2.3  # Euler's first order in dt


def test_lorenz_defaults_shapes_and_random_start():
    data = stochastic_lorenz(64, torch.linspace(0, 0.5, 20), seed=0)
    assert data.values.shape == (64, 20, 3) and data.values.dtype == torch.float32
    assert data.times.shape == (20,) and data.dim == 3 and data.num_series == 64
    assert torch.isfinite(data.values).all()
    x0 = data.values[:, 0]
    assert (x0.mean(0).abs() < 0.5).all() and ((x0.std(0) - 1).abs() < 0.3).all()
    # the noise is multiplicative: paths from the same start differ
    same = stochastic_lorenz(2, [0.0, 0.5], x0=[1.0, 1.0, 1.0], seed=0).values
    assert (same[0, -1] - same[1, -1]).abs().max() > 1e-3


def test_lorenz_normalize_records_stats_that_undo_it():
    times = torch.linspace(0, 1, 30)
    raw = stochastic_lorenz(32, times, seed=5, dtype=F64)
    data = stochastic_lorenz(32, times, seed=5, dtype=F64, normalize=True)
    assert data.mean.shape == (3,) and data.std.shape == (3,)
    v = data.values.reshape(-1, 3)
    torch.testing.assert_close(v.mean(0), torch.zeros(3, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(v.std(0), torch.ones(3, dtype=F64))
    torch.testing.assert_close(data.denormalize(data.values), raw.values)
    assert raw.denormalize(raw.values) is raw.values


def test_obs_noise_is_added_after_the_simulation():
    times = torch.linspace(0, 1, 40)
    clean = stochastic_lorenz(50, times, seed=2, dtype=F64, normalize=True)
    noisy = stochastic_lorenz(50, times, seed=2, dtype=F64, normalize=True, obs_noise=0.1)
    torch.testing.assert_close(noisy.mean, clean.mean)
    diff = noisy.values - clean.values
    assert abs(float(diff.std()) - 0.1) < 0.005 and abs(float(diff.mean())) < 0.005


def test_double_well_relaxes_to_its_bimodal_stationary_law():
    n, sigma = 4000, 1.0
    data = double_well(n, [0.0, 3.0], sigma=sigma, x0=0.0, seed=0, dtype=F64)
    x = data.values[:, -1, 0]
    # stationary density ∝ exp(−2U/σ²), U = (x² − 1)²; by quadrature
    grid = torch.linspace(-3, 3, 6001, dtype=F64)
    p = torch.exp(-2 * (grid**2 - 1) ** 2 / sigma**2)
    p = p / p.sum()
    second = float((p * grid**2).sum())
    energy = float((p * (grid**2 - 1) ** 2).sum())  # E[U], sensitive to the drift's scale
    assert_within_se(x.mean(), 0.0, math.sqrt(second / n))  # symmetric start, symmetric law
    assert_within_se((x**2).mean(), second, float((x**2).std()) / math.sqrt(n))
    u = (x**2 - 1) ** 2
    assert_within_se(u.mean(), energy, float(u.std()) / math.sqrt(n))
    hist = torch.histc(x, bins=12, min=-1.8, max=1.8)  # bins of width 0.3
    centre, left, right = hist[5:7].sum(), hist[2:4].sum(), hist[8:10].sum()
    assert left > 2 * centre and right > 2 * centre


def test_num_steps_splits_gaps_into_equal_steps_no_longer_than_dt():
    assert _num_steps(0.02, 1e-3) == 20  # 0.02 / 1e-3 is 20.000000000000004 in floats
    assert _num_steps(0.0205, 1e-3) == 21
    assert _num_steps(1e-4, 1e-3) == 1
    for gap in (0.3, 0.0123, 2.5):
        n = _num_steps(gap, 7e-3)
        assert gap / n <= 7e-3 * (1 + 1e-9) and gap / (n - 1) > 7e-3


def test_irregular_times():
    t = irregular_times(50, 4.0, t_start=1.0, seed=0)
    assert t.shape == (50,) and t.dtype == torch.float32
    assert t[0] == 1.0 and (t.diff() > 0).all() and t[-1] < 4.0
    assert torch.equal(t, irregular_times(50, 4.0, t_start=1.0, seed=0))
    assert irregular_times(1, 1.0).tolist() == [0.0]
    with pytest.raises(ValueError, match="t_end must be > t_start"):
        irregular_times(5, 0.0)
    with pytest.raises(RuntimeError, match="distinct times"):
        irregular_times(2000, 1.001, t_start=1.0, seed=0, dtype=torch.float16)


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_reproducible_with_seed_or_generator(name):
    sim = SIMULATORS[name]
    times = [0.0, 0.1, 0.35]
    a = sim(5, times, seed=11).values
    b = sim(5, times, seed=11).values
    c = sim(5, times, generator=torch.Generator().manual_seed(11)).values
    d = sim(5, times, seed=12).values
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(a, d)
    torch.manual_seed(0)
    e = sim(5, times).values  # the global generator
    torch.manual_seed(0)
    assert torch.equal(e, sim(5, times).values)


@pytest.mark.parametrize("name", sorted(SIMULATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(name, dtype, device):
    data = SIMULATORS[name](4, [0.0, 0.2, 0.5], seed=0, dtype=dtype, device=device, obs_noise=0.01)
    for tensor in (data.times, data.values):
        assert tensor.dtype == dtype and tensor.device.type == device.type
    assert data.values.shape[:2] == (4, 3) and torch.isfinite(data.values).all()
    moved = data.to("cpu")
    assert moved.values.device.type == "cpu" and moved.name == data.name


def test_cpu_generator_works_with_another_device(device):
    g = torch.Generator().manual_seed(0)
    data = double_well(3, [0.0, 0.1], generator=g, device=device)
    assert data.values.device.type == device.type


BAD_INPUTS = [
    (ornstein_uhlenbeck, dict(times=[[0.0, 1.0]]), ValueError, r"times must be a non-empty 1-D"),
    (ornstein_uhlenbeck, dict(times=[]), ValueError, r"times must be a non-empty 1-D"),
    (ornstein_uhlenbeck, dict(times="abc"), TypeError, r"times must be a 1-D tensor"),
    (
        ornstein_uhlenbeck,
        dict(times=[0.0, 1.0, 1.0]),
        ValueError,
        r"strictly increasing.*times\[2\]",
    ),
    (double_well, dict(times=[0.0, 2.0, 1.0]), ValueError, r"times must be strictly increasing"),
    (stochastic_lorenz, dict(times=[0.0, float("nan")]), ValueError, r"times must be finite"),
    (ornstein_uhlenbeck, dict(num_series=0), ValueError, r"num_series must be an integer >= 1"),
    (stochastic_lorenz, dict(num_series=2.5), TypeError, r"num_series must be an integer"),
    (ornstein_uhlenbeck, dict(dim=0), ValueError, r"dim must be an integer >= 1"),
    (ornstein_uhlenbeck, dict(sigma=-0.1), ValueError, r"sigma must be >= 0"),
    (ornstein_uhlenbeck, dict(theta=0.0), ValueError, r"theta must be > 0"),
    (ornstein_uhlenbeck, dict(mu=float("nan")), ValueError, r"mu must be a finite number"),
    (ornstein_uhlenbeck, dict(theta="fast"), TypeError, r"theta must be a real number"),
    (geometric_brownian_motion, dict(sigma=-1.0), ValueError, r"sigma must be >= 0"),
    (geometric_brownian_motion, dict(mu=float("inf")), ValueError, r"mu must be a finite"),
    (geometric_brownian_motion, dict(x0=-1.0), ValueError, r"x0 must be > 0"),
    (geometric_brownian_motion, dict(x0=None), TypeError, r"x0 must be a positive number"),
    (stochastic_lorenz, dict(rho=float("nan")), ValueError, r"rho must be a finite number"),
    (stochastic_lorenz, dict(noise=(0.1, -0.2, 0.3)), ValueError, r"noise\[1\] must be >= 0"),
    (stochastic_lorenz, dict(noise=(0.1, 0.2)), ValueError, r"noise must be a sequence of 3"),
    (stochastic_lorenz, dict(noise=0.1), TypeError, r"noise must be a sequence of 3"),
    (stochastic_lorenz, dict(dt=0.0), ValueError, r"dt must be > 0"),
    (double_well, dict(dt=-1e-3), ValueError, r"dt must be > 0"),
    (double_well, dict(sigma=-1.0), ValueError, r"sigma must be >= 0"),
    (double_well, dict(barrier=float("nan")), ValueError, r"barrier must be a finite number"),
    (
        stochastic_lorenz,
        dict(x0=torch.zeros(2)),
        ValueError,
        r"x0 must be a number or have shape \(dim,\) = \(3,\)",
    ),
    (
        ornstein_uhlenbeck,
        dict(x0=torch.zeros(3, 2)),
        ValueError,
        r"x0 must be .*\(num_series, dim\) = \(4, 1\)",
    ),
    (double_well, dict(x0=float("nan")), ValueError, r"x0 must be finite"),
    (ornstein_uhlenbeck, dict(obs_noise=-0.01), ValueError, r"obs_noise must be >= 0"),
    (ornstein_uhlenbeck, dict(dtype=torch.int64), TypeError, r"dtype must be a floating-point"),
    (
        ornstein_uhlenbeck,
        dict(seed=1, generator=torch.Generator()),
        ValueError,
        r"either generator or seed",
    ),
    (ornstein_uhlenbeck, dict(generator=1), TypeError, r"generator must be a torch.Generator"),
    (
        ornstein_uhlenbeck,
        dict(num_series=1, times=[0.0], normalize=True),
        ValueError,
        r"normalize=True needs at least two",
    ),
    (
        stochastic_lorenz,
        dict(x0=0.0, normalize=True),
        ValueError,
        r"normalize=True needs values that vary",
    ),
]


@pytest.mark.parametrize(("sim", "kwargs", "error", "match"), BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(sim, kwargs, error, match):
    args = dict(num_series=4, times=[0.0, 0.5, 1.0]) | kwargs
    with pytest.raises(error, match=match):
        sim(**args)
