"""Smoke test of ``benchmarks/eight_schools.py``: ``--quick`` settings, JSON written."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.example_loader import load_benchmark


def test_eight_schools_quick_run(tmp_path):
    out = tmp_path / "eight_schools.json"
    threads = torch.get_num_threads()
    report = load_benchmark("eight_schools").main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"nuts", "normal", "iaf"}
    assert saved["config"]["steps"] == 100 and saved["config"]["quick"] is True
    assert saved["seeds"]["nuts_chains"] == [1000, 1001]
    nuts = saved["results"]["nuts"]["fit"]
    assert set(nuts["rhat"]) == {"mu", "tau", "log_tau"} and nuts["chains"] == 2
    for method, r in saved["results"].items():
        for q in ("mu", "tau", "log_tau"):
            assert math.isfinite(r[q]["mean"]) and r[q]["sd"] > 0, (method, q)
        assert r["tau"]["q05"] > 0
        assert 0.0 <= r["tau_mass_above_nuts_q95"] <= r["tau_mass_above_nuts_q90"] <= 1.0
        assert 0.0 <= r["tau_mass_below_nuts_q05"] <= r["tau_mass_below_nuts_q10"] <= 1.0
    # NUTS's own 80 draws put 10% beyond their 10% and 90% quantiles (one draw of slack)
    nuts_tails = saved["results"]["nuts"]
    assert nuts_tails["tau_mass_above_nuts_q90"] == pytest.approx(0.1, abs=0.0125)
    assert nuts_tails["tau_mass_below_nuts_q10"] == pytest.approx(0.1, abs=0.0125)
    for kind in ("normal", "iaf"):
        imp = saved["results"][kind]["importance"]
        assert imp["draws"] == 200 and math.isfinite(imp["elbo"]) and math.isfinite(imp["khat"])
        assert len(imp["khat_own_log_weights"]) == 2  # two replicates of 100 draws
        # Jensen: log of the mean weight >= mean log weight, on the same draws
        assert imp["log_evidence_is"] >= imp["elbo"]
        assert saved["results"][kind]["fit"]["steps"] == 100
    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["pyro"] and env["date"]
    assert report["results"]["iaf"]["mu"]["mean"] == saved["results"]["iaf"]["mu"]["mean"]
    assert torch.get_num_threads() == threads  # the script restores what it changes


def test_eight_schools_quick_writes_nothing_by_default(tmp_path, monkeypatch):
    module = load_benchmark("eight_schools")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    tiny = "--guides iaf --steps 5 --nuts-warmup 5 --nuts-samples 5 --khat-draws 21"
    report = module.main(["--quick", *tiny.split()])
    assert not any(tmp_path.rglob("*.json"))
    assert set(report["results"]) == {"nuts", "iaf"}


def test_eight_schools_rejects_unknown_guides():
    with pytest.raises(SystemExit, match="unknown guides"):
        load_benchmark("eight_schools").main(["--quick", "--guides", "normal,glow"])
