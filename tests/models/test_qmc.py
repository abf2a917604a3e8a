"""Variational (MALA) and projected (DMC) energies: known answers for exact and poor states."""

import math

import pytest
import torch

from pyrovi.models import (
    GroundState,
    hamiltonians,
    local_energy,
    projected_energy,
    projected_extrapolation,
    train_ground_state,
    variational_energy,
)
from pyrovi.nn import GradientDrift, drift_for, log_psi_for


def _radius(x):
    return (x * x).sum(-1).sqrt()


EXACT = {
    "oscillator 1-D": lambda: hamiltonians.harmonic_oscillator(1, 1, omega=1.3),
    "oscillator 3-D": lambda: hamiltonians.harmonic_oscillator(1, 3),
    "hydrogen": hamiltonians.hydrogen,
}


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_state_variational_energy_has_zero_variance(name, device):
    torch.set_default_dtype(torch.float64)
    ham = EXACT[name]()
    walkers = ham.sample_init(400, device=device)
    est = variational_energy(ham, ham.log_psi, walkers, steps=50, burn_in=10, dt=0.1)
    assert est.energy == pytest.approx(ham.exact_energy, abs=1e-12)
    assert est.variance < 1e-20
    assert est.stderr < 1e-12
    assert 0.5 < est.acceptance <= 1.0
    assert est.walkers.device.type == device.type


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_state_projected_energy_is_unbiased_at_every_dt(name, device):
    torch.set_default_dtype(torch.float64)
    ham = EXACT[name]()
    walkers = ham.sample_init(300, device=device)
    ext = projected_extrapolation(
        ham, ham.log_psi, walkers, dts=(0.2, 0.1, 0.05), time_per_dt=4.0, burn_in_time=0.5
    )
    for est in ext["estimates"]:
        assert abs(est.energy - ham.exact_energy) <= 3 * est.stderr + 1e-12
    assert ext["energy"] == pytest.approx(ham.exact_energy, abs=1e-12)
    assert abs(ext["slope"]) < 1e-9


def test_mala_samples_psi_squared_from_a_wrong_start():
    """Started 3x too wide, the walkers relax to |ψ|²: hydrogen <r> = 3/2, <r²> = 3."""
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    start = 3.0 * ham.sample_init(4000)
    est = variational_energy(ham, ham.log_psi, start, steps=2, burn_in=300, dt=0.2)
    r = _radius(est.walkers)
    se = r.std() / math.sqrt(len(r))
    assert abs(r.mean() - 1.5) < 4 * se
    assert abs((r**2).mean() - 3.0) < 4 * (r**2).std() / math.sqrt(len(r))


def test_mala_oscillator_second_moment():
    torch.set_default_dtype(torch.float64)
    omega = 2.0
    ham = hamiltonians.harmonic_oscillator(1, 3, omega=omega)
    start = 0.2 * ham.sample_init(4000)
    est = variational_energy(ham, ham.log_psi, start, steps=2, burn_in=200, dt=0.3)
    x2 = (est.walkers**2).flatten()
    assert abs(x2.mean() - 1 / (2 * omega)) < 4 * x2.std() / math.sqrt(len(x2))


def _poor_hydrogen(alpha):
    return lambda x: -alpha * _radius(x)


def test_poor_trial_state_variational_bias_is_the_closed_form():
    """ψ = e^{−αr}: E(α) = α²/2 − α, Var E_L = α²(1 − α)²."""
    torch.set_default_dtype(torch.float64)
    ham, alpha = hamiltonians.hydrogen(), 0.8
    est = variational_energy(ham, _poor_hydrogen(alpha), 1000, steps=800, burn_in=100, dt=0.2)
    exact = alpha**2 / 2 - alpha
    # above E₀ by the closed-form (1 − α)²/2 = 0.02
    assert est.energy - ham.exact_energy == pytest.approx((1 - alpha) ** 2 / 2, abs=4 * est.stderr)
    assert abs(est.energy - exact) < 4 * est.stderr
    assert est.stderr < 1e-3
    assert est.variance == pytest.approx(alpha**2 * (1 - alpha) ** 2, rel=0.1)


def test_poor_trial_state_projected_energy_converges_to_the_ground_state():
    torch.set_default_dtype(torch.float64)
    ham, alpha = hamiltonians.hydrogen(), 0.8
    log_psi = _poor_hydrogen(alpha)
    start = variational_energy(ham, log_psi, 600, steps=2, burn_in=100, dt=0.2).walkers
    ext = projected_extrapolation(
        ham, log_psi, start, dts=(0.08, 0.04, 0.02), time_per_dt=40.0, burn_in_time=8.0
    )
    assert abs(ext["energy"] - (-0.5)) < 3 * ext["stderr"]
    assert ext["stderr"] < 0.003
    # far below the variational -0.48 at every step
    assert all(e.energy < -0.49 for e in ext["estimates"])


