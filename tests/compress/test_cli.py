"""`python -m pyrovi.compress`: train, encode, decode round trips on tiny digits models."""

import numpy as np
import pytest
import torch

from pyrovi import VAE, AmortizedNormal
from pyrovi.compress.__main__ import main
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
