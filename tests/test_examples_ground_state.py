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
    "--vmc-walkers",
    "16",
    "--vmc-steps",
    "3",
    "--dmc-time",
    "0.2",
    "--dmc-burn-in",
    "0.1",
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
    if "--drift" in extra:  # not a gradient field: the path estimate only
        assert saved["variational"] is None and saved["projected"] is None
        assert "variational (MALA)" not in out
    else:  # all three estimates, printed with standard errors
        assert math.isfinite(saved["variational"]["energy"])
        assert len(saved["projected"]["estimates"]) == 3
        for label in ("path, Richardson", "variational (MALA)", "projected, dt -> 0"):
            assert re.search(re.escape(label) + r" += -?\d+\.\d+ ± \d", out), out
    assert len(metrics["history"]["energy"]) == 3
    assert (tmp_path / "drift.pt").stat().st_size > 0
    if "--no-plot" not in extra:
        assert (tmp_path / "ground_state.png").stat().st_size > 1000


def test_bosons_example_draws_drift_fields_for_several_g(tmp_path, capsys):
    metrics = load_example("ground_state").main(
        [*FAST, "--system", "bosons", "--g", "15", "3", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert set(metrics["runs"]) == {"15", "3"}
    for g in ("15", "3"):
        assert metrics["runs"][g]["params"]["g"] == float(g)
        assert (tmp_path / f"g{g}" / "drift.pt").stat().st_size > 0
        assert f"bosons g={g}: projected, dt -> 0" in out
    assert (tmp_path / "drift_fields.png").stat().st_size > 5000
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["runs"]) == {"15", "3"}
    # each g trains its own drift: the g = 3 run is the same as a run of g = 3 alone
    alone = load_example("ground_state").main(
        [*FAST, "--system", "bosons", "--g", "3", "--out", str(tmp_path / "alone")]
    )
    for key in ("energy", "stderr", "variance"):
        assert metrics["runs"]["3"]["variational"][key] == alone["variational"][key]
    assert metrics["runs"]["3"]["projected"]["energy"] == alone["projected"]["energy"]


def test_ground_state_example_rejects_bad_arguments(capsys):
    assert exit_code("ground_state", ["--dt", "0.3", "--horizon", "1"]) == 2
    assert "--dt must divide --horizon" in capsys.readouterr().err
    assert exit_code("ground_state", ["--system", "lithium"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert exit_code("ground_state", ["--g", "3", "15"]) == 2
    assert "several --g values are for --system bosons" in capsys.readouterr().err
    assert exit_code("ground_state", ["--dmc-dts", "0.01"]) == 2
    assert "--dmc-dts needs at least two" in capsys.readouterr().err
    assert exit_code("ground_state", ["--help"]) == 0


def test_system_names_match_the_library():
    """``--system`` choices are named in the script (no torch for --help); they must agree."""
    from pyrovi.models import hamiltonians

    assert load_example("ground_state").SYSTEMS == tuple(sorted(hamiltonians.SYSTEMS))
