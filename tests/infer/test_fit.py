"""The SVI loop: gradients, minibatch scaling, losses, checkpoints, the NaN guard, bad input."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import JitTrace_ELBO, RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from torch.utils.data import DataLoader, TensorDataset

from pyrovi.guides import AmortizedMultivariateNormal, AmortizedNormal
from pyrovi.infer import (
    FastTrace_ELBO,
    TrainingDivergedError,
    data_scale,
    fit,
    latent_scale,
    load_checkpoint,
)
from pyrovi.models import VAE, ConditionalVAE


def _data(n=64, d=16, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, d, generator=g) < 0.3).float().to(device)


def _small_vae(d=16, z=2, **kwargs):
    torch.manual_seed(0)
    return VAE(d, z, hidden_dims=(8,), **kwargs), AmortizedNormal(d, z, hidden_dims=(8,))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "make",
    [
        lambda: (VAE(16, 3, hidden_dims=(8,)), AmortizedNormal(16, 3, hidden_dims=(8,))),
        lambda: (
            VAE(16, 3, decoder="conv", image_shape=(4, 4)),
            AmortizedMultivariateNormal(16, 3, hidden_dims=(8,)),
        ),
        lambda: (
            VAE(16, 3, likelihood="gaussian", learn_scale=True, hidden_dims=(8,)),
            AmortizedMultivariateNormal(16, 3, hidden_dims=(8, 8)),
        ),
    ],
    ids=["mlp-normal", "conv-mvn", "gaussian-learned-scale"],
)
def test_gradients_reach_every_parameter(make, device):
    model, guide = make()
    model, guide = model.to(device), guide.to(device)
    x = _data(device=device)
    loss = Trace_ELBO().differentiable_loss(model, guide, x)
    loss.backward()
    for name, p in [*model.named_parameters(), *guide.named_parameters()]:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gradients_reach_every_parameter_of_the_conditional_vae(device):
    model = ConditionalVAE(16, 4, 3, hidden_dims=(8,)).to(device)
    guide = AmortizedNormal(16, 3, hidden_dims=(8,), context_dim=4).to(device)
    x, c = _data(device=device), torch.eye(4, device=device).repeat(16, 1)
    Trace_ELBO().differentiable_loss(model, guide, x, c).backward()
    for name, p in [*model.named_parameters(), *guide.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- minibatch scaling


N = 12


def _global_model(idx, x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(mu, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def _delta_guide(idx, x):
    # point-mass guide: the ELBO is deterministic, so unbiasedness can be checked exactly
    m = pyro.param("m", torch.tensor(0.3, dtype=torch.float64))
    pyro.sample("mu", dist.Delta(m))
    loc = pyro.param("loc", torch.linspace(-1, 1, N, dtype=torch.float64))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Delta(loc[idx]))


def test_scaled_minibatch_elbo_is_unbiased_with_a_global_latent():
    x = torch.randn(N, dtype=torch.float64)
    idx = torch.arange(N)
    full = Trace_ELBO().loss(_global_model, _delta_guide, idx, x)
    batches = idx.reshape(3, 4)  # every datapoint once: the average over batches is the mean
    scaled = [
        Trace_ELBO().loss(
            data_scale(_global_model, N / 4), data_scale(_delta_guide, N / 4), b, x[b]
        )
        for b in batches
    ]
    assert sum(scaled) / 3 == pytest.approx(full, rel=1e-12)
    # scaling the global latent too (plain poutine.scale) would be biased
    naive = [
        Trace_ELBO().loss(
            pyro.poutine.scale(_global_model, N / 4),
            pyro.poutine.scale(_delta_guide, N / 4),
            b,
            x[b],
        )
        for b in batches
    ]
    assert sum(naive) / 3 != pytest.approx(full, rel=1e-6)


def test_fit_trains_global_and_local_latents():
    x = torch.randn(N, dtype=torch.float64) + 2.0
    result = fit(
        _global_model,
        _delta_guide,
        (torch.arange(N), x),
        epochs=300,
        batch_size=4,
        lr=0.05,
        progress=False,
        seed=0,
    )
    # MAP of the joint: mu and z_i solve a linear system; mu is pulled towards the data mean
    assert pyro.param("m").item() > 1.0
    assert result.steps == 300 * 3
    assert result.history["train_elbo"][-1] > result.history["train_elbo"][0]


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    "loss",
    [
        None,
        Trace_ELBO(),
        TraceMeanField_ELBO(),
        JitTrace_ELBO(ignore_jit_warnings=True),
        RenyiELBO(alpha=0.5, num_particles=2),
        Trace_ELBO(num_particles=3, vectorize_particles=True),
        FastTrace_ELBO(num_particles=3, vectorize_particles=True),
    ],
    ids=["default", "trace", "meanfield", "jit", "renyi", "trace-vectorized", "fast-vectorized"],
)
def test_fit_works_with_pyro_losses(loss, device):
    model, guide = _small_vae()
    result = fit(
        model,
        guide,
        _data(device=device),
        epochs=3,
        batch_size=16,
        lr=1e-2,
        loss=loss,
        progress=False,
        seed=0,
        device=device,
    )
    history = result.history["train_elbo"]
    assert len(history) == 3 and all(math.isfinite(v) for v in history)
    assert history[-1] > history[0]


def test_default_loss_with_vectorized_particles():
    model, guide = _small_vae()
    result = fit(
        model, guide, _data(), epochs=2, batch_size=16, num_particles=4, progress=False, seed=0
    )
    assert all(math.isfinite(v) for v in result.history["train_elbo"])


def test_fit_accepts_a_dataloader_and_validation_data(tmp_path):
    model, guide = _small_vae()
    loader = DataLoader(TensorDataset(_data()), batch_size=16, shuffle=True)
    result = fit(
        model,
        guide,
        loader,
        epochs=3,
        val_data=_data(32),
        progress=False,
        seed=0,
        checkpoint=tmp_path / "run.pt",
    )
    assert len(result.history["val_elbo"]) == 3
    assert result.best_epoch in (1, 2, 3)
    assert result.best_elbo == max(result.history["val_elbo"])
    assert (tmp_path / "run.pt").is_file() and (tmp_path / "run.best.pt").is_file()
    best = load_checkpoint(tmp_path / "run.best.pt")
    assert best["epoch"] == result.best_epoch


def test_beta_and_kl_annealing_weight_the_latent_terms():
    model, guide = _small_vae()
    x = _data()

    def loss_at(beta):
        pyro.set_rng_seed(5)
        with pyro.validation_enabled(False):
            return FastTrace_ELBO().loss(latent_scale(model, beta), latent_scale(guide, beta), x)

    # with the same draws, the loss is linear in beta: reconstruction + beta * KL estimate
    assert loss_at(0.5) == pytest.approx(0.5 * (loss_at(0.0) + loss_at(1.0)), rel=1e-5)

    seen = []

    def schedule(progress):
        seen.append(progress)
        return min(1.0, progress)

    fit(model, guide, x, epochs=2, batch_size=16, kl_annealing=schedule, progress=False)
    assert seen[0] == 0.0 and 1.0 <= seen[-1] < 2.0 and len(seen) == 8
    model.beta = 0.0
    r0 = fit(model, guide, x, epochs=1, batch_size=64, progress=False, seed=1)
    model.beta = 1.0
    r1 = fit(model, guide, x, epochs=1, batch_size=64, progress=False, seed=1)
    assert r0.history["train_elbo"][0] > r1.history["train_elbo"][0]


def test_optimizer_class_and_factory():
    model, guide = _small_vae()
    fit(model, guide, _data(), epochs=1, optimizer=torch.optim.SGD, lr=0.1, progress=False)
    fit(
        model,
        guide,
        _data(),
        epochs=1,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        clip_norm=1.0,
        progress=False,
    )
    with pytest.raises(ValueError, match="optimizer must be an optimizer class or a factory"):
        fit(model, guide, _data(), epochs=1, optimizer=torch.optim.SGD(model.parameters(), 0.1))


# --------------------------------------------------------------------------- checkpoints


def _params(model, guide):
    return [p.detach().clone() for p in [*model.parameters(), *guide.parameters()]]


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    x = _data(100)
    model, guide = _small_vae()
    fit(model, guide, x, epochs=4, batch_size=16, val_data=x[:20], progress=False, seed=3)
    straight = _params(model, guide)

    model, guide = _small_vae()
    ckpt = tmp_path / "ckpt.pt"
    first = fit(
        model,
        guide,
        x,
        epochs=2,
        batch_size=16,
        val_data=x[:20],
        progress=False,
        seed=3,
        checkpoint=ckpt,
    )
    assert first.epochs == 2
    torch.manual_seed(123)  # a fresh process would start from other weights and RNG state
    model, guide = VAE(16, 2, hidden_dims=(8,)), AmortizedNormal(16, 2, hidden_dims=(8,))
    resumed = fit(
        model,
        guide,
        x,
        epochs=4,
        batch_size=16,
        val_data=x[:20],
        progress=False,
        seed=3,
        checkpoint=ckpt,
        resume=True,
    )
    assert resumed.epochs == 4 and len(resumed.history["train_elbo"]) == 4
    for a, b in zip(straight, _params(model, guide)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model, guide = _small_vae()
    calls = []

    def poison(x):  # unpack: call 1 is fit's data check, 2 its checked first pass, 9 is
        calls.append(1)  # epoch 2, step 3 (4 steps per epoch); unpacked data is not re-checked
        return (torch.full_like(x, float("nan")) if len(calls) == 9 else x,), {}

    ckpt = tmp_path / "ckpt.pt"
    match = r"loss is nan at epoch 2, step 3.*last good checkpoint: .*ckpt.pt \(epoch 1\)"
    with pytest.raises(TrainingDivergedError, match=match):
        fit(
            model,
            guide,
            _data(),
            epochs=5,
            batch_size=16,
            unpack=poison,
            progress=False,
            checkpoint=ckpt,
            seed=0,
        )
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    # the model's parameters were not updated by the NaN step
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_transformed_batch_is_checked_every_step():
    """A transform that breaks the data later is caught by the model's check_data, per step."""
    model, guide = _small_vae()
    calls = []

    def breaks_later(x):  # call 1 is fit's checked first pass; call 8 is epoch 2, step 3
        calls.append(1)
        return x * 2 if len(calls) == 8 else x

    match = r"data: the batch of epoch 2, step 3 after transform: x must lie in \[0, 1\]"
    with pytest.raises(ValueError, match=match):
        fit(
            model,
            guide,
            _data(),
            epochs=5,
            batch_size=16,
            transform=breaks_later,
            seed=0,
            progress=False,
        )


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, guide = _small_vae()
    fit(model, guide, _data(), epochs=1, checkpoint=tmp_path / "c.pt", progress=False)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(state["params"]) == {f"model.{n}" for n, _ in model.named_parameters()} | {
        f"guide.{n}" for n, _ in guide.named_parameters()
    }


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "data, kwargs, match",
    [
        (torch.rand(10, 15), {}, r"x must have shape \(batch, 16\), got \(10, 15\)"),
        (torch.full((10, 16), float("nan")), {}, "data contains NaN or infinite values"),
        (torch.rand(10, 16) * 2, {}, r"x must lie in \[0, 1\] for a Bernoulli likelihood"),
        (torch.rand(10, 16), {"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        (torch.rand(10, 16), {"epochs": 0}, "epochs must be a positive integer, got 0"),
        (torch.rand(10, 16), {"epochs": -2}, "epochs must be a positive integer, got -2"),
        (torch.rand(10, 16), {"lr": 0.0}, "lr must be a positive finite number, got 0.0"),
        (torch.rand(10, 16), {"kl_annealing": -1}, "kl_annealing must be a positive number"),
        (torch.rand(10, 16), {"val_data": torch.rand(4, 3)}, r"x must have shape \(batch, 16\)"),
        (torch.rand(10, 16), {"num_particles": 0}, "num_particles must be a positive integer"),
        ("not a tensor", {}, "data must be a tensor or a tuple of tensors"),
    ],
)
def test_bad_input_is_named(data, kwargs, match):
    model, guide = _small_vae()
    with pytest.raises((ValueError, TypeError), match=match):
        fit(model, guide, data, progress=False, **kwargs)


def test_inconsistent_tuple_lengths_are_named():
    model = ConditionalVAE(16, 4, 2, hidden_dims=(8,))
    guide = AmortizedNormal(16, 2, hidden_dims=(8,), context_dim=4)
    with pytest.raises(ValueError, match="same leading"):
        fit(model, guide, (torch.rand(10, 16), torch.rand(9, 4)), progress=False)


def test_progress_bar_is_silent_when_stderr_is_not_a_terminal(capsys):
    model, guide = _small_vae()
    fit(model, guide, _data(), epochs=2, batch_size=16, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_checkpoint_holds_module_states_with_buffers(tmp_path):
    model, guide = _small_vae()
    fit(model, guide, _data(), epochs=1, checkpoint=tmp_path / "c.pt", progress=False)
    state = load_checkpoint(tmp_path / "c.pt")
    assert set(state["model_state"]) == set(model.state_dict())
    assert "prior_loc" in state["model_state"]
    assert set(state["guide_state"]) == set(guide.state_dict())
    assert state["epoch"] == 1 and "optimizer" in state
