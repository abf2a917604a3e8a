#!/usr/bin/env python
"""Read sbibm's reference data (observations, true parameters, reference posterior samples, the
Bernoulli GLM's stimulus) straight out of the sbibm wheel, without installing sbibm.

The wheel is fetched once with ``python -m pip download sbibm --no-deps`` into a cache folder
(default ``~/.cache/pyrovi/sbibm``) and read with :mod:`zipfile`. Inside it, each task's files
live under ``sbibm/tasks/<task>/files/``::

    num_observation_<n>/observation.csv                      (1, dim_data)
    num_observation_<n>/true_parameters.csv                  (1, dim_parameters)
    num_observation_<n>/reference_posterior_samples.csv.bz2  (10000, dim_parameters)
    num_observation_<n>/observation_raw.csv                  bernoulli_glm only: spikes (1, 100)
    design_matrix.pt, stimulus_I.pt                           bernoulli_glm only

with ``n = 1..10``; the csv files have one header row (``data_1, …`` or ``parameter_1, …``).

This is a benchmark-time helper, not part of the package, and no test uses it. Usage::

    python benchmarks/sbibm_reference.py           # shapes and means of observation 1
    python benchmarks/sbibm_reference.py --check   # also the consistency checks with pyrovi
"""

from __future__ import annotations

import argparse
import bz2
import csv
import functools
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

DEFAULT_CACHE = Path.home() / ".cache" / "pyrovi" / "sbibm"
TASKS = ("gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm")
NUM_OBSERVATIONS = 10


