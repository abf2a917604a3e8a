"""Known-answer tests of the ELBO and IWAE estimators (float64): probabilistic PCA (local
latents), a conjugate normal model (a global latent), and the Pyro idioms of
``tests.diagnostics.idioms`` (non-vectorizable models, subsampling, enumerated mixtures)."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, autoguide

from pyrovi.guides import AmortizedNormal
from pyrovi.infer import elbo, fit, log_importance_weights, log_marginal_likelihood
from tests.diagnostics.conjugate import ConjugateNormal
from tests.diagnostics.idioms import (
    GMM_DATA,
    GMM_VALUES,
    BayesianRegression,
    batch_reshaping_model,
    gmm,
    gmm_log_joint,
    gmm_mixture_log_lik,
    gmm_vectorizable,
    normal_kl,
    regression_data,
)
from tests.infer.ppca import PPCA


@pytest.fixture
def ppca(device):
    return PPCA(device=device)


@pytest.mark.parametrize("k", [1, 7, 100])
def test_exact_posterior_gives_exact_evidence(ppca, k):
    x = ppca.sample(50)
    exact = ppca.log_evidence(x)
    iwae = log_marginal_likelihood(ppca.model, ppca.exact_guide, x, num_samples=k, batch_size=16)
    bound = elbo(ppca.model, ppca.exact_guide, x, num_samples=k)
    assert iwae.shape == bound.shape == (50,)
    assert iwae.dtype == torch.float64
    torch.testing.assert_close(iwae, exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(bound, exact, atol=1e-6, rtol=0)


def test_chunking_does_not_change_the_estimate(ppca):
    x = ppca.sample(20)
    torch.manual_seed(3)
    a = log_marginal_likelihood(ppca.model, ppca.prior_guide, x, num_samples=64, batch_size=20)
    torch.manual_seed(3)
    b = log_marginal_likelihood(
        ppca.model, ppca.prior_guide, x, num_samples=64, batch_size=20, max_samples_per_pass=20 * 8
    )
    # different chunking draws the same number of samples; both estimate the same quantity
    assert (a - b).abs().mean() < 0.5
    log_w = log_importance_weights(ppca.model, ppca.prior_guide, x, num_samples=5)
    assert log_w.shape == (5, 20)


def test_iwae_with_prior_guide_rises_towards_exact_from_below(ppca):
    x = ppca.sample(200)
    exact = ppca.log_evidence(x).mean()
    estimates = [
        log_marginal_likelihood(ppca.model, ppca.prior_guide, x, num_samples=k).mean()
        for k in (1, 10, 100, 1000, 10000)
    ]
    gaps = [float(exact - e) for e in estimates]
    # below the exact value (beyond Monte Carlo noise) and rising with K ...
    assert all(g > 0 for g in gaps[:-1]), gaps
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    # ... until it is indistinguishable from it
    assert abs(gaps[-1]) < 0.02, gaps


def test_trained_amortized_normal_reaches_exact_evidence(ppca, device):
    x = ppca.sample(2000)
    guide = AmortizedNormal(ppca.d, ppca.k, hidden_dims=()).double()
    fit(
        ppca.model,
        guide,
        x,
        epochs=60,
        batch_size=100,
        lr=1e-2,
        progress=False,
        seed=0,
        device=device,
    )
    x_test = ppca.sample(500, seed=7)
    exact = ppca.log_evidence(x_test).mean()
    iwae = log_marginal_likelihood(ppca.model, guide, x_test, num_samples=1000).mean()
    bound = elbo(ppca.model, guide, x_test, num_samples=100).mean()
    assert float(exact - iwae) < 0.02
    assert float(iwae) - float(exact) < 0.02
    assert bound < iwae


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_bad_arguments(ppca, kwargs, match):
    with pytest.raises(ValueError, match=match):
        log_marginal_likelihood(ppca.model, ppca.exact_guide, ppca.sample(3), **kwargs)


def test_deterministic_sites_outside_the_plate_are_ignored():
    def model(x):
        z_bar = pyro.deterministic("zbar", torch.zeros(()))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z + z_bar, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    x = torch.randn(4)
    lw = log_importance_weights(model, guide, x, num_samples=3)
    assert lw.shape == (3, 4) and torch.isfinite(lw).all()


# --------------------------------------------------------------------------- global latents


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)


@pytest.mark.parametrize("vectorize", [None, True, False])
@pytest.mark.parametrize("k", [1, 7, 100])
def test_global_latent_exact_posterior_gives_exact_evidence(device, float64, k, vectorize):
    # mu ~ N(0, 2²), x_i ~ N(mu, 1): with q = p(mu | x) every weight is p(x, mu) / p(mu | x) = p(x)
    conj = ConjugateNormal(n=20, device=device)
    exact = conj.log_evidence(conj.x)
    iwae = log_marginal_likelihood(
        conj.model, conj.guide, conj.x, num_samples=k, vectorize=vectorize
    )
    bound = elbo(conj.model, conj.guide, conj.x, num_samples=k, vectorize=vectorize)
    assert iwae.shape == bound.shape == () and iwae.dtype == torch.float64
    assert iwae.device == conj.x.device
    torch.testing.assert_close(iwae, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(bound, exact, rtol=0, atol=1e-10)
    log_w = log_importance_weights(conj.model, conj.guide, conj.x, num_samples=k)
    assert log_w.shape == (k,)
    torch.testing.assert_close(log_w, exact.expand(k), rtol=0, atol=1e-10)


def test_global_elbo_is_evidence_minus_kl(float64):
    # ELBO(q) = log p(x) - KL(q || p(mu | x)) for a Gaussian q = N(m + 0.5 s, (2 s)²)
    conj = ConjugateNormal(n=20)
    post = conj.posterior(conj.x)
    m, s = post.loc.item(), post.scale.item()

    def guide(x):
        pyro.sample("mu", dist.Normal(m + 0.5 * s, 2 * s))

    n = 200_000
    log_w = log_importance_weights(conj.model, guide, conj.x, num_samples=n)
    expected = conj.log_evidence(conj.x).item() - normal_kl(m + 0.5 * s, 2 * s, m, s)
    se = log_w.std().item() / math.sqrt(n)
    assert abs(log_w.mean().item() - expected) < 5 * se
    estimate = elbo(conj.model, guide, conj.x, num_samples=n).item()
    assert abs(estimate - expected) < 5 * se


def test_global_iwae_rises_towards_exact_from_below(float64):
    # q = N(m + 2.5 s, s²) for the posterior N(m, s²): log-normal weights with variance e^6.25 - 1,
    # so IWAE_K is a lower bound (in expectation) that tightens slowly with K; IWAE_1 is the
    # ELBO, log p(x) - KL = log p(x) - 2.5² / 2
    conj = ConjugateNormal(n=20)
    exact = conj.log_evidence(conj.x).item()
    post = conj.posterior(conj.x)

    def shifted(x):
        pyro.sample("mu", dist.Normal(post.loc + 2.5 * post.scale, post.scale))

    gaps, ses = [], []
    for k, repeats in ((1, 200), (10, 200), (100, 200), (1000, 200), (10000, 50)):
        est = torch.stack(
            [
                log_marginal_likelihood(conj.model, shifted, conj.x, num_samples=k)
                for _ in range(repeats)
            ]
        )
        gaps.append(exact - est.mean().item())
        ses.append(est.std().item() / math.sqrt(repeats))
    assert abs(gaps[0] - 2.5**2 / 2) < 4 * ses[0], (gaps, ses)
    # below the exact value beyond Monte Carlo noise, and rising with K ...
    assert all(g > 2.5 * se for g, se in zip(gaps[:3], ses[:3])), (gaps, ses)
    assert all(a > b for a, b in zip(gaps[:4], gaps[1:4])), gaps
    # ... until it is indistinguishable from it
    assert abs(gaps[-1]) < 4 * ses[-1] and abs(gaps[-1]) < 0.1, (gaps, ses)


def test_global_latent_chunks_over_particles_only(float64):
    conj = ConjugateNormal(n=20)
    exact = conj.log_evidence(conj.x)
    # 20 datapoints x 3 draws per pass: 34 passes of the whole data set, no data chunking
    iwae = log_marginal_likelihood(
        conj.model, conj.guide, conj.x, num_samples=100, batch_size=4, max_samples_per_pass=60
    )
    torch.testing.assert_close(iwae, exact, rtol=0, atol=1e-10)


def test_model_without_a_plate_is_the_global_case(float64):
    conj = ConjugateNormal(n=15)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau))
        pyro.sample("obs", dist.Normal(mu, conj.sigma).expand([x.shape[0]]).to_event(1), obs=x)

    exact = conj.log_evidence(conj.x)
    # .expand([n]) does not broadcast over an outer plate: one particle at a time
    with pytest.warns(UserWarning, match="vectorize=False"):
        iwae = log_marginal_likelihood(model, conj.guide, conj.x, num_samples=9)
    assert iwae.shape == ()
    torch.testing.assert_close(iwae, exact, rtol=0, atol=1e-10)
    bound = elbo(model, conj.guide, conj.x, num_samples=9, vectorize=False)
    torch.testing.assert_close(bound, exact, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "guide_name", ["AutoNormal", "AutoDiagonalNormal", "AutoMultivariateNormal"]
)
def test_autoguides_at_the_exact_posterior_give_exact_evidence(float64, guide_name):
    # AutoDiagonalNormal / AutoMultivariateNormal draw an auxiliary latent and place the model's
    # sites with Deltas: log q must include the auxiliary site, as Pyro's ELBO does
    conj = ConjugateNormal(n=20)
    post = conj.posterior(conj.x)
    guide = getattr(autoguide, guide_name)(
        conj.model,
        init_loc_fn=autoguide.initialization.init_to_value(values={"mu": post.loc}),
        init_scale=post.scale.item(),
    )
    log_w = log_importance_weights(conj.model, guide, conj.x, num_samples=20)
    torch.testing.assert_close(log_w, conj.log_evidence(conj.x).expand(20), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- vectorize


def test_vectorized_and_sequential_agree_exactly_with_the_exact_posterior(ppca):
    x = ppca.sample(12)
    a = log_marginal_likelihood(ppca.model, ppca.exact_guide, x, num_samples=5, vectorize=True)
    b = log_marginal_likelihood(ppca.model, ppca.exact_guide, x, num_samples=5, vectorize=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    torch.testing.assert_close(a, ppca.log_evidence(x), rtol=0, atol=1e-10)


def test_vectorized_and_sequential_estimate_the_same_elbo(float64):
    conj = ConjugateNormal(n=20)

    def wide(x):
        conj.guide(x, width=2.0)

    n = 4000
    lw = {
        v: log_importance_weights(conj.model, wide, conj.x, num_samples=n, vectorize=v)
        for v in (True, False)
    }
    diff = lw[True].mean() - lw[False].mean()
    se = math.sqrt((lw[True].var() + lw[False].var()).item() / n)
    assert abs(diff.item()) < 5 * se, (diff, se)
    assert not torch.equal(lw[True], lw[False])  # two independent sets of draws


def test_non_vectorizable_local_model_falls_back_once_per_call(ppca):
    model = batch_reshaping_model(ppca)
    x = ppca.sample(10)
    with pytest.raises(ValueError, match="not broadcastable"):
        log_marginal_likelihood(model, ppca.exact_guide, x, num_samples=4, vectorize=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # batch_size 4: three chunks of data, one vectorized attempt and one warning
        iwae = log_marginal_likelihood(model, ppca.exact_guide, x, num_samples=4, batch_size=4)
    fallbacks = [w for w in caught if "vectorize=False" in str(w.message)]
    assert len(fallbacks) == 1 and issubclass(fallbacks[0].category, UserWarning)
    assert "log_marginal_likelihood" in str(fallbacks[0].message)
    assert "one at a time" in str(fallbacks[0].message)
    torch.testing.assert_close(iwae, ppca.log_evidence(x), rtol=0, atol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # vectorize=False skips the attempt: no warning
        bound = elbo(model, ppca.exact_guide, x, num_samples=3, vectorize=False)
        log_w = log_importance_weights(model, ppca.exact_guide, x, num_samples=3, vectorize=False)
    torch.testing.assert_close(bound, ppca.log_evidence(x), rtol=0, atol=1e-10)
    assert log_w.shape == (3, 10)


def test_bayesian_regression_tutorial_model_gives_the_exact_evidence(float64):
    x, y = regression_data()
    model = BayesianRegression(sigma=0.4)
    exact = model.log_evidence(x, y)
    with pytest.raises(RuntimeError, match="t\\(\\) expects a tensor"):
        elbo(model, model.exact_guide, (x, y), num_samples=2, vectorize=True)
    with pytest.warns(UserWarning, match="vectorize=False"):
        iwae = log_marginal_likelihood(model, model.exact_guide, (x, y), num_samples=5)
    bound = elbo(model, model.exact_guide, (x, y), num_samples=5, vectorize=False)
    assert iwae.shape == bound.shape == ()
    torch.testing.assert_close(iwae, exact, rtol=0, atol=1e-9)
    torch.testing.assert_close(bound, exact, rtol=0, atol=1e-9)


def test_bayesian_regression_tutorial_elbo_matches_pyro(float64):
    # sigma ~ Uniform(0, 10) and AutoDiagonalNormal, as in the tutorial: no closed form, but
    # the ELBO must be Pyro's own Trace_ELBO estimate of the same guide
    x, y = regression_data()
    model = BayesianRegression()
    guide = autoguide.AutoDiagonalNormal(model)
    guide(x, y)
    n = 1000
    log_w = log_importance_weights(model, guide, x, y, num_samples=n, vectorize=False)
    pyro_elbo = -Trace_ELBO(num_particles=n).loss(model, guide, x, y)
    se = log_w.std().item() / math.sqrt(n)
    assert abs(log_w.mean().item() - pyro_elbo) < 5 * math.sqrt(2) * se


def test_particle_mixing_model_is_detected_and_evaluated_one_at_a_time(float64):
    # mu.mean() averages over every particle of an outer plate: runs, but wrong, vectorized
    conj = ConjugateNormal(n=20)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau)).mean()
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, conj.sigma), obs=x)

    with pytest.warns(UserWarning, match="particle 0 of the vectorized pass"):
        iwae = log_marginal_likelihood(model, conj.guide, conj.x, num_samples=10)
    torch.testing.assert_close(iwae, conj.log_evidence(conj.x), rtol=0, atol=1e-10)


def test_vectorize_must_be_a_bool_or_none(ppca):
    with pytest.raises(TypeError, match="vectorize must be True, False or None, got 'yes'"):
        elbo(ppca.model, ppca.exact_guide, ppca.sample(3), vectorize="yes")


# --------------------------------------------------------------------------- subsampling


def test_subsampled_plate_global_latent_is_scaled_as_pyro_does(float64):
    # a point-mass guide: log w = log p(mu0) + (N / B) Σ_{i in subsample} log p(x_i | mu0)
    conj = ConjugateNormal(n=20)
    mu0 = torch.tensor(0.7, dtype=torch.float64)
    idx = torch.tensor([0, 3, 5, 7, 11])

    def model(x, idx):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau))
        with pyro.plate("data", 20, subsample=idx) as i:
            pyro.sample("x", dist.Normal(mu, conj.sigma), obs=x[i])

    def guide(x, idx):
        pyro.sample("mu", dist.Delta(mu0))

    expected = (
        dist.Normal(0.0, conj.tau).log_prob(mu0)
        + 4 * dist.Normal(mu0, conj.sigma).log_prob(conj.x[idx]).sum()
    )
    lw = log_importance_weights(model, guide, conj.x, idx, num_samples=3)
    assert lw.shape == (3,)
    torch.testing.assert_close(lw, expected.expand(3), rtol=0, atol=1e-10)
    iwae = log_marginal_likelihood(model, guide, conj.x, num_samples=3, idx=idx)
    torch.testing.assert_close(iwae, expected, rtol=0, atol=1e-10)


def test_random_subsample_is_shared_by_every_particle(float64):
    conj = ConjugateNormal(n=20)
    mu0 = torch.tensor(0.7, dtype=torch.float64)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau))
        with pyro.plate("data", 20, subsample_size=5) as i:
            pyro.sample("x", dist.Normal(mu, conj.sigma), obs=x[i])

    def guide(x):
        pyro.sample("mu", dist.Delta(mu0))
        with pyro.plate("data", 20, subsample_size=5):
            pass

    for vectorize in (True, False):
        lw = log_importance_weights(model, guide, conj.x, num_samples=50, vectorize=vectorize)
        # one subsample for all particles: a point-mass guide gives 50 equal weights, one of the
        # values log p(mu0) + 4 Σ_{5 of 20} log p(x_i | mu0)
        assert torch.equal(lw, lw[:1].expand(50))
        terms = dist.Normal(mu0, conj.sigma).log_prob(conj.x)
        prior = dist.Normal(0.0, conj.tau).log_prob(mu0)
        assert prior + 4 * terms.sort().values[:5].sum() - 1e-9 <= lw[0]
        assert lw[0] <= prior + 4 * terms.sort().values[-5:].sum() + 1e-9


def test_subsampled_local_plate_gives_the_evidence_of_each_datapoint_in_the_call(ppca):
    # per-datapoint evidence is for the datapoints of the call: the N / B scale is divided out
    x = ppca.sample(12)
    idx = torch.tensor([1, 4, 6, 9])

    def model(x, idx):
        zeros = x.new_zeros(ppca.k)
        with pyro.plate("data", x.shape[0], subsample=idx) as i:
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", dist.Normal(z @ ppca.W.T + ppca.b, ppca.sigma).to_event(1), obs=x[i])

    def guide(x, idx):
        with pyro.plate("data", x.shape[0], subsample=idx) as i:
            pyro.sample("z", ppca.posterior(x[i]))

    lw = log_importance_weights(model, guide, x, idx, num_samples=3)
    assert lw.shape == (3, 4)
    torch.testing.assert_close(lw, ppca.log_evidence(x[idx]).expand(3, 4), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- enumeration


@pytest.mark.parametrize("vectorize", [None, False])
def test_enumerated_mixture_with_autodelta_guide(float64, vectorize):
    # Pyro's GMM tutorial: AutoDelta on the continuous globals, assignments enumerated.
    # log w = log Σ_a p(x, a, globals) - log δ = the closed-form mixture log joint
    guide = autoguide.AutoDelta(
        poutine.block(gmm, expose=["weights", "locs", "scale"]),
        init_loc_fn=autoguide.initialization.init_to_value(values=GMM_VALUES),
    )
    expected = gmm_log_joint()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # locs[assignment] does not broadcast over particles
        log_w = log_importance_weights(gmm, guide, GMM_DATA, num_samples=4, vectorize=vectorize)
        iwae = log_marginal_likelihood(gmm, guide, GMM_DATA, num_samples=3, vectorize=vectorize)
    assert len(caught) == (2 if vectorize is None else 0), [str(w.message) for w in caught]
    assert log_w.shape == (4,)
    torch.testing.assert_close(log_w, expected.expand(4), rtol=0, atol=1e-10)
    torch.testing.assert_close(iwae, expected, rtol=0, atol=1e-10)


def test_enumerated_mixture_vectorized_matches_sequential(float64):
    def point_mass(data):  # log q = 0: log w is the mixture's log joint
        pyro.sample("weights", dist.Delta(GMM_VALUES["weights"], event_dim=1))
        pyro.sample("scale", dist.Delta(GMM_VALUES["scale"]))
        pyro.sample("locs", dist.Delta(GMM_VALUES["locs"], event_dim=1))

    for vectorize in (True, False):
        lw = log_importance_weights(
            gmm_vectorizable, point_mass, GMM_DATA, num_samples=3, vectorize=vectorize
        )
        torch.testing.assert_close(lw, gmm_log_joint().expand(3), rtol=0, atol=1e-10)

    def guide(data):
        pyro.sample("weights", dist.Dirichlet(torch.tensor([40.0, 60.0])))
        pyro.sample("scale", dist.LogNormal(0.4, 0.1))
        pyro.sample("locs", dist.Normal(GMM_VALUES["locs"], 0.3).to_event(1))

    n = 600
    lw = {
        v: log_importance_weights(gmm_vectorizable, guide, GMM_DATA, num_samples=n, vectorize=v)
        for v in (True, False)
    }
    se = math.sqrt((lw[True].var() + lw[False].var()).item() / n)
    assert abs((lw[True].mean() - lw[False].mean()).item()) < 5 * se


def test_enumerated_local_discrete_latent_gives_per_datapoint_mixture_density(float64):
    values = GMM_VALUES

    def model(data):
        with pyro.plate("data", len(data)):
            a = pyro.sample(
                "assignment", dist.Categorical(values["weights"]), infer={"enumerate": "parallel"}
            )
            pyro.sample("obs", dist.Normal(values["locs"][a], values["scale"]), obs=data)

    def guide(data):  # nothing to sample: every latent is enumerated
        pass

    expected = gmm_mixture_log_lik(values["weights"], values["locs"], values["scale"])
    for vectorize in (None, False):
        iwae = log_marginal_likelihood(model, guide, GMM_DATA, num_samples=2, vectorize=vectorize)
        assert iwae.shape == (len(GMM_DATA),)
        torch.testing.assert_close(iwae, expected, rtol=0, atol=1e-12)


def test_discrete_latent_neither_sampled_nor_enumerated_is_named(float64):
    def model(data):
        with pyro.plate("data", len(data)):
            a = pyro.sample("assignment", dist.Categorical(GMM_VALUES["weights"]))
            pyro.sample("obs", dist.Normal(GMM_VALUES["locs"][a], 1.0), obs=data)

    with pytest.raises(
        ValueError, match=r"\['assignment'\] are not sampled by the guide.*enumerat"
    ):
        elbo(model, lambda data: None, GMM_DATA)


def test_float32_flow_guide_vectorizes_without_falling_back():
    # particle 0 evaluated alone differs from the batched pass by float32 rounding only (the
    # flow's batched and unbatched matrix products round differently): no fallback
    from pyrovi.guides import AmortizedFlow
    from pyrovi.models import VAE

    model = VAE(20, 4, hidden_dims=(16,))
    guide = AmortizedFlow(20, 4, flow="iaf", num_layers=2, hidden_features=16, hidden_dims=(16,))
    x = torch.rand(300, 20).round()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bound = elbo(model, guide, x, num_samples=20)
        iwae = log_marginal_likelihood(model, guide, x, num_samples=20)
    assert bound.shape == iwae.shape == (300,) and bound.dtype == torch.float32
    assert torch.isfinite(bound).all() and torch.isfinite(iwae).all()


# --------------------------------------------------------------------------- plate and data checks


def _batch_model(x):
    """Local latents in a plate called 'batch' (not the default 'data')."""
    with pyro.plate("batch", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _batch_guide(x):
    with pyro.plate("batch", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))


def _global_model(x):
    """A global latent beside a plate that is not called 'data' (like eight schools)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("obs_plate", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _global_guide(x):
    pyro.sample("mu", dist.Normal(0.0, 1.0))


def _no_plate_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(mu, 1.0).expand(x.shape).to_event(1), obs=x)


