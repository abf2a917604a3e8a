"""Expected coverage and TARP: calibration of posterior approximations from their samples alone.

Both score test simulations ``(θ_i, y_i) ~ p(θ) p(y | θ)`` against draws from an approximate
posterior ``q(θ | y_i)``. For each test a *credibility* ``f_i ∈ (0, 1)`` is the (randomized)
fraction of draws that are "more central" than the true ``θ_i``; if ``q`` is the exact posterior,
the ``f_i`` are uniform, so the fraction of tests with ``f_i ≤ α`` (the empirical coverage of the
``α`` credible regions) equals ``α`` at every level. Below the diagonal the approximation is
over-confident (its regions are too small) or biased; above it, under-confident.

* :func:`expected_coverage`: "more central" by the posterior density when ``log_prob`` is given
  (highest-density regions), otherwise by the Mahalanobis distance to the draws' mean (ellipsoidal
  regions; the mean and covariance come from half of the draws and the ranks from the other half,
  so the test stays exact);
* :func:`tarp`: "more central" as closer to a random reference point than ``θ_i`` is (Lemos et
  al. 2023, Tests of Accuracy with Random Points): needs only samples, and its coverage is the
  diagonal for every reference distribution only when ``q`` is exact.

Each works for any sampler ``sample(y_batch, L) -> (L, B, D)``: an NPE posterior, the sampler of a
learned likelihood, or ABC (:func:`abc_sampler`). A Kolmogorov–Smirnov p-value tests the
uniformity of the ``f_i``; :func:`plot_coverage` draws coverage against level with the binomial
band of a calibrated posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pyrovi._checks import check_int, check_tensor
from pyrovi.infer.calibration import posterior_draws

__all__ = ["CoverageResult", "expected_coverage", "tarp", "plot_coverage", "abc_sampler"]

Sampler = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(repr=False)
class CoverageResult:
    """What :func:`expected_coverage` and :func:`tarp` return.

    Attributes:
        levels: Credibility levels ``(K,)`` in ``(0, 1)``.
        coverage: Fraction of tests whose true parameters lie in the region of each level
            ``(K,)``.
        band: ``(2, K)``: the central 99% band of that fraction for a calibrated posterior
            (binomial quantiles over ``num_tests``).
        credibility: Per test, ``f_i`` ``(N,)`` (uniform on (0, 1) when calibrated).
        p_value: Kolmogorov–Smirnov p-value of ``f_i`` against the uniform distribution.
        num_tests: N.
        num_posterior_samples: Draws per test.
        method: ``"hpd"``, ``"ellipsoid"`` or ``"tarp"``.
    """

    levels: torch.Tensor
    coverage: torch.Tensor
    band: torch.Tensor
    credibility: torch.Tensor
    p_value: float
    num_tests: int
    num_posterior_samples: int
    method: str

    def outside_band(self) -> float:
        """Fraction of levels whose coverage lies outside the 99% band."""
        out = (self.coverage < self.band[0]) | (self.coverage > self.band[1])
        return float(out.double().mean())

    def as_dict(self) -> dict:
        """Plain ``dict`` of lists (for JSON)."""
        return {
            "levels": self.levels.tolist(),
            "coverage": self.coverage.tolist(),
            "band": self.band.tolist(),
            "p_value": self.p_value,
            "num_tests": self.num_tests,
            "num_posterior_samples": self.num_posterior_samples,
            "method": self.method,
        }

    def __repr__(self) -> str:
        return (
            f"CoverageResult(method={self.method!r}, tests={self.num_tests}, "
            f"p_value={self.p_value:.3g}, outside_band={self.outside_band():.2f})"
        )


def _randomized_fraction(below: torch.Tensor, total: int, generator) -> torch.Tensor:
    """``(below + u)/(total + 1)``, ``u ~ U(0, 1)``: exactly uniform when ``below`` is uniform on
    ``0..total``."""
    u = torch.rand(below.shape, dtype=torch.float64, generator=generator)
    return (below.double() + u) / (total + 1)


def _result(
    credibility: torch.Tensor, levels: torch.Tensor | None, samples: int, method: str
) -> CoverageResult:
    from scipy.stats import binom, kstest

    if levels is None:
        levels = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    else:
        levels = torch.as_tensor(levels, dtype=torch.float64)
        if levels.dim() != 1 or len(levels) == 0 or not bool(((levels > 0) & (levels < 1)).all()):
            raise ValueError(f"levels: expected a 1-D sequence in (0, 1), got {levels.tolist()}")
    n = len(credibility)
    coverage = (credibility[None, :] <= levels[:, None]).double().mean(-1)
    band = torch.from_numpy(binom.ppf([[0.005], [0.995]], n, levels.numpy()[None, :]) / n)
    p_value = float(kstest(credibility.numpy(), "uniform").pvalue)
    return CoverageResult(levels, coverage, band, credibility, p_value, n, samples, method)


def expected_coverage(
    sample: Sampler,
    theta: torch.Tensor,
    y: torch.Tensor,
    num_posterior_samples: int = 1000,
    *,
    log_prob: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    levels: Sequence[float] | None = None,
    batch_size: int = 100,
    seed: int = 0,
) -> CoverageResult:
    """Expected coverage of the posterior's credible regions over test simulations.

    Args:
        sample: ``sample(y_batch, L)`` returning draws ``(L, B, D)`` for data ``(B, ...)``, e.g.
            ``lambda y, L: npe.posterior(y).sample((L,))``.
        theta: True parameters ``(N, D)``.
        y: Their simulated data ``(N, ...)``.
        num_posterior_samples: Draws per test L (≥ 4).
        log_prob: ``log_prob(theta (K, B, D), y_batch) -> (K, B)``, the approximation's log
            density: highest-density regions. Without it, ellipsoids around the draws' mean.
        levels: Credibility levels in (0, 1) (default 0.01, 0.02, …, 0.99).
        batch_size: Data sets per call of ``sample``.
        seed: Seed of the randomization that breaks ties of the ranks.

    Returns:
        A :class:`CoverageResult` (method ``"hpd"`` or ``"ellipsoid"``).

    Raises:
        TypeError, ValueError: As :func:`~pyrovi.infer.sbc_ranks` for the sampler, data and
            counts; bad ``levels``.
    """
    num_posterior_samples = check_int("num_posterior_samples", num_posterior_samples, minimum=4)
    generator = torch.Generator().manual_seed(int(seed))
    below = []
    for t, yb, draws in posterior_draws(sample, theta, y, num_posterior_samples, batch_size):
        if log_prob is not None:
            with torch.no_grad():
                values = log_prob(torch.cat([t[None], draws]), yb)
            if not isinstance(values, torch.Tensor) or values.shape != (len(draws) + 1, len(t)):
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
                raise ValueError(
                    f"log_prob must return ({len(draws) + 1}, {len(t)}) log densities for "
                    f"theta ({len(draws) + 1}, {len(t)}, D), got {got}"
                )
            below.append((values[1:] > values[:1]).sum(0).cpu())  # draws more probable
        else:
            half = len(draws) // 2
            fit, rank = draws[:half].double(), draws[half:].double()
            mean = fit.mean(0)  # (B, D)
            centred = fit - mean
            cov = torch.einsum("lbi,lbj->bij", centred, centred) / (half - 1)
            eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
            jitter = 1e-10 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
            chol = torch.linalg.cholesky(cov + jitter[:, None, None] * eye)

            def dist(x: torch.Tensor, mean=mean, chol=chol) -> torch.Tensor:
                """Squared Mahalanobis distances ``(B, K)`` of points ``(K, B, D)``."""
                z = torch.linalg.solve_triangular(chol, (x - mean).permute(1, 2, 0), upper=False)
                return (z * z).sum(-2)

            d_rank = dist(rank)  # (B, L - half)
            d_true = dist(t.double()[None])  # (B, 1)
            below.append((d_rank < d_true).sum(-1).cpu())
    counts = torch.cat(below)
    total = (
        num_posterior_samples
        if log_prob is not None
        else num_posterior_samples - (num_posterior_samples // 2)
    )
    credibility = _randomized_fraction(counts, total, generator)
    return _result(
        credibility, levels, num_posterior_samples, "hpd" if log_prob is not None else "ellipsoid"
    )


def tarp(
    sample: Sampler,
    theta: torch.Tensor,
    y: torch.Tensor,
    num_posterior_samples: int = 1000,
    *,
    references: torch.Tensor | None = None,
    levels: Sequence[float] | None = None,
    batch_size: int = 100,
    seed: int = 0,
) -> CoverageResult:
    """TARP coverage (Lemos et al. 2023): distances to random reference points.

    Parameters are standardized by the spread of ``theta`` over the tests (so each counts alike);
    for test i, ``f_i`` is the fraction of draws closer to the reference point ``r_i`` than
    ``θ_i`` is.

    Args:
        sample: As :func:`expected_coverage`.
        theta: True parameters ``(N, D)`` (draws from the prior).
        y: Their data ``(N, ...)``.
        num_posterior_samples: Draws per test L.
        references: Reference points ``(N, D)``; default uniform over the box that ``theta``
            spans (per test, independent of ``θ_i``).
        levels: Credibility levels in (0, 1).
        batch_size: Data sets per call of ``sample``.
        seed: Seed of the reference points and of the tie randomization.

    Returns:
        A :class:`CoverageResult` with method ``"tarp"``.
    """
    num_posterior_samples = check_int("num_posterior_samples", num_posterior_samples)
    check_tensor("theta", theta, dim=2, nonempty=True, finite=True)
    generator = torch.Generator().manual_seed(int(seed))
    lo, hi = theta.min(0).values.double().cpu(), theta.max(0).values.double().cpu()
    scale = theta.double().std(0).cpu() if len(theta) > 1 else torch.ones(theta.shape[1])
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if references is None:
        u = torch.rand(theta.shape, dtype=torch.float64, generator=generator)
        references = lo + u * (hi - lo)
    else:
        check_tensor("references", references, finite=True)
        if references.shape != theta.shape:
            raise ValueError(
                f"references: expected one point per test, shape {tuple(theta.shape)}, got "
                f"{tuple(references.shape)}"
            )
        references = references.double().cpu()
    below, start = [], 0
    for t, _, draws in posterior_draws(sample, theta, y, num_posterior_samples, batch_size):
        ref = references[start : start + len(t)]
        start += len(t)
        d_draws = (((draws.double().cpu() - ref) / scale) ** 2).sum(-1)  # (L, B)
        d_true = (((t.double().cpu() - ref) / scale) ** 2).sum(-1)  # (B,)
        below.append((d_draws < d_true).sum(0))
    credibility = _randomized_fraction(torch.cat(below), num_posterior_samples, generator)
    return _result(credibility, levels, num_posterior_samples, "tarp")


def abc_sampler(
    params: Sequence[str],
    observed: str,
    theta: torch.Tensor,
    y: torch.Tensor,
    *,
    summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
    scale: str = "mad",
) -> Sampler:
    """Rejection ABC as a sampler ``sample(y_batch, L) -> (L, B, D)`` over a bank of simulations.

    For each data set, the ``L`` simulations of the bank nearest in (scaled) summaries are the
    draws (:func:`~pyrovi.infer.abc_rejection` with the quantile ``L / len(theta)``).

    Args:
        params: Parameter site names (for the result's order).
        observed: Observed site name.
        theta: Bank of parameters ``(M, D)``.
        y: Their simulated data ``(M, ...)``.
        summary: Summary statistics (default the data itself).
        scale: ``"mad"`` or ``"std"``.
    """
    from pyrovi.infer.abc import abc_rejection

    check_tensor("theta", theta, dim=2, nonempty=True, finite=True)

    def sample(y_batch: torch.Tensor, num: int) -> torch.Tensor:
        if num > len(theta):
            raise ValueError(
                f"abc_sampler: {num} draws asked from a bank of {len(theta)} simulations"
            )
        out = []
        for y_obs in y_batch:
            res = abc_rejection(
                None,
                params,
                observed,
                y_obs,
                theta=theta,
                y=y,
                summary=summary,
                scale=scale,
                quantile=min(1.0, (num + 0.5) / len(theta)),
            )
            if len(res.samples) < num:
                raise ValueError(
                    f"abc_sampler: only {len(res.samples)} finite simulations near the data, "
                    f"{num} asked"
                )
            out.append(res.samples[:num])
        return torch.stack(out, 1)

    return sample


def plot_coverage(
    results: CoverageResult | Sequence[CoverageResult],
    labels: Sequence[str] | None = None,
    path: str | None = None,
):
    """Coverage against credibility level, the diagonal and the calibrated 99% band.

    Args:
        results: One result or several (drawn on the same axes).
        labels: A label per result (default its method and p-value).
        path: Save the figure there when given.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(results, CoverageResult):
        results = [results]
    results = list(results)
    if not results or not all(isinstance(r, CoverageResult) for r in results):
        raise TypeError("results: expected a CoverageResult or a sequence of them")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"labels: expected {len(results)} labels, got {len(labels)}")
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    first = results[0]
    ax.fill_between(
        first.levels, first.band[0], first.band[1], color="0.85", label="99% band (calibrated)"
    )
    ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--", label="diagonal")
    for k, res in enumerate(results):
        label = labels[k] if labels is not None else f"{res.method} (p = {res.p_value:.2g})"
        ax.plot(res.levels, res.coverage, lw=1.6, label=label)
    ax.set(xlabel="credibility level", ylabel="empirical coverage", xlim=(0, 1), ylim=(0, 1))
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
