"""Neural posterior estimation: known answers (Gaussian linear), constrained parameters, shapes,
save/load, embeddings and argument errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.distributions import NFlowsDistribution
from pyrovi.infer import NPE, c2st, sbc_ranks, simulate
from pyrovi.models import GaussianLinear, RickerModel, WoodSummary


def bounded_model():
    """θ ~ U(0, 1), y ~ N(θ, 0.1²) (2 i.i.d. observations): a posterior near a boundary."""
    theta = pyro.sample("theta", dist.Uniform(0.0, 1.0))
    pyro.sample("y", dist.Normal(theta.unsqueeze(-1), 0.1).expand(theta.shape + (2,)).to_event(1))


def test_simulate_batches_and_concatenates(device):
    model = RickerModel(num_steps=10).to(device)
    theta, y = simulate(model, ["phi", "log_r"], "y", 25, batch_size=10)
    assert theta.shape == (25, 2) and y.shape == (25, 10) and theta.device.type == device.type
    assert (theta[:, 0] >= 4).all() and (theta[:, 1] <= 5).all()


def test_gaussian_linear_posterior_matches_the_analytic_one(device):
    """Mean and covariance of q(θ | y_o) against N(y_o / 2, 0.05 I), D = 3, 3000 simulations."""
    model = GaussianLinear(3).to(device)
    npe = NPE(model, ["theta"], "y", embedding="identity", num_layers=2, hidden_features=32)
    result = npe.train(3000, seed=0, progress=False, lr=2e-3, patience=10)
    assert result.num_simulations == 3000 and result.num_dropped == 0
    assert result.best_epoch <= result.epochs <= result.best_epoch + 10
    assert result.best_val_loss == min(result.history["val_loss"])
    for y_o in (torch.tensor([0.3, -0.4, 0.1]), torch.tensor([-0.6, 0.0, 0.5])):
        y_o = y_o.to(device)
        x = npe.posterior(y_o).sample((20_000,))
        assert x.shape == (20_000, 3)
        # Monte Carlo sd of a mean is sqrt(0.05 / 20000) = 0.0016; the rest is estimation error
        torch.testing.assert_close(x.mean(0), y_o / 2, atol=0.04, rtol=0)
        cov = torch.cov(x.T)
        torch.testing.assert_close(
            cov.diagonal(), torch.full((3,), 0.05, device=device), atol=0.012, rtol=0
        )
        off = cov - torch.diag(cov.diagonal())
        assert float(off.abs().max()) < 0.01
        # log-density against the exact one on posterior draws: close up to a constant shift
        draws = model.posterior(y_o).sample((2000,))
        diff = npe.posterior(y_o).log_prob(draws) - model.posterior(y_o).log_prob(draws)
        assert float(diff.mean().abs().detach()) < 0.15


@pytest.mark.slow
def test_gaussian_linear_d10_c2st_and_sbc():
    """The issue's CI-sized known answer: D = 10, 10⁴ simulations, C2ST ≤ 0.6, SBC uniform."""
    torch.set_num_threads(1)
    model = GaussianLinear(10)
    npe = NPE(model, ["theta"], "y", embedding="identity")
    npe.train(10_000, seed=0, progress=False)
    pyro.set_rng_seed(1)
    y_o = simulate(model, ["theta"], "y", 1)[1][0]
    score = c2st(model.posterior(y_o).sample((3000,)), npe.posterior(y_o).sample((3000,)))
    assert score <= 0.6, score
    theta, y = simulate(model, ["theta"], "y", 500)
    sbc = sbc_ranks(lambda yy, L: npe.posterior(yy).sample((L,)), theta, y, 99)
    # 10 tests at level 0.001 each
    assert float(sbc.p_values.min()) > 1e-3, sbc.p_values


def test_constrained_posterior_is_a_normalized_density_on_the_support(device):
    pyro.set_rng_seed(0)
    npe = NPE(bounded_model, ["theta"], "y", num_layers=2, hidden_features=16, device=device)
    npe.train(400, seed=0, progress=False, max_epochs=5)
    y_o = torch.tensor([0.05, 0.02], device=device)
    q = npe.posterior(y_o)
    assert isinstance(q.base_dist, NFlowsDistribution)
    x = q.sample((4000,))
    assert x.shape == (4000, 1) and (x > 0).all() and (x < 1).all()
    # ∫_0^1 q(θ | y) dθ = 1: the log-det of the sigmoid map is included (midpoint rule in logit
    # space, where the integrand is smooth: ∫ q(σ(u)) σ'(u) du)
    u = torch.linspace(-15, 15, 20001, dtype=torch.float64, device=device)
    theta = torch.sigmoid(u).float().unsqueeze(-1)
    jac = (torch.sigmoid(u) * torch.sigmoid(-u)).float()
    dens = q.log_prob(theta).exp().detach() * jac
    mass = float(dens.sum() * (u[1] - u[0]))
    assert mass == pytest.approx(1.0, abs=0.01)
    # sample_and_log_prob agrees with log_prob
    s, lp = q.sample_and_log_prob((50,))
    torch.testing.assert_close(lp, q.log_prob(s).detach(), atol=1e-4, rtol=1e-4)


