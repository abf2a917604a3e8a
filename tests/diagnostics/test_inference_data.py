"""``to_inference_data``: groups, dims and shapes; values against closed forms; ArviZ functions
and the netCDF round trip on the result."""

import logging
import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovi
from pyrovi.diagnostics import load_inference_data, to_inference_data
from pyrovi.diagnostics._arviz import import_arviz
from pyrovi.guides import AmortizedNormal
from pyrovi.models import VAE
from tests.diagnostics.conjugate import ConjugateNormal
from tests.diagnostics.idioms import (
    GMM_DATA,
    BayesianRegression,
    gmm,
    gmm_mixture_log_lik,
    regression_data,
)
from tests.infer.ppca import PPCA

az = import_arviz()


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_global_latent_groups_dims_and_values(device, float64, parallel):
    conj = ConjugateNormal(n=20, device=device)
    x = conj.x
    s = 300
    idata = to_inference_data(conj.model, conj.guide, x, num_samples=s, parallel=parallel)
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data"):
        assert hasattr(idata, group), group
    post = idata.posterior
    assert post["mu"].dims == ("chain", "draw") and post["mu"].shape == (1, s)
    assert post["mu2"].dims == ("chain", "draw")
    assert post["mean"].dims == ("chain", "draw", "data") and post["mean"].shape == (1, s, 20)
    np.testing.assert_array_equal(post["data"].values, np.arange(20))
    mu = post["mu"].values[0]
    np.testing.assert_allclose(post["mu2"].values[0], 2 * mu)
    np.testing.assert_allclose(post["mean"].values[0], np.repeat(mu[:, None], 20, axis=1))
    # the draws follow the guide (here the exact posterior)
    exact = conj.posterior(x)
    assert abs(mu.mean() - exact.loc.item()) < 4 * exact.scale.item() / math.sqrt(s)

    xs = x.cpu().numpy()
    assert idata.observed_data["x"].dims == ("data",)
    np.testing.assert_array_equal(idata.observed_data["x"].values, xs)
    ll = idata.log_likelihood["x"]
    assert ll.dims == ("chain", "draw", "data") and ll.shape == (1, s, 20)
    expected = dist.Normal(torch.as_tensor(mu)[:, None], conj.sigma).log_prob(
        torch.as_tensor(xs)[None]
    )
    np.testing.assert_allclose(ll.values[0], expected.numpy(), rtol=1e-12)

    pp = idata.posterior_predictive["x"]
    assert pp.dims == ("chain", "draw", "data") and pp.shape == (1, s, 20)
    # y_rep | mu ~ N(mu, sigma²): the residuals have mean 0 and sd sigma
    resid = pp.values[0] - mu[:, None]
    assert abs(resid.mean()) < 4 * conj.sigma / math.sqrt(resid.size)
    assert abs(resid.std() - conj.sigma) < 0.05

    stats = idata.sample_stats
    assert stats["lp"].dims == ("chain", "draw") and stats["log_weight"].dims == ("chain", "draw")
    assert "pointwise_log_weight" not in stats  # a global latent has no per-datapoint weight
    # the exact posterior as guide: every log weight equals log p(x)
    np.testing.assert_allclose(
        stats["log_weight"].values, conj.log_evidence(x).item(), rtol=0, atol=1e-9
    )
    # lp = log p(mu) + sum_i log p(x_i | mu)
    log_prior = dist.Normal(0.0, conj.tau).log_prob(torch.as_tensor(mu)).numpy()
    np.testing.assert_allclose(stats["lp"].values[0], log_prior + ll.values[0].sum(1), rtol=1e-12)

    attrs = idata.posterior.attrs
    assert attrs["inference_library"] == "pyro"
    assert attrs["inference_library_version"] == pyro.__version__
    assert attrs["pyrovi_version"] == pyrovi.__version__
    assert idata.attrs["num_samples"] == s


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_local_latents_have_a_data_dimension_and_pointwise_weights(device, float64, parallel):
    ppca = PPCA(d=4, k=2, device=device)
    x = ppca.sample(15)
    idata = to_inference_data(ppca.model, ppca.exact_guide, x, num_samples=50, parallel=parallel)
    z = idata.posterior["z"]
    assert z.dims == ("chain", "draw", "data", "z_dim_1") and z.shape == (1, 50, 15, 2)
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "data")
    assert idata.posterior_predictive["x"].dims == ("chain", "draw", "data", "x_dim_1")
    assert idata.posterior_predictive["x"].shape == (1, 50, 15, 4)
    assert idata.observed_data["x"].dims == ("data", "x_dim_1")
    pointwise = idata.sample_stats["pointwise_log_weight"]
    assert pointwise.dims == ("chain", "draw", "data")
    exact = ppca.log_evidence(x).cpu().numpy()
    np.testing.assert_allclose(pointwise.values[0], np.broadcast_to(exact, (50, 15)), atol=1e-9)
    np.testing.assert_allclose(
        idata.sample_stats["log_weight"].values[0], pointwise.values[0].sum(1), rtol=1e-12
    )


