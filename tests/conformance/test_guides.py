"""Guides on every model of the corpus: Pyro's autoguides and pyrovi's ``FlowGuide`` trained by
``fit``, their posterior summaries (shapes as Pyro's ``AutoMultivariateNormal`` gives them), and
``Predictive`` with each."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, TraceEnum_ELBO
from pyro.infer.autoguide import (
    AutoDelta,
    AutoIAFNormal,
    AutoMultivariateNormal,
    AutoNormal,
)

from pyrovi.guides import FlowGuide
from pyrovi.infer import fit
from tests.conformance.models import CASES, make_case

AUTOGUIDES = {
    "AutoNormal": AutoNormal,
    "AutoMultivariateNormal": AutoMultivariateNormal,
    "AutoIAFNormal": lambda m: AutoIAFNormal(m, num_transforms=1),
    "AutoDelta": AutoDelta,
    "FlowGuide": lambda m: FlowGuide(m, flow="iaf", num_layers=1, hidden_features=8),
}


def _exposed(case):
    return poutine.block(case.model, expose=list(case.latents)) if case.enumerated else case.model


def _train(case, guide, epochs=30):
    loss = TraceEnum_ELBO(max_plate_nesting=1) if case.enumerated else None
    n = len(case.args[0])
    return fit(
        case.model, guide, case.args, epochs=epochs, batch_size=n, lr=0.02, loss=loss,
        progress=False, seed=0,
    )  # fmt: skip


UNSIZED_PLATE = {"cvae"}  # Pyro's autoguides need sized plates


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("kind", list(AUTOGUIDES))
def test_autoguides_train_with_fit_and_predict(name, kind):
    if kind == "AutoIAFNormal":  # Pyro's AutoIAFNormal builds its networks in the default dtype
        torch.set_default_dtype(torch.float64)
    case = make_case(name)
    guide = AUTOGUIDES[kind](_exposed(case))
    if name in UNSIZED_PLATE:
        with pytest.raises(ValueError, match=r"cannot create pyro.plate\('data'\) for site 'z'"):
            _train(case, guide)
        return
    result = _train(case, guide)
    assert all(torch.isfinite(torch.tensor(result.history["train_elbo"])))
    predictive = Predictive(case.model, guide=guide, num_samples=5)
    with torch.no_grad():
        draws = predictive(*case.args)
    trace = poutine.trace(case.model).get_trace(*case.args)
    for site in case.latents:  # Pyro's Predictive may keep singleton plate dimensions
        value = trace.nodes[site]["value"]
        assert draws[site].shape[0] == 5 and draws[site][0].numel() == value.numel(), site


def _shapes(d):
    return {k: tuple(v.shape) for k, v in d.items()}


@pytest.mark.parametrize("name", [c for c in CASES if c not in ("gmm", *UNSIZED_PLATE)])
def test_flow_guide_summaries_have_the_shapes_of_auto_multivariate_normal(name):
    case = make_case(name)
    flow = FlowGuide(case.model, flow="iaf", num_layers=1, hidden_features=8)
    _train(case, flow, epochs=2)
    pyro.clear_param_store()
    case = make_case(name)
    mvn = AutoMultivariateNormal(case.model)
    _train(case, mvn, epochs=2)
    with torch.no_grad():
        assert _shapes(flow.median()) == _shapes(mvn.median())
        assert _shapes(flow.quantiles([0.1, 0.5, 0.9])) == _shapes(mvn.quantiles([0.1, 0.5, 0.9]))
        trace = poutine.trace(case.model).get_trace(*case.args)
        samples = flow.sample_posterior(6)
        for site in case.latents:
            assert samples[site].shape == (6, *trace.nodes[site]["value"].shape), site


@pytest.mark.parametrize("name", ["conjugate", "nested", "conjugate_masked"])
def test_flow_guide_finds_the_exact_posterior(name):
    case = make_case(name)
    guide = FlowGuide(case.model, flow="iaf", num_layers=2, hidden_features=16)
    fit(
        case.model,
        guide,
        case.args,
        epochs=800,
        batch_size=len(case.args[0]),
        lr=0.01,
        num_particles=8,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 300, 0.2),
        progress=False,
        seed=0,
    )
    for site, (mean, sd) in case.posterior.items():
        with torch.no_grad():
            q = guide.quantiles([0.1587, 0.5, 0.8413])[site]
        torch.testing.assert_close(q[1].to(mean), mean, atol=0.1 * float(sd.max()), rtol=0)
        torch.testing.assert_close(((q[2] - q[0]) / 2).to(sd), sd, rtol=0.15, atol=0)
