"""Tests of pyrovi.distributions.transforms: planar, radial and LU-linear nflows transforms."""

import math
import warnings

import pytest
import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms.base import CompositeTransform

from pyrovi.distributions.transforms import LULinear, PlanarTransform, RadialTransform

F64 = torch.float64
C = 3  # context features of the conditional transforms
DIMS = [1, 2, 5]
CASES = [
    ("planar", False),
    ("planar", True),
    ("radial", False),
    ("radial", True),
    ("lu", False),
]
CASE_IDS = [f"{kind}-{'cond' if cond else 'uncond'}" for kind, cond in CASES]


def make(kind, features, conditional, device, dtype=F64, randomize=True):
    """A transform on ``device``; ``randomize`` moves it well away from the identity."""
    context = C if conditional else None
    if kind == "planar":
        t = PlanarTransform(features, context)
    elif kind == "radial":
        t = RadialTransform(features, context)
    else:
        perm = torch.randperm(features) if randomize else None
        t = LULinear(features, identity_init=not randomize, permutation=perm)
    t = t.to(device=device, dtype=dtype)
    if randomize:
        with torch.no_grad():
            for name, p in t.named_parameters():
                p.normal_(0.0, 0.5 if name.endswith("weight") else 1.0)
    return t


def data(batch, features, conditional, device, dtype=F64, scale=1.5):
    x = scale * torch.randn(batch, features, device=device, dtype=dtype)
    ctx = torch.randn(batch, C, device=device, dtype=dtype) if conditional else None
    return x, ctx


def tol(kind, direction):
    # the planar density direction (nflows forward) is a Newton solve; everything else is closed
    # form (radial's inverse is a quadratic)
    return 1e-6 if kind == "planar" else 1e-8


def per_row_logabsdet(fn, x):
    """log|det ∂fn(x)_i/∂x_i| per row, from the full autograd Jacobian (rows are independent)."""
    jac = torch.autograd.functional.jacobian(fn, x)  # (B, D, B, D)
    rows = torch.arange(x.shape[0], device=x.device)
    return torch.linalg.slogdet(jac[rows, :, rows, :]).logabsdet


# --------------------------------------------------------------------------- shapes and inverses
@pytest.mark.parametrize("features", DIMS)
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_shapes_and_dtype(kind, conditional, features, device):
    torch.manual_seed(0)
    t = make(kind, features, conditional, device)
    x, ctx = data(7, features, conditional, device)
    for direction in (t.forward, t.inverse):
        out, logabsdet = direction(x, context=ctx)
        assert out.shape == (7, features) and logabsdet.shape == (7,)
        assert out.dtype == F64 and logabsdet.dtype == F64
        assert out.device.type == device.type
        assert torch.isfinite(out).all() and torch.isfinite(logabsdet).all()


@pytest.mark.parametrize("features", DIMS)
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_round_trips_and_opposite_logdets(kind, conditional, features, device):
    torch.manual_seed(1)
    t = make(kind, features, conditional, device)
    x, ctx = data(64, features, conditional, device, scale=3.0)
    atol = tol(kind, "forward")
    # density then sampling direction
    u, ld_fwd = t(x, context=ctx)
    x_back, ld_inv = t.inverse(u, context=ctx)
    torch.testing.assert_close(x_back, x, rtol=0, atol=atol)
    torch.testing.assert_close(ld_fwd, -ld_inv, rtol=0, atol=atol)
    # sampling then density direction
    y, ld_inv = t.inverse(x, context=ctx)
    x_again, ld_fwd = t(y, context=ctx)
    torch.testing.assert_close(x_again, x, rtol=0, atol=atol)
    torch.testing.assert_close(ld_fwd, -ld_inv, rtol=0, atol=atol)


