"""Every argument of ``fit``: a bad value raises ValueError/TypeError naming the argument, before
any training; data of another dtype is cast where that is unambiguous, refused clearly where not."""

from __future__ import annotations

import sys

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyrovi.guides import AmortizedNormal
from pyrovi.infer import fit
from pyrovi.models import VAE


def _vae():
    torch.manual_seed(0)
    return VAE(16, 2, hidden_dims=(8,)), AmortizedNormal(16, 2, hidden_dims=(8,))


def _x(n=20):
    return (torch.rand(n, 16, generator=torch.Generator().manual_seed(0)) < 0.3).float()


_OPTIONS = [
    ("epochs", 0, ValueError, "epochs must be a positive integer, got 0"),
    ("epochs", 2.5, ValueError, "epochs must be a positive integer, got 2.5"),
    ("epochs", True, ValueError, "epochs must be a positive integer, got True"),
    ("epochs", None, ValueError, "epochs must be a positive integer, got None"),
    ("batch_size", 0, ValueError, "batch_size must be a positive integer, got 0"),
    ("batch_size", "a", ValueError, "batch_size must be a positive integer, got 'a'"),
    ("lr", -1, ValueError, "lr must be a positive finite number, got -1"),
    ("lr", float("nan"), ValueError, "lr must be a positive finite number, got nan"),
    ("lr", float("inf"), ValueError, "lr must be a positive finite number, got inf"),
    ("lr", True, ValueError, "lr must be a positive finite number, got True"),
    ("lr", "1e-3", ValueError, "lr must be a positive finite number, got '1e-3'"),
    ("lr", torch.tensor(1e-3), ValueError, r"lr must be a positive finite number, got tensor"),
    ("clip_norm", 0.0, ValueError, "clip_norm must be a positive finite number or None, got 0.0"),
    ("clip_norm", -1.0, ValueError, "clip_norm must be a positive finite number or None, got -1"),
    ("clip_norm", float("nan"), ValueError, "clip_norm must be a positive finite number or None"),
    ("clip_norm", float("inf"), ValueError, "clip_norm must be a positive finite number or None"),
    ("clip_norm", True, ValueError, "clip_norm must be a positive finite number or None, got True"),
    ("clip_norm", "1", ValueError, "clip_norm must be a positive finite number or None, got '1'"),
    ("num_particles", 0, ValueError, "num_particles must be a positive integer, got 0"),
    ("num_particles", 1.5, ValueError, "num_particles must be a positive integer, got 1.5"),
    ("kl_annealing", -1, ValueError, "kl_annealing must be a positive number of warm-up epochs"),
    ("kl_annealing", 0, ValueError, "kl_annealing must be a positive number of warm-up epochs"),
    ("kl_annealing", float("inf"), ValueError, "kl_annealing must be a positive number of warm"),
    ("kl_annealing", float("nan"), ValueError, "kl_annealing must be a positive number of warm"),
    ("kl_annealing", True, ValueError, "kl_annealing must be None, a number of warm-up epochs"),
    ("kl_annealing", "x", ValueError, "kl_annealing must be None, a number of warm-up epochs"),
    ("seed", 1.5, ValueError, r"seed must be an integer in \[0, 4294967295\], got 1.5"),
    ("seed", "a", ValueError, r"seed must be an integer in \[0, 4294967295\], got 'a'"),
    ("seed", -1, ValueError, r"seed must be an integer in \[0, 4294967295\], got -1"),
    ("seed", 2**32, ValueError, r"seed must be an integer in \[0, 4294967295\], got 4294967296"),
    ("seed", True, ValueError, r"seed must be an integer in \[0, 4294967295\], got True"),
    ("resume", True, ValueError, r"resume=True needs a checkpoint path \(checkpoint=...\)"),
    ("resume", "yes", TypeError, "resume must be True or False, got 'yes'"),
    ("progress", "no", TypeError, "progress must be True or False, got 'no'"),
    ("progress", None, TypeError, "progress must be True or False, got None"),
    ("distributed", "yes", TypeError, "distributed must be True or False, got 'yes'"),
    ("distributed", 1, TypeError, "distributed must be True or False, got 1"),
    ("plate", 1, TypeError, r"plate must be the name of a pyro.plate \(a non-empty str\), got 1"),
    ("plate", "", TypeError, r"plate must be the name of a pyro.plate \(a non-empty str\)"),
    ("plate", None, TypeError, r"plate must be the name of a pyro.plate \(a non-empty str\)"),
    ("checkpoint", 123, TypeError, r"checkpoint must be a file path \(str or os.PathLike\)"),
    ("checkpoint", "", TypeError, r"checkpoint must be a file path \(str or os.PathLike\)"),
    ("divergence_ratio", 0.5, ValueError, "divergence_ratio must be a number > 1 or None"),
    ("divergence_ratio", 1, ValueError, "divergence_ratio must be a number > 1 or None, got 1"),
    ("divergence_ratio", float("nan"), ValueError, "divergence_ratio must be a positive finite"),
    ("divergence_ratio", "x", ValueError, "divergence_ratio must be a positive finite number"),
    ("transform", 3, ValueError, "transform must be callable, got 3"),
    ("val_transform", 3, ValueError, "val_transform must be callable, got 3"),
    ("val_transform", abs, ValueError, "val_transform is applied to the batches of val_data, but"),
    ("unpack", 3, ValueError, "unpack must be callable, got 3"),
    ("loss", 3, ValueError, "loss must be a pyro.infer.ELBO instance, got int"),
    ("optimizer", 3, ValueError, "optimizer must be None, a torch.optim class or a factory"),
    ("scheduler", 3, ValueError, "scheduler must be a factory optimizer -> torch LR scheduler"),
    ("device", "cud", ValueError, r"device must be a torch.device or a string such as 'cpu'"),
    ("device", 3.5, ValueError, r"device must be a torch.device or a string .*got 3.5 \(wrong"),
    ("device", "cuda:99", ValueError, r"device='cuda:99' is not available: .*available here: \["),
    ("device", "meta", ValueError, r"device='meta' is not available: the meta device holds no"),
]