def test_vae_with_amortized_guide(device):
    model = VAE(6, 3, hidden_dims=(8,)).to(device)
    guide = AmortizedNormal(6, 3, hidden_dims=(8,)).to(device)
    x = torch.rand(10, 6, device=device).round()
    idata = to_inference_data(model, guide, x, num_samples=7, parallel=True)
    assert idata.posterior["z"].shape == (1, 7, 10, 3)
    assert idata.posterior_predictive["x"].shape == (1, 7, 10, 6)
    assert set(np.unique(idata.posterior_predictive["x"].values)) <= {0.0, 1.0}
    assert idata.log_likelihood["x"].shape == (1, 7, 10)
    assert idata.sample_stats["pointwise_log_weight"].shape == (1, 7, 10)
    assert np.isfinite(idata.sample_stats["log_weight"].values).all()
    assert idata.posterior.attrs["guide"] == "AmortizedNormal"


def regression(x, y=None):
    w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[-1]), 1.0).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal((x * w).sum(-1), 0.5), obs=y)


def regression_guide(x, y=None):
    loc = pyro.param("loc", torch.zeros(x.shape[-1]))
    pyro.sample("w", dist.Normal(loc, 0.1).to_event(1))


def test_coords_and_dims_override_the_defaults():
    x, y = torch.randn(12, 3), torch.randn(12)
    idata = to_inference_data(
        regression,
        regression_guide,
        x,
        y,
        num_samples=5,
        dims={"w": ["feature"]},
        coords={"feature": ["a", "b", "c"], "data": np.arange(100, 112)},
    )
    w = idata.posterior["w"]
    assert w.dims == ("chain", "draw", "feature")
    assert list(w["feature"].values) == ["a", "b", "c"]
    assert list(idata.observed_data["data"].values) == list(range(100, 112))
    # default names are "<site>_dim_<axis>"
    idata = to_inference_data(regression, regression_guide, x, y, num_samples=5)
    assert idata.posterior["w"].dims == ("chain", "draw", "w_dim_0")


def test_arviz_functions_run_without_warnings(float64, caplog):
    import matplotlib.pyplot as plt

    conj = ConjugateNormal(n=30)
    idata = to_inference_data(conj.model, conj.guide, conj.x, num_samples=400, parallel=True)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        summary = az.summary(idata, var_names=["mu"], kind="stats")
        loo = az.loo(idata, pointwise=True)
        ax_ppc = az.plot_ppc(idata, num_pp_samples=20, random_seed=0)
        ax_post = az.plot_posterior(idata, var_names=["mu"])
    # Warnings about the data (shapes, chains, Pareto k: UserWarning, RuntimeWarning) or logged
    # by ArviZ would fail; deprecations inside ArviZ/matplotlib's own calls are not about it.
    about_data = [
        w
        for w in caught
        if not issubclass(
            w.category, DeprecationWarning | PendingDeprecationWarning | FutureWarning
        )
    ]
    assert not about_data, [str(w.message) for w in about_data]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    plt.close("all")
    post = conj.posterior(conj.x)
    assert summary.loc["mu", "mean"] == pytest.approx(post.loc.item(), abs=0.05)
    assert summary.loc["mu", "sd"] == pytest.approx(post.scale.item(), rel=0.15)
    assert loo.pareto_k.shape == (30,) and math.isfinite(float(loo.elpd_loo))
    assert ax_ppc is not None and ax_post is not None


