"""Bad arguments and data of the models (issue 17): every one is refused with a message that
names it, instead of a torch error deep inside, a silent NaN or a silently truncated count."""

import pyro
import pytest
import torch

from pyrovi.models import (
    DDPM,
    RBM,
    VAE,
    VQVAE,
    ConditionalVAE,
    FlowDensity,
    ForwardSDE,
    GaussianLinear,
    GroundState,
    HierarchicalVAE,
    LatentSDE,
    MarkovChainVAE,
    RickerModel,
    WoodSummary,
    hamiltonians,
    simulate_ricker_at,
    train_ground_state,
    train_rbm,
    wood_summaries,
)
from pyrovi.models.ddpm import beta_schedule
from pyrovi.models.ground_state import line_integral
from pyrovi.models.potentials import DoubleWell, MullerBrown

NAN, INF = float("nan"), float("inf")


def _nan_data(n=6, d=4):
    x = torch.rand(n, d)
    x[1, -1] = NAN
    return x


@pytest.mark.parametrize(
    "make",
    [
        lambda h: VAE(4, 2, hidden_dims=h),
        lambda h: ConditionalVAE(4, 2, 2, hidden_dims=h),
        lambda h: VQVAE(4, hidden_dims=h),
        lambda h: _vae_with_decoder(h),
    ],
)
@pytest.mark.parametrize(
    "hidden, error, match",
    [
        ("16", TypeError, "hidden_dims must be a sequence .* the string '16'"),
        ((2.5,), ValueError, "hidden_dims .* entry 0 is 2.5"),
        ((0, 8), ValueError, "hidden_dims .* entry 0 is 0"),
        ((8, -1), ValueError, "hidden_dims .* entry 1 is -1"),
        ((True,), ValueError, "hidden_dims .* entry 0 is True"),
    ],
)
def test_every_hidden_dims_is_checked(make, hidden, error, match):
    with pytest.raises(error, match=match):
        make(hidden)


def _vae_with_decoder(hidden):  # a VAE with its own decoder: hidden_dims is still checked
    return VAE(4, 2, decoder=torch.nn.Linear(2, 4), hidden_dims=hidden)