@pytest.mark.parametrize("features", DIMS)
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_logabsdet_matches_autograd_jacobian(kind, conditional, features, device):
    torch.manual_seed(2)
    t = make(kind, features, conditional, device)
    x, ctx = data(5, features, conditional, device)
    for direction in (t.forward, t.inverse):
        _, logabsdet = direction(x, context=ctx)
        expected = per_row_logabsdet(lambda v, f=direction: f(v, context=ctx)[0], x)
        torch.testing.assert_close(logabsdet, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_near_identity_initialization(kind, conditional, device):
    torch.manual_seed(3)
    t = make(kind, 4, conditional, device, randomize=False)
    x, ctx = data(16, 4, conditional, device)
    y, logabsdet = t.inverse(x, context=ctx)
    assert (y - x).abs().max() < 0.2 and logabsdet.abs().max() < 0.2
    if kind != "lu":  # LULinear starts exactly at the identity
        assert (y - x).abs().max() > 0


def test_lu_linear_matches_its_weight_matrix(device):
    torch.manual_seed(4)
    t = make("lu", 5, False, device)
    x, _ = data(6, 5, False, device)
    y, logabsdet = t(x)
    weight = t.weight()
    torch.testing.assert_close(y, x @ weight.T + t.bias)
    torch.testing.assert_close(logabsdet, torch.linalg.slogdet(weight).logabsdet.expand(6))
    lower, upper = t.lower_upper()
    assert torch.equal(lower.diagonal(), torch.ones(5, device=device, dtype=F64))
    assert (upper.diagonal() > 0).all() and torch.equal(lower, lower.tril())
    assert torch.equal(upper, upper.triu())
    identity = LULinear(5).to(device)
    assert torch.allclose(identity.weight(), torch.eye(5, device=device))


# ------------------------------------------------------------------ invertibility constraint
@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("factor", [-10.0, -1.0, 50.0])
@pytest.mark.parametrize("features", DIMS)
def test_planar_constraint_with_extreme_raw_parameters(features, factor, conditional, device):
    torch.manual_seed(5)
    t = make("planar", features, conditional, device)
    with torch.no_grad():  # u = factor * w (for every context)
        if conditional:
            d = features
            t.hypernet.weight[:d] = factor * t.hypernet.weight[d : 2 * d]
            t.hypernet.bias[:d] = factor * t.hypernet.bias[d : 2 * d]
        else:
            t.u.copy_(factor * t.w)
    x, ctx = data(200, features, conditional, device, scale=3.0)
    u_hat, w, _ = t.constrained_params(ctx)
    w_u_hat = (u_hat * w).sum(-1)
    # wᵀû = -1 + softplus(wᵀu): for wᵀu << 0 this is -1 up to rounding of the dot product
    assert (w_u_hat >= -1 - 1e-12).all()
    if factor == -1.0:
        assert (w_u_hat > -1).all()
    y, ld_inv = t.inverse(x, context=ctx)
    x_back, ld_fwd = t(y, context=ctx)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-6)
    assert torch.isfinite(ld_fwd).all()
    torch.testing.assert_close(ld_fwd, -ld_inv, rtol=0, atol=1e-5)


