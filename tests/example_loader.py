"""Loading the scripts in ``examples/`` by file path, for the smoke tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` by file path as a fresh module."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pyrovi_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_code(name: str, argv: list[str]) -> int:
    """Run ``examples/<name>.py``'s ``main(argv)`` where it is expected to exit; its exit code."""
    import pytest

    with pytest.raises(SystemExit) as info:
        load_example(name).main(argv)
    return info.value.code