@pytest.mark.parametrize("estimate", [elbo, log_marginal_likelihood])
def test_a_plate_name_the_model_does_not_have_is_refused(estimate):
    x = torch.randn(5)
    with pytest.raises(ValueError, match=r"plate='datta' is not a plate .* \['batch'\]"):
        estimate(_batch_model, _batch_guide, x, plate="datta")
    with pytest.raises(ValueError, match=r"plate='data' is not a plate .* \['obs_plate'\]"):
        estimate(_global_model, _global_guide, x, plate="data")
    with pytest.raises(TypeError, match="plate must be the name of a pyro.plate"):
        estimate(_batch_model, _batch_guide, x, plate=3)


def test_the_default_plate_is_refused_only_where_it_would_hide_local_latents():
    x = torch.randn(5)
    with pytest.raises(
        ValueError, match=r"no plate 'data' .* inside plate 'batch': pass plate='batch'"
    ):
        elbo(_batch_model, _batch_guide, x)
    with pytest.raises(ValueError, match="pass plate='batch'"):
        log_importance_weights(_batch_model, _batch_guide, x)
    assert elbo(_batch_model, _batch_guide, x, plate="batch").shape == (5,)
    # global latents: the joint estimate, whatever the plates are called
    for plate in (None, "obs_plate"):
        assert elbo(_global_model, _global_guide, x, plate=plate).shape == ()
    # no plate at all: any name is the global case
    for plate in (None, "data", "anything"):
        lml = log_marginal_likelihood(
            _no_plate_model, _global_guide, x, num_samples=10, plate=plate, vectorize=False
        )
        assert lml.shape == ()