@pytest.mark.parametrize(
    "name, value, error, match", _OPTIONS, ids=[f"{o[0]}={o[1]!r}" for o in _OPTIONS]
)
def test_a_bad_option_is_named(name, value, error, match):
    model, guide = _vae()
    with pytest.raises(error, match=match):
        fit(model, guide, _x(), **{"epochs": 1, "progress": False, name: value})
    assert all(p.grad is None for p in model.parameters())  # refused before any step


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    model, guide = _vae()
    match = r"device='cuda' is not available: this torch build has no CUDA support|no cuda device"
    with pytest.raises(ValueError, match=match):
        fit(model, guide, _x(), device="cuda", progress=False)


def test_bad_checkpoint_paths_are_named_before_training(tmp_path):
    model, guide = _vae()
    with pytest.raises(ValueError, match=r"checkpoint='.*' is a directory; give a file path"):
        fit(model, guide, _x(), checkpoint=tmp_path, progress=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    match = r"checkpoint='.*a-file/sub/c.pt': '.*a-file' is a file, not a directory"
    with pytest.raises(ValueError, match=match):
        fit(model, guide, _x(), checkpoint=blocker / "sub" / "c.pt", progress=False)
    if sys.platform.startswith("linux"):  # no directory can be made in /proc, even by root
        with pytest.raises(ValueError, match=r"checkpoint='/proc/.*': cannot write in '/proc/"):
            fit(model, guide, _x(), checkpoint="/proc/pyrovi-no-such-dir/c.pt", progress=False)
    assert all(p.grad is None for p in model.parameters())


def test_model_and_guide_must_be_callable():
    with pytest.raises(TypeError, match="model must be callable"):
        fit(3, None, _x(), progress=False)
    with pytest.raises(TypeError, match="model must be callable"):
        fit(None, None, _x(), progress=False)
    with pytest.raises(TypeError, match="guide must be callable"):
        fit(_vae()[0], "guide", _x(), progress=False)


@pytest.mark.parametrize(
    "data, match",
    [
        (torch.tensor(1.0), r"data is a 0-d tensor \(a scalar\); fit needs a leading datapoint"),
        ((_x(), torch.tensor(1.0)), r"data: tensor\(s\) \[1\] are 0-d \(scalars\)"),
        (torch.empty(0, 16), "data is empty"),
        ((), "data is an empty tuple"),
        (_x().numpy(), "data must be a tensor or a tuple of tensors, got ndarray"),
        (
            DataLoader(TensorDataset(_x()), batch_size=None),
            r"data: the DataLoader has batch_size=None \(automatic batching off\), so it yields "
            "the 20 datapoints one at a time",
        ),
    ],
    ids=["0-d", "tuple-with-0-d", "empty", "empty-tuple", "numpy", "loader-unbatched"],
)
def test_bad_data_is_named(data, match):
    model, guide = _vae()
    with pytest.raises((ValueError, TypeError), match=match):
        fit(model, guide, data, epochs=1, progress=False)


# --------------------------------------------------------------------------- dtypes


class Regression(torch.nn.Module):
    """A module model without check_data: ``y ~ N(net(x), 1)``."""

    def __init__(self, d=3):
        super().__init__()
        self.net = torch.nn.Linear(d, 1)

    def forward(self, x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(self.net(x).squeeze(-1), 1.0), obs=y)


def _xy(n=20, d=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.to(dtype), (x.sum(-1) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)).to(
        dtype
    )


def _trained(data, **kwargs):
    torch.manual_seed(0)
    model = Regression()
    fit(model, None, data, epochs=2, batch_size=8, lr=0.05, seed=0, progress=False, **kwargs)
    return [p.detach().clone() for p in model.parameters()]


def test_float64_data_trains_a_float32_model_as_float32_data_does():
    x64, y64 = _xy(dtype=torch.float64)
    ref = _trained((x64.float(), y64.float()))
    got = _trained((x64, y64), val_data=(x64[:5], y64[:5]))
    assert all(p.dtype == torch.float32 for p in got)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    loader = DataLoader(TensorDataset(x64, y64), batch_size=8)  # cast batch by batch
    assert all(p.dtype == torch.float32 for p in _trained(loader))


def test_a_float64_model_keeps_float64_data():
    torch.manual_seed(0)
    model = Regression().double()
    fit(model, None, _xy(dtype=torch.float64), epochs=1, batch_size=8, progress=False)
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_integer_data_the_model_cannot_take_is_named():
    x, y = _xy()
    match = (
        r"data: the model failed on a dtype mismatch \(RuntimeError: .*\); in the batch, "
        r"argument 0 is torch.int64\. fit casts floating-point data to the parameters' dtype "
        r"\(torch.float32\) but leaves integer and bool tensors as they are"
    )
    with pytest.raises(ValueError, match=match):
        _trained((x.long(), y))
    match = r"val_data: the model failed on a dtype mismatch .* argument 0 is torch.bool"
    with pytest.raises(ValueError, match=match):
        _trained((x, y), val_data=(x[:4] > 0, y[:4]))


def test_integer_indices_are_left_alone():
    """An integer tensor that a model uses as indices is not cast."""
    loc = torch.nn.Parameter(torch.zeros(10))

    class Indexed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = loc

        def forward(self, idx, y):
            with pyro.plate("data", len(idx)):
                pyro.sample("y", dist.Normal(self.loc[idx], 1.0), obs=y)

    idx, y = torch.arange(10), torch.linspace(-1, 1, 10, dtype=torch.float64)
    fit(Indexed(), None, (idx, y), epochs=30, lr=0.1, seed=0, progress=False)
    assert torch.corrcoef(torch.stack([loc.detach(), y.float()]))[0, 1] > 0.99


def test_val_data_the_model_cannot_take_fails_before_training():
    calls = []
    x, y = _xy()

    def transform(t):
        calls.append(1)
        return t

    match = r"val_data: the model and guide fail on its first batch: .*mat1 and mat2 shapes"
    with pytest.raises(ValueError, match=match):
        _trained((x, y), val_data=(torch.randn(4, 5), y[:4]), transform=transform)
    assert len(calls) == 1  # only fit's first pass ran: no training step