def test_projected_energy_reports_its_run(device):
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    est = projected_energy(
        ham, _poor_hydrogen(0.9), ham.sample_init(200, device=device), dt=0.05, steps=40
    )
    assert est.num_walkers == 200 and est.steps == 40 and est.burn_in == 500
    assert 0 < est.effective_dt <= est.dt
    assert 0.9 < est.acceptance <= 1
    assert set(est.as_dict()) >= {"energy", "stderr", "dt", "effective_dt", "seconds"}
    assert "walkers" not in est.as_dict()
    assert "±" in repr(est)


# ------------------------------------------------------------------------- the ansatz
ANSATZ = {
    "hydrogen": hamiltonians.hydrogen,
    "helium": hamiltonians.helium,
    "h2": hamiltonians.h2,
    "bosons": lambda: hamiltonians.gaussian_bosons(3, 3.0),
}


def _randomized(ham, seed=0):
    torch.manual_seed(seed)
    log_psi = log_psi_for(ham, width=8, depth=1)
    with torch.no_grad():
        for p in log_psi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return log_psi


@pytest.mark.parametrize("name", list(ANSATZ))
def test_ansatz_jets_equal_autograd(name):
    """One forward pass of jets gives the same gradient and Laplacian as autograd."""
    torch.set_default_dtype(torch.float64)
    ham = ANSATZ[name]()
    log_psi = _randomized(ham)
    x = torch.randn(7, ham.state_dim)
    value, grad, lap = log_psi.local_terms(x)
    xg = x.clone().requires_grad_(True)
    f = log_psi(xg)
    (g,) = torch.autograd.grad(f.sum(), xg, create_graph=True)
    hess_diag = torch.stack(
        [
            torch.autograd.grad(g[:, k].sum(), xg, retain_graph=True)[0][:, k]
            for k in range(x.shape[-1])
        ],
        -1,
    )
    torch.testing.assert_close(value, f.detach())
    torch.testing.assert_close(grad, g.detach())
    torch.testing.assert_close(lap, hess_diag.sum(-1))
    drift = GradientDrift(log_psi)
    torch.testing.assert_close(drift(torch.zeros(()), x), g.detach())


@pytest.mark.parametrize("name", ["helium", "h2", "bosons"])
def test_ansatz_is_permutation_symmetric(name):
    torch.set_default_dtype(torch.float64)
    ham = ANSATZ[name]()
    log_psi = _randomized(ham)
    x = torch.randn(5, ham.num_particles, ham.dim)
    perm = torch.roll(torch.arange(ham.num_particles), 1)
    flat = x.flatten(-2)
    torch.testing.assert_close(log_psi(x[:, perm].flatten(-2)), log_psi(flat))


def _ansatz_energy(ham, log_psi, x):
    return local_energy(ham, log_psi, x)


@pytest.mark.parametrize("name", ["hydrogen", "helium", "h2"])
def test_cusp_local_energy_is_finite_at_the_nucleus(name):
    """With the electron–nucleus factor, E_L stays bounded as an electron reaches a nucleus."""
    torch.set_default_dtype(torch.float64)
    ham = ANSATZ[name]()
    log_psi = _randomized(ham, seed=1)
    nucleus = ham.nuclei[0].double()
    direction = torch.tensor([0.48, -0.6, 0.64])
    other = torch.tensor([0.7, 0.2, -0.9])
    values = []
    for eps in (1e-3, 1e-5, 1e-7):
        r1 = nucleus + eps * direction
        x = r1 if ham.num_particles == 1 else torch.cat([r1, other])
        values.append(float(_ansatz_energy(ham, log_psi, x[None]).detach()[0]))
    assert all(math.isfinite(v) for v in values)
    assert abs(values[1] - values[2]) < 1e-2  # converges (the potential alone is ~ -1e7)
    # without the cusp factor the same point diverges like the potential
    assert abs(float(ham.potential(x[None])[0])) > 1e6