def test_data_is_checked_up_front():
    model, guide = _batch_model, _batch_guide
    nan = torch.tensor([0.0, float("nan"), 1.0])
    for estimate in (elbo, log_marginal_likelihood):
        with pytest.raises(ValueError, match=f"{estimate.__name__}: data contains NaN"):
            estimate(model, guide, nan, plate="batch")
        with pytest.raises(ValueError, match=r"data is empty \(shape \(0,\)\): no datapoints"):
            estimate(model, guide, torch.empty(0), plate="batch")
    with pytest.raises(ValueError, match=r"elbo: data\[1\] contains NaN"):
        elbo(lambda x, y: model(x), lambda x, y: guide(x), (torch.zeros(3), nan), plate="batch")
    with pytest.raises(ValueError, match=r"log_importance_weights: args\[0\] contains NaN"):
        log_importance_weights(model, guide, nan, plate="batch")
    counts = torch.tensor([1, 0, 2])  # integer data are fine (counts, labels)

    def poisson(y):
        rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", dist.Poisson(rate), obs=y)

    def rate_guide(y):
        pyro.sample("rate", dist.Gamma(2.0, 1.0))

    assert torch.isfinite(elbo(poisson, rate_guide, counts.float())).all()
    assert torch.isfinite(elbo(poisson, rate_guide, counts)).all()
