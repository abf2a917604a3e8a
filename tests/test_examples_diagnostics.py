"""Smoke test of ``examples/diagnostics.py``, run in-process with tiny settings."""

from __future__ import annotations

import json
import math

import pyro
import pytest

from pyrovi.diagnostics import load_inference_data
from tests.example_loader import exit_code, load_example

TINY = [
    "--subset",
    "60",
    "--epochs",
    "1",
    "--hidden",
    "16",
    "--z-dim",
    "3",
    "--reg-n",
    "30",
    "--reg-steps",
    "20",
    "--draws",
    "40",
    "--reg-khat-samples",
    "30",
    "--vae-draws",
    "5",
    "--khat-samples",
    "25",
    "--iwae-k",
    "10",
    "--refine-steps",
    "3",
    "--gap-points",
    "8",
    "--no-progress",
    "--device",
    "cpu",
]

FILES = (
    "metrics.json",
    "regression.nc",
    "vae.nc",
    "regression_posterior.png",
    "regression_ppc.png",
    "regression_elbo.png",
    "vae_elbo.png",
    "vae_khat.png",
    "vae_gaps.png",
    "vae_kl.png",
    "vae_latent.png",
    "vae_reconstructions.png",
    "vae_samples.png",
)


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    yield


def test_diagnostics_example(tmp_path, capsys):
    metrics = load_example("diagnostics").main([*TINY, "--out", str(tmp_path)])
    for name in FILES:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} was not written"
    printed = capsys.readouterr().out
    for text in ("elpd_loo", "Pareto k-hat", "approximation gap", "active units", "mean"):
        assert text in printed, text
    assert printed.rstrip().splitlines()[-1] == (
        f"wrote {', '.join(FILES[1:3] + FILES[:1] + FILES[3:])} to {tmp_path.resolve()}"
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for guide in ("AutoNormal", "AutoMultivariateNormal"):
        assert math.isfinite(saved["regression"][guide]["khat"])
    assert math.isfinite(saved["regression"]["loo"]["elpd_loo"])
    gaps = metrics["vae"]["gaps"]
    assert gaps["num_images"] == 8
    assert gaps["approximation_gap"] + gaps["amortization_gap"] == pytest.approx(
        gaps["inference_gap"]
    )
    assert 0 <= saved["vae"]["collapse"]["active_units"] <= 3
    assert len(saved["vae"]["collapse"]["kl_per_dimension"]) == 3
    vae = load_inference_data(tmp_path / "vae.nc")
    assert vae.posterior["z"].shape == (1, 5, 60, 3)
    regression = load_inference_data(tmp_path / "regression.nc")
    assert regression.posterior["w"].dims == ("chain", "draw", "feature")
    assert regression.log_likelihood["y"].shape == (1, 40, 30)


def test_diagnostics_example_cli_errors():
    assert exit_code("diagnostics", ["--help"]) == 0
    assert exit_code("diagnostics", ["--reg-correlation", "1.5"]) == 2
    assert exit_code("diagnostics", ["--draws", "0"]) == 2
    assert exit_code("diagnostics", ["--khat-samples", "20"]) == 2
