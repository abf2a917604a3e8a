"""The C2ST table of ``benchmarks/sbi_tasks.py`` says how many observations each mean covers."""

from __future__ import annotations

import pytest
import torch

from tests.example_loader import load_benchmark


def _row(fast: dict, sbibm: dict | None = None) -> dict:
    row = {"c2st_per_obs": fast, "c2st_mean": sum(fast.values()) / len(fast)}
    if sbibm is not None:
        row["c2st_sbibm_per_obs"] = sbibm
        row["c2st_sbibm_mean"] = sum(sbibm.values()) / len(sbibm)
    return row


def test_table_marks_means_over_fewer_observations_and_partial_rescoring():
    module = load_benchmark("sbi_tasks")
    all_ten = {str(n): 0.6 for n in range(1, 11)}
    last_eight = {str(n): 0.55 for n in range(3, 11)}
    results = {
        "published": {"c2st": {"slcp": {"TSNPE": {"100000": 0.745}}}},
        "slcp": {
            "tsnpe_nsf": {
                "1000": _row({"1": 0.9, "2": 0.8}),
                "10000": _row(all_ten, dict(all_ten)),
                "100000": _row(all_ten, last_eight),
            }
        },
    }
    line = next(x for x in module.table(results).splitlines() if x.startswith("| slcp"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "0.850 [2 obs] (–)"
    assert cells[3] == "0.600 / 0.600 (–)"
    assert cells[4] == "0.600 / 0.550 [sbibm: 8 obs] (0.745)"
    assert cells[5] == "10"


def test_results_keys_name_every_setting_away_from_the_default():
    module = load_benchmark("sbi_tasks")
    parse = module.build_parser().parse_args
    assert module._key("tsnpe", parse([])) == "tsnpe"
    args = parse(["--flow", "nsf", "--num-rounds", "10", "--threshold-samples", "100000"])
    assert module._key("tsnpe", args) == "tsnpe_nsf_10r_s100000"
    assert module._key("npe", args) == "npe_nsf"  # TSNPE's settings do not rename NPE
    args = parse(["--batch-size", "1000", "--lr-drops", "3", "--thin", "50"])
    assert module._key("nle", args) == "nle_b1000_d3_t50"


def test_threshold_samples_must_be_positive():
    module = load_benchmark("sbi_tasks")
    with pytest.raises(SystemExit, match="--threshold-samples: expected a positive count, got 0"):
        module.main(["--threshold-samples", "0", "--tasks", "slcp"])


@pytest.mark.parametrize("method", ["npe", "nle"])
def test_training_runs_do_not_depend_on_the_random_state_before_them(method):
    """Split runs (observations 1-5 and 6-10 in two processes) must train the same flow: the seed
    covers the flow's initial weights, not only simulation and training."""
    import torch

    from pyrovi.models import sbi_task

    module = load_benchmark("sbi_tasks")
    model = sbi_task("gaussian_linear")
    weights = []
    for state in (1, 2):
        torch.manual_seed(state)
        torch.rand(state * 7)
        est, result, _ = module.train_amortized(method, model, 100, seed=0)
        weights.append(torch.cat([p.detach().flatten() for p in est.net.parameters()]))
        assert result.epochs >= 1
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("flow", ["maf", "nsf"])
def test_sbi_side_trains_the_flow_pyrovi_trains(flow, monkeypatch, tmp_path):
    """The wall-time comparison hands ``--flow`` to sbi as its ``density_estimator``."""
    tasks = load_benchmark("sbi_tasks")
    side = load_benchmark("sbi_side")
    args = tasks.build_parser().parse_args(
        ["--flow", flow, "--sbi-python", "python", "--num-rounds", "10"]
    )
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["args"] = side.parse_args(cmd[2:])
        raise RuntimeError("stop before reading the output")

    monkeypatch.setattr(tasks.subprocess, "run", fake_run)
    # no sbibm files at test time: a stand-in observation
    monkeypatch.setattr(tasks.ref, "observation", lambda task, n: torch.zeros(8))
    with pytest.raises(RuntimeError, match="stop before"):
        tasks.sbi_total("slcp", "tsnpe", 10_000, 1, tmp_path / "sims.pt", args)
    assert seen["args"].density_estimator == flow
    assert seen["args"].num_rounds == 10


def test_sbi_side_names_the_flows_it_accepts(capsys):
    side = load_benchmark("sbi_side")
    argv = ["--task", "slcp", "--method", "npe", "--budget", "10", "--obs", "o.pt", "--out", "o"]
    with pytest.raises(SystemExit):
        side.parse_args([*argv, "--density-estimator", "mdn"])
    assert "--density-estimator" in capsys.readouterr().err
    assert side.parse_args(argv).density_estimator == "maf"
