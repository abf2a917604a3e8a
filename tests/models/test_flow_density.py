"""FlowDensity: maximum likelihood with fit, log_prob, sampling, conditional densities."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.infer import fit
from pyrovi.models import FlowDensity


def test_maximum_likelihood_recovers_a_gaussian():
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    target = dist.MultivariateNormal(torch.tensor([1.0, -1.0]), covariance_matrix=cov)
    x, x_test = target.sample((3000,)), target.sample((2000,))
    model = FlowDensity(2, flow="maf", num_layers=2, hidden_features=16)
    for lr in (1e-2, 1e-3):
        fit(model, None, x, epochs=30, batch_size=200, lr=lr, progress=False, seed=0)
    with torch.no_grad():
        nll = -model.log_prob(x_test).mean()
        exact = -target.log_prob(x_test).mean()
    assert abs(float(nll - exact)) < 0.05, (float(nll), float(exact))
    samples = model.sample(5000)
    assert samples.shape == (5000, 2)
    torch.testing.assert_close(samples.mean(0), target.mean, atol=0.1, rtol=0)


@pytest.mark.parametrize("flow", ["nsf", "realnvp"])
def test_conditional_density_shapes_and_trace(flow):
    model = FlowDensity(3, flow=flow, num_layers=2, hidden_features=8, context_dim=2)
    x, c = torch.randn(7, 3), torch.randn(7, 2)
    assert model.log_prob(x, c).shape == (7,)
    assert model.sample(4, c).shape == (4, 7, 3)
    trace = pyro.poutine.trace(model).get_trace(x, c)
    assert trace.nodes["x"]["is_observed"]
    trace.compute_log_prob()
    torch.testing.assert_close(trace.nodes["x"]["log_prob"], model.log_prob(x, c))
    result = fit(model, None, (x, c), epochs=2, batch_size=7, progress=False)
    assert len(result.history["train_elbo"]) == 2


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="flow must be one of"):
        FlowDensity(2, flow="glow")
    model = FlowDensity(2, num_layers=1, hidden_features=4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2\)"):
        model(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="has no context"):
        model(torch.zeros(3, 2), torch.zeros(3, 1))
    cond = FlowDensity(2, num_layers=1, hidden_features=4, context_dim=1)
    with pytest.raises(ValueError, match=r"call it as model\(x, c\)"):
        cond(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="data contains NaN"):
        fit(model, None, torch.full((4, 2), float("nan")), progress=False)
