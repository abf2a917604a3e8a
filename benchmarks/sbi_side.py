#!/usr/bin/env python
"""The ``sbi`` side of the pyrovi-vs-sbi wall-time benchmark (NPE, TSNPE, NLE on sbibm tasks).

Runs one method of the ``sbi`` package (mackelab) with its own defaults on one task, budget and
observation, and writes the wall times and the posterior samples. It does NOT import pyrovi: run
it with the Python of a separate environment that has ``sbi`` (never the package's)::

    python3.11 -m venv /tmp/sbi_env
    /tmp/sbi_env/bin/pip install torch==2.13.0   # first: the CPU build
    /tmp/sbi_env/bin/pip install sbi             # tested with sbi 0.27.0, nflows 0.14

    OMP_WAIT_POLICY=PASSIVE /tmp/sbi_env/bin/python benchmarks/sbi_side.py \\
        --task gaussian_linear --method npe --budget 1000 --obs obs.pt --out out/npe.json

Tasks (priors and simulators written here in plain torch, after sbibm 1.1.0's definitions):

* ``gaussian_linear``: θ ∈ R^10, θ ~ N(0, 0.1 I), y | θ ~ N(θ, 0.1 I) (0.1 is a variance).
* ``slcp``: θ ∈ R^5, θ ~ U(-3, 3)^5; four i.i.d. 2-d Gaussian points with mean (θ1, θ2),
  standard deviations θ3², θ4², correlation tanh θ5 (1e-6 added to the variances); y is the
  4 × 2 points flattened point by point (8-d).
* ``gaussian_mixture``: θ ∈ R^2, θ ~ U(-10, 10)^2; y ~ 0.5 N(θ, I) + 0.5 N(θ, 0.01 I) (one
  component per draw for both coordinates).
* ``bernoulli_glm``: θ ∈ R^10 (offset and a 9-tap filter), Gaussian prior with mean 0 and
  precision blockdiag(0.5, FᵀF), F = D² + diag(sqrt(i / 9)), D the first-difference matrix;
  100 Bernoulli bins with logits Xθ, X = [1, 9 lagged copies of a white-noise stimulus
  I ~ N(0, 1) (numpy RandomState(42))]; summary statistics (10-d): the spike count and the
  9 spike-triggered sums Σ_t y_t I_{t-k}, k = 0..8 (sbibm's conv1d with padding 8, last 9).
  X and I are rebuilt from the seed (bit-identical to sbibm's files); with ``--sbibm-dir``
  (the unzipped sbibm wheel, or its ``sbibm/tasks/bernoulli_glm/files`` folder) they are loaded
  from ``design_matrix.pt`` and ``stimulus_I.pt`` instead.

Methods (sbi's defaults except as noted; all with ``density_estimator="maf"``, nflows MAF with
5 transforms of 50 hidden units, or with ``--density-estimator nsf`` sbi's spline flow (5
transforms of 50 hidden units, 10 bins); training batch 200, Adam 5e-4, 10% validation,
patience 20):

* ``npe``: ``NPE(prior, density_estimator="maf").append_simulations(θ, y).train()``, then
  ``build_posterior().sample((n,), x=y_o)`` (direct sampling, rejecting outside the prior).
* ``tsnpe``: truncated sequential NPE as in sbi's tutorial: ``--num-rounds`` rounds of
  ``budget / num_rounds`` simulations; round r draws θ from the proposal (the prior, then
  ``RestrictedPrior(prior, get_density_thresholder(posterior, quantile=1e-4),
  sample_with="rejection")``), then ``append_simulations(θ, y).train(force_first_round_loss=True)``
  and ``build_posterior().set_default_x(y_o)``. The thresholder samples 10^6 θ from the
  posterior (``--thresholder-samples``) and evaluates their density; its time is
  ``truncate_s`` (70-80 s for a 10-d MAF on one thread: it dominates at small budgets).
* ``nle``: ``NLE(prior, density_estimator="maf").append_simulations(θ, y).train()``, then
  ``build_posterior()`` with sbi's default sampler (MCMC ``slice_np_vectorized``, 20 chains,
  200 warm-up steps, no thinning, ``resample`` initialisation; ``--mcmc-method``,
  ``--num-chains`` override it) and ``.sample((n,), x=y_o)``.

``--sims SIMS.pt`` (a torch file with ``theta`` (N, D) and ``y`` (N, S)) makes NPE and NLE train
on the first ``--budget`` of those simulations instead of simulating (so both libraries train
on the same data), and TSNPE take its first round from them.

Output: OUT.json with the times (``simulate_s``, ``train_s``, ``truncate_s``, ``sample_s``,
``total_s``; wall seconds by ``time.perf_counter``; ``total_s`` is their sum, excluding
imports and set-up, which are ``startup_s``), epochs, versions and settings; the samples go to
OUT.json's sibling ``.pt`` file (``samples_path``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

T_START = time.perf_counter()
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TASKS = ("gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm")
METHODS = ("npe", "tsnpe", "nle")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--budget", type=int, required=True, help="number of simulations in all")
    p.add_argument("--obs", required=True, help="torch file with the observation, shape (S,)")
    p.add_argument("--out", required=True, help="JSON file to write (samples go beside it)")
    p.add_argument("--num-samples", type=int, default=10_000)
    p.add_argument("--num-rounds", type=int, default=2, help="TSNPE rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sims", default=None, help="torch file with theta (N, D) and y (N, S)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sbibm-dir", default=None, help="unzipped sbibm wheel (bernoulli_glm)")
    p.add_argument(
        "--density-estimator",
        choices=("maf", "nsf"),
        default="maf",
        help="sbi's flow: maf (nflows MAF) or nsf (nflows rational-quadratic spline coupling)",
    )
    p.add_argument(
        "--mcmc-method", default=None, help="NLE sampler (default: sbi's, slice_np_vectorized)"
    )
    p.add_argument("--num-chains", type=int, default=None, help="NLE MCMC chains (sbi: 20)")
    p.add_argument(
        "--thresholder-samples",
        type=int,
        default=1_000_000,
        help="TSNPE: posterior samples for get_density_thresholder (sbi's default 10^6)",
    )
    p.add_argument("--quiet", action="store_true", help="hide sbi's warnings")
    p.add_argument("--progress", action="store_true", help="show sbi's tqdm progress bars")
    args = p.parse_args(argv)
    if args.budget < 1 or args.num_samples < 1 or args.num_rounds < 1 or args.threads < 1:
        p.error("--budget, --num-samples, --num-rounds and --threads must be positive")
    if args.method == "tsnpe" and args.budget // args.num_rounds < 2:
        p.error("--budget / --num-rounds must be at least 2")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before torch and numpy load: their BLAS / OpenMP pools read these once.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import distributions as D  # noqa: E402

# --------------------------------------------------------------------------------------------
# Tasks: prior (a torch Distribution over θ of shape (D,)) and a batched simulator θ -> y.
# --------------------------------------------------------------------------------------------


class Task:
    name: str
    dim_theta: int
    dim_y: int

    def prior(self) -> D.Distribution:
        raise NotImplementedError

    def simulate(self, theta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GaussianLinear(Task):
    name, dim_theta, dim_y = "gaussian_linear", 10, 10
    prior_var = 0.1
    noise_var = 0.1

    def prior(self):
        d = self.dim_theta
        return D.MultivariateNormal(torch.zeros(d), self.prior_var * torch.eye(d))

    def simulate(self, theta):
        return theta + self.noise_var**0.5 * torch.randn_like(theta)


class SLCP(Task):
    name, dim_theta, dim_y = "slcp", 5, 8
    num_points = 4
    eps = 1e-6

    def prior(self):
        return D.Independent(D.Uniform(-3.0 * torch.ones(5), 3.0 * torch.ones(5)), 1)

    def simulate(self, theta):
        n = theta.shape[0]
        s1, s2 = theta[:, 2] ** 2, theta[:, 3] ** 2
        rho = torch.tanh(theta[:, 4])
        # Covariance [[s1² + eps, ρ s1 s2], [ρ s1 s2, s2² + eps]], Cholesky factor in closed form.
        v11, v22, c = s1**2 + self.eps, s2**2 + self.eps, rho * s1 * s2
        l11 = v11.sqrt()
        l21 = c / l11
        l22 = (v22 - l21**2).clamp_min(0.0).sqrt()
        z = torch.randn(n, self.num_points, 2, dtype=theta.dtype)
        x1 = theta[:, None, 0] + l11[:, None] * z[..., 0]
        x2 = theta[:, None, 1] + l21[:, None] * z[..., 0] + l22[:, None] * z[..., 1]
        return torch.stack((x1, x2), dim=-1).reshape(n, 2 * self.num_points)


class GaussianMixture(Task):
    name, dim_theta, dim_y = "gaussian_mixture", 2, 2
    scales = (1.0, 0.1)  # standard deviations of the two equally weighted components

    def prior(self):
        return D.Independent(D.Uniform(-10.0 * torch.ones(2), 10.0 * torch.ones(2)), 1)

    def simulate(self, theta):
        idx = torch.randint(0, 2, (theta.shape[0], 1))
        scale = torch.tensor(self.scales, dtype=theta.dtype)[idx]
        return theta + scale * torch.randn_like(theta)


class BernoulliGLM(Task):
    name, dim_theta, dim_y = "bernoulli_glm", 10, 10
    num_bins = 100
    stimulus_seed = 42

    def __init__(self, sbibm_dir: str | None = None):
        if sbibm_dir is None:
            self.stimulus = torch.from_numpy(
                np.random.RandomState(self.stimulus_seed).randn(self.num_bins).astype(np.float32)
            )
            taps = self.dim_theta - 1
            x = torch.zeros(self.num_bins, taps)
            for j in range(taps):
                x[j:, j] = self.stimulus[: self.num_bins - j]
            self.design = torch.cat((torch.ones(self.num_bins, 1), x), dim=1)
            self.source = f"rebuilt (numpy RandomState({self.stimulus_seed}))"
        else:
            files = Path(sbibm_dir)
            for sub in ("sbibm/tasks/bernoulli_glm/files", "tasks/bernoulli_glm/files"):
                if (files / sub).is_dir():
                    files = files / sub
                    break
            self.design = torch.load(files / "design_matrix.pt").float()
            self.stimulus = torch.load(files / "stimulus_I.pt").float().reshape(-1)
            self.source = str(files)

    def prior(self):
        m = self.dim_theta - 1
        diff = torch.eye(m) - torch.diag(torch.ones(m - 1), -1)
        f = diff @ diff + torch.diag((torch.arange(m) / m) ** 0.5)
        precision = torch.zeros(m + 1, m + 1)
        precision[0, 0] = 0.5
        precision[1:, 1:] = f.T @ f
        return D.MultivariateNormal(torch.zeros(m + 1), precision_matrix=precision)

    def simulate(self, theta):
        psi = theta @ self.design.T  # (N, 100) logits
        spikes = (torch.rand_like(psi) < torch.sigmoid(psi)).to(theta.dtype)
        count = spikes.sum(1, keepdim=True)
        sta = torch.nn.functional.conv1d(
            spikes[:, None, :], self.stimulus.to(theta.dtype).reshape(1, 1, -1), padding=8
        )[:, 0, -9:]
        return torch.cat((count, sta), dim=1)


def make_task(name: str, sbibm_dir: str | None = None) -> Task:
    if name == "bernoulli_glm":
        return BernoulliGLM(sbibm_dir)
    return {"gaussian_linear": GaussianLinear, "slcp": SLCP, "gaussian_mixture": GaussianMixture}[
        name
    ]()


# --------------------------------------------------------------------------------------------
# Methods.
# --------------------------------------------------------------------------------------------


class Timer:
    def __init__(self):
        self.times: dict[str, float] = {
            "simulate_s": 0.0,
            "train_s": 0.0,
            "truncate_s": 0.0,
            "sample_s": 0.0,
        }

    def __call__(self, key: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[key] += time.perf_counter() - self.t0

        return _Ctx()


def load_sims(path: str, n: int, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.load(path)
    theta, y = torch.as_tensor(data["theta"]).float(), torch.as_tensor(data["y"]).float()
    if theta.ndim != 2 or y.ndim != 2 or theta.shape[0] != y.shape[0]:
        raise ValueError(f"--sims: theta {tuple(theta.shape)} and y {tuple(y.shape)} must be 2-d")
    if theta.shape[1] != task.dim_theta or y.shape[1] != task.dim_y:
        raise ValueError(
            f"--sims: expected theta (N, {task.dim_theta}) and y (N, {task.dim_y}) for "
            f"{task.name}, got {tuple(theta.shape)} and {tuple(y.shape)}"
        )
    if theta.shape[0] < n:
        raise ValueError(f"--sims holds {theta.shape[0]} simulations, fewer than {n}")
    return theta[:n], y[:n]


def run_single_round(args, task, prior, x_o, timer, info):
    from sbi.inference import NLE, NPE

    if args.sims is not None:
        theta, y = load_sims(args.sims, args.budget, task)
        info["sims_from"] = args.sims
    else:
        with timer("simulate_s"):
            theta = prior.sample((args.budget,))
            y = task.simulate(theta)
    cls = NPE if args.method == "npe" else NLE
    inference = cls(prior=prior, density_estimator=args.density_estimator, show_progress_bars=False)
    with timer("train_s"):
        inference.append_simulations(theta, y).train()
    info["epochs"] = int(inference.epoch)
    if args.method == "npe":
        posterior = inference.build_posterior()
        with timer("sample_s"):
            samples = posterior.sample((args.num_samples,), x=x_o, show_progress_bars=False)
        info["sampler"] = "direct (rejecting outside the prior support)"
    else:
        kwargs = {}
        if args.mcmc_method is not None or args.num_chains is not None:
            # sbi 0.27 warns that mcmc_parameters= is deprecated in favour of this dataclass.
            from sbi.inference.posteriors.posterior_parameters import MCMCPosteriorParameters

            mcmc = {"method": args.mcmc_method or "slice_np_vectorized"}
            if args.num_chains is not None:
                mcmc["num_chains"] = args.num_chains
            kwargs["posterior_parameters"] = MCMCPosteriorParameters(**mcmc)
        posterior = inference.build_posterior(**kwargs)
        with timer("sample_s"):
            samples = posterior.sample((args.num_samples,), x=x_o, show_progress_bars=False)
        info["sampler"] = describe_mcmc(posterior, args)
    return samples


def describe_mcmc(posterior, args) -> dict:
    out = {"sample_with": "mcmc"}
    for attr in ("method", "thin", "warmup_steps", "num_chains", "init_strategy"):
        value = getattr(posterior, attr, None)
        if value is None:
            value = getattr(posterior, f"_{attr}", None)
        if isinstance(value, (str, int, float)):
            out[attr] = value
    out["overridden"] = {
        k: v
        for k, v in (("mcmc_method", args.mcmc_method), ("num_chains", args.num_chains))
        if v is not None
    }
    return out


class _NoBars:
    """The posterior as get_density_thresholder sees it (``sample``, ``log_prob``), minus the
    tqdm bar that ``DirectPosterior.sample`` shows by default (the thresholder passes no flag)."""

    def __init__(self, posterior):
        self.posterior = posterior

    def sample(self, shape):
        return self.posterior.sample(shape, show_progress_bars=False)

    def log_prob(self, theta):
        return self.posterior.log_prob(theta)


def run_tsnpe(args, task, prior, x_o, timer, info):
    from sbi.inference import NPE
    from sbi.utils import RestrictedPrior, get_density_thresholder

    per_round = args.budget // args.num_rounds
    inference = NPE(prior=prior, density_estimator=args.density_estimator, show_progress_bars=False)
    proposal = prior
    epochs, acceptance = [], []
    posterior = None
    for r in range(args.num_rounds):
        if r == 0 and args.sims is not None:
            theta, y = load_sims(args.sims, per_round, task)
            info["sims_from"] = f"{args.sims} (first round)"
        else:
            with timer("simulate_s"):
                theta = proposal.sample((per_round,))
                y = task.simulate(theta)
        with timer("train_s"):
            inference.append_simulations(theta, y).train(force_first_round_loss=True)
        epochs.append(int(inference.epoch))
        posterior = inference.build_posterior().set_default_x(x_o)
        if r < args.num_rounds - 1:
            with timer("truncate_s"):
                accept_reject_fn = get_density_thresholder(
                    posterior if args.progress else _NoBars(posterior),
                    quantile=1e-4,
                    num_samples_to_estimate_support=args.thresholder_samples,
                )
                proposal = RestrictedPrior(prior, accept_reject_fn, sample_with="rejection")
            with torch.no_grad():
                probe = prior.sample((10_000,))
                acceptance.append(float(accept_reject_fn(probe).float().mean()))
    with timer("sample_s"):
        samples = posterior.sample((args.num_samples,), show_progress_bars=False)
    info.update(
        epochs=epochs,
        simulations_per_round=per_round,
        thresholder={"quantile": 1e-4, "num_samples_to_estimate_support": args.thresholder_samples},
        prior_mass_kept_per_truncation=acceptance,
        sampler="direct (rejecting outside the prior support)",
    )
    return samples


def load_obs(path: str, task: Task) -> torch.Tensor:
    obs = torch.load(path)
    if isinstance(obs, dict):
        for key in ("obs", "x_o", "y", "observation"):
            if key in obs:
                obs = obs[key]
                break
    obs = torch.as_tensor(obs).float().reshape(-1)
    if obs.shape[0] != task.dim_y:
        raise ValueError(f"--obs: expected {task.dim_y} values for {task.name}, got {obs.shape[0]}")
    return obs


def main(args: argparse.Namespace) -> dict:
    import sbi
    import sbi.inference  # noqa: F401  (imported here so that startup_s counts it)
    import sbi.utils  # noqa: F401

    if args.quiet:
        warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    task = make_task(args.task, args.sbibm_dir)
    prior = task.prior()
    x_o = load_obs(args.obs, task)
    timer = Timer()
    info: dict = {"startup_s": time.perf_counter() - T_START}
    with warnings.catch_warnings(record=True) as caught:
        if not args.quiet:
            warnings.simplefilter("always")
        if args.method == "tsnpe":
            samples = run_tsnpe(args, task, prior, x_o, timer, info)
        else:
            samples = run_single_round(args, task, prior, x_o, timer, info)
    seen = []
    for w in caught:
        msg = f"{w.category.__name__}: {str(w.message).strip()}"
        if msg not in seen:
            seen.append(msg)
            print(msg, file=sys.stderr)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samples_path = out.with_suffix(".pt")
    torch.save(samples.detach().cpu(), samples_path)
    versions = {"sbi": sbi.__version__, "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("nflows", "zuko"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            pass
    result = {
        "task": args.task,
        "method": args.method,
        "library": "sbi",
        "budget": args.budget,
        "seed": args.seed,
        "num_samples": args.num_samples,
        "num_rounds": args.num_rounds if args.method == "tsnpe" else 1,
        "density_estimator": args.density_estimator,
        **timer.times,
        "total_s": sum(timer.times.values()),
        **info,
        "samples_path": str(samples_path),
        "samples_shape": list(samples.shape),
        "samples_finite": bool(torch.isfinite(samples).all()),
        "threads": args.threads,
        "versions": versions,
        "warnings": seen,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
    }
    if args.task == "bernoulli_glm":
        result["design_matrix_from"] = task.source
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    res = main(ARGS)
    keys = ("simulate_s", "train_s", "truncate_s", "sample_s", "total_s")
    # sbi ends its "converged after N epochs" line without a newline.
    print("\n" + json.dumps({k: res[k] for k in ("task", "method", "budget", "epochs", *keys)}))
