"""Bad inputs to encode/decode, load_vae and the command line: one clear error naming the
argument (or file) and what is wrong."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from pyrovi import VAE, AmortizedNormal
from pyrovi.compress import ModelFileError, decode, encode, load_vae, save_vae
from pyrovi.compress.__main__ import main

X_DIM, Z_DIM = 20, 3


def _pair(x_dim=X_DIM, z_dim=Z_DIM, likelihood="bernoulli"):
    torch.manual_seed(0)
    model = VAE(x_dim, z_dim, likelihood=likelihood, hidden_dims=(16,))
    return model, AmortizedNormal(x_dim, z_dim, hidden_dims=(16,))


def _binary(n=5):
    return (torch.rand(n, X_DIM, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def _with(x, index, value):
    x = x.clone()
    x[index] = value
    return x


class _PairlessGuide(nn.Module):
    def encode(self, x):
        return x


class _NanGuide(nn.Module):
    def encode(self, x):
        return torch.full((x.shape[0], Z_DIM), float("nan")), torch.ones(x.shape[0], Z_DIM)


class _NanDecoder(nn.Module):
    def forward(self, z):
        return torch.full((z.shape[0], X_DIM), float("nan"))


class _FunctionDecoder(nn.Module):
    x_dim, z_dim = X_DIM, Z_DIM

    def decoder(self, z):
        return z


BAD_DATA = [
    ("wrong width", torch.zeros(3, 21), ValueError, r"data must have shape \(N, 20\) with N >= 1"),
    ("one image", torch.zeros(20), ValueError, r"got \(20,\) \(a single datapoint: pass data"),
    ("images", torch.zeros(3, 4, 5), ValueError, r"flatten the images: data.reshape\(len"),
    ("empty", torch.zeros(0, 20), ValueError, r"got \(0, 20\): it is empty"),
    ("grey pixel", _with(_binary(), (2, 7), 0.5), ValueError, r"data\[2, 7\] = 0.5 is not one"),
    ("negative", _with(_binary(), (0, 3), -1.0), ValueError, r"\{0, 1\}; data\[0, 3\] = -1"),
    ("NaN", _with(_binary(), (1, 4), float("nan")), ValueError, r"finite; data\[1, 4\] is nan"),
    ("inf", _with(_binary(), (0, 0), float("inf")), ValueError, r"finite; data\[0, 0\] is inf"),
    ("bytes 0-255", torch.full((2, 20), 255, dtype=torch.uint8), ValueError, "binarize the data"),
    ("complex", torch.zeros(2, 20, dtype=torch.complex64), TypeError, "data must be real"),
    ("string", "images", TypeError, "data must hold real numbers .* got str"),
    ("None", None, TypeError, "data must hold real numbers .* got NoneType"),
    ("objects", np.full((2, 20), None), TypeError, "data must hold real numbers .* dtype object"),
    ("ragged", [[0] * 20, [0] * 19], ValueError, r"rectangular \(N, 20\) array, got a ragged"),
]


@pytest.mark.parametrize(
    "data, error, match", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA]
)
def test_bad_data_names_the_argument(data, error, match):
    model, guide = _pair()
    with pytest.raises(error, match=match):
        encode(model, guide, data)


def test_grey_levels_off_the_grid_of_a_gaussian_model():
    model, guide = _pair(likelihood="gaussian")
    with pytest.raises(ValueError, match=r"\{0, 1/255, 2/255, ..., 1\}; data\[0, 0\] = 0.1234"):
        encode(model, guide, torch.full((2, 20), 0.1234))
    with pytest.raises(ValueError, match=r"scale integer data to \[0, 1\] \(divide by 255\)"):
        encode(model, guide, torch.full((2, 20), 200.0))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float16])
def test_other_dtypes_of_binary_data_are_coded(dtype):
    model, guide = _pair()
    x = _binary()
    assert torch.equal(decode(model, guide, encode(model, guide, x.to(dtype))), x)
    assert torch.equal(decode(model, guide, encode(model, guide, x.tolist())), x)


BAD_PAIRS = [
    ("swapped", lambda m, g: (g, m), TypeError, "model must have a 'decoder' attribute"),
    ("linear model", lambda m, g: (nn.Linear(2, 2), g), TypeError, "model must have a 'z_dim'"),
    ("None model", lambda m, g: (None, g), TypeError, "got NoneType"),
    ("linear guide", lambda m, g: (m, nn.Linear(2, 2)), TypeError, "guide must have an encode"),
    ("function decoder", lambda m, g: (_FunctionDecoder(), g), TypeError, "model.decoder must be"),
    (
        "other z_dim",
        lambda m, g: (m, AmortizedNormal(20, 4, hidden_dims=(8,))),
        ValueError,
        "guide.z_dim=4 but model.z_dim=3: they are not a model/guide pair",
    ),
    (
        "other x_dim",
        lambda m, g: (m, AmortizedNormal(21, 3, hidden_dims=(8,))),
        ValueError,
        "guide.x_dim=21 but model.x_dim=20",
    ),
    ("no pair", lambda m, g: (m, _PairlessGuide()), TypeError, r"must return a pair \(loc, scale"),
    ("NaN guide", lambda m, g: (m, _NanGuide()), ValueError, "guide.encode returned a non-finite"),
    (
        "NaN decoder",
        lambda m, g: (VAE(20, 3, decoder=_NanDecoder()), g),
        ValueError,
        "model.decoder returned NaN or infinite outputs",
    ),
]


@pytest.mark.parametrize(
    "make, error, match", [c[1:] for c in BAD_PAIRS], ids=[c[0] for c in BAD_PAIRS]
)
def test_a_pair_that_is_not_a_vae_is_refused(make, error, match):
    model, guide = make(*_pair())
    with pytest.raises(error, match=match):
        encode(model, guide, _binary())


@pytest.mark.parametrize(
    "options, match",
    [
        ({"lanes": 0}, r"lanes must be an integer in \[1, 20\], got 0"),
        ({"lanes": 2.5}, "lanes must be an integer"),
        ({"latent_bits": 21}, r"latent_bits must be an integer in \[1, 20\]"),
        ({"seed": -1}, "seed must be an integer"),
    ],
)
def test_bad_options(options, match):
    model, guide = _pair()
    with pytest.raises(ValueError, match=match):
        encode(model, guide, _binary(), **options)


def test_decode_with_another_model_names_the_mismatch():
    model, guide = _pair()
    blob = encode(model, guide, _binary())
    with pytest.raises(ValueError, match="blob: the stream was encoded with z_dim=3, the model"):
        decode(*_pair(z_dim=4), blob)
    with pytest.raises(ValueError, match="blob: the stream was encoded with x_dim=20, the model"):
        decode(*_pair(x_dim=21), blob)
    with pytest.raises(ValueError, match="holds a bernoulli likelihood, this coder has gaussian"):
        decode(*_pair(likelihood="gaussian"), blob)
    with pytest.raises(TypeError, match="blob must be bytes .* got str"):
        decode(model, guide, "PVBB")


# ---------------------------------------------------------------------------- model files


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "vae.pt"
    save_vae(path, *_pair(x_dim=64), hidden_dims=[16])
    return path


def _bad_model_files(tmp_path, good):
    raw = good.read_bytes()
    files = {
        "truncated": (raw[: len(raw) // 2], r"\(\d+ bytes\) is truncated or corrupt"),
        "empty": (b"", r"is empty \(0 bytes\)"),
        "text": (b"hello world\n", r"is not a file written by torch.save \(it starts with b'hell'"),
        "random": (
            np.random.default_rng(0).bytes(2000),
            r"\(2000 bytes\) is not a file written by torch.save",
        ),
    }
    for name, (content, match) in files.items():
        (tmp_path / f"{name}.pt").write_bytes(content)
        yield tmp_path / f"{name}.pt", match
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    yield tmp_path / "foreign.pt", r"not written by pyrovi.compress.save_vae: it holds a dict"
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")
    yield tmp_path / "module.pt", "not written by save_vae: it holds Python objects"
    torch.save({"format": "pyrovi.compress.vae/1", "config": {}}, tmp_path / "partial.pt")
    yield tmp_path / "partial.pt", r"is incomplete: it lacks \['x_dim'"
    torch.save({"format": "pyrovi.compress.vae/9"}, tmp_path / "newer.pt")
    yield tmp_path / "newer.pt", "has format 'pyrovi.compress.vae/9'"
    yield tmp_path, "is a directory"


def test_bad_model_files_name_the_file_and_the_defect(tmp_path, model_file, capsys):
    assert load_vae(model_file)[0].x_dim == 64
    for path, match in _bad_model_files(tmp_path, model_file):
        with pytest.raises(ModelFileError, match=match) as info:
            load_vae(path)
        assert str(path) in str(info.value)
        with pytest.raises(SystemExit) as exit_info:  # the command line: one line, status 1
            main(["decode", "--model", str(path), "--input", "x.pvbb", "--output", "y.npy"])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"python -m pyrovi.compress: error: model file {path}")


def test_model_weights_that_do_not_fit_their_config(tmp_path, model_file):
    state = torch.load(model_file, weights_only=True)
    state["config"]["hidden_dims"] = [32]
    torch.save(state, tmp_path / "mixed.pt")
    with pytest.raises(ModelFileError, match="weights do not fit its configuration"):
        load_vae(tmp_path / "mixed.pt")


# ---------------------------------------------------------------------------- command line


def _cli_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_command_line_errors_are_one_line(tmp_path, model_file, capsys):
    m = ["--model", str(model_file)]
    np.save(tmp_path / "grey.npy", np.full((3, 64), 0.5))
    np.save(tmp_path / "narrow.npy", np.zeros((3, 63)))
    (tmp_path / "text.npy").write_text("hello")
    np.save(tmp_path / "ok.npy", np.zeros((3, 64)))
    cases = [
        (["encode", "--input", str(tmp_path / "grey.npy")], r"grey.npy: data: a bernoulli"),
        (["encode", "--input", str(tmp_path / "narrow.npy")], r"must have shape \(N, 64\)"),
        (["encode", "--input", str(tmp_path / "text.npy")], "text.npy: not a .npy file"),
        (["encode", "--input", str(tmp_path / "none.npy")], "none.npy: cannot read a .npy"),
    ]
    for argv, match in cases:
        err = _cli_error(capsys, [argv[0], *m, *argv[1:], "--output", str(tmp_path / "s")])
        assert re.search(match, err), err
    out = str(tmp_path / "no" / "s.pvbb")
    err = _cli_error(capsys, ["encode", *m, "--input", str(tmp_path / "ok.npy"), "--output", out])
    assert f"--output {out}: cannot write it" in err
    stream = tmp_path / "s.pvbb"
    main(["encode", *m, "--input", str(tmp_path / "ok.npy"), "--output", str(stream)])
    capsys.readouterr()
    (tmp_path / "cut.pvbb").write_bytes(stream.read_bytes()[:-4])
    for name, match in (("cut.pvbb", "truncated, extended or corrupt"), ("x", "cannot read it")):
        argv = ["decode", *m, "--input", str(tmp_path / name), "--output", str(tmp_path / "d")]
        assert match in _cli_error(capsys, argv)
    other = tmp_path / "other.pt"
    save_vae(other, *_pair(x_dim=64, z_dim=4), hidden_dims=[16])
    argv = ["decode", "--model", str(other), "--input", str(stream), "--output", "d.npy"]
    assert "encoded with z_dim=3, the model has 4" in _cli_error(capsys, argv)
