"""Smoke tests of ``examples/diffusion_2d.py`` and ``examples/transition_paths.py``."""

from __future__ import annotations

import json
import math

import pytest

from tests.example_loader import exit_code, load_example


def test_diffusion_2d_example(tmp_path):
    argv = ["--steps", "30", "--T", "10", "--hidden", "16", "--n-train", "256"]
    argv += ["--n-test", "128", "--dataset", "8gaussians", "--out", str(tmp_path)]
    metrics = load_example("diffusion_2d").main(argv)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dataset"] == "8gaussians" and saved["settings"]["T"] == 10
    assert math.isfinite(metrics["test_nll_bound"]) and math.isfinite(metrics["true_nll"])
    assert metrics["test_bits_per_dim"] == metrics["test_nll_bound"] / (2 * math.log(2))
    assert (tmp_path / "diffusion_2d.png").stat().st_size > 1000


def test_diffusion_2d_rejects_bad_arguments(capsys):
    assert exit_code("diffusion_2d", ["--lr", "-1"]) == 2
    assert "--lr must be positive" in capsys.readouterr().err
    assert exit_code("diffusion_2d", ["--help"]) == 0


def test_transition_paths_example(tmp_path):
    argv = ["--steps", "20", "--num-steps", "20", "--hidden", "16", "--num-end-states", "64"]
    argv += ["--num-direct", "20000", "--long-time", "200", "--num-paths", "64"]
    argv += ["--is-samples", "16", "--is-points", "32", "--out", str(tmp_path)]
    metrics = load_example("transition_paths").main(argv)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["settings"]["num_steps"] == 20
    for key in ("p_end_in_b_direct", "p_end_in_b_inferred", "mfpt_direct"):
        assert math.isfinite(metrics[key]) or key == "mfpt_direct"
    assert (tmp_path / "transition_paths.png").stat().st_size > 1000


@pytest.mark.slow
def test_transition_paths_muller_brown_example(tmp_path):
    argv = ["--potential", "muller-brown", "--sigma", "1.2", "--t-end", "1.0"]
    argv += ["--num-steps", "40", "--num-direct", "20000", "--steps", "3", "--batch-size", "16"]
    argv += ["--hidden", "16", "--num-chains", "20", "--long-time", "5", "--num-paths", "32"]
    argv += ["--is-points", "16", "--is-samples", "8", "--out", str(tmp_path)]
    metrics = load_example("transition_paths").main(argv)
    assert metrics["settings"]["potential"] == "muller-brown"
    assert 0 < metrics["p_end_in_b_direct"] < 1 and math.isfinite(metrics["p_end_in_b_inferred"])
    assert (tmp_path / "transition_paths.png").stat().st_size > 1000


def test_transition_paths_rejects_bad_arguments(capsys):
    assert exit_code("transition_paths", ["--sigma", "0"]) == 2
    assert "--sigma must be positive" in capsys.readouterr().err
    assert exit_code("transition_paths", ["--num-steps", "10"]) == 2
    assert "--num-steps too small" in capsys.readouterr().err
    assert exit_code("transition_paths", ["--help"]) == 0