def test_vae_family_numbers_and_counts():
    cases = [
        (lambda: VAE(4, 2, beta=INF), "beta must be a non-negative number, got inf"),
        (lambda: VAE(4, 2, beta=True), "beta must be a non-negative number, got True"),
        (lambda: VAE(4, 2, "gaussian", scale=INF), "scale must be a positive number, got inf"),
        (lambda: ConditionalVAE(4, 2, 2, "gaussian", scale=-1.0), "scale must be a positive"),
        (lambda: HierarchicalVAE(4, (2,), ((8,),), min_scale=-1.0), "min_scale must be"),
        (lambda: VQVAE(4, hidden_dims=(8,), likelihood="gaussian", scale=INF), "scale must be"),
        (lambda: VAE(4, 2, hidden_dims=(8,)).sample_prior(2.5), "num_samples must be a positive"),
        (lambda: VAE(4, 2, hidden_dims=(8,)).sample_prior(0), "num_samples must be a positive"),
        (
            lambda: ConditionalVAE(4, 2, 2, hidden_dims=(8,)).sample(torch.zeros(3, 2), 2.5),
            "num_samples must be a positive integer, got 2.5",
        ),
        (
            lambda: HierarchicalVAE(4, (2,), ((8,),)).sample_prior(2.5),
            "num_samples must be a positive integer",
        ),
        (lambda: VQVAE(4, hidden_dims=(8,)).sample(2.5), "num_samples must be a positive"),
        (
            lambda: VQVAE(4, 4, 2, 2, hidden_dims=(8,)).fit_prior(
                torch.zeros(3, 2, dtype=torch.long), INF
            ),
            "smoothing must be a positive number, got inf",
        ),
        (lambda: FlowDensity(2, context_dim=True), "context_dim must be a positive integer"),
        (lambda: FlowDensity(2, num_layers=1).sample(2.5), "num_samples must be a positive"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


def test_vae_family_data():
    vae = VAE(4, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 4\)\)"):
        vae(torch.empty(0, 4))
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype torch.int64"):
        vae(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="x contains NaN"):
        vae(_nan_data())
    cvae = ConditionalVAE(4, 2, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="c contains NaN or infinite values"):
        cvae(torch.rand(6, 4), _nan_data(6, 2))
    with pytest.raises(ValueError, match=r"c must have the batch size of x \(6\), got 5"):
        cvae(torch.rand(6, 4), torch.rand(5, 2))
    with pytest.raises(ValueError, match="x contains NaN"):
        FlowDensity(2, num_layers=1).log_prob(_nan_data(4, 2))
    with pytest.raises(ValueError, match="x contains NaN"):
        MarkovChainVAE(3, 2, 8)(_nan_data(4, 2))
    with pytest.raises(ValueError, match="x contains NaN"):
        DDPM(2, 4, hidden=8).loss(_nan_data(4, 2))


def test_rbm_arguments():
    rbm = RBM(4, 3)
    x = torch.ones(8, 4)
    cases = [
        (lambda: RBM(4, 3, "gaussian", sigma=INF), ValueError, "sigma must be a positive"),
        (lambda: RBM(4, 3, init_std=INF), ValueError, "init_std must be a non-negative"),
        (
            lambda: rbm.energy(torch.zeros(2, 4), torch.zeros(2, 2)),
            ValueError,
            r"h must have shape \(\.\.\., 3\), got \(2, 2\)",
        ),  # fmt: skip
        (lambda: rbm.log_prob(torch.zeros(2, 4), NAN), ValueError, "log_z must be a finite"),
        (
            lambda: RBM.base_from_data(torch.rand(5, 4), eps=0.7),
            ValueError,
            r"eps must be a number in \(0, 0.5\), got 0.7",
        ),  # fmt: skip
        (lambda: RBM.base_from_data(_nan_data(5, 4)), ValueError, "x contains NaN"),
        (lambda: train_rbm(rbm, x, epochs=1, lr=INF), ValueError, "lr must be a positive number"),
        (lambda: train_rbm(rbm, x, epochs=1, weight_decay=INF), ValueError, "weight_decay must"),
        (
            lambda: train_rbm(rbm, x.long(), epochs=1),
            TypeError,
            "data must be a floating-point tensor, got dtype torch.int64",
        ),  # fmt: skip
        (lambda: train_rbm(rbm, x, epochs=1, transform=3), TypeError, "transform must be a"),
        (lambda: train_rbm(rbm, x, epochs=1, seed=1.5), ValueError, "seed must be an integer"),
        (lambda: rbm.log_partition_ais(4, 1), ValueError, "betas must be the number of"),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()


def test_latent_sde_markov_chain_ddpm_and_forward_sde_arguments():
    times = torch.linspace(0, 1, 5)
    model = LatentSDE(2, times, latent_dim=2, hidden=8)
    cases = [
        (lambda: LatentSDE(2.0, times), "obs_dim must be a positive integer, got 2.0"),
        (lambda: LatentSDE(2, times, hidden=0), "hidden must be a positive integer, got 0"),
        (lambda: LatentSDE(2, times, obs_scale=INF), "obs_scale must be a positive number"),
        (lambda: LatentSDE(2, times, obs_scale="a"), "obs_scale must be a positive number"),
        (lambda: LatentSDE(2, times, prior="ou", ou_theta=INF), "ou_theta must be a positive"),
        (lambda: LatentSDE(2, times, diffusion_scale=0.0), "diffusion_scale must be a positive"),
        (lambda: model(None, num_series=2.5), "num_series must be a positive integer, got 2.5"),
        (lambda: model(torch.empty(0, 5, 2)), r"xs is empty"),
        (lambda: MarkovChainVAE(3, 2, 8, prior_loc=NAN), "prior_loc must be finite"),
        (
            lambda: MarkovChainVAE(3, 2, 8, prior_loc=torch.zeros(3)),
            r"prior_loc must be a .*\(2,\)",
        ),
        (lambda: MarkovChainVAE(3, 2, 8, prior_scale=INF), "prior_scale must be finite"),
        (lambda: MarkovChainVAE(3, 2, 0, transition="affine"), "hidden must be a positive"),
        (lambda: DDPM(2, 4, hybrid_weight=NAN), "hybrid_weight must be a non-negative number"),
        (
            lambda: beta_schedule("linear", 10, beta_end=2.0),
            r"beta_end must be a number in \(0, 1\)",
        ),
        (lambda: beta_schedule("cosine", 10, cosine_offset=INF), "cosine_offset must be"),
        (lambda: ForwardSDE(2, hidden=0), "hidden must be a positive integer"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


def test_forward_sde_names_a_bad_drift():
    nan_drift = ForwardSDE(2, num_steps=3, drift=lambda t, z: z * NAN)
    with pytest.raises(ValueError, match=r"drift returned NaN or infinite values at step 0"):
        nan_drift(None, num_samples=3)
    wide = ForwardSDE(2, num_steps=3, drift=lambda t, z: torch.zeros(z.shape[:-1] + (3,)))
    with pytest.raises(
        ValueError, match=r"drift returned a tensor of shape \(3, 3\), expected \(3, 2\)"
    ):
        wide(None, num_samples=3)
    with pytest.raises(ValueError, match=r"drift returned a tensor of shape \(3, 3\)"):
        wide.last_step(torch.zeros(3, 2))


def _oscillator(**kwargs):
    args = {"num_walkers": 8, "horizon": 0.1, "dt": 0.05, **kwargs}
    return GroundState(hamiltonians.harmonic_oscillator(), **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_walkers": 2.5}, "num_walkers must be an integer >= 2, got 2.5"),
        ({"horizon": NAN}, "horizon must be a positive number, got nan"),
        ({"horizon": -1.0}, "horizon must be a positive number, got -1.0"),
        ({"horizon": "1"}, "horizon must be a positive number"),
        ({"dt": 0.0}, "dt must be a positive number, got 0.0"),
        ({"dt": INF}, "dt must be a positive number, got inf"),
        ({"quadrature": 0}, "quadrature must be a positive integer, got 0"),
        ({"quadrature": 2.5}, "quadrature must be a positive integer, got 2.5"),
        ({"walkers": torch.full((8, 1), NAN)}, "walkers contains NaN or infinite values"),
    ],
)
def test_ground_state_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _oscillator(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt": 0.0}, "dt must be a positive number, got 0.0"),
        ({"dt": -0.01}, "dt must be a positive number, got -0.01"),
        ({"dt": NAN}, "dt must be a positive number, got nan"),
        ({"horizon": 0.0}, "horizon must be a positive number, got 0.0"),
        ({"horizon": INF}, "horizon must be a positive number, got inf"),
        ({"dt": 0.03}, "dt must divide horizon into a whole number of steps"),
        ({"burn_in": -1}, "burn_in must be an integer >= 0, got -1"),
    ],
)
def test_ground_state_estimate_refuses_a_bad_grid(kwargs, match):
    gs = _oscillator()
    walkers = gs.walkers.clone()
    with pytest.raises(ValueError, match=match):
        gs.estimate(1, **kwargs)
    torch.testing.assert_close(gs.walkers, walkers)  # nothing ran
    assert gs.estimate(1, dt=0.025).dt == pytest.approx(0.025)  # an explicit dt is used


def _system(potential=None, dim=2):
    h = hamiltonians.harmonic_oscillator(dim=dim)
    if potential is not None:
        h.potential = potential
    return h


@pytest.mark.parametrize(
    "potential, drift, match",
    [
        (lambda x: x.sum(-1) * NAN, None, "potential returned NaN or infinite values"),
        (
            lambda x: x * x,
            None,
            r"potential returned a tensor of shape \(2, 4, 2\), expected \(2, 4\)",
        ),
        (lambda x: 1.0, None, "potential must return a tensor"),
        (None, lambda t, x: x * NAN, "drift returned NaN or infinite values at step 0"),
        (
            None,
            lambda t, x: x[..., :1],
            r"drift returned a tensor of shape \(4, 1\), expected \(4, 2\)",
        ),
        (None, lambda t, x: 0.0, "drift must return a tensor"),
    ],
)
def test_ground_state_names_a_bad_potential_or_drift(potential, drift, match):
    gs = GroundState(_system(potential), drift, num_walkers=4, horizon=0.1, dt=0.05)
    error = TypeError if "must return a tensor" in match else ValueError
    with pytest.raises(error, match=match):
        gs.estimate(1)
    if drift is None:  # the Trace_ELBO loss of the model scores the potential too
        with pytest.raises(error, match=match):
            pyro.infer.Trace_ELBO().loss(gs.model, gs.guide)


def test_line_integral_names_the_drift_and_broadcasts_a_constant():
    start, end = torch.zeros(5, 2), torch.ones(5, 2)
    with pytest.raises(ValueError, match=r"drift returned a tensor of shape \(8, 5, 1\)"):
        line_integral(lambda t, x: x[..., :1], start, end)
    out = line_integral(lambda t, x: torch.tensor([1.0, 2.0]), start, end)
    torch.testing.assert_close(out, torch.full((5,), 3.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"clip_norm": -1.0}, ValueError, "clip_norm must be a positive number, got -1.0"),
        ({"clip_norm": 0.0}, ValueError, "clip_norm must be a positive number, got 0.0"),
        ({"clip_norm": NAN}, ValueError, "clip_norm must be a positive number, got nan"),
        ({"lr": INF}, ValueError, "lr must be a positive number, got inf"),
        ({"lr": "a"}, ValueError, "lr must be a positive number, got 'a'"),
        ({"final_lr": 0.0}, ValueError, "final_lr must be a positive number"),
        ({"max_seconds": -1.0}, ValueError, "max_seconds must be a non-negative number"),
        ({"callback": 3}, TypeError, "callback must be a callable"),
    ],
)
def test_train_ground_state_options(kwargs, error, match):
    gs = _oscillator()
    before = {k: v.clone() for k, v in gs.drift.state_dict().items()}
    with pytest.raises(error, match=match):
        train_ground_state(gs, 2, **kwargs)
    for k, v in gs.drift.state_dict().items():  # refused before any step
        torch.testing.assert_close(v, before[k])