def test_netcdf_round_trip(tmp_path, float64):
    import xarray as xr

    ppca = PPCA(d=3, k=2)
    x = ppca.sample(8)
    idata = to_inference_data(ppca.model, ppca.exact_guide, x, num_samples=6)
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    loaded = load_inference_data(path)
    groups = ("posterior", "posterior_predictive", "log_likelihood", "observed_data")
    for group in (*groups, "sample_stats"):
        original, reloaded = getattr(idata, group), getattr(loaded, group)
        xr.testing.assert_identical(original.load(), reloaded.load())
    assert loaded.attrs == idata.attrs
    with pytest.raises(FileNotFoundError, match="path: no netCDF file at"):
        load_inference_data(tmp_path / "missing.nc")


def test_arviz_1_from_dict_gets_one_nested_dict(monkeypatch):
    """ArviZ 1.x: ``from_dict(data, *, ..., attrs={group: attrs, "/": attrs})`` -> DataTree."""
    import pyrovi.diagnostics._arviz as compat

    calls = []

    def from_dict(data, *, name=None, sample_dims=None, coords=None, dims=None, attrs=None):
        calls.append({"data": data, "coords": coords, "dims": dims, "attrs": attrs})
        return "tree"

    class ArviZ1:
        pass

    stub = ArviZ1()
    stub.from_dict = from_dict
    monkeypatch.setattr(compat, "import_arviz", lambda: stub)
    conj = ConjugateNormal(n=4)
    assert to_inference_data(conj.model, conj.guide, conj.x.float(), num_samples=3) == "tree"
    (call,) = calls
    groups = call["data"]
    assert set(groups) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    }
    assert groups["posterior"]["mu"].shape == (1, 3)
    assert groups["observed_data"]["x"].shape == (4,)
    assert set(call["attrs"]) == {"/", *groups}
    assert call["attrs"]["/"]["inference_library"] == "pyro"
    assert call["dims"]["mean"] == ["data"] and call["dims"]["x"] == ["data"]
    assert list(call["coords"]["data"]) == [0, 1, 2, 3]


def test_errors_name_the_argument():
    conj = ConjugateNormal(n=5)
    x = conj.x.float()

    def empty_guide(x):
        pass

    with pytest.raises(ValueError, match=r"model latent site\(s\) \['mu'\] are not sampled"):
        to_inference_data(conj.model, empty_guide, x, num_samples=3)
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        to_inference_data(conj.model, conj.guide, x, num_samples=0)
    with pytest.raises(TypeError, match="coords must be a mapping"):
        to_inference_data(conj.model, conj.guide, x, num_samples=3, coords=[1, 2])
    with pytest.raises(TypeError, match="dims must be a mapping"):
        to_inference_data(conj.model, conj.guide, x, num_samples=3, dims="w")

    def flattening(x, y=None):  # reshape(-1) mixes the draws of an outer plate into one axis
        w = pyro.sample("w", dist.Normal(x.new_zeros(x.shape[-1]), 1.0).to_event(1))
        pyro.deterministic("flat", w.reshape(-1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal((x * w).sum(-1), 1.0), obs=y)

    x, y = torch.randn(4, 3), torch.randn(4)
    with pytest.raises(ValueError, match=r"site 'flat'.*shape \(15,\).*pass vectorize=False"):
        to_inference_data(flattening, regression_guide, x, y, num_samples=5, vectorize=True)
    with pytest.raises(ValueError, match=r"site 'flat'.*shape \(15,\)"):
        to_inference_data(flattening, regression_guide, x, y, num_samples=5, parallel=True)
    with pytest.raises(ValueError, match="vectorize=True and parallel=False disagree"):
        to_inference_data(conj.model, conj.guide, x, vectorize=True, parallel=False)
    with pytest.warns(UserWarning, match="to_inference_data: .*site 'flat'.*one at a time"):
        idata = to_inference_data(flattening, regression_guide, x, y, num_samples=5)
    assert idata.posterior["flat"].shape == (1, 5, 3)
    idata = to_inference_data(flattening, regression_guide, x, y, num_samples=5, vectorize=False)
    w = idata.posterior["w"].values[0]
    np.testing.assert_array_equal(idata.posterior["flat"].values[0], w)


# --------------------------------------------------------------------------- Pyro idioms


def unsized_model(conj):
    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau))
        with pyro.plate("data"):  # size inferred from the data by broadcasting
            pyro.sample("x", dist.Normal(mu, conj.sigma), obs=x)

    return model


