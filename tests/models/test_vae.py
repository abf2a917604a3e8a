"""VAE and ConditionalVAE as Pyro models: sites, shapes, likelihoods, input checks."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyrovi.guides import AmortizedNormal
from pyrovi.models import VAE, ConditionalVAE


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("decoder", [None, "conv"])
def test_vae_sites_and_shapes(likelihood, decoder, device):
    model = VAE(
        64, 4, likelihood=likelihood, decoder=decoder, image_shape=(8, 8), hidden_dims=(32,)
    ).to(device)
    x = torch.rand(5, 64, device=device)
    trace = poutine.trace(model).get_trace(x)
    assert trace.nodes["z"]["value"].shape == (5, 4)
    assert trace.nodes["x"]["is_observed"]
    assert trace.nodes["x"]["fn"].event_shape == (64,)
    trace.compute_log_prob()
    assert trace.nodes["x"]["log_prob"].shape == (5,)
    assert model.decode(torch.zeros(3, 4, device=device)).shape == (3, 64)
    samples = model.sample_prior(7)
    assert samples.shape == (7, 64)
    if likelihood == "bernoulli":
        assert samples.min() >= 0 and samples.max() <= 1


def test_gaussian_likelihood_log_prob_matches_closed_form():
    torch.set_default_dtype(torch.float64)
    model = VAE(3, 2, likelihood="gaussian", scale=0.5, hidden_dims=(4,))
    x = torch.randn(2, 3)
    trace = poutine.trace(model).get_trace(x)
    z = trace.nodes["z"]["value"]
    mean = model.decoder(z)
    expected = dist.Normal(mean, 0.5).log_prob(x).sum(-1)
    torch.testing.assert_close(trace.nodes["x"]["fn"].log_prob(x), expected)


def test_learned_scale_is_a_parameter():
    model = VAE(3, 2, likelihood="gaussian", learn_scale=True, scale=0.3)
    names = dict(model.named_parameters())
    assert "log_scale" in names
    torch.testing.assert_close(model.obs_scale, torch.full((3,), 0.3))


def test_predictive_with_guide_gives_posterior_samples():
    model, guide = VAE(10, 2, hidden_dims=(8,)), AmortizedNormal(10, 2, hidden_dims=(8,))
    x = (torch.rand(4, 10) < 0.5).float()
    out = Predictive(model, guide=guide, num_samples=6, return_sites=["z"])(x)
    assert out["z"].shape == (6, 4, 2)


def test_guide_works_with_a_user_written_model():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            pyro.sample(
                "x", dist.Normal(z.sum(-1, keepdim=True).expand(x.shape), 1.0).to_event(1), obs=x
            )

    guide = AmortizedNormal(5, 2, hidden_dims=(8,))
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, torch.randn(3, 5))
    loss.backward()
    assert all(p.grad is not None for p in guide.parameters())


@pytest.mark.parametrize("prior", ["learned", "standard"])
def test_conditional_vae(prior):
    model = ConditionalVAE(12, 3, 2, hidden_dims=(8,), prior=prior)
    x, c = torch.rand(4, 12), torch.eye(3)[[0, 1, 2, 0]]
    trace = poutine.trace(model).get_trace(x, c)
    assert trace.nodes["z"]["value"].shape == (4, 2)
    assert model.sample(c, num_samples=5).shape == (5, 4, 12)
    with pytest.raises(ValueError, match=r"c must have shape \(batch, 3\)"):
        model(x, torch.rand(4, 2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x_dim": 0}, "x_dim must be a positive integer"),
        ({"likelihood": "poisson"}, "likelihood must be one of"),
        ({"beta": -1.0}, "beta must be a non-negative number"),
        ({"decoder": "conv"}, "decoder='conv' needs image_shape"),
        ({"decoder": torch.nn.Linear(4, 7)}, r"decoder must map \(batch, 4\)"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = {"x_dim": 10, "z_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        VAE(**args)


def test_bad_data_is_named():
    model = VAE(10, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 10\), got \(3, 9\)"):
        model(torch.rand(3, 9))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        with pyro.validation_enabled(True):
            model(torch.rand(3, 10) + 1)
    with pytest.raises(ValueError, match="x contains NaN"):
        model.check_data(torch.full((2, 10), float("nan")))
