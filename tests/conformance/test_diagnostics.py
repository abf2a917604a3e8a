"""ArviZ export and the amortization diagnostics on every model of the corpus: ``to_inference_data``
then ``az.summary``, ``az.loo`` and ``az.compare``; ``inference_gaps`` and
``posterior_collapse`` where they apply (local latents, amortized guide), clear refusals
elsewhere."""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoNormal

from pyrovi.diagnostics import inference_gaps, posterior_collapse, to_inference_data
from pyrovi.diagnostics._arviz import import_arviz
from tests.conformance.models import CASES, MASKED, NOISE, K, S, make_case

az = import_arviz()


def _guide(case):
    """The exact posterior where known, else the case's amortized guide, else an AutoNormal."""
    if case.exact_guide is not None:
        return case.exact_guide
    if case.amortized is not None:
        return case.amortized()
    model = poutine.block(case.model, expose=list(case.latents)) if case.enumerated else case.model
    return AutoNormal(model)


@pytest.mark.parametrize("name", CASES)
def test_inference_data_works_with_summary_and_loo(name):
    case = make_case(name)
    idata = to_inference_data(
        case.model, _guide(case), *case.args, num_samples=80, plate=case.plate, vectorize=False
    )
    summary = az.summary(idata, kind="stats")
    variables = {str(v).split("[")[0] for v in summary.index}
    assert set(case.latents) <= variables, variables
    log_lik = idata.log_likelihood
    assert all(log_lik[v].dtype == np.float64 for v in log_lik.data_vars)
    with np.errstate(all="ignore"):
        loo = az.loo(idata)
    assert math.isfinite(float(loo.elpd_loo))


def _exact_loo(x):
    """Σ_i log p(x_i | x_-i) of the conjugate normal model."""
    total = 0.0
    for i in range(len(x)):
        rest = torch.cat([x[:i], x[i + 1 :]])
        precision = 1 / 2.0**2 + len(rest) / S**2
        mean, var = rest.sum() / S**2 / precision, 1 / precision
        total += float(dist.Normal(mean, math.sqrt(var + S**2)).log_prob(x[i]))
    return total


@pytest.mark.parametrize("name", ["conjugate", "conjugate_unsized"])
def test_loo_of_the_exact_posterior_is_the_exact_leave_one_out_evidence(name):
    case = make_case(name)
    idata = to_inference_data(case.model, case.exact_guide, *case.args, num_samples=2000)
    loo = az.loo(idata)
    assert float(loo.elpd_loo) == pytest.approx(_exact_loo(case.args[0]), abs=0.05)


def test_compare_ranks_the_exact_posterior_first():
    case = make_case("conjugate")
    mean, sd = case.posterior["mu"]

    def shifted(x):
        pyro.sample("mu", dist.Normal(mean + 3 * sd, sd))

    exact = to_inference_data(case.model, case.exact_guide, *case.args, num_samples=500)
    pyro.clear_param_store()
    off = to_inference_data(case.model, shifted, *case.args, num_samples=500)
    table = az.compare({"exact": exact, "shifted": off})
    assert list(table.index) == ["exact", "shifted"]


# --------------------------------------------------------------------------- gaps and collapse

GLOBAL = [c for c in CASES if c not in ("vae", "cvae")]


def _data(case):
    return case.args if len(case.args) > 1 else case.args[0]


@pytest.mark.parametrize("name", GLOBAL)
def test_gaps_and_collapse_refuse_global_latents(name):
    case = make_case(name)
    guide = _guide(case)
    with pytest.raises((ValueError, TypeError), match="inference_gaps needs a"):
        inference_gaps(case.model, guide, _data(case), num_samples=10, refine_steps=2)
    site = case.latents[0]
    with pytest.raises((ValueError, TypeError), match="posterior|Posterior collapse|amortized"):
        posterior_collapse(case.model, guide, _data(case), site=site)


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_gaps_and_collapse_refuse_autoguides(name):
    case = make_case(name)
    guide = AutoNormal(case.model)
    with pytest.raises(TypeError, match="got the Pyro autoguide AutoNormal"):
        inference_gaps(case.model, guide, _data(case), num_samples=10, refine_steps=2)
    with pytest.raises(TypeError, match="got the Pyro autoguide AutoNormal"):
        posterior_collapse(case.model, guide, _data(case))


@pytest.mark.parametrize("name, particles", [("vae", 10), ("cvae", 2)])  # the CVAE: sequential
def test_gaps_of_pyro_vae_examples_match_the_closed_form(name, particles):
    """Linear-Gaussian VAE: the best diagonal Gaussian for a Gaussian posterior with precision
    Λ has variances 1 / Λ_dd, so the approximation gap is ½ (Σ_d log Λ_dd − log det Λ)."""
    case = make_case(name)
    guide = case.amortized()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*one at a time.*")  # the CVAE does not
        gaps = inference_gaps(  # broadcast over particles: tested elsewhere
            case.model,
            guide,
            _data(case),
            num_samples=2000,
            refine_steps=1500,
            refine_particles=particles,
        )
    w = case.model.__self__.decoder_net.weight.detach()
    if name == "cvae":
        w = w[MASKED]  # only the masked outputs are observed
    precision = (w.T @ w + NOISE**2 * torch.eye(K, dtype=w.dtype)) / NOISE**2
    expected = 0.5 * float(precision.diagonal().log().sum() - torch.logdet(precision))
    # ELBO(q*) = log p(x) − KL(q* ‖ posterior), the KL being that gap for every datapoint
    optimized_gap = case.log_evidence - gaps.elbo_optimized
    assert float(optimized_gap.mean()) == pytest.approx(expected, abs=0.01)
    # the reported gap uses IWAE (K = 2000) for log p(x), noisy per datapoint and biased low on
    # average (the diagonal q* is narrower than the correlated posterior: heavy-tailed weights)
    assert float(gaps.approximation_gap.mean()) == pytest.approx(expected, abs=0.05)
    total = gaps.approximation_gap + gaps.amortization_gap
    torch.testing.assert_close(total, gaps.log_px - gaps.elbo_amortized, atol=1e-8, rtol=0)


def test_collapse_of_pyro_vae_example_matches_the_encoder():
    case = make_case("vae")
    guide = case.amortized()
    x = case.args[0]
    report = posterior_collapse(case.model, guide, x)
    loc, log_scale = case.model.__self__.encoder(x).split(K, dim=-1)
    var = (2 * log_scale).exp()
    kl = (0.5 * (var + loc**2 - 1 - var.log())).mean(0)  # KL(q(z_d|x) || N(0, 1)), averaged
    torch.testing.assert_close(report.kl.to(kl), kl.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(report.activity.to(loc), loc.detach().var(0), atol=1e-6, rtol=0.05)
