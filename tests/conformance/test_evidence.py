"""Evidence estimators and PSIS on every model of the corpus: the closed form where there is one,
Pyro's own ``Trace_ELBO`` (or a hand-written estimate) elsewhere."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyrovi.diagnostics import psis_khat
from pyrovi.infer import elbo, fit, log_importance_weights, log_marginal_likelihood
from tests.conformance.models import CASES, gmm_log_joint, log_mean_exp, make_case

EXACT = [c for c in CASES if make_case(c).exact_guide is not None]


@pytest.mark.parametrize("name", EXACT)
@pytest.mark.parametrize("vectorize", [None, False])
def test_the_exact_posterior_gives_the_exact_evidence(name, vectorize):
    case = make_case(name)
    expected = case.log_evidence
    with torch.no_grad(), _quiet():
        iwae = log_marginal_likelihood(
            case.model, case.exact_guide, case.args, num_samples=4, vectorize=vectorize
        )
        bound = elbo(case.model, case.exact_guide, case.args, num_samples=3, vectorize=vectorize)
    assert iwae.shape == bound.shape == expected.shape  # (N,) local, () global
    assert iwae.dtype == torch.float64
    torch.testing.assert_close(iwae, expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(bound, expected, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", EXACT)
def test_psis_of_the_exact_posterior_has_constant_weights(name):
    case = make_case(name)
    with _quiet():
        k = psis_khat(case.model, case.exact_guide, *case.args, num_samples=30, plate=case.plate)
    assert k.khat.shape == case.log_evidence.shape
    assert bool((k.khat < 0.5).all())  # constant weights: -inf
    torch.testing.assert_close(
        k.log_weights, case.log_evidence.expand_as(k.log_weights), atol=1e-8, rtol=0
    )


def _trained_autonormal(case, steps=200):
    guide = AutoNormal(case.model)
    fit(
        case.model, guide, case.args, epochs=steps, batch_size=len(case.args[0]), lr=0.05,
        progress=False, seed=0,
    )  # fmt: skip
    return guide


@pytest.mark.parametrize("name", ["regression", "eight_schools"])
def test_elbo_matches_pyro_trace_elbo_without_a_closed_form(name):
    case = make_case(name)
    guide = _trained_autonormal(case)
    k = 400
    with torch.no_grad(), _quiet():
        lw = log_importance_weights(case.model, guide, *case.args, num_samples=k)
        ours = elbo(case.model, guide, case.args, num_samples=k)
        iwae = log_marginal_likelihood(case.model, guide, case.args, num_samples=k)
        stock = -Trace_ELBO(num_particles=k).loss(case.model, guide, *case.args)
    assert lw.shape == (k,) and ours.shape == () and iwae.shape == ()
    se = float(lw.std()) / math.sqrt(k)
    # two independent estimates of one expectation
    assert abs(float(ours) - stock) < 5 * math.sqrt(2) * se, (float(ours), stock, se)
    assert float(iwae) >= float(ours)
    with _quiet():
        k_hat = psis_khat(case.model, guide, *case.args, num_samples=k, plate=case.plate)
    assert k_hat.khat.shape == () and math.isfinite(float(k_hat.khat))


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_amortized_guides_of_pyro_examples_bound_the_exact_evidence(name):
    case = make_case(name)
    guide = case.amortized()
    with torch.no_grad(), _quiet():
        bound = elbo(case.model, guide, case.args, num_samples=200)
        iwae = log_marginal_likelihood(case.model, guide, case.args, num_samples=2000)
        k = psis_khat(case.model, guide, *case.args, num_samples=100)
    exact = case.log_evidence
    assert bound.shape == iwae.shape == exact.shape == k.khat.shape
    assert bool((bound < exact).all())  # an untrained encoder: a loose bound
    assert float((iwae - exact).mean()) < 0.05  # a lower bound in expectation
    assert float((exact - iwae).mean()) < float((exact - bound).mean())


def test_enumerated_mixture_sums_out_the_assignment():
    case = make_case("gmm")
    x = case.args[0]
    guide = AutoNormal(poutine.block(case.model, expose=["locs"]))
    fit(
        case.model, guide, case.args, epochs=300, batch_size=20, lr=0.05, progress=False, seed=0,
        loss=pyro.infer.TraceEnum_ELBO(max_plate_nesting=1),
    )  # fmt: skip
    k = 2000
    with torch.no_grad(), _quiet():
        ours = log_marginal_likelihood(case.model, guide, case.args, num_samples=k)
        bound = elbo(case.model, guide, case.args, num_samples=k)
        # by hand: locs ~ q, log p(x, locs) with the assignments summed out, minus log q(locs)
        draws = torch.stack([guide()["locs"] for _ in range(k)])
        log_q = _autonormal_log_q(guide, draws)
        lw = gmm_log_joint(x, draws) - log_q
    assert ours.shape == bound.shape == ()
    se = float(lw.std()) / math.sqrt(k)
    assert float(bound) == pytest.approx(float(lw.mean()), abs=5 * math.sqrt(2) * se)
    assert float(ours) == pytest.approx(float(log_mean_exp(lw)), abs=0.05)


def _autonormal_log_q(guide, draws):
    loc, scale = guide.locs.locs, guide.scales.locs
    return torch.distributions.Normal(loc, scale).log_prob(draws).sum(-1)


class _quiet:
    """Silence the fall-back warning of models that do not vectorize (tested elsewhere)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.filterwarnings("ignore", message=".*one at a time.*")
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@pytest.mark.parametrize("name", ["regression", "cvae"])
def test_models_that_do_not_vectorize_fall_back_with_a_warning(name):
    case = make_case(name)
    guide = case.amortized() if case.amortized else AutoNormal(case.model)
    with pytest.warns(UserWarning, match="one at a time"):
        a = elbo(case.model, guide, case.args, num_samples=5)
    with pytest.raises(Exception):  # noqa: B017 - the model's own error, whatever it is
        elbo(case.model, guide, case.args, num_samples=5, vectorize=True)
    b = elbo(case.model, guide, case.args, num_samples=5, vectorize=False)
    assert a.shape == b.shape