def test_batched_posterior_shapes_and_split(device):
    model = RickerModel(num_steps=20).to(device)
    npe = NPE(
        model,
        ["log_r", "sigma", "phi"],
        "y",
        summary=WoodSummary(num_steps=20),
        num_layers=1,
        hidden_features=8,
    )
    npe.train(300, seed=0, progress=False, max_epochs=2)
    _, y = npe.simulate(4)
    q = npe.posterior(y)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    x = q.sample((7,))
    assert x.shape == (7, 4, 3)
    assert q.log_prob(x).shape == (7, 4)
    parts = q.split(x)
    assert list(parts) == ["log_r", "sigma", "phi"] and parts["sigma"].shape == (7, 4)
    assert (parts["sigma"] > 0).all() and (parts["sigma"] < 0.8).all()
    assert (parts["phi"] > 4).all() and (parts["phi"] < 20).all()


@pytest.mark.parametrize("embedding", ["conv", "gru"])
def test_raw_series_embeddings_train(embedding, device):
    model = RickerModel(num_steps=20).to(device)
    npe = NPE(
        model,
        list(model.params),
        "y",
        embedding=embedding,
        embedding_features=8,
        embedding_hidden=8,
        num_layers=1,
        hidden_features=8,
    )
    result = npe.train(200, seed=0, progress=False, max_epochs=2)
    assert all(math.isfinite(v) for v in result.history["train_loss"])
    _, y = npe.simulate(3)
    assert npe.posterior(y).sample((5,)).shape == (5, 3, 3)


def test_save_and_load_reproduce_the_posterior(tmp_path, device):
    model = GaussianLinear(2).to(device)
    npe = NPE(model, ["theta"], "y", num_layers=1, hidden_features=8, flow="nsf", affine=True)
    npe.train(300, seed=0, progress=False, max_epochs=3)
    path = tmp_path / "npe.pt"
    npe.save(path)
    other = NPE.load(path, GaussianLinear(2), device=device)
    x = torch.randn(5, 2, device=device) * 0.2
    y_o = torch.tensor([0.1, -0.2], device=device)
    torch.testing.assert_close(other.posterior(y_o).log_prob(x), npe.posterior(y_o).log_prob(x))
    with pytest.raises(ValueError, match="saved for 2 parameters"):
        NPE.load(path, GaussianLinear(3))


def test_training_is_reproducible_with_a_seed():
    model = GaussianLinear(2)
    a = NPE(model, ["theta"], "y", num_layers=1, hidden_features=8)
    ra = a.train(200, seed=3, progress=False, max_epochs=3)
    pyro.set_rng_seed(0)
    b = NPE(model, ["theta"], "y", num_layers=1, hidden_features=8)
    rb = b.train(200, seed=3, progress=False, max_epochs=3)
    assert ra.history == rb.history


