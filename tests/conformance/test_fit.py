"""``fit`` on every model of the corpus: the same parameters as Pyro's own ``SVI`` step for step,
and posteriors that match the closed form where there is one."""

import math
from contextlib import nullcontext

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal

from pyrovi.infer import fit
from tests.conformance.models import CASES, make_case

GLOBAL = [c for c in CASES if c not in ("vae", "cvae")]


def _guide_and_loss(case, guide_class=AutoNormal):
    if case.enumerated:
        return guide_class(poutine.block(case.model, expose=list(case.latents))), TraceEnum_ELBO(
            max_plate_nesting=1
        )
    return guide_class(case.model), None


def _store_values():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


@pytest.mark.parametrize("name", GLOBAL)
def test_fit_takes_the_same_steps_as_pyro_svi(name):
    """Full-batch fit equals stock SVI (Trace_ELBO, Adam) on the same random draws."""
    steps, lr = 25, 0.05
    case = make_case(name)
    guide, loss = _guide_and_loss(case)
    data = case.args
    fit(
        case.model,
        guide,
        data,
        epochs=steps,
        batch_size=len(data[0]),
        lr=lr,
        loss=loss,
        progress=False,
        seed=1,
    )
    ours = _store_values()

    pyro.clear_param_store()
    case = make_case(name)
    guide, loss = _guide_and_loss(case)
    loss = loss or Trace_ELBO()
    pyro.set_rng_seed(1)
    with torch.no_grad():  # fit's first, checked pass draws once before training
        loss.loss(case.model, guide, *data)
    svi = SVI(case.model, guide, pyro.optim.Adam({"lr": lr}), loss)
    for _ in range(steps):
        svi.step(*data)
    stock = _store_values()
    assert set(ours) == set(stock)
    for key in stock:
        torch.testing.assert_close(ours[key], stock[key], rtol=1e-7, atol=1e-9, msg=key)


@pytest.mark.parametrize(
    "name", ["conjugate", "conjugate_no_plate", "conjugate_unsized", "conjugate_masked", "nested"]
)
@pytest.mark.parametrize("guide_class", [AutoNormal, AutoMultivariateNormal])
def test_fit_finds_the_exact_posterior(name, guide_class):
    case = make_case(name)
    guide, _ = _guide_and_loss(case, guide_class)
    # observations as one vector do not broadcast over a particle plate: one at a time
    falls_back = name == "conjugate_no_plate"
    with pytest.warns(UserWarning, match="one at a time") if falls_back else nullcontext():
        _fit_exact(case, guide)
    for site, (mean, sd) in case.posterior.items():
        quantiles = guide.quantiles([0.1587, 0.5, 0.8413])[site]
        torch.testing.assert_close(
            quantiles[1], mean, atol=0.1 * sd.max(), rtol=0
        )  # SVI noise at the final lr
        fitted_sd = (quantiles[2] - quantiles[0]) / 2
        torch.testing.assert_close(fitted_sd, sd, rtol=0.1, atol=0)


def test_fit_with_minibatches_of_a_self_subsampling_plate_finds_the_posterior():
    case = make_case("conjugate_subsampled")
    guide = AutoNormal(case.model)
    result = fit(
        case.model,
        guide,
        case.args,
        epochs=300,
        batch_size=10,
        lr=0.02,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 100, 0.2),
        progress=False,
        seed=0,
    )
    (mean, sd) = case.posterior["mu"]
    q = guide.quantiles([0.1587, 0.5, 0.8413])["mu"]
    assert float(q[1]) == pytest.approx(float(mean), abs=0.1 * float(sd))
    assert float((q[2] - q[0]) / 2) == pytest.approx(float(sd), rel=0.15)
    # the reported ELBO is per datapoint of the full data (the exact evidence bounds it)
    exact = float(case.log_evidence) / case.args[0].shape[0]
    assert exact - 0.1 < result.history["train_elbo"][-1] < exact + 0.1


def test_regression_tutorial_recovers_the_coefficients():
    case = make_case("regression")
    x, y = case.args
    guide = AutoMultivariateNormal(case.model)
    fit(case.model, guide, (x, y), epochs=600, batch_size=50, lr=0.05, progress=False, seed=0)
    median = guide.median()
    least_squares = torch.linalg.lstsq(torch.cat([x, torch.ones(50, 1, dtype=x.dtype)], 1), y)
    coef = least_squares.solution
    torch.testing.assert_close(median["linear.weight"][0], coef[:3], atol=0.05, rtol=0)
    torch.testing.assert_close(median["linear.bias"], coef[3:], atol=0.05, rtol=0)
    assert 0.2 < float(median["sigma"]) < 0.4  # simulated with 0.3


@pytest.mark.parametrize("name", ["vae", "cvae"])
def test_fit_trains_pyro_example_vaes_towards_the_exact_evidence(name):
    case = make_case(name)
    guide = case.amortized()
    decoder = case.model.__self__.decoder_net  # the exact evidence is the fixed decoder's
    decoder.requires_grad_(False).eval()
    exact = float(case.log_evidence.mean())
    result = fit(
        case.model, guide, case.args, epochs=150, batch_size=5, lr=0.02, progress=False, seed=0
    )
    first, last = result.history["train_elbo"][0], result.history["train_elbo"][-1]
    assert first < last
    # a diagonal Gaussian encoder cannot reach a correlated posterior: a small, positive gap
    assert exact - 1.0 < last < exact + 0.1


def test_fit_trains_an_enumerated_mixture():
    case = make_case("gmm")
    guide = AutoDelta(
        poutine.block(case.model, expose=["locs"]),
        init_loc_fn=lambda site: torch.tensor([-1.0, 1.0], dtype=torch.float64),
    )
    fit(
        case.model,
        guide,
        case.args,
        epochs=300,
        batch_size=20,
        lr=0.05,
        loss=TraceEnum_ELBO(max_plate_nesting=1),
        progress=False,
        seed=0,
    )
    x = case.args[0]
    locs = guide.median()["locs"]
    truth = torch.stack([x[:6].mean(), x[6:].mean()])
    torch.testing.assert_close(locs, truth, atol=0.3, rtol=0)
    assert math.isfinite(float(locs.sum()))


def test_minibatched_autoguide_with_local_latents_in_a_plain_plate_is_refused():
    case = make_case("vae")
    guide = AutoNormal(case.model)
    with pytest.raises(ValueError, match=r"AutoNormal has per-datapoint parameters for site 'z'"):
        fit(case.model, guide, case.args, epochs=1, batch_size=5, progress=False)


def _fit_exact(case, guide):
    fit(
        case.model,
        guide,
        case.args,
        epochs=600,
        batch_size=len(case.args[0]),
        lr=0.05,
        num_particles=4,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 200, 0.2),
        progress=False,
        seed=0,
    )
