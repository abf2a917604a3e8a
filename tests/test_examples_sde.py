"""Smoke tests of ``examples/latent_sde.py``, run in-process with tiny settings."""

from __future__ import annotations

import json
import math

from tests.example_loader import exit_code, load_example

FAST = [
    "--epochs",
    "2",
    "--num-series",
    "32",
    "--num-test",
    "4",
    "--num-times",
    "12",
    "--hidden",
    "8",
    "--context-dim",
    "4",
    "--samples",
    "2",
    "--batch-size",
    "16",
    "--threads",
    "1",
    "--no-progress",
]


def test_latent_sde_example(tmp_path, capsys):
    metrics = load_example("latent_sde").main([*FAST, "--out", str(tmp_path)])
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1] == f"wrote metrics.json, latent_sde.png to {tmp_path.resolve()}"
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"]["observed_times"] == 9 and saved["data"]["forecast_times"] == 3
    for key in ("test_reconstruction_mse", "test_forecast_mse", "forecast_mse_last_value"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0
    assert (tmp_path / "latent_sde.png").stat().st_size > 1000


def test_latent_sde_example_rejects_bad_arguments(tmp_path, capsys):
    assert exit_code("latent_sde", ["--observe-fraction", "1.5"]) == 2
    assert "--observe-fraction must lie strictly between 0 and 1" in capsys.readouterr().err
    assert exit_code("latent_sde", ["--num-times", "2"]) == 2
    assert "--num-times too small" in capsys.readouterr().err
    assert exit_code("latent_sde", ["--help"]) == 0


def test_latent_sde_example_without_plot(tmp_path, capsys):
    load_example("latent_sde").main([*FAST, "--epochs", "1", "--no-plot", "--out", str(tmp_path)])
    printed = capsys.readouterr().out.rstrip().splitlines()
    assert printed[-1] == f"wrote metrics.json to {tmp_path.resolve()}"
    assert not (tmp_path / "latent_sde.png").exists()