def test_train_ground_state_without_clipping_and_of_a_non_ground_state():
    gs = _oscillator()
    history = train_ground_state(gs, 2, clip_norm=None)
    assert len(history["energy"]) == 2
    with pytest.raises(TypeError, match="ground_state must be a GroundState, got object"):
        train_ground_state(object(), 1)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 2.5"):
        train_ground_state(gs, 2.5)


def test_systems_potentials_and_simulators():
    cases = [
        (lambda: hamiltonians.harmonic_oscillator(omega=INF), "omega must be a positive number"),
        (lambda: hamiltonians.gaussian_bosons(g=NAN), "g must be a finite number, got nan"),
        (lambda: hamiltonians.gaussian_bosons(s=INF), "s must be a positive number, got inf"),
        (lambda: hamiltonians.h2(INF), "bond_length must be a positive number, got inf"),
        (lambda: DoubleWell(INF), "barrier must be a positive number, got inf"),
        (lambda: MullerBrown(INF), "scale must be a positive number, got inf"),
        (lambda: RickerModel(10, n0=INF), "n0 must be a positive number, got inf"),
        (lambda: GaussianLinear(2, prior_var=INF), "prior_var must be a positive number"),
        (lambda: GaussianLinear(2).posterior(torch.zeros(3)), r"y must have shape \(\.\.\., 2\)"),
        (lambda: GaussianLinear(2).posterior(torch.tensor([NAN, 0.0])), "y contains NaN"),
        (lambda: wood_summaries(torch.full((10,), NAN), torch.ones(10)), "y contains NaN"),
        (lambda: WoodSummary(torch.full((10,), NAN)), "reference contains NaN"),
        (lambda: simulate_ricker_at({"log_r": 3.8, "sigma": 0.3}, 10), r"missing \['phi'\]"),
        (lambda: simulate_ricker_at(dict(log_r=3.8, sigma=0.3, phi=10.0), 2.5), "num_steps must"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()
    with pytest.raises(TypeError, match="reference must be a tensor"):
        wood_summaries(torch.ones(10), [1.0] * 10)
    bad = hamiltonians.harmonic_oscillator()
    with pytest.raises(TypeError, match="potential must be a callable"):
        type(bad)(**{**bad.__dict__, "potential": 3})
    with pytest.raises(ValueError, match="interaction must be"):
        type(bad)(**{**bad.__dict__, "interaction": "yukawa"})
