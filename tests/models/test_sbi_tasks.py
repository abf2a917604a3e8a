"""The sbibm benchmark tasks as Pyro models: closed-form likelihoods against hand-written ones,
the models' ``y`` sites against the closed forms, shapes, supports, the Bernoulli GLM's
statistics and design, the registry and the messages of bad inputs."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive
from torch.distributions import MultivariateNormal, Normal

from pyrovi.models.sbi_tasks import (
    SBI_TASKS,
    SLCP,
    BernoulliGLM,
    GaussianMixture,
    bernoulli_glm_design,
    bernoulli_glm_prior_precision,
    bernoulli_glm_stimulus,
    sbi_task,
)
from pyrovi.models.simulators import GaussianLinear

F64 = torch.float64


def slcp_by_hand(theta, y):
    """Σ over the 4 points of the bivariate normal log density, one (θ, y) pair at a time."""
    out = []
    for t, obs in zip(theta, y):
        s1, s2, rho = float(t[2]) ** 2, float(t[3]) ** 2, math.tanh(float(t[4]))
        cov = torch.tensor(
            [[s1**2 + 1e-6, rho * s1 * s2], [rho * s1 * s2, s2**2 + 1e-6]], dtype=F64
        )
        mvn = MultivariateNormal(t[:2], covariance_matrix=cov)
        out.append(sum(mvn.log_prob(obs[2 * i : 2 * i + 2]) for i in range(4)))
    return torch.stack(out)


def test_slcp_log_likelihood_is_a_product_of_four_bivariate_normals():
    model = SLCP()
    theta = torch.empty(20, 5, dtype=F64).uniform_(-3, 3)
    theta[0, 4] = 2.9  # strong correlation
    theta[1, 2] = 0.05  # a nearly degenerate coordinate: the jitter matters
    y = theta[:, :2].repeat(1, 4) + torch.randn(20, 8, dtype=F64)
    ll = model.log_likelihood(theta, y)
    assert ll.dtype == F64 and ll.shape == (20,)
    torch.testing.assert_close(ll, slcp_by_hand(theta, y), rtol=1e-9, atol=1e-9)


def test_gaussian_mixture_log_likelihood_is_a_logsumexp_of_the_components():
    model = GaussianMixture()
    theta = torch.empty(30, 2, dtype=F64).uniform_(-10, 10)
    y = theta + 0.5 * torch.randn(30, 2, dtype=F64)
    broad = Normal(theta, 1.0).log_prob(y).sum(-1)
    narrow = Normal(theta, 0.1).log_prob(y).sum(-1)
    expected = torch.logsumexp(torch.stack([broad, narrow]) + math.log(0.5), 0)
    ll = model.log_likelihood(theta, y)
    assert ll.dtype == F64
    torch.testing.assert_close(ll, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [SLCP, GaussianMixture])
def test_the_y_site_scores_the_closed_form_likelihood(cls, device):
    model = cls().to(device)
    y = Predictive(model, num_samples=1, return_sites=["y"])()["y"][0]
    trace = poutine.trace(pyro.plate("n", 64)(model)).get_trace(y)
    trace.compute_log_prob()
    theta = trace.nodes["theta"]["value"]
    assert theta.shape == (64, model.prior().event_shape[0])
    expected = model.log_likelihood(theta.double(), y.double())
    torch.testing.assert_close(
        trace.nodes["y"]["log_prob"].double(), expected, rtol=1e-4, atol=1e-3
    )


def test_bernoulli_glm_spike_site_scores_its_log_likelihood(device):
    model = BernoulliGLM().to(device)
    spikes = Predictive(model, num_samples=1, return_sites=["spikes"])()["spikes"][0]
    trace = poutine.trace(pyro.plate("n", 32)(model)).get_trace(spikes=spikes)
    trace.compute_log_prob()
    theta = trace.nodes["theta"]["value"]
    ll = model.log_likelihood(theta.double(), spikes.double())
    torch.testing.assert_close(trace.nodes["spikes"]["log_prob"].double(), ll, rtol=1e-5, atol=1e-4)
    logits = theta.double() @ model.design_matrix.double().T
    by_hand = torch.distributions.Bernoulli(logits=logits).log_prob(spikes.double()).sum(-1)
    torch.testing.assert_close(ll, by_hand)
    # the conditioned spikes give the deterministic summary y
    torch.testing.assert_close(trace.nodes["y"]["value"], model.summary(spikes).expand(32, 10))


@pytest.mark.parametrize(
    "name, dims",
    [
        ("gaussian_linear", (10, 10)),
        ("slcp", (5, 8)),
        ("gaussian_mixture", (2, 2)),
        ("bernoulli_glm", (10, 10)),
    ],
)
def test_registry_tasks_simulate_in_parallel(name, dims, device):
    model = sbi_task(name).to(device)
    assert model.params == ("theta",)
    out = Predictive(model, num_samples=7, parallel=True, return_sites=["theta", "y"])()
    assert out["theta"].shape == (7, dims[0]) and out["y"].shape == (7, dims[1])
    assert out["y"].device.type == device.type
    assert out["y"].dtype == torch.float32 and torch.isfinite(out["y"]).all()


@pytest.mark.parametrize("cls, bound", [(SLCP, 3.0), (GaussianMixture, 10.0)])
def test_uniform_priors_stay_in_their_support(cls, bound):
    theta = Predictive(cls(), num_samples=2000, parallel=True, return_sites=["theta"])()["theta"]
    assert theta.abs().max() <= bound
    assert theta.abs().max() > 0.9 * bound  # and fill it


def test_gaussian_linear_has_sbibm_settings():
    model = sbi_task("gaussian_linear")
    assert isinstance(model, GaussianLinear) and model.dim == 10
    torch.testing.assert_close(model.prior_scale**2, torch.tensor(0.1))
    torch.testing.assert_close(model.noise_scale**2, torch.tensor(0.1))


def test_bernoulli_glm_prior_precision_known_entries():
    p = bernoulli_glm_prior_precision()
    assert p.shape == (10, 10) and p.dtype == F64
    assert p[0, 0] == 0.5 and (p[0, 1:] == 0).all()
    # F = D² + diag(√(i/9)) with D² = tridiagonal-like (1, −2, 1): (FᵀF)[0, 0] = 1 + 4 + 1
    assert float(p[1, 1]) == pytest.approx(6.0)
    assert float(p[9, 9]) == pytest.approx((1 + math.sqrt(8 / 9)) ** 2)
    torch.testing.assert_close(p, p.T)
    cov = BernoulliGLM().prior().covariance_matrix.double()
    torch.testing.assert_close(cov @ p, torch.eye(10, dtype=F64), atol=1e-4, rtol=0)


def test_bernoulli_glm_stimulus_and_design_matrix():
    stim = bernoulli_glm_stimulus()
    assert stim.shape == (100,) and stim.dtype == torch.float32
    # numpy.random.RandomState(42).randn(3), the start of sbibm's stimulus_I.pt
    torch.testing.assert_close(stim[:3], torch.tensor([0.49671415, -0.1382643, 0.64768854]))
    x = bernoulli_glm_design(stim)
    assert x.shape == (100, 10) and (x[:, 0] == 1).all()
    for j in range(9):
        assert (x[j:, 1 + j] == stim[: 100 - j]).all() and (x[:j, 1 + j] == 0).all()
    torch.testing.assert_close(BernoulliGLM().design_matrix, x)


def test_bernoulli_glm_summaries_are_spike_count_and_spike_triggered_sums():
    model = BernoulliGLM()
    out = Predictive(model, num_samples=50, parallel=True, return_sites=["spikes", "y"])()
    spikes, y = out["spikes"], out["y"]
    assert spikes.shape == (50, 100) and ((spikes == 0) | (spikes == 1)).all()
    assert (y[:, 0] == spikes.sum(-1)).all() and (y[:, 0] >= 0).all() and (y[:, 0] <= 100).all()
    stim = bernoulli_glm_stimulus()
    for j in (0, 4, 8):
        sta = (spikes[:, j:] * stim[: 100 - j]).sum(-1)
        torch.testing.assert_close(y[:, 1 + j], sta, rtol=1e-5, atol=1e-4)


def test_bernoulli_glm_summary_likelihood_equals_the_spike_likelihood():
    model = BernoulliGLM()
    theta = torch.randn(5, 10, dtype=F64)
    spikes = torch.bernoulli(torch.full((5, 100), 0.3, dtype=F64))
    ll = model.log_likelihood(theta, spikes)
    assert ll.dtype == F64
    from_summary = model.log_likelihood_from_summary(theta, model.summary(spikes))
    torch.testing.assert_close(from_summary, ll)


def test_float32_inputs_give_float32_log_likelihoods():
    theta = torch.zeros(3, 5)
    theta[:, 2:4] = 1.0
    assert SLCP().log_likelihood(theta, torch.zeros(3, 8)).dtype == torch.float32
    assert GaussianMixture().log_likelihood(torch.zeros(2), torch.zeros(2)).shape == ()


def test_registry_lists_the_sbibm_names_and_refuses_others():
    assert set(SBI_TASKS) == {"gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm"}
    assert isinstance(sbi_task("slcp"), SLCP)
    assert isinstance(sbi_task("bernoulli_glm"), BernoulliGLM)
    with pytest.raises(ValueError, match=r"name must be one of .*'slcp'.*got 'two_moons'"):
        sbi_task("two_moons")
    with pytest.raises(ValueError, match="name must be one of"):
        sbi_task(3)


def test_bad_inputs_are_refused_with_messages_naming_them():
    slcp, mix, glm = SLCP(), GaussianMixture(), BernoulliGLM()
    with pytest.raises(ValueError, match=r"y must be a tensor of shape \(\.\.\., 8\), got \(5,\)"):
        slcp(torch.zeros(5))
    with pytest.raises(ValueError, match=r"y must be a tensor of shape \(\.\.\., 2\), got list"):
        mix([0.0, 0.0])
    with pytest.raises(ValueError, match=r"theta must be a tensor of shape \(\.\.\., 5\)"):
        slcp.log_likelihood(torch.zeros(4), torch.zeros(8))
    with pytest.raises(ValueError, match="theta contains NaN"):
        slcp.log_likelihood(torch.full((5,), float("nan")), torch.zeros(8))
    with pytest.raises(ValueError, match="theta and y have batch shapes .* do not broadcast"):
        mix.log_likelihood(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="spikes must contain only 0 and 1"):
        glm.log_likelihood(torch.zeros(10), torch.full((100,), 2.0))
    with pytest.raises(ValueError, match=r"spikes must be a tensor of shape \(\.\.\., 100\)"):
        glm(spikes=torch.zeros(99))
    with pytest.raises(ValueError, match=r"y must be a tensor of shape \(\.\.\., 10\)"):
        glm.log_likelihood_from_summary(torch.zeros(10), torch.zeros(9))


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(ValueError, match="dim"):
        GaussianMixture(dim=0)
    with pytest.raises(ValueError, match="prior_bound"):
        GaussianMixture(prior_bound=-1.0)
    with pytest.raises(ValueError, match="design_matrix must have 2 dimension"):
        BernoulliGLM(torch.zeros(100))
    with pytest.raises(ValueError, match="design_matrix must have shape"):
        BernoulliGLM(torch.zeros(100, 1))
    with pytest.raises(TypeError, match="design_matrix must be a torch.Tensor"):
        BernoulliGLM([[1.0, 0.0]])
    with pytest.raises(ValueError, match="stimulus must have at least num_filter = 9 bins"):
        bernoulli_glm_design(torch.zeros(5))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        bernoulli_glm_stimulus(seed=-1)
    with pytest.raises(ValueError, match="duration"):
        bernoulli_glm_stimulus(duration=0)


def test_bernoulli_glm_accepts_another_design_matrix():
    x = bernoulli_glm_design(torch.randn(30), num_filter=4)
    model = BernoulliGLM(x)
    assert (model.num_bins, model.dim) == (30, 5)
    out = Predictive(model, num_samples=3, parallel=True, return_sites=["theta", "y"])()
    assert out["theta"].shape == (3, 5) and out["y"].shape == (3, 5)
