"""``python examples/<name>.py --help``: parsed before torch loads, every default and the run time
shown."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tests.example_loader import EXAMPLES as EXAMPLES_DIR
from tests.example_loader import load_example

# Every example script whose --help is checked (the file examples/<name>.py).
EXAMPLES = (
    "vae",
    "cvae",
    "flow_vae",
    "flow_density",
    "latent_sde",
    "diagnostics",
    "ground_state",
    "ricker",
    "ricker_hierarchical",
    "diffusion_2d",
    "transition_paths",
    "model_families",
    "compress",
)

# Runs the script as `python examples/<name>.py --help` would, then checks that torch was not
# imported; the help text goes to stdout, followed by the marker line.
PROBE = """
import runpy
import sys

sys.argv = [{path!r}, "--help"]
try:
    runpy.run_path({path!r}, run_name="__main__")
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
loaded = sorted(m for m in ("torch", "pyro", "numpy", "matplotlib") if m in sys.modules)
print("HEAVY-MODULES:", ",".join(loaded) or "none")
"""


def run_help(name: str) -> subprocess.CompletedProcess:
    path = str(EXAMPLES_DIR / f"{name}.py")
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(path=path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_help_does_not_import_torch_and_shows_defaults(name):
    result = run_help(name)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.rstrip().splitlines()[-1] == "HEAVY-MODULES: none", text[-300:]
    assert text.startswith("usage:")
    assert "Run time with the defaults:" in text and "2 CPU cores" in text
    assert "(default: None)" not in text
    assert "(default: )" not in text


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text of ``action`` as ``--help`` prints it (argparse skips an empty help)."""
    if not (action.help or "").strip():
        return ""
    return parser.formatter_class(parser.prog)._expand_help(action)


def options_with_values(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Options that take a value: not the flags (``store_true``) and not ``-h``."""
    return [
        a
        for a in parser._actions
        if a.option_strings and a.nargs != 0 and a.default is not argparse.SUPPRESS
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_option_shows_its_default(name):
    parser = load_example(name).build_parser()
    options = options_with_values(parser)
    assert options, "no options found"
    missing = [
        a.option_strings[-1] for a in options if "default" not in rendered_help(parser, a).lower()
    ]
    assert not missing, f"{name}: --help shows no default for {missing}"


def test_rendered_help_catches_a_missing_default():
    """The check above can fail: an option without help text shows no default."""
    from pyrovi.cli import HelpFormatter

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    quiet = parser.add_argument("--quiet-option", type=int, default=3)
    loud = parser.add_argument("--loud-option", type=int, default=3, help="a number")
    assert rendered_help(parser, quiet) == ""
    assert rendered_help(parser, loud) == "a number (default: 3)"
    assert options_with_values(parser) == [quiet, loud]
