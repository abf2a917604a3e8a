"""The bad-input census (``benchmarks/bad_inputs.py``) as a regression test: every case clear.

The default run takes the construction and file groups (~10 s); the whole census (~600 cases,
~1 min) is marked slow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bad_inputs.py"


def _census(groups: str) -> dict:
    spec = importlib.util.spec_from_file_location("pyrovi_benchmark_bad_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module.main(["--groups", groups, "--out", ""])


def _unclear(report: dict) -> list[str]:
    return [
        f"{c['kind']}: {c['entry']}: {c['label']} -> {c['error']}: {c['message'][:200]}"
        for c in report["cases"]
        if c["kind"] != "clear"
    ]


def test_construction_and_file_inputs_get_clear_errors():
    report = _census("construction,files")
    assert report["total"] > 150
    assert not _unclear(report)


@pytest.mark.slow
def test_every_census_case_gets_a_clear_error():
    report = _census("fit,evidence,diagnostics,construction,sde,sbi,files,compress")
    assert report["total"] > 600
    assert not _unclear(report)
