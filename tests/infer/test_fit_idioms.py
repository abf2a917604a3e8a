"""``fit`` on Pyro's own idioms: self-subsampling and unsized plates, DataLoaders of tuples and
dicts, learning-rate schedulers, enumeration, and a param store shared between fits."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pyrovi.infer import fit, load_checkpoint

N, S0 = 1000, 3.0


def _x(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g, dtype=torch.float64) + 1.0).double()


def _fixed_guide(loc, scale):
    """q(mu) = N(loc, scale) with parameters that SGD at lr 1e-30 leaves where they are."""

    def guide(*args, **kwargs):
        m = pyro.param("m", torch.tensor(loc, dtype=torch.float64))
        s = pyro.param("s", torch.tensor(scale, dtype=torch.float64))
        pyro.sample("mu", dist.Normal(m, s))

    return guide


def _exact_elbo_per_datapoint(x, loc, scale):
    """Closed-form ELBO / N of q(mu) = N(loc, scale²) for mu ~ N(0, S0²), x_i ~ N(mu, 1)."""
    n = x.numel()
    lik = -0.5 * math.log(2 * math.pi) * n - 0.5 * float(((x - loc) ** 2).sum() + n * scale**2)
    prior = -0.5 * math.log(2 * math.pi * S0**2) - (loc**2 + scale**2) / (2 * S0**2)
    entropy = 0.5 * math.log(2 * math.pi * math.e * scale**2)
    return (lik + prior + entropy) / n


def _frozen(**kwargs):
    """fit arguments that evaluate the ELBO without moving the parameters."""
    return dict(optimizer=lambda p: torch.optim.SGD(p, lr=1e-30), progress=False, seed=0, **kwargs)


def _model_subsample_idx(x, idx):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), S0))
    with pyro.plate("data", size=N, subsample=idx):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)


def _model_subsample_size(x):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), S0))
    with pyro.plate("data", len(x), subsample_size=100) as ind:
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x[ind])


def _model_unsized(x):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), S0))
    with pyro.plate("data"):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)


def _model_sized(x):
    mu = pyro.sample("mu", dist.Normal(torch.tensor(0.0, dtype=torch.float64), S0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)


@pytest.mark.parametrize(
    "model, data, batch_size",
    [
        (_model_subsample_idx, (_x(), torch.arange(N)), 100),  # fit's minibatches, Pyro's scale
        (_model_subsample_size, _x(), N),  # Pyro subsamples the full data each step
        (_model_subsample_size, _x(), 200),  # both subsample: 100 of every 200
        (_model_unsized, _x(), 100),
        (_model_sized, _x(), 100),
    ],
    ids=["subsample-idx", "subsample-size", "subsample-size-minibatch", "unsized", "sized"],
)
def test_reported_elbo_is_the_full_data_elbo_per_datapoint(model, data, batch_size):
    loc, scale = 1.0, 0.05
    result = fit(
        model, _fixed_guide(loc, scale), data, epochs=20, batch_size=batch_size, **_frozen()
    )
    exact = _exact_elbo_per_datapoint(_x(), loc, scale)
    reported = sum(result.history["train_elbo"]) / len(result.history["train_elbo"])
    # the minibatch estimate is unbiased; over >= 20 steps its error is a few hundredths
    assert reported == pytest.approx(exact, abs=0.05), (reported, exact)


def test_minibatches_without_the_data_plate_are_refused():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, S0))
        with pyro.plate("N", x.shape[0]):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)

    x = _x().float()
    with pytest.raises(ValueError, match=r"no sample site is inside pyro.plate\('data'\)"):
        fit(model, AutoNormal(model), x, epochs=1, batch_size=100, progress=False)
    pyro.clear_param_store()
    result = fit(model, AutoNormal(model), x, epochs=1, batch_size=100, plate="N", progress=False)
    assert math.isfinite(result.history["train_elbo"][0])


# --------------------------------------------------------------------------- DataLoader batches


class _Local(nn.Module):
    """A tiny amortized model and guide pair as methods of one module (Pyro's VAE example)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(3, 2)
        self.dec = nn.Linear(1, 3)

    def model(self, x):
        pyro.module("dec", self.dec)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.dec(z), 1.0).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("enc", self.enc)
        h = self.enc(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(h[:, :1], nn.functional.softplus(h[:, 1:])).to_event(1))


