"""StochasticStep_ELBO: one random chain step per datapoint, unbiased for the full-chain ELBO."""

from __future__ import annotations

import math
import warnings
from statistics import NormalDist

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine.messenger import Messenger

from pyrovi.guides import BackwardChain
from pyrovi.infer import FastTrace_ELBO, StochasticStep_ELBO, chain_steps, fit
from pyrovi.models import DDPM, MarkovChainVAE

X = [[1.0, -0.5], [0.3, 0.8], [-1.2, 0.1]]


def small_ddpm(device, T=4, variance="learned", seed=0):
    """A float64 DDPM with an affine ε-network away from its initialization (every parameter
    has a gradient)."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(seed)
    model = DDPM(2, T, "cosine", network="affine", variance=variance).to(device)
    with torch.no_grad():
        model.network.weight.normal_(0, 0.2)
        model.network.bias.normal_(0, 0.2)
        if variance == "learned":
            model.log_var.add_(0.3 * torch.randn(T, device=device))
    return model


def mixture(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-1.5, 0.0], [1.5, 0.5]])
    x = centers[torch.randint(0, 2, (n,), generator=g)] + 0.3 * torch.randn(n, 2, generator=g)
    return x.to(device=device, dtype=torch.get_default_dtype())


def z_limit(num_coordinates, false_alarm=1e-4):
    """|z| bound that all of ``num_coordinates`` independent standard normals stay below with
    probability 1 - false_alarm (Bonferroni)."""
    return NormalDist().inv_cdf(1 - false_alarm / (2 * num_coordinates))


class Unweighted(Messenger):
    """Divides the scale of the one-step sites by T: the stochastic-step estimator without its
    ×T weight (biased; the tests must tell it apart)."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in ("z_prev", "x"):
            msg["scale"] = msg["scale"] / self.T


