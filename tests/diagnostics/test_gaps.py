"""Inference gaps on probabilistic PCA, where log p(x), the posterior and the best diagonal
Gaussian are known exactly."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import AutoNormal
from torch import nn

from pyrovi.diagnostics import InferenceGaps, LocalGaussianGuide, inference_gaps, refine_guide
from pyrovi.guides import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.infer import FastTrace_ELBO
from tests.diagnostics.conjugate import ConjugateNormal
from tests.infer.ppca import PPCA


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)


def test_full_covariance_family_has_no_approximation_gap(device, float64):
    ppca = PPCA(d=5, k=2, sigma=0.5, correlation=0.5, device=device)
    x = ppca.sample(30)
    # an untrained linear encoder: far from the posterior, so the amortization gap is large
    guide = AmortizedMultivariateNormal(5, 2, hidden_dims=()).to(device)
    gaps = inference_gaps(ppca.model, guide, x, num_samples=500, refine_steps=300, batch_size=16)
    assert gaps.log_px.shape == gaps.elbo_optimized.shape == (30,)
    assert gaps.log_px.device == x.device
    exact = ppca.log_evidence(x)
    # q* is the exact posterior: the IWAE weights are constant and equal log p(x)
    torch.testing.assert_close(gaps.log_px, exact, rtol=0, atol=0.05)
    assert gaps.approximation_gap.mean().abs() < 0.01
    assert gaps.approximation_gap.abs().max() < 0.05
    assert (gaps.approximation_gap >= 0).all()  # IWAE and ELBO of q* come from the same draws
    assert gaps.amortization_gap.mean() > 1.0
    torch.testing.assert_close(
        gaps.approximation_gap + gaps.amortization_gap,
        gaps.log_px - gaps.elbo_amortized,
        rtol=0,
        atol=1e-10,
    )
    torch.testing.assert_close(gaps.inference_gap, gaps.log_px - gaps.elbo_amortized)
    assert len(gaps.refine_history) == 300
    assert gaps.refine_history[-1] > gaps.refine_history[0]
    assert gaps.khat.shape == (30,) and (gaps.khat < 0.5).all()


def test_diagonal_family_reaches_the_best_mean_field_elbo(device, float64):
    # the best diagonal Gaussian misses KL(q* || p(z|x)) = ppca.diagonal_gap() for every datapoint
    ppca = PPCA(d=5, k=2, sigma=0.5, correlation=0.5, device=device)
    x = ppca.sample(30)
    guide = AmortizedNormal(5, 2, hidden_dims=()).to(device)
    gaps = inference_gaps(ppca.model, guide, x, num_samples=1000, refine_steps=300)
    missed = ppca.log_evidence(x) - gaps.elbo_optimized
    target = ppca.diagonal_gap().item()
    assert target > 0.3
    assert abs(missed.mean().item() - target) < 0.02
    assert (missed - target).abs().max() < 0.15
    assert gaps.approximation_gap.mean() > 0.2
    means = gaps.mean()
    assert set(means) == {
        "log_px",
        "elbo_amortized",
        "elbo_optimized",
        "approximation_gap",
        "amortization_gap",
        "inference_gap",
    }
    assert "approximation gap" in gaps.summary() and "30 datapoints" in str(gaps)


def test_sticking_the_landing_gradient_vanishes_at_the_exact_posterior(float64):
    ppca = PPCA(d=4, k=2, sigma=0.5)
    x = ppca.sample(6)
    post = ppca.posterior(x)
    local = LocalGaussianGuide(post.loc, post.scale_tril.expand(6, 2, 2))
    loss_fn = FastTrace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    params = list(local.parameters())
    with pyro.validation_enabled(False):
        stl = torch.autograd.grad(
            loss_fn.differentiable_loss(ppca.model, local.sticking_the_landing, x), params
        )
        plain = torch.autograd.grad(loss_fn.differentiable_loss(ppca.model, local, x), params)
    assert max(g.abs().max().item() for g in stl) < 1e-9
    assert max(g.abs().max().item() for g in plain) > 1e-3


def test_refine_guide_starts_from_the_encoder(float64):
    guide = AmortizedMultivariateNormal(5, 3, hidden_dims=(7,))
    x = torch.randn(4, 5)
    local = refine_guide(lambda x: None, guide, x, steps=0)
    loc, tril = guide.encode(x)
    q = local.distribution()
    torch.testing.assert_close(q.loc, loc)
    torch.testing.assert_close(q.scale_tril, tril)
    diagonal = LocalGaussianGuide.from_encoder(AmortizedNormal(5, 3, hidden_dims=(7,)), x)
    assert not diagonal.full and diagonal.distribution().event_shape == (3,)
    with pytest.raises(ValueError, match="parameters for the 4 datapoints.*got \\(3, 5\\)"):
        local(x[:3])


def test_errors_name_the_argument():
    ppca = PPCA(d=3, k=2)
    x = ppca.sample(4).float()
    guide = AmortizedNormal(3, 2, hidden_dims=())

    def two_latents(x):
        ppca.exact_guide(x)
        pyro.sample("extra", pyro.distributions.Normal(0.0, 1.0))

    with pytest.raises(TypeError, match=r"draw one latent site from a Gaussian.*\['z', 'extra'\]"):
        LocalGaussianGuide.from_encoder(two_latents, x.double())
    with pytest.raises(
        ValueError, match=r"latent sites \['z', 'extra'\], and site\(s\) \['extra'\]"
    ):
        inference_gaps(ppca.model, two_latents, x.double())
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        inference_gaps(ppca.model, guide, x, num_samples=0)
    with pytest.raises(ValueError, match="steps must be an integer >= 0, got -1"):
        inference_gaps(ppca.model, guide, x, refine_steps=-1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        inference_gaps(ppca.model, guide, x, refine_lr=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        inference_gaps(ppca.model, guide, x, batch_size=0)
    with pytest.raises(TypeError, match="data must be a tensor or a tuple of tensors"):
        inference_gaps(ppca.model, guide, [[1.0, 2.0, 3.0]])

    def with_global_latent(x):
        pyro.sample("shift", pyro.distributions.Normal(0.0, 1.0))
        ppca.model(x)

    with pytest.raises(ValueError, match=r"model latent site\(s\) \['shift'\] are not sampled"):
        inference_gaps(with_global_latent, guide.double(), x.double())

    def observed_outside_the_plate(x):
        ppca.model(x)
        pyro.sample("total", pyro.distributions.Normal(0.0, 1.0), obs=x.sum())

    with pytest.raises(ValueError, match="only latent site is the guide's per-datapoint site 'z'"):
        inference_gaps(observed_outside_the_plate, guide, x.double())

    def laplace(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample(
                "z", pyro.distributions.Laplace(x.new_zeros(x.shape[0], 2), 1.0).to_event(1)
            )

    with pytest.raises(TypeError, match="draws 'z' of shape \\(4, 2\\) from Laplace"):
        inference_gaps(ppca.model, laplace, x.double())
    with pytest.raises(ValueError, match=r"scale must have shape \(4, 2\)"):
        LocalGaussianGuide(torch.zeros(4, 2), torch.ones(4, 3))


def test_inference_gaps_dataclass_identities():
    gaps = InferenceGaps(
        log_px=torch.tensor([-1.0, -2.0]),
        elbo_amortized=torch.tensor([-3.0, -2.5]),
        elbo_optimized=torch.tensor([-1.5, -2.25]),
    )
    assert gaps.approximation_gap.tolist() == [0.5, 0.25]
    assert gaps.amortization_gap.tolist() == [1.5, 0.25]
    assert gaps.inference_gap.tolist() == [2.0, 0.5]
    assert gaps.mean()["inference_gap"] == pytest.approx(1.25)


def test_function_guides_work_and_the_exact_posterior_has_no_gaps(float64):
    # a plain function guide: the Gaussian parameters are read from the distribution it draws
    ppca = PPCA(d=4, k=2)
    x = ppca.sample(8)
    gaps = inference_gaps(ppca.model, ppca.exact_guide, x, num_samples=50, refine_steps=0)
    exact = ppca.log_evidence(x)
    for value in (gaps.log_px, gaps.elbo_optimized, gaps.elbo_amortized):
        torch.testing.assert_close(value, exact, rtol=0, atol=1e-10)
    assert (gaps.khat == -math.inf).all()


def test_guide_with_a_pyro_module_encoder(float64):
    ppca = PPCA(d=4, k=2)
    x = ppca.sample(10)
    net = nn.Linear(4, 4).double()

    def guide(x):
        pyro.module("encoder", net)
        h = net(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(h[:, :2], nn.functional.softplus(h[:, 2:])).to_event(1))

    local = LocalGaussianGuide.from_encoder(guide, x)
    with torch.no_grad():
        h = net(x)
        torch.testing.assert_close(local.distribution().base_dist.loc, h[:, :2])
        torch.testing.assert_close(local.distribution().base_dist.scale, F.softplus(h[:, 2:]))
    gaps = inference_gaps(ppca.model, guide, x, num_samples=300, refine_steps=300)
    # the refined diagonal Gaussian reaches the best mean-field ELBO; the encoder is untrained
    missed = ppca.log_evidence(x) - gaps.elbo_optimized
    assert abs(missed.mean().item() - ppca.diagonal_gap().item()) < 0.02
    assert gaps.amortization_gap.mean() > 1.0


def test_autoguides_and_global_latents_are_refused(float64):
    conj = ConjugateNormal(n=10)
    with pytest.raises(TypeError, match="inference_gaps needs an amortized guide.*AutoNormal"):
        inference_gaps(conj.model, AutoNormal(conj.model), conj.x)
    with pytest.raises(
        ValueError,
        match=r"latent sites \['mu'\], and site\(s\) \['mu'\] outside the plate.*"
        "log_marginal_likelihood",
    ):
        inference_gaps(conj.model, conj.guide, conj.x)