@pytest.mark.parametrize("vectorize", [None, False])
def test_unsized_plate_takes_its_size_from_the_data(float64, vectorize):
    conj = ConjugateNormal(n=12)
    idata = to_inference_data(
        unsized_model(conj), conj.guide, conj.x, num_samples=40, vectorize=vectorize
    )
    ll = idata.log_likelihood["x"]
    assert ll.dims == ("chain", "draw", "data") and ll.shape == (1, 40, 12)
    mu = torch.as_tensor(idata.posterior["mu"].values[0])
    expected = dist.Normal(mu[:, None], conj.sigma).log_prob(conj.x[None])
    np.testing.assert_allclose(ll.values[0], expected.numpy(), rtol=1e-12)
    # the posterior predictive has the observations' shape too
    assert idata.posterior_predictive["x"].shape == (1, 40, 12)
    np.testing.assert_allclose(
        idata.sample_stats["log_weight"].values, conj.log_evidence(conj.x).item(), atol=1e-9
    )


def test_sized_model_plate_with_unsized_guide_plate(float64):
    ppca = PPCA(d=4, k=2)
    x = ppca.sample(9)

    def guide(x):
        with pyro.plate("data"):
            pyro.sample("z", ppca.posterior(x))

    idata = to_inference_data(ppca.model, guide, x, num_samples=20)
    assert idata.posterior["z"].dims == ("chain", "draw", "data", "z_dim_1")
    pointwise = idata.sample_stats["pointwise_log_weight"].values[0]
    np.testing.assert_allclose(
        pointwise, np.broadcast_to(ppca.log_evidence(x).numpy(), (20, 9)), atol=1e-9
    )


def test_log_densities_are_exported_in_float64():
    conj = ConjugateNormal(n=10)
    x = conj.x.float()
    idata = to_inference_data(conj.model, conj.guide, x, num_samples=30)
    assert idata.posterior["mu"].dtype == np.float32  # values keep the model's dtype
    assert idata.log_likelihood["x"].dtype == np.float64
    for name in ("lp", "log_weight"):
        assert idata.sample_stats[name].dtype == np.float64


def exact_loo(conj, x):
    """Σ_i log p(x_i | x_-i): the posterior predictive of x_i given the other n - 1."""
    n = x.shape[0]
    precision = 1 / conj.tau**2 + (n - 1) / conj.sigma**2
    others = (x.sum() - x) / conj.sigma**2 / precision
    return dist.Normal(others, (conj.sigma**2 + 1 / precision) ** 0.5).log_prob(x).sum().item()


def test_loo_and_compare_match_the_exact_leave_one_out_evidence():
    # float32 model (as most are); the exported float64 log-likelihood keeps az.loo finite
    models = {}
    for tau in (2.0, 0.1):
        conj = ConjugateNormal(n=30, tau=tau)
        x = conj.x.float()
        idata = to_inference_data(conj.model, conj.guide, x, num_samples=4000)
        loo = az.loo(idata)
        assert math.isfinite(float(loo.elpd_loo))
        # draws from the exact posterior: PSIS-LOO recovers Σ log p(x_i | x_-i)
        assert float(loo.elpd_loo) == pytest.approx(exact_loo(conj, conj.x), abs=0.05)
        models[f"tau={tau}"] = idata
    table = az.compare(models)
    assert np.isfinite(table["elpd_loo"].values).all()
    assert list(table.index) == ["tau=2.0", "tau=0.1"]  # the data are far from 0: tau=0.1 loses