def fetch_sbibm(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """The path of the sbibm wheel in ``cache_dir``, downloaded with pip if none is there yet.

    Raises:
        RuntimeError: pip failed or produced no wheel.
    """
    cache_dir = Path(cache_dir).expanduser()
    wheels = sorted(cache_dir.glob("sbibm-*.whl"))
    if wheels:
        return wheels[-1]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "sbibm", "--no-deps", "-d", str(cache_dir)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(cache_dir.glob("sbibm-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download the sbibm wheel into {cache_dir} ({' '.join(cmd)} exited with "
            f"{result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return wheels[-1]


@functools.lru_cache(maxsize=4)
def _archive(wheel: Path | None) -> zipfile.ZipFile:
    return zipfile.ZipFile(fetch_sbibm() if wheel is None else wheel)


def task_file(task: str, relative: str, wheel: Path | None = None) -> bytes:
    """The bytes of ``sbibm/tasks/<task>/files/<relative>`` inside the wheel.

    Raises:
        ValueError: No such task or file in the wheel.
    """
    archive = _archive(wheel)
    name = f"sbibm/tasks/{task}/files/{relative}"
    try:
        return archive.read(name)
    except KeyError:
        tasks = sorted({n.split("/")[2] for n in archive.namelist() if n.count("/") > 3})
        if task not in tasks:
            raise ValueError(
                f"task must be one of the wheel's tasks {tasks}, got {task!r}"
            ) from None
        raise ValueError(f"the sbibm wheel has no file {name}") from None


def _csv_tensor(data: bytes) -> torch.Tensor:
    """A csv with one header row as a float32 tensor ``(rows, columns)``."""
    rows = list(csv.reader(io.StringIO(data.decode())))[1:]
    return torch.tensor([[float(v) for v in row] for row in rows if row], dtype=torch.float32)


def _observation_file(task: str, num_observation: int, filename: str, wheel: Path | None):
    ok = isinstance(num_observation, int) and not isinstance(num_observation, bool)
    if not ok or not 1 <= num_observation <= NUM_OBSERVATIONS:
        raise ValueError(f"num_observation must be an integer in 1..10, got {num_observation!r}")
    data = task_file(task, f"num_observation_{num_observation}/{filename}", wheel)
    return _csv_tensor(bz2.decompress(data) if filename.endswith(".bz2") else data)


def observation(task: str, num_observation: int, wheel: Path | None = None) -> torch.Tensor:
    """sbibm's observation ``num_observation`` (1..10) of ``task``: ``(dim_data,)`` float32."""
    return _observation_file(task, num_observation, "observation.csv", wheel)[0]


def true_parameters(task: str, num_observation: int, wheel: Path | None = None) -> torch.Tensor:
    """The parameters ``(dim_parameters,)`` that generated the observation."""
    return _observation_file(task, num_observation, "true_parameters.csv", wheel)[0]


def reference_samples(task: str, num_observation: int, wheel: Path | None = None) -> torch.Tensor:
    """sbibm's reference posterior samples ``(10000, dim_parameters)`` for the observation."""
    return _observation_file(task, num_observation, "reference_posterior_samples.csv.bz2", wheel)


def observation_raw(num_observation: int, wheel: Path | None = None) -> torch.Tensor:
    """The Bernoulli GLM's raw spike train ``(100,)`` behind its summary observation."""
    return _observation_file("bernoulli_glm", num_observation, "observation_raw.csv", wheel)[0]


def _torch_file(task: str, relative: str, wheel: Path | None) -> torch.Tensor:
    return torch.load(io.BytesIO(task_file(task, relative, wheel)), weights_only=True)


def bernoulli_glm_design_matrix(wheel: Path | None = None) -> torch.Tensor:
    """sbibm's Bernoulli GLM design matrix ``(100, 10)`` (``design_matrix.pt``)."""
    return _torch_file("bernoulli_glm", "design_matrix.pt", wheel)


def bernoulli_glm_stimulus(wheel: Path | None = None) -> torch.Tensor:
    """sbibm's Bernoulli GLM white-noise stimulus ``(100,)`` (``stimulus_I.pt``)."""
    return _torch_file("bernoulli_glm", "stimulus_I.pt", wheel)


# ------------------------------------------------------------------------ consistency checks


def _prior_importance(model, y, num, chunks, seed):
    """Self-normalized importance sampling from the prior: weighted θ and the ESS."""
    gen = torch.Generator().manual_seed(seed)
    thetas, logw = [], []
    low, high = model.low.double(), model.high.double()
    for _ in range(chunks):
        u = torch.rand(num, low.numel(), generator=gen, dtype=torch.float64)
        theta = low + (high - low) * u
        thetas.append(theta)
        logw.append(model.log_likelihood(theta, y.double()))
    theta, logw = torch.cat(thetas), torch.cat(logw)
    w = torch.softmax(logw, 0)
    return theta, w, float(1.0 / (w**2).sum())


def _report(name, estimate, reference):
    sd = reference.std(0)
    z = (estimate - reference.mean(0)) / sd
    print(f"  {name}: max |mean − reference mean| / reference sd = {float(z.abs().max()):.3f}")


def check_gaussian_linear(n: int = 1) -> None:
    from pyrovi.models import GaussianLinear

    obs, ref = observation("gaussian_linear", n), reference_samples("gaussian_linear", n)
    post = GaussianLinear().posterior(obs.double())
    z = (ref.double().mean(0) - post.mean) / (post.stddev / len(ref) ** 0.5)
    print(
        f"  reference mean − exact posterior mean, in Monte Carlo sds: {z.numpy().round(2)} "
        f"(χ² = {float((z**2).sum()):.1f} on 10 degrees of freedom)"
    )
    print(
        f"  reference sd range {ref.std(0).min():.4f}..{ref.std(0).max():.4f}, "
        f"exact {float(post.stddev[0]):.4f}"
    )


def check_slcp(n: int = 1) -> None:
    from pyrovi.models.sbi_tasks import SLCP

    model, obs, ref = SLCP(), observation("slcp", n), reference_samples("slcp", n)
    truth = true_parameters("slcp", n)
    ll_true = float(model.log_likelihood(truth.double(), obs.double()))
    ll_ref = model.log_likelihood(ref.double(), obs.double())
    print(
        f"  log p(y | θ_true) = {ll_true:.3f}; over the reference samples: median "
        f"{float(ll_ref.median()):.3f}, min {float(ll_ref.min()):.3f} (all finite: "
        f"{bool(torch.isfinite(ll_ref).all())})"
    )
    theta, w, ess = _prior_importance(model, obs, 2_000_000, 10, seed=0)
    print(f"  prior importance sampling with 2e7 draws: ESS {ess:.0f}")
    # s1 = θ3², s2 = θ4² make the likelihood symmetric in the signs of θ3 and θ4: compare |θ3|, |θ4|
    fold = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)

    def folded(t):
        return fold * t + (1 - fold) * t.abs()

    _report(
        "IS (θ1, θ2, |θ3|, |θ4|, θ5)", (w[:, None] * folded(theta)).sum(0), folded(ref.double())
    )


def check_gaussian_mixture(n: int = 1) -> None:
    from pyrovi.models.sbi_tasks import GaussianMixture

    model = GaussianMixture()
    obs, ref = observation("gaussian_mixture", n), reference_samples("gaussian_mixture", n)
    ll = model.log_likelihood(ref.double(), obs.double())
    print(f"  log-likelihood finite at all reference samples: {bool(torch.isfinite(ll).all())}")
    theta, w, ess = _prior_importance(model, obs, 1_000_000, 2, seed=0)
    print(f"  prior importance sampling with 2e6 draws: ESS {ess:.0f}")
    mean = (w[:, None] * theta).sum(0)
    sd = ((w[:, None] * (theta - mean) ** 2).sum(0)).sqrt()
    _report("IS mean", mean, ref.double())
    print(
        f"  sd: IS {sd.numpy().round(4)}, reference {ref.double().std(0).numpy().round(4)}, "
        f"closed form (untruncated) {(0.5 * 1.0 + 0.5 * 0.01) ** 0.5:.4f}"
    )


def check_bernoulli_glm(n: int = 1) -> None:
    from pyro.infer import Predictive

    from pyrovi.models.sbi_tasks import (
        BernoulliGLM,
        bernoulli_glm_design,
        bernoulli_glm_prior_precision,
    )
    from pyrovi.models.sbi_tasks import bernoulli_glm_stimulus as stimulus

    model = BernoulliGLM()
    print(
        f"  stimulus equal to sbibm's: {torch.equal(stimulus(), bernoulli_glm_stimulus())}; "
        f"design matrix equal: {torch.equal(bernoulli_glm_design(), bernoulli_glm_design_matrix())}"
    )
    obs, raw, truth = (
        observation("bernoulli_glm", n),
        observation_raw(n),
        true_parameters("bernoulli_glm", n),
    )
    gap = float((model.summary(raw) - obs).abs().max())
    print(f"  max |Xᵀ observation_raw − observation| = {gap}")
    torch.manual_seed(0)
    sims = Predictive(model, {"theta": truth.expand(2000, -1)}, return_sites=["y"], parallel=True)
    y = sims()["y"]
    z = (obs - y.mean(0)) / y.std(0)
    print(
        f"  spike count: observed {obs[0]:.0f}, simulated at θ_true {y[:, 0].mean():.1f} ± "
        f"{y[:, 0].std():.1f}; z-scores of the 10 statistics: {z.numpy().round(2)}"
    )
    ref = reference_samples("bernoulli_glm", n).double()
    mean, cov = ref.mean(0), torch.cov(ref.T)
    proposal = torch.distributions.MultivariateNormal(mean, 1.5 * cov)
    theta = proposal.sample((200_000,))
    prior = torch.distributions.MultivariateNormal(
        torch.zeros(10, dtype=torch.float64), precision_matrix=bernoulli_glm_prior_precision()
    )
    logw = prior.log_prob(theta) + model.log_likelihood_from_summary(theta, obs.double())
    w = torch.softmax(logw - proposal.log_prob(theta), 0)
    print(
        f"  importance sampling (Gaussian fit to the reference, 2e5 draws): ESS fraction "
        f"{float(1 / (w**2).sum()) / 200_000:.3f}"
    )
    _report("IS mean", (w[:, None] * theta).sum(0), ref)


def consistency_checks(n: int = 1) -> None:
    """Check that sbibm's reference data fit pyrovi's task models (observation ``n``)."""
    for task, check in (
        ("gaussian_linear", check_gaussian_linear),
        ("slcp", check_slcp),
        ("gaussian_mixture", check_gaussian_mixture),
        ("bernoulli_glm", check_bernoulli_glm),
    ):
        print(f"{task}:")
        check(n)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run the consistency checks")
    parser.add_argument(
        "--observations", default="1", help="comma-separated observation numbers to check"
    )
    args = parser.parse_args(argv)
    print(f"wheel: {fetch_sbibm()}")
    for task in TASKS:
        obs, ref = observation(task, 1), reference_samples(task, 1)
        print(
            f"{task}: observation {tuple(obs.shape)}, reference samples {tuple(ref.shape)}, "
            f"mean {ref.mean(0).numpy().round(3)}"
        )
    if args.check:
        for n in (int(v) for v in args.observations.split(",")):
            print(f"--- observation {n}")
            consistency_checks(n)


if __name__ == "__main__":
    main()
