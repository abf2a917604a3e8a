"""Smoke tests of the example scripts in ``examples/``, run in-process with tiny settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyro
import pytest

from pyrovi.data import FASHION_MNIST_DEFAULT_ROOT, MNIST_FILES
from tests.example_loader import exit_code, load_example

# Small networks and one epoch: each run takes about a second on a CPU.
FAST = [
    "--epochs",
    "1",
    "--iwae-k",
    "10",
    "--elbo-samples",
    "2",
    "--hidden",
    "32,16",
    "--no-progress",
    "--device",
    "cpu",
]


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)
    yield


def check_metrics(out: Path, metrics: dict, figures: tuple[str, ...]) -> None:
    for name in ("metrics.json", *figures):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, f"{name} was not written"
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("train_elbo", "test_elbo", "test_nll_iwae", "train_seconds", "step_ms"):
        assert math.isfinite(metrics[key]), f"{key} = {metrics[key]}"
        assert saved[key] == pytest.approx(metrics[key])
    assert saved["history"]["train_elbo"] and len(saved["history"]["train_elbo"]) == 1
    # The IWAE bound with K > 1 is at least as tight as the ELBO up to Monte Carlo noise.
    assert -metrics["test_nll_iwae"] > metrics["test_elbo"] - 1.0


def check_wrote(capsys, out: Path, names: str) -> None:
    """The run ended by saying which files it wrote, and to which (absolute) folder."""
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-1] == f"wrote {names} to {out.resolve()}"


@pytest.mark.parametrize(
    "extra",
    [
        ["--guide", "normal", "--likelihood", "bernoulli"],
        ["--guide", "mvn", "--likelihood", "bernoulli", "--binarize", "static", "--z-dim", "2"],
        ["--guide", "normal", "--likelihood", "gaussian", "--kl-annealing", "2", "--beta", "0.5"],
        ["--guide", "mvn", "--likelihood", "gaussian", "--learn-scale"],
    ],
    ids=["normal-bernoulli", "mvn-bernoulli-static-2d", "normal-gaussian", "mvn-gaussian"],
)
def test_vae_example(tmp_path, extra, capsys):
    vae = load_example("vae")
    metrics = vae.main([*FAST, "--out", str(tmp_path), *extra])
    check_metrics(tmp_path, metrics, ("reconstructions.png", "samples.png", "latent.png"))
    check_wrote(capsys, tmp_path, "metrics.json, reconstructions.png, samples.png, latent.png")
    assert metrics["dataset"] == "digits"
    assert metrics["guide"] == extra[1] and metrics["likelihood"] == extra[3]
    expected = "static" if "static" in extra else "dynamic" if "bernoulli" in extra else "none"
    assert metrics["binarize"] == expected


def test_vae_example_is_reproducible(tmp_path):
    vae = load_example("vae")
    a = vae.main([*FAST, "--out", str(tmp_path / "a")])
    b = vae.main([*FAST, "--out", str(tmp_path / "b")])
    assert a["train_elbo"] == b["train_elbo"]
    assert a["test_nll_iwae"] == b["test_nll_iwae"]


def test_vae_example_checkpoint(tmp_path):
    vae = load_example("vae")
    ckpt = tmp_path / "vae.pt"
    vae.main([*FAST, "--out", str(tmp_path), "--checkpoint", str(ckpt)])
    assert ckpt.is_file()
    metrics = vae.main(
        [*FAST, "--epochs", "2", "--out", str(tmp_path), "--checkpoint", str(ckpt), "--resume"]
    )
    assert metrics["epochs"] == 2 and len(metrics["history"]["train_elbo"]) == 2


@pytest.mark.parametrize(
    "extra",
    [
        ["--condition", "label"],
        ["--condition", "quadrant"],
        [
            "--condition",
            "quadrant",
            "--guide",
            "mvn",
            "--likelihood",
            "gaussian",
            "--prior",
            "standard",
        ],
    ],
    ids=["label", "quadrant", "quadrant-mvn-gaussian"],
)
def test_cvae_example(tmp_path, extra, capsys):
    cvae = load_example("cvae")
    metrics = cvae.main([*FAST, "--out", str(tmp_path), *extra])
    check_metrics(tmp_path, metrics, ("samples.png",))
    check_wrote(capsys, tmp_path, "metrics.json, samples.png")
    if extra[1] == "label":
        assert (metrics["x_dim"], metrics["c_dim"]) == (64, 10)
    else:  # 8x8 digits: a 4x4 quadrant given the other 48 pixels
        assert (metrics["x_dim"], metrics["c_dim"]) == (16, 48)


@pytest.mark.skipif(
    not all(
        (Path(FASHION_MNIST_DEFAULT_ROOT) / f).exists()
        or (Path(FASHION_MNIST_DEFAULT_ROOT) / f"{f}.gz").exists()
        for f in MNIST_FILES
    ),
    reason="Fashion-MNIST is not installed in the Debian folder",
)
def test_vae_example_fashion_mnist_subset(tmp_path):
    vae = load_example("vae")
    metrics = vae.main(
        [*FAST, "--dataset", "fashion-mnist", "--subset", "256", "--out", str(tmp_path)]
    )
    check_metrics(tmp_path, metrics, ("reconstructions.png", "samples.png", "latent.png"))
    assert metrics["dataset"] == "fashion-mnist" and metrics["x_dim"] == 784
    assert metrics["n_train"] == metrics["n_test"] == 256


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_help_exits_zero(name, capsys):
    assert exit_code(name, ["--help"]) == 0
    assert "--epochs" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_mnist_needs_data_dir(name, tmp_path, capsys):
    assert exit_code(name, ["--dataset", "mnist", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_mnist_missing_files_is_a_clear_error(tmp_path, capsys):
    vae = load_example("vae")
    with pytest.raises(SystemExit) as info:
        vae.main(
            [
                "--dataset",
                "mnist",
                "--data-dir",
                str(tmp_path / "nowhere"),
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
    assert info.value.code == 2
    assert "nowhere" in capsys.readouterr().err
