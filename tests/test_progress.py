"""Progress bars of pyrovi's long library loops: drawn on a terminal, hidden with
``progress=False`` and whenever stderr is not a terminal (a log file, a captured stream)."""

import io
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi import VAE, AmortizedNormal
from pyrovi._progress import progress_bar, show_progress
from pyrovi.compress import BitsBackCoder, decode, encode
from pyrovi.compress.bundle import train_vae
from pyrovi.infer import (
    NLE,
    NPE,
    annealed_importance_sampling,
    elbo,
    log_marginal_likelihood,
    simulate,
)
from pyrovi.models import RBM, GroundState, hamiltonians, train_ground_state, train_rbm


class _Stream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _gaussian_model():
    theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(theta.unsqueeze(-1), 0.5).expand(theta.shape + (2,)).to_event(1))


def _npe_train(progress):
    npe = NPE(_gaussian_model, ["theta"], "y", num_layers=1, hidden_features=4)
    npe.train(40, max_epochs=2, batch_size=20, seed=0, progress=progress)


def _nle_train(progress):
    nle = NLE(_gaussian_model, ["theta"], "y", num_layers=1, hidden_features=4)
    nle.train(40, max_epochs=2, batch_size=20, seed=0, progress=progress)


def _nle_posterior(progress):
    nle = NLE(_gaussian_model, ["theta"], "y", num_layers=1, hidden_features=4)
    nle.train(40, max_epochs=1, seed=0, progress=False)
    nle.posterior(torch.zeros(2), warmup=5, num_candidates=50, progress=progress).sample((20,))


def _npe_simulate(progress):
    simulate(_gaussian_model, ["theta"], "y", 10, batch_size=5, progress=progress)


def _ground_state():
    ham = hamiltonians.harmonic_oscillator()
    return GroundState(ham, num_walkers=4, horizon=0.1, dt=0.05)


def _train_ground_state(progress):
    train_ground_state(_ground_state(), 2, progress=progress)


def _extrapolate(progress):
    _ground_state().extrapolate(1, progress=progress)


def _rbm_data():
    return (torch.rand(20, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()


def _train_rbm(progress):
    train_rbm(RBM(6, 3), _rbm_data(), epochs=2, batch_size=10, seed=0, progress=progress)


def _rbm_ais(progress):
    RBM(6, 3).log_partition_ais(num_chains=4, betas=10, progress=progress)


def _ais(progress):
    init = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    annealed_importance_sampling(
        init,
        0.0,
        lambda x, beta: -(1 + beta) * (x**2).sum(-1) / 2,
        lambda x, beta: x,
        betas=5,
        progress=progress,
    )


def _vae():
    torch.manual_seed(0)
    return VAE(12, 2, hidden_dims=(8,)), AmortizedNormal(12, 2, hidden_dims=(8,))


def _binary(n=3):
    return (torch.rand(n, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def _encode(progress):
    model, guide = _vae()
    encode(model, guide, _binary(), progress=progress)


def _coder_encode(progress):
    model, guide = _vae()
    BitsBackCoder(model, guide).encode(_binary(), progress=progress)


def _decode(progress):
    model, guide = _vae()
    blob = encode(model, guide, _binary(), progress=False)
    decode(model, guide, blob, progress=progress)


def _train_vae(progress):
    train_vae(_binary(16), 2, hidden_dims=(8,), epochs=1, batch_size=8, progress=progress)


def _iwae(progress):
    model, guide = _vae()
    log_marginal_likelihood(
        model, guide, _binary(6), num_samples=4, batch_size=2, progress=progress
    )


def _elbo(progress):
    model, guide = _vae()
    elbo(model, guide, _binary(6), num_samples=2, batch_size=2, progress=progress)


CASES = {
    "log_marginal_likelihood": (_iwae, "log_marginal_likelihood"),
    "elbo": (_elbo, "elbo"),
    "NPE.train": (_npe_train, "NPE epochs"),
    "simulate": (_npe_simulate, "simulations"),
    "NLE.train": (_nle_train, "NLE epochs"),
    "NLE.posterior": (_nle_posterior, "ensemble MCMC"),
    "train_ground_state": (_train_ground_state, "ground state"),
    "GroundState.extrapolate": (_extrapolate, "paths (dt=0.025)"),
    "train_rbm": (_train_rbm, "RBM epochs"),
    "RBM.log_partition_ais": (_rbm_ais, "AIS"),
    "annealed_importance_sampling": (_ais, "AIS"),
    "bitsback.encode": (_encode, "encode"),
    "BitsBackCoder.encode": (_coder_encode, "encode"),
    "bitsback.decode": (_decode, "decode"),
    "bundle.train_vae": (_train_vae, "epochs"),
}


def _run(monkeypatch, run, *, tty, progress):
    stream = _Stream(tty)
    monkeypatch.setattr(sys, "stderr", stream)
    pyro.clear_param_store()
    run(progress)
    monkeypatch.undo()
    return stream.getvalue()


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bar_is_drawn_on_a_terminal_only_when_asked(name, monkeypatch):
    run, desc = CASES[name]
    shown = _run(monkeypatch, run, tty=True, progress=True)
    assert desc in shown and "%|" in shown  # the bar's label and its percentage
    assert _run(monkeypatch, run, tty=True, progress=False) == ""
    assert _run(monkeypatch, run, tty=False, progress=True) == ""


def test_train_ground_state_prints_nothing_and_shows_the_running_energy(monkeypatch, capsys):
    shown = _run(monkeypatch, _train_ground_state, tty=True, progress=True)
    assert "energy=" in shown
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "call",
    [
        lambda: train_ground_state(_ground_state(), 1, progress="yes"),
        lambda: train_rbm(RBM(6, 3), _rbm_data(), epochs=1, progress=1),
        lambda: _ais("no"),
        lambda: _npe_simulate(None),
        lambda: BitsBackCoder(*_vae()).encode(_binary(), progress="no"),
        lambda: _iwae("yes"),
    ],
)
def test_progress_must_be_a_bool(call):
    with pytest.raises(TypeError, match="progress must be True or False"):
        call()


def test_show_progress_needs_both_the_flag_and_a_terminal(monkeypatch):
    for tty in (True, False):
        monkeypatch.setattr(sys, "stderr", _Stream(tty))
        assert show_progress(True) is tty
        assert show_progress(False) is False
    monkeypatch.setattr(sys, "stderr", _Stream(True))
    with progress_bar(3, desc="demo") as bar:
        assert not bar.disable
    with progress_bar(3, desc="demo", progress=False) as bar:
        assert bar.disable
