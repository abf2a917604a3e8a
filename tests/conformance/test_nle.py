"""A learned likelihood in the models Pyro users write: a ``PyroModule`` with ``PyroSample``
priors, a subsampled plate of i.i.d. trials, a mask, an autoguide and ``SVI`` — against the
closed-form posterior of the simulator the likelihood was learned from."""

import functools

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroSample

from pyrovi.infer import NLE
from pyrovi.models import GaussianLinear

NOISE_VAR = 0.5


@functools.lru_cache(maxsize=1)
def _nle() -> NLE:
    pyro.set_rng_seed(0)
    nle = NLE(GaussianLinear(2, 1.0, NOISE_VAR), ["theta"], "y", num_layers=2, hidden_features=32)
    nle.train(5000, seed=0, progress=False)
    return nle


class TrialsModel(PyroModule):
    """θ ~ N(0, I) (a ``PyroSample``); trials y_i | θ by the learned likelihood, subsampled."""

    def __init__(self, nle: NLE) -> None:
        super().__init__()
        self.nle = nle
        self.theta = PyroSample(dist.Normal(torch.zeros(2), 1.0).to_event(1))

    def forward(self, y: torch.Tensor, mask: torch.Tensor) -> None:
        theta = self.theta
        with pyro.plate("trials", len(y), subsample_size=8) as idx:
            lik = self.nle.likelihood(theta).mask(mask[idx])
            pyro.sample("y", lik, obs=y[idx])


def test_svi_with_an_autoguide_on_a_subsampled_masked_plate():
    nle = _nle()
    torch.manual_seed(1)
    theta_true = torch.tensor([0.6, -0.4])
    y = theta_true + NOISE_VAR**0.5 * torch.randn(40, 2)
    mask = torch.ones(40, dtype=torch.bool)
    mask[30:] = False  # the last ten trials are missing
    y[30:] = 100.0  # and what they hold must not matter
    model = TrialsModel(nle)
    guide = AutoNormal(model)
    pyro.set_rng_seed(2)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 0.02, "lrd": 0.999}), Trace_ELBO())
    for _ in range(1500):
        svi.step(y, mask)
    var = 1.0 / (1.0 + 30 / NOISE_VAR)  # the exact posterior from the 30 observed trials
    mean = var * y[:30].sum(0) / NOISE_VAR
    loc = guide.median()["theta"].detach()
    # subsampling noise of SVI and the learned likelihood's error: within 0.5 posterior sd
    assert float((loc - mean).abs().max()) < 0.5 * var**0.5, (loc, mean)
