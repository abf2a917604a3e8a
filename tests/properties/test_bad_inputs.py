"""Property-based checks (hypothesis): generated bad inputs to the public entry points get a
``ValueError``/``TypeError`` (or one of pyrovi's own error types) whose message names the
argument, never a bare torch/Pyro error and never a silent result.

Examples are derandomized (the same ones every run) and few per property, so the module runs in
seconds; ``benchmarks/bad_inputs.py`` is the wider census.
"""

import math

import numpy as np
import pyro
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrovi.diagnostics import psis, psis_khat
from pyrovi.distributions import EulerMaruyama
from pyrovi.guides import AmortizedNormal
from pyrovi.infer import elbo, fit, log_marginal_likelihood
from pyrovi.models import VAE
from pyrovi.nn import MLP

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

D = 8


def _vae():
    pyro.clear_param_store()
    torch.manual_seed(0)
    return VAE(D, 2, hidden_dims=(4,)), AmortizedNormal(D, 2, hidden_dims=(4,))


def _data(n=12):
    return (torch.rand(n, D, generator=torch.Generator().manual_seed(0)) < 0.5).float()


def _clear(fn, *names):
    """``fn()`` must raise a clear error naming one of ``names``; return the message."""
    try:
        result = fn()
    except (ValueError, TypeError) as err:
        message = str(err)
    except Exception as err:  # noqa: BLE001 - pyrovi's own error types are clear too
        assert type(err).__module__.startswith("pyrovi"), f"obscure {type(err).__name__}: {err}"
        message = str(err)
    else:
        raise AssertionError(f"accepted silently, returned {type(result).__name__}")
    assert any(n.lower() in message.lower() for n in names), message
    return message


# --------------------------------------------------------------------------- strategies

bad_counts = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda v: v != int(v) if math.isfinite(v) else True
    ),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
bad_positive = st.one_of(
    st.floats(max_value=0.0),
    st.just(float("nan")),
    st.just(float("inf")),
    st.text(max_size=3),
    st.booleans(),
)


@st.composite
def wrong_shapes(draw):
    """A float tensor whose shape is not ``(n, D)`` with n ≥ 1."""
    ndim = draw(st.integers(min_value=0, max_value=3))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim)))
    if len(shape) == 2 and shape[0] >= 1 and shape[1] == D:
        shape = (shape[0], D + 1)
    return torch.rand(shape)


@st.composite
def with_non_finite(draw):
    """Valid ``(n, D)`` data with one NaN or infinity somewhere."""
    n = draw(st.integers(1, 10))
    x = _data(n).clone()
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, D - 1))
    x[i, j] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    return x


# --------------------------------------------------------------------------- fit


@FAST
@given(arg=st.sampled_from(["epochs", "batch_size", "num_particles"]), value=bad_counts)
def test_fit_counts(arg, value):
    if arg == "batch_size" and value is None:
        return  # batch_size=None means the default
    model, guide = _vae()
    _clear(lambda: fit(model, guide, _data(), progress=False, **{arg: value}), arg)


@FAST
@given(arg=st.sampled_from(["lr", "clip_norm"]), value=bad_positive)
def test_fit_positive_numbers(arg, value):
    model, guide = _vae()
    _clear(lambda: fit(model, guide, _data(), epochs=1, progress=False, **{arg: value}), arg)


@FAST
@given(x=st.one_of(wrong_shapes(), with_non_finite()))
def test_fit_data(x):
    model, guide = _vae()
    _clear(lambda: fit(model, guide, x, epochs=1, progress=False), "data", "x")


# --------------------------------------------------------------------------- evidence, PSIS


@FAST
@given(
    fn=st.sampled_from([elbo, log_marginal_likelihood]),
    x=st.one_of(wrong_shapes(), with_non_finite()),
)
def test_evidence_data(fn, x):
    model, guide = _vae()
    _clear(lambda: fn(model, guide, x, num_samples=2), "data", "x")


@FAST
@given(
    fn=st.sampled_from([elbo, log_marginal_likelihood]),
    value=bad_counts.filter(lambda v: v is not None),
)
def test_evidence_num_samples(fn, value):
    model, guide = _vae()
    _clear(lambda: fn(model, guide, _data(), num_samples=value), "num_samples")


@FAST
@given(value=bad_counts.filter(lambda v: v is not None) | st.integers(1, 20))
def test_psis_khat_num_samples(value):
    model, guide = _vae()
    _clear(lambda: psis_khat(model, guide, _data(), num_samples=value), "num_samples")


@FAST
@given(
    draws=st.integers(1, 20) | st.integers(21, 60),
    poison=st.sampled_from([None, float("nan"), float("inf")]),
)
def test_psis_log_weights(draws, poison):
    lw = np.random.default_rng(0).normal(size=(draws, 3))
    if poison is None and draws > 20:
        return  # valid
    if poison is not None:
        lw[0, 1] = poison
    _clear(lambda: psis(lw), "log_weights")


# --------------------------------------------------------------------------- constructors


bad_dims = st.one_of(
    st.integers(max_value=0),
    st.floats(0.1, 9.9).filter(lambda v: v != int(v)),
    st.text(max_size=2),
    st.booleans(),
    st.none(),
)
bad_hidden = st.one_of(
    st.text(min_size=1, max_size=3),
    st.lists(st.integers(max_value=0), min_size=1, max_size=3),
    st.lists(st.floats(0.1, 9.9).filter(lambda v: v != int(v)), min_size=1, max_size=2),
    st.integers(1, 8),
)


@FAST
@given(arg=st.sampled_from(["in_dim", "out_dim"]), value=bad_dims)
def test_mlp_dims(arg, value):
    kwargs = {"in_dim": 4, "hidden_dims": (8,), "out_dim": 2, arg: value}
    _clear(lambda: MLP(**kwargs), arg)


@FAST
@given(value=bad_hidden)
def test_hidden_dims(value):
    _clear(lambda: MLP(4, value, 2), "hidden_dims")
    _clear(lambda: VAE(D, 2, hidden_dims=value), "hidden_dims")
    _clear(lambda: AmortizedNormal(D, 2, hidden_dims=value), "hidden_dims")


@FAST
@given(arg=st.sampled_from(["x_dim", "z_dim"]), value=bad_dims)
def test_vae_dims(arg, value):
    kwargs = {"x_dim": D, "z_dim": 2, "hidden_dims": (4,), arg: value}
    _clear(lambda: VAE(**kwargs), arg)


@FAST
@given(
    times=st.lists(st.floats(-5, 5), min_size=2, max_size=6).filter(
        lambda t: any(b <= a for a, b in zip(t, t[1:]))
    )
)
def test_sde_times_must_increase(times):
    _clear(
        lambda: EulerMaruyama(lambda t, z: -z, 0.5, torch.zeros(1), torch.tensor(times)).rsample(),
        "times",
    )


@pytest.mark.parametrize("value", [float("nan"), -1.0, 0.0])
def test_sde_diffusion(value):
    _clear(
        lambda: EulerMaruyama(
            lambda t, z: -z, value, torch.zeros(1), torch.linspace(0, 1, 4)
        ).rsample(),
        "diffusion",
    )