def flat_grad(loss, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


# ----------------------------------------------------------------------------- chain_steps


def test_chain_steps_outside_the_loss_is_none(device):
    assert chain_steps((3,), 10, device) is None
    assert chain_steps(torch.Size([2, 3]), 1) is None


def toy_pair(num_steps, seen):
    """A model and guide that only ask for steps (and sample one latent per datapoint)."""

    def model(x):
        with pyro.plate("data", len(x)):
            seen.append(("model", chain_steps((len(x),), num_steps, x.device)))
            pyro.sample("z", dist.Normal(torch.zeros_like(x[:, 0]), 1.0))

    def guide(x):
        with pyro.plate("data", len(x)):
            seen.append(("guide", chain_steps(x.shape[:1], num_steps, x.device)))
            pyro.sample("z", dist.Normal(x[:, 0], 1.0))

    return model, guide


@pytest.mark.parametrize("validation", [False, True])
def test_chain_steps_are_drawn_once_per_particle_and_shared(validation, device):
    seen = []
    model, guide = toy_pair(7, seen)
    x = torch.randn(50, 2, device=device)
    with pyro.validation_enabled(validation):
        StochasticStep_ELBO(num_particles=3).loss(model, guide, x)
    assert [role for role, _ in seen] == ["guide", "model"] * 3  # the guide runs first
    for k in range(3):
        t_guide, t_model = seen[2 * k][1], seen[2 * k + 1][1]
        assert t_model is t_guide  # the very same tensor
        assert t_guide.shape == (50,) and t_guide.dtype == torch.int64
        assert t_guide.device.type == device.type
        assert 1 <= int(t_guide.min()) and int(t_guide.max()) <= 7
    assert not torch.equal(seen[0][1], seen[2][1])  # sequential particles: their own steps
    # torch's global generator: reseeding reproduces the steps
    again = []
    model, guide = toy_pair(7, again)
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(validation):
        StochasticStep_ELBO().loss(model, guide, x)
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(validation):
        StochasticStep_ELBO().loss(model, guide, x)
    assert torch.equal(again[0][1], again[2][1])


def test_chain_steps_are_uniform():
    seen = []
    model, guide = toy_pair(5, seen)
    with pyro.validation_enabled(False):
        StochasticStep_ELBO().loss(model, guide, torch.zeros(50_000, 1))
    counts = torch.bincount(seen[0][1], minlength=6)
    assert counts[0] == 0
    # each of 5 counts ~ Binomial(50000, 1/5): sd ≈ 89
    assert (counts[1:] - 10_000).abs().max() < 450, counts


def test_chain_steps_argument_errors():
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 0"):
        chain_steps((3,), 0)
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got True"):
        chain_steps((3,), True)
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 2.0"):
        chain_steps((3,), 2.0)
    for bad in (5, (-1,), (2.0,), "3", (True,)):
        with pytest.raises(ValueError, match="batch_shape must be a torch.Size or a tuple of non"):
            chain_steps(bad, 4)


# ----------------------------------------------------------------------------- DDPM


def test_ddpm_default_behaviour_unchanged(device):
    """Outside the loss the model and guide run the whole chain: sites z_T..z_1 and x."""
    model = small_ddpm(device, T=4)
    x = torch.tensor(X, device=device)
    guide_trace = pyro.poutine.trace(model.guide).get_trace(x)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(model, guide_trace)).get_trace(x)
    names = ["z_4", "z_3", "z_2", "z_1"]
    assert [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"] == ["data", *names]
    assert [n for n, s in model_trace.nodes.items() if s["type"] == "sample"] == [
        "data",
        *names,
        "x",
    ]
    assert all(guide_trace.nodes[n]["value"].shape == (3, 2) for n in names)


@pytest.mark.parametrize("validation", [False, True])
def test_ddpm_one_step_sites(validation, device):
    """Under the loss: z_T, z_t, z_prev (masked to t ≥ 2) and x (t = 1), the last two × T; the
    fast path and Pyro's Trace_ELBO (under validation) evaluate the same single step."""
    model = small_ddpm(device, T=4)
    x = torch.tensor(X * 20, device=device)
    traces = []

    class Record(Messenger):
        def _postprocess_message(self, msg):
            if msg["type"] == "sample" and msg["name"] != "data":
                traces.append(msg)

    with pyro.validation_enabled(validation), warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Pyro's "Found vars in model but not guide"
        pyro.set_rng_seed(3)
        with Record():
            value = StochasticStep_ELBO().loss(model, model.guide, x)
    guide_sites = {m["name"]: m for m in traces[:3]}
    model_sites = {m["name"]: m for m in traces[3:]}
    assert list(guide_sites) == ["z_4", "z_t", "z_prev"]
    assert list(model_sites) == ["z_4", "z_t", "z_prev", "x"]
    mask_prev, mask_x = model_sites["z_prev"]["mask"], model_sites["x"]["mask"]
    assert torch.equal(mask_prev, ~mask_x) and torch.equal(guide_sites["z_prev"]["mask"], mask_prev)
    assert 0 < int(mask_x.sum()) < len(x)  # both kinds of rows at 60 datapoints, T = 4
    for name in ("z_prev", "x"):
        assert model_sites[name]["scale"] == 4.0
    assert model_sites["z_4"]["scale"] == 1.0 and model_sites["z_t"]["scale"] == 1.0
    torch.testing.assert_close(model_sites["z_t"]["value"], guide_sites["z_t"]["value"])
    # the same draws on the fast path give the same loss
    pyro.set_rng_seed(3)
    with pyro.validation_enabled(not validation):
        other = StochasticStep_ELBO().loss(model, model.guide, x)
    assert math.isclose(value, other, rel_tol=1e-10)


@pytest.mark.parametrize("T, variance", [(4, "learned"), (1, "learned"), (5, "beta")])
def test_ddpm_loss_is_unbiased_for_the_full_chain(T, variance, device):
    """Mean of the one-step loss = −ELBO (``nll_bound`` summed: every step, closed-form KLs)."""
    model = small_ddpm(device, T=T, variance=variance)
    x = torch.tensor(X, device=device)
    loss = StochasticStep_ELBO()
    n = 2000
    with torch.no_grad(), pyro.validation_enabled(False):
        draws = torch.tensor([loss.loss(model, model.guide, x) for _ in range(n)])
        bound = torch.stack([model.nll_bound(x, 500).sum() for _ in range(20)]).cpu()
    se = math.sqrt(draws.var() / n + bound.var() / len(bound))
    z = (draws.mean() - bound.mean()) / se
    assert abs(float(z)) < 4, (float(draws.mean()), float(bound.mean()), se)
    # and against the full-chain Trace_ELBO estimator itself
    with torch.no_grad(), pyro.validation_enabled(False):
        full = torch.tensor([FastTrace_ELBO().loss(model, model.guide, x) for _ in range(500)])
    se = math.sqrt(draws.var() / n + full.var() / len(full))
    assert abs(float((draws.mean() - full.mean()) / se)) < 4


def test_ddpm_gradient_is_unbiased_for_the_full_chain(device):
    """Mean gradient of the one-step loss = gradient of the full-chain −ELBO, per coordinate
    within a Bonferroni bound on z-scores; dropping the ×T weight is detected."""
    model = small_ddpm(device, T=4)
    x = torch.tensor(X, device=device)
    params = list(model.parameters())
    loss = StochasticStep_ELBO()
    n = 3000
    with pyro.validation_enabled(False):
        step = torch.stack(
            [flat_grad(loss.differentiable_loss(model, model.guide, x), params) for _ in range(n)]
        )
        with Unweighted(model.T):
            wrong = torch.stack(
                [
                    flat_grad(loss.differentiable_loss(model, model.guide, x), params)
                    for _ in range(n // 3)
                ]
            )
    # the full chain: nll_bound is −ELBO with every step's KL in closed form (same gradient in
    # expectation as Trace_ELBO on the whole chain); 40 independent batches give its SE
    full = torch.stack([flat_grad(model.nll_bound(x, 500).sum(), params) for _ in range(40)])
    num_coordinates = full.shape[1]
    assert num_coordinates == 20 and (full.mean(0).abs() > 1e-3).all()
    limit = z_limit(num_coordinates)

    def z_scores(draws):
        se = (draws.var(0) / len(draws) + full.var(0) / len(full)).sqrt()
        return (draws.mean(0) - full.mean(0)) / se

    assert z_scores(step).abs().max() < limit, z_scores(step)
    assert z_scores(wrong).abs().max() > 3 * limit, z_scores(wrong)


# ----------------------------------------------------------------------------- fit


def _fit(device, loss, seed=0, epochs=25):
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(seed)
    model = DDPM(2, 10, "cosine", hidden=32).to(device)
    x = mixture(256, device)
    with torch.no_grad():
        before = float(model.nll_bound(x, 16).mean())
    result = fit(
        model, model.guide, x, loss=loss, epochs=epochs, batch_size=64, lr=3e-3, seed=0,
        progress=False,
    )  # fmt: skip
    with torch.no_grad():
        after = float(model.nll_bound(x, 16).mean())
    return model, result, before, after


def test_fit_with_stochastic_steps_trains_and_is_reproducible(device):
    model, result, before, after = _fit(device, StochasticStep_ELBO())
    elbo = result.history["train_elbo"]
    assert result.steps == 25 * 4 and all(math.isfinite(v) for v in elbo)
    assert sum(elbo[-5:]) / 5 > sum(elbo[:5]) / 5 + 1.0
    assert after < before - 1.0, (before, after)  # the full-chain bound, in nats per datapoint
    again, result2, _, _ = _fit(device, StochasticStep_ELBO())
    assert result2.history["train_elbo"] == elbo
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)


def test_fit_with_vectorized_particles(device):
    loss = StochasticStep_ELBO(num_particles=2, vectorize_particles=True)
    _, result, before, after = _fit(device, loss, epochs=15)
    assert all(math.isfinite(v) for v in result.history["train_elbo"])
    assert after < before - 1.0, (before, after)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("validation", [False, True])
def test_models_without_stochastic_steps_are_refused(validation, device):
    model = MarkovChainVAE(3, 2, hidden=8).to(device)
    guide = BackwardChain(3, 2, hidden=8).to(device)
    x = torch.randn(8, 2, device=device)
    with pyro.validation_enabled(validation):
        with pytest.raises(
            ValueError,
            match=r"StochasticStep_ELBO: neither the model nor the guide asked for chain steps "
            r"\(pyrovi.infer.chain_steps\), so they do not support stochastic steps",
        ):
            StochasticStep_ELBO().loss(model, guide, x)
    with pytest.raises(ValueError, match="neither the model nor the guide asked for chain steps"):
        fit(model, guide, x, loss=StochasticStep_ELBO(), epochs=1, progress=False)


def test_model_and_guide_must_both_ask(device):
    ddpm = DDPM(2, 5, hidden=8).to(device)
    x = torch.randn(8, 2, device=device)

    def full_chain_guide(x):  # asks for nothing
        with pyro.plate("data", len(x)):
            pyro.sample("z_5", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))

    with pyro.validation_enabled(False):
        with pytest.raises(ValueError, match="the model asked for chain steps .* but the guide"):
            StochasticStep_ELBO().loss(ddpm, full_chain_guide, x)
        with pytest.raises(ValueError, match="the guide asked for chain steps .* but the model"):
            StochasticStep_ELBO().loss(lambda x: None, ddpm.guide, x)


