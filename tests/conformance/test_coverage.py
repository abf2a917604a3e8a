"""Expected coverage and TARP on a simulator written in Pyro's idioms: a global latent and i.i.d.
observations in a sized plate, with the closed-form posterior as the sampler."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.infer import expected_coverage, simulate, tarp
from tests.conformance.models import S0, S, _conjugate_posterior

N_OBS = 5


def plate_simulator() -> None:
    """mu ~ N(0, S0²); x_i ~ N(mu, S²) for five i.i.d. observations in a plate."""
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0), S0))
    with pyro.plate("data", N_OBS):
        pyro.sample("obs", dist.Normal(mu, S))


def _posterior_sampler(sd_factor: float):
    def sample(x: torch.Tensor, num: int) -> torch.Tensor:
        draws = []
        for row in x.double():
            mean, sd = _conjugate_posterior(row)
            draws.append(mean + sd_factor * sd * torch.randn(num, dtype=torch.float64))
        return torch.stack(draws, 1)[..., None]  # (L, B, 1)

    return sample


@pytest.mark.parametrize("check", [expected_coverage, tarp])
def test_coverage_of_a_plate_simulator(check):
    torch.manual_seed(0)
    theta, x = simulate(plate_simulator, ["mu"], "obs", 400, progress=False)
    assert theta.shape == (400, 1) and x.shape == (400, N_OBS)
    good = check(_posterior_sampler(1.0), theta, x, 300)
    assert good.p_value > 0.01 and good.outside_band() <= 0.05, good
    bad = check(_posterior_sampler(0.5), theta, x, 300)  # variance ÷ 4
    assert bad.p_value < 1e-3 and bad.outside_band() > 0.3, bad
