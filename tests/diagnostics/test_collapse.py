"""Active units and KL per latent dimension against closed forms."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.diagnostics import (
    ActiveUnits,
    CollapseReport,
    active_units,
    kl_per_dimension,
    posterior_collapse,
    posterior_means,
)
from pyrovi.guides import AmortizedNormal
from pyrovi.models import VAE


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)


def model(x):
    """z ~ N(0, I_4) and x ~ N(z[:, :2], 1): only the first two dimensions explain x."""
    zeros = x.new_zeros(4)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
        pyro.sample("x", dist.Normal(z[..., :2], 1.0).to_event(1), obs=x)


def guide_parameters(x):
    """Dimensions 0, 1 follow the data; 2 is the prior (collapsed); 3 is constant but not the
    prior (no activity, yet a KL)."""
    n = x.shape[0]
    loc = torch.cat([0.5 * x, x.new_zeros(n, 1), x.new_full((n, 1), 0.3)], dim=1)
    scale = torch.cat([x.new_full((n, 2), 0.5), x.new_ones(n, 1), x.new_full((n, 1), 2.0)], 1)
    return loc, scale


def guide(x):
    loc, scale = guide_parameters(x)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def mvn_guide(x):
    loc, scale = guide_parameters(x)
    tril = torch.diag_embed(scale)
    tril[:, 1, 0] = 0.4  # correlates dimensions 0 and 1: Var(z_1) = 0.4² + 0.5²
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=tril))


def normal_kl(m, s):
    """KL(N(m, s²) || N(0, 1))."""
    return 0.5 * (s**2 + m**2 - 1) - torch.log(s)


def test_active_units_and_kl_per_dimension_match_closed_forms(device, float64):
    x = torch.randn(50, 2, device=device) * torch.tensor([1.0, 0.05], device=device)
    units = active_units(guide, x, batch_size=16)
    expected = torch.stack([(0.5 * x[:, 0]).var(), (0.5 * x[:, 1]).var()]).cpu()
    torch.testing.assert_close(units.activity[:2].cpu(), expected)
    assert units.activity[2:].abs().max() == 0
    # dimension 1 moves, but by less than 0.01: only dimension 0 is active
    assert units.active.tolist() == [True, False, False, False] and units.num_active == 1
    assert int(units) == 1
    kl = kl_per_dimension(model, guide, x, batch_size=16)
    loc, scale = guide_parameters(x)
    torch.testing.assert_close(kl, normal_kl(loc, scale).mean(0).double())
    assert kl[2] == 0 and kl[3] > 0.5


def test_full_covariance_guide_uses_its_marginals(float64):
    x = torch.randn(20, 2)
    kl = kl_per_dimension(model, mvn_guide, x)
    loc, scale = guide_parameters(x)
    scale = scale.clone()
    scale[:, 1] = (0.4**2 + 0.5**2) ** 0.5
    torch.testing.assert_close(kl, normal_kl(loc, scale).mean(0))


def test_conditional_prior_enters_the_kl(float64):
    def shifted(x):  # p(z | x) = N(x[:, :1], 1) in one dimension
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x[:, :1], 1.0).to_event(1))

    def same(x):
        shifted(x)

    x = torch.randn(10, 2)
    torch.testing.assert_close(kl_per_dimension(shifted, same, x), torch.zeros(1))


def test_monte_carlo_mean_for_guides_without_a_mean(float64):
    def transformed(x):
        base = dist.Normal(x, 1e-3)
        q = dist.TransformedDistribution(base, [dist.transforms.AffineTransform(1.0, 2.0)])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", q.to_event(1))

    x = torch.randn(8, 2)
    means = posterior_means(transformed, x, num_samples=200)
    torch.testing.assert_close(means, 1.0 + 2.0 * x, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="per-dimension KL needs Gaussian marginals.*Transformed"):
        kl_per_dimension(model, transformed, x)


def test_posterior_collapse_on_a_vae(device):
    vae = VAE(6, 3, hidden_dims=(8,)).to(device)
    encoder = AmortizedNormal(6, 3, hidden_dims=(8,)).to(device)
    x = torch.rand(40, 6, device=device).round()
    report = posterior_collapse(vae, encoder, x)
    assert isinstance(report, CollapseReport)
    assert report.kl.shape == report.activity.shape == (3,)
    assert (report.kl >= 0).all()
    loc, scale = encoder.encode(x)
    torch.testing.assert_close(report.kl, normal_kl(loc, scale).mean(0).double().detach())
    torch.testing.assert_close(report.activity, loc.double().var(0).detach())
    assert report.total_kl == pytest.approx(report.kl.sum().item())
    text = report.summary()
    assert (
        text.startswith(f"active units: {report.num_active} of 3") and len(text.splitlines()) == 5
    )


def test_errors_name_the_argument():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"the guide has no latent site 'w' \(its latent sites: "):
        active_units(guide, x, site="w")
    with pytest.raises(ValueError, match="threshold must be a non-negative number"):
        active_units(guide, x, threshold=-1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        kl_per_dimension(model, guide, x, batch_size=0)
    with pytest.raises(ValueError, match="active units need at least 2 datapoints"):
        active_units(guide, x[:1])

    def global_guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(3, 4), 1.0).to_event(2))

    with pytest.raises(ValueError, match=r"expected a posterior mean of shape \(5, z_dim\)"):
        posterior_means(global_guide, x)
    assert ActiveUnits(torch.tensor([0.5, 0.001])).num_active == 1


def test_guide_with_a_pyro_module_encoder(float64):
    # a plain function guide (Pyro's VAE example style) works like AmortizedNormal
    net = torch.nn.Linear(2, 8).double()

    def encoder_guide(x):
        pyro.module("encoder", net)
        h = net(x)
        with pyro.plate("data", x.shape[0]):
            scale = torch.nn.functional.softplus(h[:, 4:])
            pyro.sample("z", dist.Normal(h[:, :4], scale).to_event(1))

    x = torch.randn(30, 2)
    report = posterior_collapse(model, encoder_guide, x)
    with torch.no_grad():
        h = net(x)
        loc, scale = h[:, :4], torch.nn.functional.softplus(h[:, 4:])
    torch.testing.assert_close(report.kl, normal_kl(loc, scale).mean(0))
    torch.testing.assert_close(report.activity, loc.var(0))


def test_autoguides_and_global_latents_are_refused(float64):
    from pyro.infer.autoguide import AutoNormal

    from tests.diagnostics.conjugate import ConjugateNormal

    conj = ConjugateNormal(n=10)
    guide = AutoNormal(conj.model)
    for fn in (posterior_collapse, kl_per_dimension):
        with pytest.raises(TypeError, match=f"{fn.__name__} needs an amortized guide.*AutoNormal"):
            fn(conj.model, guide, conj.x, site="mu")
    with pytest.raises(TypeError, match="posterior_means needs an amortized guide.*AutoNormal"):
        active_units(guide, conj.x, site="mu")
    with pytest.raises(
        ValueError, match=r"site 'mu': expected a posterior mean of shape \(10, z_dim"
    ):
        posterior_collapse(conj.model, conj.guide, conj.x, site="mu")
    with pytest.raises(ValueError, match="a global latent .* has no activity over datapoints"):
        posterior_collapse(conj.model, conj.guide, conj.x, site="mu")
