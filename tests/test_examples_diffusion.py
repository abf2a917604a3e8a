"""Smoke tests of ``examples/diffusion_2d.py`` and ``examples/transition_paths.py``."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.example_loader import exit_code, load_example


def test_diffusion_2d_example(tmp_path, capsys):
    argv = ["--steps", "30", "--T", "10", "--hidden", "16", "--n-train", "256"]
    argv += ["--n-test", "128", "--dataset", "8gaussians", "--out", str(tmp_path)]
    metrics = load_example("diffusion_2d").main(argv)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dataset"] == "8gaussians" and saved["settings"]["T"] == 10
    assert math.isfinite(metrics["test_nll_bound"]) and math.isfinite(metrics["true_nll"])
    assert metrics["test_bits_per_dim"] == metrics["test_nll_bound"] / (2 * math.log(2))
    assert (tmp_path / "diffusion_2d.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert f"wrote metrics.json, diffusion_2d.png to {tmp_path.resolve()}\n" in out
    assert not re.search(r"\d\.\d{7,}", out), out  # no float noise in what it prints


def test_diffusion_2d_dataset_names_match_the_library():
    """``--dataset`` choices are named in the script (no torch for --help); they must agree."""
    from pyrovi.data.toy2d import TOY_DATASETS

    assert load_example("diffusion_2d").TOY_DATASET_NAMES == tuple(TOY_DATASETS)


def test_diffusion_2d_rejects_bad_arguments(capsys):
    assert exit_code("diffusion_2d", ["--lr", "-1"]) == 2
    assert "--lr must be positive" in capsys.readouterr().err
    assert exit_code("diffusion_2d", ["--help"]) == 0


def test_transition_paths_example(tmp_path, capsys):
    argv = ["--steps", "20", "--num-steps", "20", "--hidden", "16", "--num-end-states", "64"]
    argv += ["--num-direct", "20000", "--long-time", "200", "--num-paths", "64"]
    argv += ["--is-samples", "16", "--is-points", "32", "--out", str(tmp_path)]
    metrics = load_example("transition_paths").main(argv)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["settings"]["num_steps"] == 20
    for key in ("p_end_in_b_direct", "p_end_in_b_inferred", "mfpt_direct"):
        assert math.isfinite(metrics[key]) or key == "mfpt_direct"
    assert (tmp_path / "transition_paths.png").stat().st_size > 1000
    captured = capsys.readouterr()
    assert f"wrote metrics.json, transition_paths.png to {tmp_path.resolve()}\n" in captured.out
    assert not re.search(r"\d\.\d{7,}", captured.out), captured.out  # no float noise
    assert "max_plate_nesting" not in captured.err  # no Pyro INFO line
    # the legend names every ensemble of metrics.json in words, not by its key
    labels = load_example("transition_paths").ENSEMBLE_LABELS
    assert set(labels) == set(saved["reactive_density"])
    assert all(" " in label for label in labels.values())


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
