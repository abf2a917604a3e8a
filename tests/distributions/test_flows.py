"""Registry tests: every flow kind, unconditional and conditional, as an NFlowsDistribution."""

import warnings

import pyro
import pytest
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform

from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import FLOW_KINDS, flow_layers

CONTEXT = 3
CASES = [(kind, ctx) for kind in FLOW_KINDS for ctx in (None, CONTEXT)]


def _ids(case):
    return f"{case[0]}-{'cond' if case[1] else 'uncond'}"


def make_flow(kind, d, context, seed=0, dtype=torch.float64, device="cpu"):
    torch.manual_seed(seed)
    layers = flow_layers(kind, d, num_layers=2, hidden_features=8, context_features=context)
    flow = Flow(CompositeTransform([layers, ElementwiseAffine(d, context)]), StandardNormal([d]))
    flow = flow.to(device=device, dtype=dtype)
    # move parameters away from the (near-)identity initialization so the tests see a real map
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


def _context(context, batch, device, dtype=torch.float64):
    return None if context is None else torch.randn(batch, context, device=device, dtype=dtype)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_shapes_and_cached_log_prob(case, device):
    kind, context = case
    d = 3
    flow = make_flow(kind, d, context, device=device)
    ctx = _context(context, 4, device)
    q = NFlowsDistribution(flow, ctx)
    batch = () if context is None else (4,)
    assert q.batch_shape == batch and q.event_shape == (d,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = q.rsample((5,))
        assert x.shape == (5, *batch, d)
        cached = q.log_prob(x)
        recomputed = q.log_prob(x.clone())  # the density direction (inversion)
    assert cached.shape == (5, *batch)
    torch.testing.assert_close(cached, recomputed, atol=1e-5, rtol=1e-5)
    # expand: i.i.d. copies over new leading batch dimensions
    e = q.expand((2, *batch))
    y = e.rsample((3,))
    assert y.shape == (3, 2, *batch, d) and e.log_prob(y.clone()).shape == (3, 2, *batch)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_log_det_matches_autograd_jacobian(case, device):
    kind, context = case
    for d in (1, 2, 5):
        if kind == "realnvp" and d == 1:
            continue
        flow = make_flow(kind, d, context, device=device)
        transform = flow._transform
        u = torch.randn(2, d, dtype=torch.float64, device=device)
        ctx = _context(context, 2, device)
        x, logdet = transform.inverse(u, context=ctx)  # sampling direction
        for i in range(2):
            c_i = None if ctx is None else ctx[i : i + 1]

            def sample_map(v, c_i=c_i, transform=transform):
                return transform.inverse(v.unsqueeze(0), context=c_i)[0].squeeze(0)

            jac = torch.autograd.functional.jacobian(sample_map, u[i])
            expected = torch.linalg.slogdet(jac).logabsdet
            torch.testing.assert_close(logdet[i], expected, atol=1e-6, rtol=1e-6)
        # the density of a sample: base log-density minus the sampling map's log|det|
        q = NFlowsDistribution(flow, ctx)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum(-1)
        torch.testing.assert_close(q.log_prob(x), base - logdet, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gradients_reach_every_parameter(case, device):
    kind, context = case
    flow = make_flow(kind, 3, context, dtype=torch.float32, device=device)
    ctx = _context(context, 6, device, torch.float32)
    if ctx is not None:
        ctx.requires_grad_(True)
    q = NFlowsDistribution(flow, ctx)
    x, log_q = q.sample_and_log_prob((4,))
    (x.pow(2).sum() + log_q.sum()).backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if ctx is not None:
        assert ctx.grad is not None and ctx.grad.abs().sum() > 0


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_state_dict_round_trip(case):
    kind, context = case
    a = make_flow(kind, 3, context, seed=1)
    b = make_flow(kind, 3, context, seed=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3, dtype=torch.float64)
    ctx = _context(context, 5, "cpu")
    torch.testing.assert_close(a.log_prob(x, context=ctx), b.log_prob(x, context=ctx))


def test_works_in_a_plate_with_vectorized_particles():
    flow = make_flow("iaf", 2, CONTEXT, dtype=torch.float32)
    ctx = torch.randn(5, CONTEXT)

    def model():
        with pyro.plate("data", 5):
            pyro.sample("z", pyro.distributions.Normal(0.0, 1.0).expand([2]).to_event(1))

    def guide():
        with pyro.plate("data", 5):
            pyro.sample("z", NFlowsDistribution(flow, ctx))

    tr = pyro.poutine.trace(pyro.plate("particles", 7, dim=-2)(guide)).get_trace()
    assert tr.nodes["z"]["value"].shape == (7, 5, 2)
    assert tr.nodes["z"]["fn"].log_prob(tr.nodes["z"]["value"]).shape == (7, 5)
    elbo = pyro.infer.Trace_ELBO(num_particles=7, vectorize_particles=True)
    loss = elbo.differentiable_loss(model, guide)
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_bad_arguments():
    flow = make_flow("maf", 3, None)
    with pytest.raises(TypeError, match="flow must be an nflows.flows.Flow"):
        NFlowsDistribution(torch.nn.Linear(3, 3))
    q = NFlowsDistribution(flow)
    with pytest.raises(ValueError, match=r"value must have shape \(\.\.\., 3\)"):
        q.log_prob(torch.zeros(4, 2, dtype=torch.float64))
    cond = make_flow("maf", 3, CONTEXT)
    with pytest.raises(ValueError, match=r"must end with the context's batch shape \(4,\)"):
        NFlowsDistribution(cond, torch.zeros(4, CONTEXT), batch_shape=(4, 5))
    with pytest.raises(ValueError, match="flow must be one of"):
        flow_layers("glow", 3)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        flow_layers("maf", 3, num_layers=0)


def test_from_transform():
    q = NFlowsDistribution.from_transform(flow_layers("realnvp", 4, 2, 8), features=4)
    assert q.sample((3,)).shape == (3, 4)


def test_context_broadcasts_inside_its_batch_dimensions(device):
    """A context of batch (2, 1) against values of batch (2, 3) (a plate expanding the inner
    dimension): each value row is scored with its own context row."""
    flow = make_flow("maf", 2, 3, device=device)
    ctx = _context(3, 2, device).unsqueeze(1)  # (2, 1, 3)
    value = torch.randn(2, 3, 2, device=device, dtype=torch.float64)
    got = NFlowsDistribution(flow, ctx, features=2).log_prob(value)
    assert got.shape == (2, 3)
    want = torch.stack([flow.log_prob(value[i], context=ctx[i].expand(3, 3)) for i in range(2)])
    torch.testing.assert_close(got, want)
