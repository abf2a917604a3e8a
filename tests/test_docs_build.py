"""The documentation site builds with warnings as errors.

The same command as the README's (``python -m sphinx -W -b html docs docs/_build/html``), with
``--keep-going`` so that a failure lists every warning, into a temporary folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("sphinx", "myst_parser", "furo")
# The API reference has one page per subpackage, docs/api/<name>.md.
API_PAGES = (
    "data",
    "nn",
    "distributions",
    "models",
    "guides",
    "infer",
    "diagnostics",
    "compress",
    "cli",
)


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML site, built once with ``-W --keep-going``; fails with the build's last lines."""
    out = tmp_path_factory.mktemp("html")
    missing = [name for name in TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"cannot build the documentation: {', '.join(missing)} not installed; install the "
            "docs extra: pip install -e '.[docs]'"
        )
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    if proc.returncode != 0:
        pytest.fail(f"sphinx exited with status {proc.returncode}; last 60 lines:\n{output}")
    assert (out / "index.html").is_file()
    return out


def test_docs_build_without_warnings(built_docs: Path) -> None:
    assert (built_docs / "getting-started.html").is_file()
    assert (built_docs / "guide" / "pyro-models.html").is_file()


@pytest.mark.parametrize("name", API_PAGES)
def test_api_page_documents_all(built_docs: Path, name: str) -> None:
    """Every name in ``pyrovi.<name>.__all__`` has an entry on the subpackage's API page."""
    module = importlib.import_module(f"pyrovi.{name}")
    html = (built_docs / "api" / f"{name}.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="((?:module-)?pyrovi\.[\w.]+)"', html))
    missing = []
    for member in module.__all__:
        target = f"pyrovi.{name}.{member}"
        if target not in ids and f"module-{target}" not in ids:
            missing.append(member)
    assert not missing, f"docs/api/{name}.md does not document {missing}"
