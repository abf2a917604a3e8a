"""Bad data and plate names of the diagnostics (issue 17): NaN or empty data are named before
any model runs, and a plate that the model does not have is refused instead of silently
treating every latent as global."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrovi.diagnostics import (
    active_units,
    inference_gaps,
    kl_per_dimension,
    plot_image_rows,
    posterior_collapse,
    posterior_means,
    psis,
    psis_khat,
    to_inference_data,
)
from pyrovi.guides import AmortizedFlow, AmortizedNormal
from pyrovi.models import VAE

NAN = float("nan")


def _vae(plate="data"):
    return VAE(4, 2, hidden_dims=(8,)), AmortizedNormal(4, 2, hidden_dims=(8,), plate=plate)


def _x(n=6):
    return torch.rand(n, 4)


def _nan_x():
    x = _x()
    x[2, 1] = NAN
    return x


def _batch_model(x):
    with pyro.plate("batch", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _batch_guide(x):
    with pyro.plate("batch", x.shape[0]):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0))


@pytest.mark.parametrize(
    "run",
    [
        lambda *a, **k: psis_khat(*a, num_samples=30, **k),
        lambda *a, **k: to_inference_data(*a, num_samples=5, **k),
    ],
)
def test_plates_and_arguments_of_psis_and_inference_data(run):
    model, guide = _vae()
    with pytest.raises(ValueError, match=r"plate='datta' is not a plate .* \['data'\]"):
        run(model, guide, _x(), plate="datta")
    with pytest.raises(ValueError, match=r"no plate 'data' .* pass plate='batch'"):
        run(_batch_model, _batch_guide, torch.randn(5))
    with pytest.raises(ValueError, match=r"args\[0\] contains NaN or infinite values"):
        run(model, guide, _nan_x())
    with pytest.raises(ValueError, match=r"args\[0\] is empty \(shape \(0, 4\)\)"):
        run(model, guide, torch.empty(0, 4))
    run(_batch_model, _batch_guide, torch.randn(5), plate="batch")  # named: works


def test_inference_data_uses_the_named_plate_for_its_dimension():
    idata = to_inference_data(
        _batch_model, _batch_guide, torch.randn(5), num_samples=4, plate="batch"
    )
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "batch")


def test_psis_options():
    model, guide = _vae()
    with pytest.raises(ValueError, match="max_samples_per_pass must be a positive integer, got 0"):
        psis_khat(model, guide, _x(), num_samples=30, max_samples_per_pass=0)
    with pytest.raises(ValueError, match="r_eff must be a positive number, got inf"):
        psis(torch.randn(100), r_eff=float("inf"))
    with pytest.raises(ValueError, match="r_eff must be a positive number, got True"):
        psis(torch.randn(100), r_eff=True)


def test_gaps_and_collapse_check_their_data():
    model, guide = _vae()
    cases = [
        (lambda d: inference_gaps(model, guide, d, 30, 2), "inference_gaps"),
        (lambda d: posterior_collapse(model, guide, d), "posterior_collapse"),
        (lambda d: active_units(guide, d), "active_units"),
        (lambda d: kl_per_dimension(model, guide, d), "kl_per_dimension"),
        (lambda d: posterior_means(guide, d), "posterior_means"),
    ]
    for run, caller in cases:
        with pytest.raises(ValueError, match=f"{caller}: data contains NaN or infinite values"):
            run(_nan_x())
        with pytest.raises(ValueError, match=f"{caller}: data is empty"):
            run(torch.empty(0, 4))
    with pytest.raises(ValueError, match="refine_lr must be a positive number, got inf"):
        inference_gaps(model, guide, _x(), 30, 2, refine_lr=float("inf"))
    with pytest.raises(ValueError, match="refine_particles must be an integer >= 1, got 0"):
        inference_gaps(model, guide, _x(), 30, 2, refine_particles=0)
    with pytest.raises(ValueError, match="threshold must be a non-negative number, got inf"):
        posterior_collapse(model, guide, _x(), float("inf"))
    flow = AmortizedFlow(4, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 2.5"):
        posterior_means(flow, _x(), num_samples=2.5)


def test_inference_gaps_refuses_a_plate_the_model_does_not_have():
    def guide(x):  # a function guide without a plate attribute
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[0]), 1.0).to_event(1))

    with pytest.raises(ValueError, match=r"inference_gaps: plate='datta' is not a plate"):
        inference_gaps(_batch_model, guide, torch.randn(4), 30, 2, plate="datta")


def test_plot_image_rows_checks_cols():
    rows = [("a", torch.rand(2, 4, 4))]
    for cols in (2.5, -1, 0):
        with pytest.raises(ValueError, match="cols must be a positive integer"):
            plot_image_rows(rows, cols=cols)
