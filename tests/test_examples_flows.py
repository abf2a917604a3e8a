"""Smoke tests of the flow examples (``examples/flow_vae.py``, ``examples/flow_density.py``),
run in-process with tiny settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyro
import pytest
import torch

from pyrovi.data import U2
from pyrovi.data.energies import ENERGIES
from pyrovi.data.toy2d import TOY_DATASETS
from pyrovi.distributions.flow_layers import FLOW_KINDS
from tests.example_loader import exit_code, load_example

VAE_FAST = [
    "--epochs",
    "1",
    "--subset",
    "256",
    "--iwae-k",
    "10",
    "--elbo-samples",
    "2",
    "--hidden",
    "32,16",
    "--num-layers",
    "1",
    "--hidden-features",
    "8",
    "--no-progress",
    "--device",
    "cpu",
]
DENSITY_FAST = [
    "--epochs",
    "1",
    "--n-train",
    "256",
    "--n-test",
    "128",
    "--steps",
    "3",
    "--particles",
    "8",
    "--eval-samples",
    "500",
    "--num-layers",
    "1",
    "--hidden-features",
    "8",
    "--no-progress",
]


def _have_planar() -> bool:
    try:
        from pyrovi.distributions.transforms import PlanarTransform, RadialTransform  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    yield


def check_files(out: Path, names: tuple[str, ...]) -> dict:
    for name in ("metrics.json", *names):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} was not written"
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize(
    "flows",
    [
        "iaf,nsf",
        pytest.param(
            "planar,radial",
            marks=pytest.mark.skipif(not _have_planar(), reason="planar/radial not available"),
        ),
    ],
)
def test_flow_vae_example(tmp_path, flows, capsys):
    module = load_example("flow_vae")
    metrics = module.main([*VAE_FAST, "--flows", flows, "--out", str(tmp_path)])
    saved = check_files(tmp_path, ("comparison.png", "samples.png"))
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1] == f"wrote metrics.json, comparison.png, samples.png to {tmp_path.resolve()}"
    guides = ["normal", *flows.split(",")]
    assert list(metrics["guides"]) == guides and list(saved["guides"]) == guides
    assert metrics["dataset"] == "digits" and metrics["n_train"] == 256
    for name, r in metrics["guides"].items():
        for key in ("train_elbo", "test_elbo", "test_nll_iwae", "iwae_elbo_gap", "train_seconds"):
            assert math.isfinite(r[key]), f"{name}: {key} = {r[key]}"
            assert saved["guides"][name][key] == pytest.approx(r[key])
        assert r["iwae_elbo_gap"] == pytest.approx(-r["test_nll_iwae"] - r["test_elbo"])
        # the IWAE bound (K = 10) is at least the ELBO up to Monte Carlo noise
        assert r["iwae_elbo_gap"] > -1.0
        if name != "normal":
            assert "AmortizedFlow" in r["guide"]
            assert r["nll_minus_normal"] == pytest.approx(
                r["test_nll_iwae"] - metrics["guides"]["normal"]["test_nll_iwae"]
            )
            # standard errors of paired per-image differences: positive and finite
            for key in ("nll_minus_normal_se", "gap_minus_normal_se"):
                assert 0.0 < r[key] < 10.0, f"{name}: {key} = {r[key]}"
        assert 0.0 < r["test_nll_se"] < 10.0 and 0.0 < r["iwae_elbo_gap_se"] < 10.0


def test_flow_vae_example_without_normal(tmp_path):
    module = load_example("flow_vae")
    metrics = module.main([*VAE_FAST, "--no-normal", "--flows", "realnvp", "--out", str(tmp_path)])
    assert list(metrics["guides"]) == ["realnvp"]
    assert "nll_minus_normal" not in metrics["guides"]["realnvp"]


def test_flow_density_example(tmp_path, capsys):
    module = load_example("flow_density")
    metrics = module.main(
        [*DENSITY_FAST, "--flows", "realnvp,nsf", "--targets", "U1,U3", "--out", str(tmp_path)]
    )
    saved = check_files(tmp_path, ("densities.png", "energies.png"))
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1] == f"wrote metrics.json, densities.png, energies.png to {tmp_path.resolve()}"
    assert saved["flows"] == ["realnvp", "nsf"]
    for name in ("moons", "rings"):
        entry = metrics["density"]["datasets"][name]
        assert 1.0 < entry["true_nll"] < 4.0
        for kind in ("realnvp", "nsf"):
            assert math.isfinite(entry[kind]["test_nll"])
            assert entry[kind]["excess_nll"] == pytest.approx(
                entry[kind]["test_nll"] - entry["true_nll"]
            )
    assert list(metrics["energy"]["targets"]) == ["U1", "U3"]
    for name in ("U1", "U3"):
        entry = metrics["energy"]["targets"][name]
        assert 1.0 < entry["log_z_grid"] < 4.0
        for kind in ("realnvp", "nsf"):
            m = entry[kind]
            # ELBO ≤ log Z: the reverse KL is non-negative (up to Monte Carlo noise)
            assert m["kl_grid"] > -0.05 and m["kl_importance"] >= 0.0
            assert 0.0 < m["importance_ess_fraction"] <= 1.0


def test_flow_density_example_is_reproducible(tmp_path):
    module = load_example("flow_density")
    argv = [*DENSITY_FAST, "--parts", "density", "--datasets", "moons", "--flows", "maf"]
    a = module.main([*argv, "--out", str(tmp_path / "a")])
    b = module.main([*argv, "--out", str(tmp_path / "b")])
    ra, rb = a["density"]["datasets"]["moons"]["maf"], b["density"]["datasets"]["moons"]["maf"]
    for key in ("test_nll", "train_nll", "history_train_nll"):
        assert ra[key] == rb[key], key
    assert "energy" not in a and not (tmp_path / "a" / "energies.png").exists()


def test_toy_densities_are_normalized_and_match_the_samplers():
    module = load_example("flow_density")
    points, _, cell = module.grid(-5.0, 5.0, 120)
    gen = torch.Generator().manual_seed(0)
    for name, (sampler, log_prob) in TOY_DATASETS.items():
        assert (log_prob(points).exp().sum() * cell).item() == pytest.approx(1.0, abs=1e-3), name
        # the mean log-density of fresh samples is the entropy: larger than under a mismatched
        # density, e.g. the same samples shifted by 0.3
        x = sampler(2000, gen)
        assert x.shape == (2000, 2)
        assert log_prob(x).mean() > log_prob(x + 0.3).mean() + 0.1, name


def test_energy_model_has_joint_exp_minus_u():
    module = load_example("flow_density")
    model = module.energy_model(U2)
    trace = pyro.poutine.trace(model).get_trace()
    z = trace.nodes["z"]["value"]
    assert trace.log_prob_sum().item() == pytest.approx(-U2(z).item(), abs=1e-5)


def test_names_spelled_out_in_the_examples_match_the_library():
    # the examples list these names without importing torch; they must not drift apart
    assert load_example("flow_vae").FLOW_KINDS == FLOW_KINDS
    density = load_example("flow_density")
    assert density.FLOW_KINDS == FLOW_KINDS
    assert density.DATASET_NAMES == tuple(TOY_DATASETS)
    assert density.TARGET_NAMES == tuple(ENERGIES)


@pytest.mark.parametrize("name", ["flow_vae", "flow_density"])
def test_help_exits_zero(name, capsys):
    assert exit_code(name, ["--help"]) == 0
    assert "--flows" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["flow_vae", "flow_density"])
def test_unknown_flow_is_a_usage_error(name, tmp_path, capsys):
    assert exit_code(name, ["--flows", "glow", "--out", str(tmp_path)]) == 2
    assert "glow" in capsys.readouterr().err