@pytest.mark.parametrize("name", ["helium", "h2"])
def test_cusp_local_energy_is_finite_at_electron_coalescence(name):
    torch.set_default_dtype(torch.float64)
    ham = ANSATZ[name]()
    log_psi = _randomized(ham, seed=2)
    r1 = torch.tensor([0.3, -0.4, 0.5])
    direction = torch.tensor([0.0, 0.6, 0.8])
    values = []
    for eps in (1e-3, 1e-5, 1e-7):
        x = torch.cat([r1, r1 + eps * direction])
        values.append(float(_ansatz_energy(ham, log_psi, x[None]).detach()[0]))
    assert all(math.isfinite(v) for v in values)
    assert abs(values[1] - values[2]) < 1e-2


def test_ansatz_without_the_pair_factor_diverges_at_coalescence():
    """The check above can fail: drop the Padé factor and E_L follows 1/r₁₂."""
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.helium()
    log_psi = log_psi_for(ham, width=8)
    log_psi.electron_cusp = None
    r1 = torch.tensor([0.3, -0.4, 0.5])
    x = torch.cat([r1, r1 + torch.tensor([0.0, 0.0, 1e-6])])
    assert float(local_energy(ham, log_psi, x[None]).detach()[0]) > 1e5


# ----------------------------------------------------------- through GroundState
def test_gradient_drift_trains_through_ground_state_and_estimates(device):
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    drift = drift_for(ham, "gradient", width=8, depth=1).to(device)
    gs = GroundState(ham, drift, 64, 0.2, 0.02, walkers=ham.sample_init(64, device=device))
    # the exact boundary term: log ψ(r_T) − log ψ(r₀)
    path = torch.stack([gs.walkers, gs.walkers + 0.1], 1)
    with torch.no_grad():
        expected = drift.log_psi(path[:, -1]) - drift.log_psi(path[:, 0])
        torch.testing.assert_close(gs._boundary(drift, path), expected)
    history = train_ground_state(gs, 5, lr=1e-2, progress=False)
    assert all(math.isfinite(e) for e in history["energy"])
    assert any(p.grad is not None for p in drift.parameters())
    var = gs.variational(100, steps=20, burn_in=5, progress=False)
    assert var.energy > -0.5 - 5 * var.stderr - 1e-3  # an upper bound
    proj = gs.projected(100, dts=(0.04, 0.02), time_per_dt=0.4, burn_in_time=0.2, progress=False)
    assert len(proj["estimates"]) == 2
    assert math.isfinite(proj["energy"]) and proj["stderr"] >= 0


def test_estimates_need_log_psi():
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    gs = GroundState(ham, drift_for(ham, "resnet", width=8), 16, 0.1, 0.05)
    with pytest.raises(ValueError, match="need log ψ"):
        gs.variational(steps=2)
    est = gs.variational(16, steps=3, burn_in=0, log_psi=ham.log_psi, progress=False)
    assert est.energy == pytest.approx(-0.5)


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_are_named():
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    with pytest.raises(ValueError, match="dt must be"):
        variational_energy(ham, ham.log_psi, 10, dt=0.0)
    with pytest.raises(ValueError, match="steps must be an integer >= 2"):
        projected_energy(ham, ham.log_psi, 10, steps=1)
    with pytest.raises(ValueError, match="walkers: expected shape"):
        variational_energy(ham, ham.log_psi, torch.zeros(10, 2))
    with pytest.raises(ValueError, match="walkers must be at least 2"):
        variational_energy(ham, ham.log_psi, 1)
    with pytest.raises(ValueError, match="resample_below"):
        projected_energy(ham, ham.log_psi, 10, resample_below=0.0)
    with pytest.raises(ValueError, match="dts: expected at least two distinct positive"):
        projected_extrapolation(ham, ham.log_psi, 10, dts=(0.1, 0.1))
    with pytest.raises(ValueError, match="log_psi must map states"):
        variational_energy(ham, lambda x: x, 10, steps=2)
    with pytest.raises(ValueError, match="NaN or infinite at 10 of 10 walkers"):
        variational_energy(ham, lambda x: torch.log(-_radius(x)), 10, steps=2)


def test_autograd_terms_of_linear_and_constant_log_psi():
    """No second derivative to take: the Laplacian is 0, not an autograd error."""
    from pyrovi.nn import log_psi_terms

    torch.set_default_dtype(torch.float64)
    x = torch.randn(4, 3)
    value, grad, lap = log_psi_terms(lambda y: 2 * y.sum(-1), x)
    torch.testing.assert_close(grad, torch.full_like(x, 2.0))
    torch.testing.assert_close(lap, torch.zeros(4))
    _, grad, lap = log_psi_terms(lambda y: torch.zeros(y.shape[:-1]), x)
    assert grad.abs().max() == 0 and lap.abs().max() == 0
    with pytest.raises(TypeError, match="log_psi must be a callable"):
        log_psi_terms(3, x)


