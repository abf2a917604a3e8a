"""Smoke tests of ``examples/ground_state.py``, run in-process with tiny settings."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.example_loader import exit_code, load_example

FAST = [
    "--steps",
    "3",
    "--walkers",
    "16",
    "--eval-walkers",
    "16",
    "--eval-paths",
    "2",
    "--burn-in",
    "1",
    "--horizon",
    "0.2",
    "--dt",
    "0.05",
    "--width",
    "8",
    "--no-progress",
]


@pytest.mark.parametrize(
    "system, extra",
    [
        ("harmonic", ["--dim", "2"]),
        ("hydrogen", []),
        ("helium", ["--no-plot"]),
        ("h2", ["--drift", "equivariant", "--no-plot"]),
        ("bosons", ["--g", "3", "--num-particles", "3"]),
    ],
)
def test_ground_state_example(system, extra, tmp_path, capsys):
    metrics = load_example("ground_state").main(
        [*FAST, "--system", system, *extra, "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    written = "metrics.json, drift.pt" + ("" if "--no-plot" in extra else ", ground_state.png")
    assert f"wrote {written} to {tmp_path.resolve()}\n" in out
    assert not re.search(r"\d\.\d{7,}", out), out  # no float noise in what it prints
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["system"] == system and saved["training"]["steps"] == 3
    for key in ("energy_dt", "energy_dt_half", "extrapolated"):
        assert math.isfinite(saved[key]["energy"]) and saved[key]["stderr"] >= 0
    assert len(metrics["history"]["energy"]) == 3
    assert (tmp_path / "drift.pt").stat().st_size > 0
    if "--no-plot" not in extra:
        assert (tmp_path / "ground_state.png").stat().st_size > 1000


def test_ground_state_example_rejects_bad_arguments(capsys):
    assert exit_code("ground_state", ["--dt", "0.3", "--horizon", "1"]) == 2
    assert "--dt must divide --horizon" in capsys.readouterr().err
    assert exit_code("ground_state", ["--system", "lithium"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert exit_code("ground_state", ["--help"]) == 0


def test_system_names_match_the_library():
    """``--system`` choices are named in the script (no torch for --help); they must agree."""
    from pyrovi.models import hamiltonians

    assert load_example("ground_state").SYSTEMS == tuple(sorted(hamiltonians.SYSTEMS))
