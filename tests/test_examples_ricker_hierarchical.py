"""Smoke tests of ``examples/ricker_hierarchical.py`` (NUTS on a learned likelihood vs NPE and
ABC on a hierarchical Ricker model), tiny settings."""

from __future__ import annotations

import json
import math

from tests.example_loader import exit_code, load_example

FAST = [
    "--num-series",
    "3",
    "--num-simulations",
    "600",
    "--num-layers",
    "1",
    "--hidden-features",
    "8",
    "--max-epochs",
    "2",
    "--num-samples",
    "10",
    "--warmup",
    "10",
    "--abc-quantile",
    "0.05",
    "--threads",
    "1",
    "--no-progress",
]


def test_hierarchical_example_writes_metrics_and_figure(tmp_path, capsys):
    metrics = load_example("ricker_hierarchical").main([*FAST, "--out", str(tmp_path)])
    assert (tmp_path / "posterior.png").stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_series"] == 3 and saved["npe"]["num_data_sets"] == 200
    for method in ("nle", "npe", "abc"):
        post = metrics[method]["posterior"]
        assert set(post) == {"mu", "tau", "sigma", "phi", "log_r"}
        assert len(post["log_r"]["mean"]) == 3 and len(post["mu"]["mean"]) == 1
        assert all(math.isfinite(m) for row in post.values() for m in row["mean"])
        lo, hi = post["phi"]["ci90"]
        assert 4.0 <= lo[0] <= hi[0] <= 20.0  # inside the prior of φ
    assert metrics["nle"]["nuts_s"] > 0
    printed = capsys.readouterr().out
    assert (
        printed.rstrip().splitlines()[-1]
        == f"wrote metrics.json, posterior.png to {tmp_path.resolve()}"
    )


def test_hierarchical_example_rejects_bad_arguments(tmp_path):
    assert exit_code("ricker_hierarchical", ["--abc-quantile", "0", "--out", str(tmp_path)]) == 2
    assert exit_code("ricker_hierarchical", ["--num-steps", "1", "--out", str(tmp_path)]) == 2
    args = ["--num-series", "10", "--num-simulations", "15", "--out", str(tmp_path)]
    assert exit_code("ricker_hierarchical", args) == 2
