"""``import pyrovi`` and the command-line modules do not load torch until a name needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pyrovi
import pyrovi.compress


def _loads_torch(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("module", ["pyrovi", "pyrovi.cli", "pyrovi.compress", "pyrovi._progress"])
def test_import_does_not_load_torch(module):
    assert not _loads_torch(f"import {module}")


def test_first_use_loads_torch():
    assert _loads_torch("import pyrovi\npyrovi.fit")


@pytest.mark.parametrize("package", [pyrovi, pyrovi.compress], ids=lambda p: p.__name__)
def test_every_public_name_resolves(package):
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert set(package.__all__) <= set(dir(package))


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'pyrovi' has no attribute 'nope'"):
        pyrovi.nope  # noqa: B018
