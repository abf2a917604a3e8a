"""GroundState: known answers for the oscillator and hydrogen, zero variance, Trace_ELBO = ℓ_T."""

import json
import math
import re

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovi.models import GroundState, hamiltonians, richardson, train_ground_state
from pyrovi.models.ground_state import format_estimate


class _LinearDrift(torch.nn.Linear):
    def __init__(self, dim):
        super().__init__(dim, dim)

    def forward(self, t, x):
        return super().forward(x)


def _exact(ham):
    return lambda t, x: ham.exact_drift(x)


def test_oscillator_exact_drift_energy_and_richardson(device):
    torch.set_default_dtype(torch.float64)
    ho = hamiltonians.harmonic_oscillator()
    walkers = ho.sample_init(8000, device=device)
    gs = GroundState(ho, _exact(ho), num_walkers=8000, horizon=1.0, dt=0.1, walkers=walkers)
    out = gs.extrapolate(6, burn_in=2)
    coarse, fine = out["coarse"], out["fine"]
    # Euler-Maruyama: stationary <x²> = 1/(2 - dt), so E(dt) = 1/(2 - dt) = 0.5 + dt/4 + ...
    for est in (coarse, fine):
        assert abs(est.corrected - 1 / (2 - est.dt)) < 4 * est.corrected_stderr
        assert est.corrected_stderr < 0.002
    assert coarse.corrected - 0.5 > 0.02  # the bias is visible at dt = 0.1 ...
    ext = out["extrapolated"]
    assert abs(ext["energy"] - 0.5) < 0.005 and ext["stderr"] < 0.0025  # ... and extrapolated away
    assert richardson(coarse, fine, corrected=False)["dt"] == 0.1
    with pytest.raises(ValueError, match="fine.dt must be half of coarse.dt"):
        richardson(coarse, coarse)


@pytest.mark.parametrize("estimator, falls_like_1_over_t", [("full", True), ("quadratic", False)])
def test_zero_variance_with_the_exact_drift(estimator, falls_like_1_over_t, device):
    torch.set_default_dtype(torch.float64)
    ho = hamiltonians.harmonic_oscillator()
    estimates = []
    for horizon in (1.0, 4.0):
        walkers = ho.sample_init(2000, device=device)
        gs = GroundState(
            ho, _exact(ho), 2000, horizon, 0.02, kl_estimator=estimator, walkers=walkers
        )
        estimates.append(gs.estimate(1))
    ratio = estimates[0].path_std / estimates[1].path_std  # 4 for 1/T, 2 for 1/sqrt(T)
    assert (ratio > 3.0) if falls_like_1_over_t else (ratio < 2.2)
    # the boundary term is log φ₀(r_T)/φ₀(r₀): removing it leaves only time-step noise
    if falls_like_1_over_t:
        assert estimates[0].corrected_path_std < 0.3 * estimates[0].path_std


def test_hydrogen_exact_drift_is_finite_and_approaches_minus_half(device):
    torch.set_default_dtype(torch.float64)
    hy = hamiltonians.hydrogen()
    energies = []
    for dt in (0.02, 0.005):
        walkers = hy.sample_init(3000, device=device)
        gs = GroundState(hy, _exact(hy), 3000, 1.0, dt, walkers=walkers)
        est = gs.estimate(2, burn_in=1)
        assert math.isfinite(est.energy) and math.isfinite(est.corrected)
        assert torch.isfinite(gs.walkers).all()
        energies.append(est)
    coarse, fine = energies
    assert abs(fine.corrected + 0.5) < 0.01
    assert abs(fine.corrected + 0.5) < abs(coarse.corrected + 0.5)  # time-step bias shrinks


@pytest.mark.parametrize("boundary_loss", [False, True])
def test_trace_elbo_loss_is_the_direct_action(boundary_loss, device):
    torch.set_default_dtype(torch.float64)
    ho = hamiltonians.harmonic_oscillator(num_particles=2, dim=2)
    drift = _LinearDrift(4).to(device)
    walkers = ho.sample_init(32, device=device)
    gs = GroundState(ho, drift, 32, 0.5, 0.05, boundary_loss=boundary_loss, walkers=walkers)
    pyro.set_rng_seed(5)
    loss = Trace_ELBO().loss(gs.model, gs.guide) / gs.horizon
    pyro.set_rng_seed(5)
    dw = torch.randn(10, 32, 4, device=device) * math.sqrt(0.05)
    x, ell = walkers, torch.zeros(32, device=device)
    with torch.no_grad():
        for k in range(10):
            v = drift(0, x)
            ell += (v * dw[k]).sum(-1) + (0.5 * v.pow(2).sum(-1) + ho.potential(x)) * 0.05
            x = x + v * 0.05 + dw[k]
        if boundary_loss:  # linear drift: the line integral is exact (Gauss-Legendre)
            delta = x - walkers
            mid = drift(0, 0.5 * (x + walkers))
            ell -= (mid * delta).sum(-1)
    assert loss == pytest.approx(float(ell.mean()) / 0.5, rel=1e-9, abs=1e-9)
    # the walkers persist: the next guide call starts where this one ended
    pyro.set_rng_seed(6)
    path = gs.guide()
    assert torch.allclose(path[:, 0], x, atol=1e-12)