def test_bad_arguments_are_named():
    model = GaussianLinear(2)
    with pytest.raises(ValueError, match="model has no sample sites"):
        NPE(model, ["mu"], "y")
    with pytest.raises(ValueError, match="params must be a non-empty list"):
        NPE(model, "theta", "y")
    with pytest.raises(ValueError, match="flow must be one of"):
        NPE(model, ["theta"], "y", flow="glow")
    with pytest.raises(ValueError, match="embedding must be one of"):
        NPE(model, ["theta"], "y", embedding="transformer")
    npe = NPE(model, ["theta"], "y", num_layers=1, hidden_features=4)
    with pytest.raises(ValueError, match="pass num_simulations, or theta and y"):
        npe.train()
    with pytest.raises(ValueError, match="theta and y must be given together"):
        npe.train(theta=torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"theta must have shape \(N, 2\)"):
        npe.train(theta=torch.zeros(5, 3), y=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        npe.train(10, validation_fraction=1.0)
    with pytest.raises(ValueError, match=r"y_obs must have shape \(2,\)"):
        npe.posterior(torch.zeros(3))
    with pytest.raises(ValueError, match="summary.y. must be a vector"):
        NPE(RickerModel(num_steps=10), ["phi"], "y", summary=lambda y: y.unsqueeze(-1))


def _small_npe(model=None):
    model = GaussianLinear(2) if model is None else model
    return NPE(model, ["theta"], "y", num_layers=1, hidden_features=8, embedding_features=4)


def test_posterior_of_an_untrained_estimator_is_refused():
    from pyrovi.infer.npe import NotTrainedError

    npe = _small_npe()
    with pytest.raises(
        NotTrainedError, match=r"NPE.posterior: the estimator is not trained.*train"
    ):
        npe.posterior(torch.zeros(2))
    npe.train(100, seed=0, progress=False, max_epochs=1)
    assert npe.posterior(torch.zeros(2)).sample((3,)).shape == (3, 2)


def test_training_options_are_checked_before_anything_runs():
    npe = _small_npe()
    nan, inf = float("nan"), float("inf")
    cases = [
        ({"num_simulations": 50, "lr": inf}, ValueError, "lr must be a positive number, got inf"),
        ({"num_simulations": 50, "clip_norm": -1.0}, ValueError, "clip_norm must be a positive"),
        (
            {"num_simulations": 50, "simulation_batch_size": 0},
            ValueError,
            "simulation_batch_size must be a positive integer, got 0",
        ),
        ({"num_simulations": 2.5}, ValueError, "num_simulations must be a positive integer"),
        ({"num_simulations": 50, "seed": 2.5}, ValueError, "seed must be a non-negative integer"),
        (
            {"num_simulations": 50, "validation_fraction": nan},
            ValueError,
            r"validation_fraction must be in \(0, 1\), got nan",
        ),
        (
            {"theta": [[0.0, 0.0]], "y": torch.zeros(1, 2)},
            TypeError,
            "theta must be a torch.Tensor, got list",
        ),
        (
            {"theta": torch.zeros(5, 2), "y": torch.zeros(6, 2)},
            ValueError,
            r"theta and y must hold the same simulations .* theta has shape \(5, 2\), y \(6, 2\)",
        ),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            npe.train(progress=False, max_epochs=1, **kwargs)
    assert not npe.trained
    with pytest.raises(ValueError, match="embedding_features must be a positive integer, got 2.5"):
        NPE(GaussianLinear(2), ["theta"], "y", embedding_features=2.5)
    with pytest.raises(ValueError, match="embedding_hidden must be a positive integer, got '16'"):
        NPE(GaussianLinear(2), ["theta"], "y", embedding_hidden="16")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"hello world", "is not a file written by torch.save"),
        (None, "is truncated or corrupt"),
    ],
)
def test_load_names_an_unreadable_file(tmp_path, content, match):
    from pyrovi.infer.checkpoint import CheckpointError

    good = tmp_path / "good.pt"
    _small_npe().save(good)
    path = tmp_path / "bad.pt"
    path.write_bytes(good.read_bytes()[:300] if content is None else content)
    with pytest.raises(CheckpointError, match=f"{path}.*{match}|{match}.*{path}"):
        NPE.load(path, GaussianLinear(2))


def test_load_names_what_differs_for_another_checkpoint_or_model(tmp_path):
    from pyrovi.infer.checkpoint import CheckpointError, save_checkpoint

    other = tmp_path / "fit.pt"
    save_checkpoint(other, {"params": {}, "epoch": 3})
    with pytest.raises(
        CheckpointError, match=r"fit.pt is not an NPE checkpoint .* lacks \['config'"
    ):
        NPE.load(other, GaussianLinear(2))
    path = tmp_path / "npe.pt"
    _small_npe().save(path)
    with pytest.raises(
        CheckpointError, match=r"saved for 2 parameters, the model has 3.*2 summaries"
    ):
        NPE.load(path, GaussianLinear(3))
    with pytest.raises(CheckpointError, match=r"parameter supports .* saved, .*Interval"):
        NPE.load(path, bounded_model)  # a scalar theta on (0, 1)
    with pytest.raises(CheckpointError, match=r"sites \['theta'\] .* do not fit this model"):
        NPE.load(path, RickerModel(num_steps=10))
    with pytest.raises(FileNotFoundError):
        NPE.load(tmp_path / "missing.pt", GaussianLinear(2))
    loaded = NPE.load(path, GaussianLinear(2))
    assert not loaded.trained  # saved untrained: still refuses its posterior


def test_lr_drops_train_on_from_the_best_epoch(device):
    """With ``lr_drops`` training goes on past the early stop, from the best parameters at a
    fifth of the learning rate: more epochs, and a validation loss at least as low."""
    model = GaussianLinear(dim=2).to(device)
    results = []
    for drops in (0, 2):
        npe = NPE(model, ["theta"], "y", embedding="identity", hidden_features=16, num_layers=2)
        results.append(npe.train(600, patience=2, lr=1e-2, lr_drops=drops, seed=0, progress=False))
    plain, dropped = results
    assert dropped.epochs > plain.epochs
    assert dropped.best_val_loss <= plain.best_val_loss
    history = dropped.history["val_loss"]
    assert min(history) == dropped.best_val_loss
    with pytest.raises(ValueError, match="lr_drops must be a non-negative integer"):
        NPE(model, ["theta"], "y").train(10, lr_drops=-1, progress=False)