def test_extrapolation_is_the_weighted_least_squares_line():
    """Against the closed form: the 1/σ²-weighted line and its covariance (XᵀWX)⁻¹."""
    from pyrovi.models.dmc import ProjectedEstimate, _fit_line

    dts = [0.04, 0.02, 0.01]
    energies = [-1.170, -1.1725, -1.1738]
    errors = [0.001, 0.0005, 0.0008]
    estimates = [
        ProjectedEstimate(
            energy=e,
            stderr=s,
            acceptance=1.0,
            inefficiency=1.0,
            num_walkers=10,
            steps=10,
            burn_in=0,
            dt=d,
            seconds=0.0,
            effective_dt=d,
            branchings=0,
        )
        for e, s, d in zip(energies, errors, dts)
    ]
    fit = _fit_line(estimates)
    x = torch.tensor(dts, dtype=torch.float64)
    y = torch.tensor(energies, dtype=torch.float64)
    w = 1 / torch.tensor(errors, dtype=torch.float64) ** 2
    sw, swx, swxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    swy, swxy = (w * y).sum(), (w * x * y).sum()
    det = sw * swxx - swx**2
    intercept = (swxx * swy - swx * swxy) / det
    slope = (sw * swxy - swx * swy) / det
    assert fit["energy"] == pytest.approx(float(intercept), rel=1e-12)
    assert fit["slope"] == pytest.approx(float(slope), rel=1e-10)
    assert fit["stderr"] == pytest.approx(math.sqrt(float(swxx / det)), rel=1e-10)
    assert fit["slope_stderr"] == pytest.approx(math.sqrt(float(sw / det)), rel=1e-10)
    resid = y - intercept - slope * x
    assert fit["chi2"] == pytest.approx(float((w * resid**2).sum()), rel=1e-8)
    assert "dt -> 0" in repr(fit)
    assert fit.as_dict()["estimates"][0]["dt"] == 0.04


def test_systematic_resampling_keeps_walkers_in_proportion_to_weights():
    from pyrovi.models.dmc import _systematic_resample

    torch.set_default_dtype(torch.float64)
    weights = torch.tensor([0.0, 1.0, 3.0, 0.0, 4.0])
    index = _systematic_resample(weights)
    counts = torch.bincount(index, minlength=5)
    assert counts.tolist() in ([0, 1, 2, 0, 2], [0, 0, 2, 0, 3], [0, 1, 1, 0, 3], [0, 0, 3, 0, 2])
    assert (counts - 5 * weights / weights.sum()).abs().max() < 1  # systematic: off by < 1
    assert counts[0] == 0 and counts[3] == 0


def test_boundary_term_reaches_the_path_not_the_parameters():
    """Training: B = log ψ(r_T) − log ψ(r₀) with the parameters of ψ held fixed."""
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.hydrogen()
    drift = drift_for(ham, "gradient", width=8, depth=1)
    gs = GroundState(ham, drift, 8, 0.1, 0.05)
    path = torch.stack([gs.walkers, gs.walkers + 0.1], 1).requires_grad_(True)
    boundary = gs._boundary(drift, path)
    params = [p for p in drift.parameters()]
    grads = torch.autograd.grad(boundary.sum(), [path, *params], allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None for g in grads[1:])


def test_walkers_follow_the_trial_state_dtype_and_more_bad_inputs():
    torch.set_default_dtype(torch.float64)
    ham = hamiltonians.helium()
    log_psi = log_psi_for(ham, width=4)
    est = variational_energy(ham, log_psi, ham.sample_init(8).float(), steps=2, burn_in=0)
    assert est.walkers.dtype == torch.float64
    with pytest.raises(ValueError, match="nuclei and charges go together"):
        from pyrovi.nn import NeuralLogPsi

        NeuralLogPsi(1, 3, nuclei=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="trap must be"):
        NeuralLogPsi(1, 2, trap=-1.0)
    three = hamiltonians.Hamiltonian(
        name="li",
        num_particles=3,
        dim=3,
        potential=lambda x: x.sum(-1),
        exact_energy=None,
        sampler=lambda n, g: torch.randn(n, 9),
        nuclei=torch.zeros(1, 3),
        charges=torch.full((1,), 3.0),
        interaction="coulomb",
    )
    with pytest.raises(ValueError, match="3 electrons"):
        log_psi_for(three)
    gs = GroundState(ham, GradientDrift(log_psi), 8, 0.1, 0.05)
    with pytest.raises(ValueError, match="num_walkers or walkers, not both"):
        gs.projected(4, walkers=gs.walkers)
