"""Smoke test of ``examples/compress.py`` (bits-back compression), tiny settings."""

from __future__ import annotations

import json
import re

from tests.example_loader import exit_code, load_example


def test_compress_example_round_trips_and_writes_figures(tmp_path, capsys):
    argv = ["--epochs", "2", "--hidden", "16", "--z-dim", "3", "--n", "20", "--lanes", "4"]
    metrics = load_example("compress").main([*argv, "--out", str(tmp_path)])
    for name in ("metrics.json", "rates.png", "code_lengths.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert metrics["exact_round_trip"] and metrics["n_test"] == 20
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["bits_back"]["total_bits"] == metrics["bits_back"]["total_bits"]
    out = capsys.readouterr().out
    assert f"wrote metrics.json, rates.png, code_lengths.png to {tmp_path.resolve()}\n" in out
    assert not re.search(r"\d\.\d{7,}", out), out  # no float noise in what it prints


def test_compress_example_rejects_bad_arguments():
    assert exit_code("compress", ["--lanes", "0"]) == 2