def test_training_from_scratch_reaches_the_oscillator_energy(device):
    torch.set_default_dtype(torch.float64)
    ho = hamiltonians.harmonic_oscillator()
    gs = GroundState(ho, num_walkers=256, horizon=1.0, dt=0.05).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and the machine is shared
    try:
        hist = train_ground_state(gs, 300, lr=1e-2, final_lr=1e-3)
        ext = gs.extrapolate(100, burn_in=3)["extrapolated"]
    finally:
        torch.set_num_threads(threads)
    assert len(hist["energy"]) == 300 and hist["energy"][0] > hist["energy"][-1]
    assert abs(ext["energy"] - 0.5) < 0.005, ext  # within 1 %
    assert ext["stderr"] < 0.003


def test_errors_name_the_argument(device):
    ho = hamiltonians.harmonic_oscillator()
    with pytest.raises(ValueError, match="dt must divide horizon"):
        GroundState(ho, horizon=1.0, dt=0.3)
    with pytest.raises(ValueError, match="num_walkers must be an integer >= 2"):
        GroundState(ho, num_walkers=1)
    with pytest.raises(ValueError, match=r"walkers: expected shape \(4, 1\)"):
        GroundState(ho, num_walkers=4, walkers=torch.zeros(4, 2))
    with pytest.raises(TypeError, match="hamiltonian must be"):
        GroundState("harmonic")
    with pytest.raises(ValueError, match="kl_estimator must be one of"):
        GroundState(ho, kl_estimator="nope")
    fixed = GroundState(ho, lambda t, x: -x, num_walkers=4)
    with pytest.raises(ValueError, match="nothing to train"):
        train_ground_state(fixed, 1)
    with pytest.raises(ValueError, match="num_paths must be an integer >= 1"):
        fixed.estimate(0)


def test_training_stops_at_the_time_budget(device):
    ho = hamiltonians.harmonic_oscillator()
    gs = GroundState(ho, num_walkers=8, horizon=0.1, dt=0.05).to(device)
    hist = train_ground_state(gs, 50, max_seconds=0.0)
    assert hist["step"] == [1] and math.isfinite(hist["energy"][0])


def test_extrapolation_prints_cleanly_and_keeps_dict_access():
    """dt is the value given (not its float32 image) and energies carry no digits below noise."""
    torch.manual_seed(0)
    ho = hamiltonians.harmonic_oscillator()
    gs = GroundState(ho, _exact(ho), num_walkers=64, horizon=0.2, dt=0.002)
    out = gs.extrapolate(1, progress=False)
    coarse, fine, ext = out["coarse"], out["fine"], out["extrapolated"]
    assert coarse.dt == 0.002 and fine.dt == 0.001 and coarse.horizon == 0.2
    assert ext["dt"] == 0.002 and ext["dt_fine"] == 0.001 and isinstance(out, dict)
    assert json.loads(json.dumps(ext)) == dict(ext)  # the example writes it to metrics.json
    text = str(out)
    assert text == repr(out) and "0.0020000000949949026" not in text
    assert re.search(r"^E\(dt=0.002\) +=", text, re.M) and "\nE(dt=0.001) " in text
    assert "\nextrapolated = " in text
    # each figure to the decimal place of the second significant digit of its error
    for line, (value, err) in zip(
        text.splitlines(),
        [
            (coarse.corrected, coarse.corrected_stderr),
            (fine.corrected, fine.corrected_stderr),
            (ext["energy"], ext["stderr"]),
        ],
        strict=False,
    ):
        shown_value, shown_err = line.split("= ")[1].split(" ± ")
        decimals = 1 - math.floor(math.log10(err))
        assert shown_value == f"{value:.{decimals}f}" and shown_err == f"{err:.{decimals}f}"
    assert "walkers=64" in repr(coarse) and "dt=0.002" in repr(coarse)


@pytest.mark.parametrize(
    "value, err, text",
    [
        (-0.4996123, 0.000312, "-0.49961 ± 0.00031"),
        (2.9037, 0.0123, "2.904 ± 0.012"),
        (123.456, 7.8, "123.5 ± 7.8"),
        (1234.5, 56.0, "1234 ± 56"),
        (0.5, 0.0, "0.5 ± 0"),
        (0.5, math.nan, "0.5 ± nan"),
    ],
)
def test_format_estimate(value, err, text):
    assert format_estimate(value, err) == text