def test_constructor_arguments():
    with pytest.raises(ValueError, match="num_particles must be a positive integer"):
        StochasticStep_ELBO(num_particles=0)
    loss = StochasticStep_ELBO(num_particles=3, vectorize_particles=True, retain_graph=True)
    assert loss.num_particles == 3 and loss.retain_graph
    assert isinstance(loss, FastTrace_ELBO)


def test_one_step_distribution_matches_normal():
    from pyrovi.models.ddpm import _RowNormal

    torch.set_default_dtype(torch.float64)
    loc, scale = torch.randn(5, 3), torch.rand(5, 1) + 0.1
    d, ref = _RowNormal(loc, scale), dist.Normal(loc, scale.expand(5, 3)).to_event(1)
    value = torch.randn(4, 5, 3)
    assert d.batch_shape == (5,) and d.event_shape == (3,)
    torch.testing.assert_close(d.log_prob(value), ref.log_prob(value))
    wide = d.expand((4, 5))
    assert wide.batch_shape == (4, 5) and d.expand((5,)) is d
    torch.testing.assert_close(wide.log_prob(value), ref.expand((4, 5)).log_prob(value))
    assert d.rsample((2,)).shape == (2, 5, 3) and d.sample().shape == (5, 3)
    torch.testing.assert_close(d.mean, loc)
    torch.testing.assert_close(d.variance, scale.square().expand(5, 3))
