"""Smoke tests of ``examples/model_families.py`` (hierarchical VAE, VQ-VAE, RBM), tiny settings."""

from __future__ import annotations

import json
import math

import pyro
import pytest

from tests.example_loader import exit_code, load_example

FAST = [
    "--epochs",
    "1",
    "--iwae-k",
    "10",
    "--elbo-samples",
    "2",
    "--hidden",
    "32,16",
    "--hidden-top",
    "16",
    "--ais-chains",
    "10",
    "--ais-betas",
    "100",
    "--rbm-hidden",
    "16",
    "--no-progress",
    "--device",
    "cpu",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    yield


@pytest.mark.parametrize(
    "extra",
    [
        ["--family", "hvae"],
        ["--family", "hvae", "--layers", "1", "--guide", "bottom-up"],
        ["--family", "hvae", "--free-bits", "0.1", "--kl-annealing", "1", "--activation", "tanh"],
        ["--family", "vqvae", "--eval-subset", "50"],
        ["--family", "rbm"],
        ["--family", "rbm", "--persistent", "--cd-k", "2"],
    ],
    ids=["hvae2-topdown", "hvae1", "hvae2-freebits", "vqvae", "rbm-cd", "rbm-pcd"],
)
def test_model_families_example(tmp_path, extra, capsys):
    example = load_example("model_families")
    metrics = example.main([*FAST, "--out", str(tmp_path), *extra])
    out = capsys.readouterr().out
    assert f"wrote metrics.json, samples.png to {tmp_path.resolve()}\n" in out
    for name in ("metrics.json", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["family"] == extra[1] == metrics["family"]
    assert saved["dataset"] == "digits" and saved["threads"] == 1
    for key in ("test_nll", "train_seconds", "eval_seconds"):
        assert math.isfinite(metrics[key]), key
        assert saved[key] == pytest.approx(metrics[key])
    # binarized 8x8 digits: any sensible model costs between 0 and 64 log 2 ≈ 44 nats... plus
    # slack for a one-epoch model
    assert 0 < metrics["test_nll"] < 80
    if extra[1] == "hvae":
        assert -metrics["test_nll"] > metrics["test_elbo"] - 1.0  # IWAE ≥ ELBO up to noise
        assert set(metrics["active_units"]) == ({"z1"} if "--layers" in extra else {"z1", "z2"})
    if extra[1] == "vqvae":
        assert metrics["n_eval"] == 50
        assert metrics["test_elbo"] >= metrics["test_elbo_uniform_prior"] - 1.0


def test_help_exits_zero(capsys):
    assert exit_code("model_families", ["--help"]) == 0
    assert "--family" in capsys.readouterr().out


def test_bad_option_is_a_usage_error(tmp_path, capsys):
    argv = ["--free-bits", "-1", "--out", str(tmp_path), "--no-progress"]
    assert exit_code("model_families", argv) == 2
    assert "--free-bits" in capsys.readouterr().err


def test_default_output_folder_is_per_family(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    load_example("model_families").main([*FAST, "--family", "rbm", "--subset", "50"])
    folder = tmp_path / "outputs" / "model_families" / "rbm"
    assert (folder / "metrics.json").is_file()
    assert f"wrote metrics.json, samples.png to {folder.resolve()}\n" in capsys.readouterr().out
