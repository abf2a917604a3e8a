"""Smoke tests of ``examples/ricker.py`` (NPE vs ABC on the Ricker model), tiny settings."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.example_loader import exit_code, load_example

FAST = [
    "--num-simulations",
    "400",
    "--abc-quantile",
    "0.05",
    "--num-layers",
    "1",
    "--hidden-features",
    "8",
    "--max-epochs",
    "2",
    "--posterior-samples",
    "200",
    "--sbc-tests",
    "20",
    "--sbc-samples",
    "9",
    "--threads",
    "1",
    "--no-progress",
]


def test_ricker_example_writes_metrics_and_figures(tmp_path, capsys):
    metrics = load_example("ricker").main([*FAST, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    names = "metrics.json, posterior.png, sbc.png, sbc_abc.png"
    assert f"wrote {names} to {tmp_path.resolve()}\n" in out
    assert not re.search(r"\d\.\d{7,}", out), out  # no float noise in what it prints
    for name in ("metrics.json", "posterior.png", "sbc.png", "sbc_abc.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_simulations"] == 400 and saved["abc"]["accepted"] == 20
    for method in ("npe", "abc"):
        for name in ("log_r", "sigma", "phi"):
            row = metrics[method]["posterior"][name]
            lo, hi = row["ci90"]
            assert lo <= row["mean"] <= hi and row["sd"] > 0
            assert saved[method]["posterior"][name]["mean"] == pytest.approx(row["mean"])
            assert 0.0 <= metrics[method]["sbc_p_values"][name] <= 1.0
    # samples respect the prior support (NPE through biject_to, ABC as prior draws)
    assert 3.0 <= metrics["npe"]["posterior"]["log_r"]["ci90"][0]
    assert metrics["npe"]["posterior"]["sigma"]["ci90"][1] <= 0.8
    assert math.isfinite(metrics["npe"]["train_s"])


def test_ricker_example_raw_series_gru(tmp_path):
    metrics = load_example("ricker").main(
        [*FAST, "--embedding", "gru", "--no-summaries", "--out", str(tmp_path)]
    )
    assert metrics["npe"]["embedding"] == "gru" and not metrics["npe"]["summaries"]


def test_help_and_usage_errors(tmp_path, capsys):
    assert exit_code("ricker", ["--help"]) == 0
    assert "--num-simulations" in capsys.readouterr().out
    assert exit_code("ricker", ["--abc-quantile", "2", "--out", str(tmp_path)]) == 2
    assert "--abc-quantile" in capsys.readouterr().err
    assert exit_code("ricker", ["--no-summaries", "--out", str(tmp_path)]) == 2