def test_tuple_batches_need_unpack_for_a_model_of_x_alone():
    torch.manual_seed(0)
    x, labels = torch.randn(64, 3), torch.randint(0, 2, (64,))
    loader = DataLoader(TensorDataset(x, labels), batch_size=16)
    net = _Local()
    with pytest.raises(TypeError, match=r"unpack=lambda b: \(\(b\[0\],\), \{\}\)"):
        fit(net.model, net.guide, loader, epochs=1, progress=False)
    result = fit(
        net.model, net.guide, loader, epochs=2, unpack=lambda b: ((b[0],), {}), progress=False
    )
    assert len(result.history["train_elbo"]) == 2 and result.steps == 8
    # the module behind the bound methods is what is trained and saved
    assert set(result.best_state) == {f"model.{n}" for n, _ in net.named_parameters()}


class _DictData(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def test_dict_batches_become_keyword_arguments():
    torch.manual_seed(0)
    x = torch.randn(200)
    y = 2.0 * x + 0.1 * torch.randn(200)

    def model(x, y=None):
        w = pyro.sample("w", dist.Normal(0.0, 10.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(w * x, 0.1), obs=y)

    guide = AutoNormal(model)
    loader = DataLoader(_DictData(x, y), batch_size=50, shuffle=True)
    fit(model, guide, loader, epochs=100, lr=0.05, progress=False, seed=0)
    w = guide.median()["w"]
    # posterior of w: N(Σxy / (Σx² + 1e-4·...), 0.1² / Σx²), sd ~ 0.007
    assert float(w) == pytest.approx(float((x * y).sum() / (x * x).sum()), abs=0.03)


def test_unpack_must_return_args_and_kwargs():
    net = _Local()
    with pytest.raises(TypeError, match=r"unpack must return \(args, kwargs\)"):
        fit(net.model, net.guide, torch.randn(8, 3), epochs=1, unpack=lambda b: b, progress=False)


# --------------------------------------------------------------------------- schedulers


def _sched_run(tmp_path, epochs, resume=False):
    pyro.clear_param_store()
    torch.manual_seed(0)
    net = _Local()
    result = fit(
        net.model,
        net.guide,
        torch.randn(64, 3, generator=torch.Generator().manual_seed(1)),
        epochs=epochs,
        batch_size=16,
        lr=0.1,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
        checkpoint=tmp_path / "s.pt",
        resume=resume,
        progress=False,
        seed=2,
    )
    return net, result


def test_scheduler_steps_each_epoch_and_resumes(tmp_path):
    straight_net, straight = _sched_run(tmp_path / "a", 4)
    assert straight.history["lr"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    _sched_run(tmp_path / "b", 2)
    assert load_checkpoint(tmp_path / "b" / "s.pt")["scheduler"]["last_epoch"] == 2
    resumed_net, resumed = _sched_run(tmp_path / "b", 4, resume=True)
    assert resumed.history["lr"] == straight.history["lr"]
    for a, b in zip(straight_net.parameters(), resumed_net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_reduce_on_plateau_uses_the_epoch_objective():
    net = _Local()
    result = fit(
        net.model,
        net.guide,
        torch.randn(32, 3),
        epochs=6,
        lr=0.1,
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0),
        progress=False,
        seed=0,
    )
    assert len(result.history["lr"]) == 6 and result.history["lr"][0] == 0.1


@pytest.mark.parametrize(
    "scheduler, match",
    [
        ("step", "scheduler must be a factory optimizer -> torch LR scheduler"),
        (lambda opt: 3, "scheduler factory must return a torch.optim.lr_scheduler"),
    ],
)
def test_bad_scheduler_is_named(scheduler, match):
    net = _Local()
    with pytest.raises(ValueError, match=match):
        fit(net.model, net.guide, torch.randn(8, 3), epochs=1, scheduler=scheduler, progress=False)


def test_a_scheduler_instance_is_refused():
    net = _Local()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    with pytest.raises(ValueError, match="not an instance|must be a factory"):
        fit(net.model, net.guide, torch.randn(8, 3), epochs=1, scheduler=sched, progress=False)


# --------------------------------------------------------------------------- enumeration


def _gmm(x):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("components", 2):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", x.shape[0]):
        k = pyro.sample("k", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("obs", dist.Normal(locs[k], 1.0), obs=x)


def test_enumerated_model_trains_with_trace_enum_and_is_refused_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(150, generator=g) - 5.0, torch.randn(150, generator=g) + 5.0])
    guide = AutoDelta(poutine.block(_gmm, expose=["weights", "locs"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refusal, without Pyro's "Found vars ..." before it
        with pytest.raises(ValueError, match=r"\['k'\] are marked for enumeration"):
            fit(_gmm, guide, x, epochs=1, progress=False)
    pyro.clear_param_store()
    guide = AutoDelta(
        poutine.block(_gmm, expose=["weights", "locs"]),
        init_loc_fn=lambda site: (
            torch.tensor([-1.0, 1.0])
            if site["name"] == "locs"
            else None or pyro.infer.autoguide.init_to_sample(site)
        ),
    )
    fit(
        _gmm,
        guide,
        x,
        epochs=60,
        batch_size=100,
        lr=0.1,
        loss=TraceEnum_ELBO(max_plate_nesting=1),
        progress=False,
        seed=0,
    )
    locs = guide.median()["locs"].sort().values
    torch.testing.assert_close(locs, torch.tensor([-5.0, 5.0]), atol=0.4, rtol=0)


# --------------------------------------------------------------------------- the param store


def _same_sites_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, S0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)


def test_a_second_autoguide_of_the_same_class_is_warned_about(tmp_path):
    x = _x(100).float()
    first = AutoNormal(_same_sites_model)
    fit(_same_sites_model, first, x, epochs=1, progress=False)
    again = fit(_same_sites_model, first, x, epochs=1, progress=False)  # same guide: no warning
    assert again.epochs == 1

    def other_model(x):
        mu = pyro.sample("mu", dist.Normal(5.0, S0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mu, 2.0), obs=x)

    with pytest.warns(UserWarning, match=r"already holds 'AutoNormal.locs.mu'.*clear_param_store"):
        fit(other_model, AutoNormal(other_model), x, epochs=1, progress=False)
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(other_model, AutoNormal(other_model), x, epochs=1, progress=False)


def test_a_second_model_saves_only_its_own_parameters_and_resumes(tmp_path):
    x = torch.randn(64, 3)
    first = _Local()
    fit(first.model, first.guide, x, epochs=1, progress=False, checkpoint=tmp_path / "a.pt")
    second = _Local()  # same pyro.module names, new modules, no clear_param_store()
    before = [p.detach().clone() for p in second.parameters()]
    fit(second.model, second.guide, x, epochs=1, progress=False, checkpoint=tmp_path / "b.pt")
    saved = load_checkpoint(tmp_path / "b.pt")["params"]
    assert len(saved) == len(list(second.parameters())) == 4
    # the new modules were trained (not the first model's leftover store entries)
    assert all(not torch.equal(a, b) for a, b in zip(before, second.parameters()))
    for name, p in second.named_parameters():
        torch.testing.assert_close(saved[f"model.{name}"], p.detach())
    store = pyro.get_param_store()
    assert store._params["enc$$$weight"] is second.enc.weight
    fit(
        second.model,
        second.guide,
        x,
        epochs=2,
        progress=False,
        checkpoint=tmp_path / "b.pt",
        resume=True,
    )


def test_module_local_params_work():
    x = _x(100).float()
    with pyro.settings.context(module_local_params=True):
        guide = AutoNormal(_same_sites_model)
        fit(_same_sites_model, guide, x, epochs=30, batch_size=100, lr=0.1, progress=False)
        assert len(pyro.get_param_store().keys()) == 0
        assert float(guide.median()["mu"]) == pytest.approx(float(x.mean()), abs=0.2)


def test_a_latent_the_guide_misses_keeps_pyros_warning():
    """Not enumerated: fit trains it from the prior, as Pyro's Trace_ELBO does, and passes on
    Pyro's warning about it rather than hiding it."""

    def model(x):
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(a + b, 1.0), obs=x)

    def guide(x):
        pyro.sample("a", dist.Normal(pyro.param("m", torch.tensor(0.0)), 1.0))

    pyro.clear_param_store()
    with pytest.warns(UserWarning, match=r"Found vars in model but not guide: \{'b'\}"):
        fit(model, guide, torch.zeros(10), epochs=1, progress=False, seed=0)