def test_planar_constraint_float32(device):
    torch.manual_seed(6)
    t = make("planar", 3, False, device, dtype=torch.float32)
    with torch.no_grad():
        t.u.copy_(-3.0 * t.w / t.w.square().sum())  # wᵀu = -3
    u_hat, w, _ = t.constrained_params()
    assert (u_hat * w).sum() >= -1
    x, _ = data(200, 3, False, device, dtype=torch.float32, scale=3.0)
    y, _ = t.inverse(x)
    x_back, ld = t(y)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-4)
    assert torch.isfinite(ld).all()


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize(("alpha_hat", "beta_hat"), [(0.0, -30.0), (5.0, -30.0), (-5.0, 10.0)])
@pytest.mark.parametrize("features", DIMS)
def test_radial_constraint_with_extreme_raw_parameters(
    features, alpha_hat, beta_hat, conditional, device
):
    torch.manual_seed(7)
    t = make("radial", features, conditional, device)
    with torch.no_grad():
        if conditional:
            t.hypernet.weight[features:].zero_()
            t.hypernet.bias[features:] = torch.tensor([alpha_hat, beta_hat])
        else:
            t.alpha_hat.fill_(alpha_hat)
            t.beta_hat.fill_(beta_hat)
    x, ctx = data(200, features, conditional, device, scale=3.0)
    _, alpha, beta = t.constrained_params(ctx)
    assert (alpha > 0).all() and (beta >= -alpha).all()
    y, ld_inv = t.inverse(x, context=ctx)
    x_back, ld_fwd = t(y, context=ctx)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-8)
    assert torch.isfinite(ld_fwd).all()
    torch.testing.assert_close(ld_fwd, -ld_inv, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("features", DIMS)
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_gradients_reach_every_parameter(kind, conditional, features, device):
    torch.manual_seed(8)
    t = make(kind, features, conditional, device)
    for name in ("forward", "inverse"):
        t.zero_grad(set_to_none=True)
        x, ctx = data(8, features, conditional, device)
        x.requires_grad_(True)
        if ctx is not None:
            ctx.requires_grad_(True)
        out, logabsdet = getattr(t, name)(x, context=ctx)
        (out.square().sum() + logabsdet.sum()).backward()
        for pname, p in t.named_parameters():
            assert p.grad is not None, f"{name}: no gradient for {pname}"
            assert p.numel() == 0 or p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"
        assert x.grad is not None and x.grad.abs().sum() > 0
        if ctx is not None:
            assert ctx.grad is not None and ctx.grad.abs().sum() > 0


@pytest.mark.parametrize("features", [1, 3])
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_density_direction_gradients_match_finite_differences(kind, conditional, features, device):
    # for planar this checks the implicit-function gradient of the numerical inverse
    torch.manual_seed(9)
    t = make(kind, features, conditional, device)
    names = [n for n, _ in t.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in t.parameters()]
    x, ctx = data(3, features, conditional, device)
    inputs = [x.requires_grad_(True)]
    if ctx is not None:
        inputs.append(ctx.requires_grad_(True))

    def fn(x, *rest):
        ctx = rest[0] if conditional else None
        ps = rest[1:] if conditional else rest
        return torch.func.functional_call(t, dict(zip(names, ps, strict=True)), (x, ctx))

    assert torch.autograd.gradcheck(fn, (*inputs, *params), atol=1e-6, rtol=1e-4)


# --------------------------------------------------------------------------- state, flows
@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_state_dict_round_trip(kind, conditional, device):
    torch.manual_seed(10)
    t = make(kind, 4, conditional, device)
    fresh = make(kind, 4, conditional, device, randomize=False)
    fresh.load_state_dict(t.state_dict())
    x, ctx = data(6, 4, conditional, device)
    for name in ("forward", "inverse"):
        for a, b in zip(getattr(t, name)(x, ctx), getattr(fresh, name)(x, ctx), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def _flow(features, context, device, dtype):
    layers = [
        PlanarTransform(features, context),
        LULinear(features, identity_init=False, permutation=torch.randperm(features)),
        RadialTransform(features, context),
        PlanarTransform(features, context),
    ]
    return Flow(CompositeTransform(layers), StandardNormal([features])).to(device, dtype)


@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
@pytest.mark.parametrize("features", DIMS)
def test_nflows_flow_samples_and_log_prob_without_warnings(features, conditional, device):
    torch.manual_seed(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow = _flow(features, C if conditional else None, device, torch.float32)
        ctx = torch.randn(4, C, device=device) if conditional else None
        samples, log_prob = flow.sample_and_log_prob(5, context=ctx)
        expected_shape = (4, 5) if conditional else (5,)
        assert samples.shape == (*expected_shape, features)
        assert log_prob.shape == expected_shape
        x = samples.reshape(-1, features)
        ctx_rows = ctx.repeat_interleave(5, dim=0) if conditional else None
        lp = flow.log_prob(x, context=ctx_rows)
        torch.testing.assert_close(lp, log_prob.reshape(-1), rtol=1e-4, atol=1e-4)
        (-lp.mean()).backward()
        assert all(p.grad is not None for p in flow.parameters())


def test_flow_density_integrates_to_one(device):
    torch.manual_seed(12)
    flow = _flow(1, None, device, F64)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, 1.0)
        grid = torch.linspace(-30.0, 30.0, 20001, device=device, dtype=F64)
        density = flow.log_prob(grid[:, None]).exp()
        mass = torch.trapezoid(density, grid)
    assert math.isclose(mass.item(), 1.0, abs_tol=1e-5)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [PlanarTransform, RadialTransform, LULinear])
@pytest.mark.parametrize("bad", [0, -2, 2.5, True])
def test_bad_features_raise(cls, bad):
    with pytest.raises(ValueError, match="features must be a positive integer"):
        cls(bad)


@pytest.mark.parametrize("cls", [PlanarTransform, RadialTransform])
def test_bad_context_features_raise(cls):
    with pytest.raises(ValueError, match="context_features must be a positive integer"):
        cls(2, context_features=0)


@pytest.mark.parametrize(("kind", "conditional"), CASES, ids=CASE_IDS)
def test_bad_inputs_raise(kind, conditional, device):
    t = make(kind, 2, conditional, device)
    ctx = torch.randn(4, C, device=device, dtype=F64) if conditional else None
    for name in ("forward", "inverse"):
        direction = getattr(t, name)
        with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 2\), got \(4, 3\)"):
            direction(torch.randn(4, 3, device=device, dtype=F64), ctx)
        with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 2\), got \(2,\)"):
            direction(torch.randn(2, device=device, dtype=F64), ctx)
        with pytest.raises(TypeError, match="inputs must be a floating-point tensor"):
            direction(torch.zeros(4, 2, dtype=torch.long, device=device), ctx)


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_bad_context_raises(kind, device):
    t = make(kind, 2, True, device)
    x = torch.randn(4, 2, device=device, dtype=F64)
    cls_name = type(t).__name__
    for name in ("forward", "inverse"):
        direction = getattr(t, name)
        with pytest.raises(
            ValueError, match=rf"{cls_name} was built with context_features=3 .*context=None"
        ):
            direction(x)
        with pytest.raises(ValueError, match=r"context must have shape \(4, 3\).*got \(5, 3\)"):
            direction(x, torch.randn(5, C, device=device, dtype=F64))
        with pytest.raises(ValueError, match=r"context must have shape \(4, 3\).*got \(4, 2\)"):
            direction(x, torch.randn(4, 2, device=device, dtype=F64))
        with pytest.raises(ValueError, match=r"context must have shape \(4, 3\).*got \(4,\)"):
            direction(x, torch.randn(4, device=device, dtype=F64))
    with pytest.raises(ValueError, match=r"context must have shape \(batch, 3\)"):
        t.constrained_params(torch.randn(4, 2, device=device, dtype=F64))


@pytest.mark.parametrize("kind", ["planar", "radial", "lu"])
def test_unconditional_transforms_ignore_a_context(kind, device):
    t = make(kind, 2, False, device)
    x = torch.randn(4, 2, device=device, dtype=F64)
    ctx = torch.randn(4, 7, device=device, dtype=F64)
    for name in ("forward", "inverse"):
        with_ctx = getattr(t, name)(x, ctx)
        without = getattr(t, name)(x)
        for a, b in zip(with_ctx, without, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [[0, 0, 1], [0, 1], [0, 1, 3], [0.0, 1.0, 2.0]])
def test_lu_linear_bad_permutation_raises(bad):
    with pytest.raises(ValueError, match=r"permutation must be a permutation of range\(3\)"):
        LULinear(3, permutation=bad)


def test_lu_linear_bad_eps_raises():
    with pytest.raises(ValueError, match="eps must be positive"):
        LULinear(3, eps=0.0)
