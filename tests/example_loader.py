"""Loading the scripts in ``examples/`` and ``benchmarks/`` by file path, for the smoke tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BENCHMARKS = ROOT / "benchmarks"


def _load(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by file path as a fresh module."""
    return _load(EXAMPLES / f"{name}.py", f"pyrovi_example_{name}")


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` by file path as a fresh module."""
    return _load(BENCHMARKS / f"{name}.py", f"pyrovi_benchmark_{name}")


def exit_code(name: str, argv: list[str]) -> int:
    """Run ``examples/<name>.py``'s ``main(argv)`` where it is expected to exit; its exit code."""
    import pytest

    with pytest.raises(SystemExit) as info:
        load_example(name).main(argv)
    return info.value.code
