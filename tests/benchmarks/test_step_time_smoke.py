"""Smoke test of ``benchmarks/step_time.py``: tiny settings, all three models, JSON written."""

from __future__ import annotations

import json
import math

import pyro
import torch

from tests.example_loader import load_benchmark


def test_step_time_tiny_run(tmp_path, device):
    out = tmp_path / "step_time.json"
    threads = torch.get_num_threads()
    report = load_benchmark("step_time").main(
        [
            "--models",
            "vae,flow,sde",
            "--device",
            str(device),
            "--batch-sizes",
            "16",
            "--sde-batch-sizes",
            "8",
            "--steps",
            "2",
            "--sde-steps",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--data",
            "random",
            "--random-images",
            "64",
            "--sde-times",
            "11",
            "--check-batch",
            "8",
            "--check-steps",
            "2",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"vae", "flow", "sde"}
    for kind, batch in (("vae", "16"), ("flow", "16"), ("sde", "8")):
        entry = saved["results"][kind][batch]
        for method in ("fit", "plain"):
            ms = entry[method]["ms_per_step"]
            assert math.isfinite(ms) and ms > 0, (kind, method, ms)
            assert entry[method]["items_per_s"] > 0
        assert math.isfinite(entry["ratio_fit_over_plain"]) and entry["ratio_fit_over_plain"] > 0
        check = saved["check_same_loss"][kind]
        assert len(check["fit_losses"]) == len(check["plain_losses"]) == 2
        assert check["max_rel_loss_diff"] < 1e-3, (kind, check)
    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_count"] and env["date"]
    assert report["results"]["vae"]["16"]["fit"]["ms_per_step"] > 0
    # the script restores the global settings it changes
    assert torch.get_num_threads() == threads
    assert not pyro.settings.get("module_local_params")


def test_step_time_small_models_tiny_run(tmp_path):
    """The small models (CPU): every method timed, ratios to the plain loop, and the plain loops'
    ELBO equal to Pyro's from the same seed and parameters (float64)."""
    out = tmp_path / "step_time.json"
    threads = torch.get_num_threads()
    report = load_benchmark("step_time").main(
        ["--models", "small", "--small-steps", "2", "--repeats", "1", "--out", str(out)]
    )
    assert torch.get_num_threads() == threads
    saved = json.loads((tmp_path / "step_time_small.json").read_text())
    assert saved["models"].keys() == report["small"]["models"].keys()
    assert set(saved["models"]) == {
        "eight_schools",
        "eight_schools_flow",
        "regression",
        "gmm",
        "ddpm",
    }
    for kind, methods in saved["models"].items():
        expected = {"plain", "fit", "fit_pyro"} | ({"svi"} if kind != "ddpm" else set())
        assert set(methods) == expected
        for entry in methods.values():
            assert math.isfinite(entry["ms_per_step"]) and entry["ms_per_step"] > 0
            assert math.isfinite(entry["ratio_to_plain"]) and entry["ratio_to_plain"] > 0
        check = saved["check_same_elbo"][kind]
        if kind != "ddpm":
            assert check["rel_diff_pyro"] < 1e-12, (kind, check)