def test_random_subsample_draws_share_one_subsample(float64):
    conj = ConjugateNormal(n=20)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), conj.tau))
        with pyro.plate("data", 20, subsample_size=6) as i:
            pyro.sample("x", dist.Normal(mu, conj.sigma), obs=x[i])

    for vectorize in (True, False):
        idata = to_inference_data(model, conj.guide, conj.x, num_samples=25, vectorize=vectorize)
        index = idata.log_likelihood["data"].values.copy()
        assert len(index) == 6 and len(set(index.tolist())) == 6
        np.testing.assert_array_equal(idata.observed_data["x"].values, conj.x[index].numpy())
        # pointwise log-likelihood per datapoint of the subsample: Pyro's 20 / 6 divided out
        mu = torch.as_tensor(idata.posterior["mu"].values[0])
        expected = dist.Normal(mu[:, None], conj.sigma).log_prob(conj.x[index][None])
        np.testing.assert_allclose(idata.log_likelihood["x"].values[0], expected, rtol=1e-12)
        # lp keeps Pyro's scale: an estimate for all 20 datapoints
        prior = dist.Normal(0.0, conj.tau).log_prob(mu)
        lp = prior + 20 / 6 * expected.sum(1)
        np.testing.assert_allclose(idata.sample_stats["lp"].values[0], lp, rtol=1e-12)


def test_bayesian_regression_tutorial_model(float64):
    from pyro.infer.autoguide import AutoDiagonalNormal

    x, y = regression_data(n=20)
    model = BayesianRegression()
    guide = AutoDiagonalNormal(model)
    with pytest.warns(UserWarning, match="t\\(\\) expects a tensor.*vectorize=False"):
        idata = to_inference_data(model, guide, x, y, num_samples=30)
    post = idata.posterior
    assert post["linear.weight"].shape == (1, 30, 1, 3) and post["sigma"].shape == (1, 30)
    assert idata.log_likelihood["obs"].shape == (1, 30, 20)
    assert np.isfinite(idata.sample_stats["log_weight"].values).all()


def test_enumerated_mixture_log_likelihood_sums_out_the_assignment(float64):
    def guide(data):
        pyro.sample("weights", dist.Dirichlet(torch.tensor([40.0, 60.0])))
        pyro.sample("scale", dist.LogNormal(0.4, 0.1))
        with pyro.plate("components", 2):
            pyro.sample("locs", dist.Normal(torch.tensor([0.5, 11.0]), 0.3))

    idata = to_inference_data(gmm, guide, GMM_DATA, num_samples=300, vectorize=False)
    post = idata.posterior
    assert set(post.data_vars) == {"weights", "scale", "locs"}  # enumerated: summed out
    w, locs, scale = (torch.as_tensor(post[n].values[0]) for n in ("weights", "locs", "scale"))
    expected = gmm_mixture_log_lik(w, locs, scale)
    np.testing.assert_allclose(idata.log_likelihood["obs"].values[0], expected, atol=1e-10)
    assert idata.posterior_predictive["obs"].shape == (1, 300, len(GMM_DATA))
    assert math.isfinite(float(az.loo(idata).elpd_loo))


def test_enumerated_sites_shared_by_two_observations_are_refused(float64):
    def model(data):
        with pyro.plate("data", len(data)):
            a = pyro.sample("a", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
            pyro.sample("u", dist.Normal(a, 1.0), obs=data)
            pyro.sample("v", dist.Normal(-a, 1.0), obs=data)

    with pytest.raises(
        ValueError, match=r"observed site\(s\) \['u', 'v'\] depend on the enumerated"
    ):
        to_inference_data(model, lambda data: None, GMM_DATA, num_samples=3)
