"""`python -m pyrovi.compress`: train, encode, decode round trips on tiny digits models."""

import argparse
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyrovi import VAE, AmortizedNormal
from pyrovi.compress.__main__ import build_parser, main
from pyrovi.compress.bundle import load_vae, save_vae
from pyrovi.data import binarize_data, load_dataset


def _encode_decode(tmp_path, model):
    stream = tmp_path / "digits.pvbb"
    stats = main(
        ["encode", "--model", str(model), "--dataset", "digits", "--n", "12", "--lanes", "8"]
        + ["--output", str(stream)]
    )
    assert stats["num_data"] == 12 and stats["total_bits"] == 8 * stream.stat().st_size
    out = tmp_path / "decoded.npy"
    main(["decode", "--model", str(model), "--input", str(stream), "--output", str(out)])
    expected = binarize_data(load_dataset("digits"), seed=0).x_test[:12].numpy()
    np.testing.assert_array_equal(np.load(out), expected)
    return expected


def test_cli_encode_decode_round_trip(tmp_path):
    path = tmp_path / "vae.pt"
    save_vae(path, VAE(64, 3, hidden_dims=(16,)), AmortizedNormal(64, 3, hidden_dims=(16,)), [16])
    expected = _encode_decode(tmp_path, path)
    npy = tmp_path / "x.npy"  # a .npy input works the same way
    np.save(npy, expected[:3])
    stats = main(["encode", "--model", str(path), "--input", str(npy), "--output", str(npy)])
    assert stats["num_data"] == 3


@pytest.mark.slow
def test_cli_train_then_round_trip(tmp_path):
    path = tmp_path / "vae.pt"
    meta = main(
        ["train", "--subset", "64", "--epochs", "2", "--z-dim", "3", "--hidden", "16"]
        + ["--model", str(path)]
    )
    assert meta["epochs"] == 2
    model, _, _ = load_vae(path)
    assert model.z_dim == 3 and isinstance(model.decoder(torch.zeros(1, 3)), torch.Tensor)
    _encode_decode(tmp_path, path)


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["encode", "--model", str(tmp_path / "missing.pt"), "--output", "x"])
    assert "no file" in capsys.readouterr().err
    path = tmp_path / "vae.pt"
    save_vae(path, VAE(64, 3, hidden_dims=(16,)), AmortizedNormal(64, 3, hidden_dims=(16,)), [16])
    with pytest.raises(SystemExit):
        main(["encode", "--model", str(path), "--output", "x"])
    assert "exactly one of --input and --dataset" in capsys.readouterr().err


def test_cli_decode_writes_exactly_the_output_name_and_says_where(tmp_path, capsys):
    path = tmp_path / "vae.pt"
    save_vae(path, VAE(64, 3, hidden_dims=(16,)), AmortizedNormal(64, 3, hidden_dims=(16,)), [16])
    stream = tmp_path / "s.pvbb"
    main(
        ["encode", "--model", str(path), "--dataset", "digits", "--n", "4", "--no-progress"]
        + ["--output", str(stream)]
    )
    assert f"wrote s.pvbb to {tmp_path.resolve()}" in capsys.readouterr().out
    bare = tmp_path / "decoded"  # no extension: written as named, not as decoded.npy
    out = main(["decode", "--model", str(path), "--input", str(stream), "--output", str(bare)])
    assert out["num_data"] == 4 and bare.is_file()
    assert not (tmp_path / "decoded.npy").exists()
    assert np.load(bare).shape == (4, 64)
    assert f"wrote decoded to {tmp_path.resolve()}\n" in capsys.readouterr().out


def test_cli_train_prints_train_and_test_elbo(tmp_path, capsys):
    path = tmp_path / "vae.pt"
    meta = main(
        ["train", "--subset", "40", "--epochs", "1", "--z-dim", "2", "--hidden", "8"]
        + ["--elbo-samples", "2", "--no-progress", "--model", str(path)]
    )
    out = capsys.readouterr().out
    train = re.search(r"train ELBO (-?\d+\.\d\d) nats/image \((\d+\.\d{4}) bits/pixel\)", out)
    test = re.search(r"test ELBO +(-?\d+\.\d\d) nats/image \((\d+\.\d{4}) bits/pixel\)", out)
    assert train and test, out
    assert float(train.group(1)) == pytest.approx(meta["train_elbo_last_epoch"], abs=0.006)
    assert float(test.group(1)) == pytest.approx(meta["test_elbo"], abs=0.006)
    assert float(test.group(2)) == pytest.approx(-meta["test_elbo"] / (64 * math.log(2)), abs=1e-4)
    assert meta["test_images"] == 40 and meta["test_elbo"] < 0
    assert f"wrote vae.pt to {tmp_path.resolve()}" in out
    assert load_vae(path)[2]["test_elbo"] == pytest.approx(meta["test_elbo"])


# Runs `python -m pyrovi.compress <argv>` in a fresh interpreter and reports the heavy modules
# loaded once argparse has exited (after printing the help).
HELP_PROBE = """
import runpy
import sys

sys.argv = ["pyrovi.compress", *{argv!r}]
try:
    runpy.run_module("pyrovi.compress", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
loaded = sorted(m for m in ("torch", "pyro", "numpy") if m in sys.modules)
print("HEAVY-MODULES:", ",".join(loaded) or "none")
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["decode", "--help"]])
def test_cli_help_does_not_import_torch(argv):
    result = subprocess.run(
        [sys.executable, "-c", HELP_PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == "HEAVY-MODULES: none", result.stdout
    assert result.stdout.startswith("usage: python -m pyrovi.compress")
    if argv[0] == "train":
        assert "Run time with the defaults:" in result.stdout


def test_cli_help_shows_every_default():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in [("", parser), *subparsers.choices.items()]:
        formatter = sub.formatter_class(sub.prog)
        for action in sub._actions:
            if (
                not action.option_strings
                or action.nargs == 0
                or action.default is argparse.SUPPRESS
            ):
                continue
            shown = formatter._expand_help(action) if action.help else ""
            assert "default" in shown.lower(), (name, action.option_strings)
            assert "(default: None)" not in shown and "(default: )" not in shown
