"""Calibration checks of posterior approximations: simulation-based calibration (SBC) and the
classifier two-sample test (C2ST)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pyrovi._checks import check_bool, check_callable, check_int, check_optional_int, check_tensor
from pyrovi._validation import all_finite

__all__ = ["sbc_ranks", "sbc_uniformity", "plot_sbc_ranks", "c2st", "SBCResult"]


@dataclass
class SBCResult:
    """What :func:`sbc_ranks` returns.

    Attributes:
        ranks: ``(N, D)`` integer ranks in ``0..L`` of each true parameter among ``L`` posterior
            samples (the number of samples strictly below it).
        num_posterior_samples: L.
        p_values: ``(D,)`` uniformity p-values (:func:`sbc_uniformity`).
    """

    ranks: torch.Tensor
    num_posterior_samples: int
    p_values: torch.Tensor


def posterior_draws(
    sample: Callable[[torch.Tensor, int], torch.Tensor],
    theta: torch.Tensor,
    y: torch.Tensor,
    num_posterior_samples: int,
    batch_size: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Checked posterior draws for test simulations, batch by batch (no gradients).

    Yields ``(theta_batch (B, D), y_batch (B, ...), draws (L, B, D))``, ``theta_batch`` on the
    draws' device and dtype.

    Raises:
        TypeError: ``sample`` not callable; ``theta`` or ``y`` not tensors; ``sample`` returns
            something other than a tensor.
        ValueError: ``theta`` not ``(N, D)`` with N ≥ 1 and finite values, ``y`` without N rows;
            a count that is not a positive integer; draws of the wrong shape or with NaN/inf
            values (a NaN compares false and would be silently counted).
    """
    check_callable("sample", sample, "a callable sample(y_batch, L) -> (L, B, D) draws")
    check_tensor("theta", theta, dim=2, nonempty=True, finite=True)
    check_tensor("y", y)
    if y.dim() == 0 or y.shape[0] != theta.shape[0]:
        raise ValueError(
            f"theta must be (N, D) and y (N, ...), got {tuple(theta.shape)} and {tuple(y.shape)}"
        )
    num_posterior_samples = check_int("num_posterior_samples", num_posterior_samples)
    batch_size = check_int("batch_size", batch_size)
    with torch.no_grad():
        for i in range(0, len(theta), batch_size):
            y_batch = y[i : i + batch_size]
            draws = sample(y_batch, num_posterior_samples)
            if not isinstance(draws, torch.Tensor):
                raise TypeError(f"sample must return a tensor, got {type(draws).__name__}")
            t = theta[i : i + batch_size].to(draws)
            if draws.shape != (num_posterior_samples,) + t.shape:
                raise ValueError(
                    f"sample must return ({num_posterior_samples}, B, D) = "
                    f"{(num_posterior_samples, *t.shape)}, got {tuple(draws.shape)}"
                )
            if draws.is_floating_point() and not all_finite(draws):
                raise ValueError(
                    f"sample returned NaN or infinite posterior draws for the data sets "
                    f"{i}..{i + len(t) - 1}; calibration checks need finite draws (a NaN "
                    "compares false and would count as rank 0)"
                )
            yield t, y_batch, draws


def sbc_ranks(
    sample: Callable[[torch.Tensor], torch.Tensor],
    theta: torch.Tensor,
    y: torch.Tensor,
    num_posterior_samples: int = 100,
    batch_size: int = 100,
    num_bins: int | None = None,
) -> SBCResult:
    """Simulation-based calibration (Talts et al. 2018) over test simulations ``(θ_i, y_i)``.

    If the posterior approximation is exact, the rank of ``θ_i`` among ``L`` draws from
    ``q(θ | y_i)`` is uniform on ``0..L`` for each parameter.

    Args:
        sample: ``sample(y_batch, L)`` returning draws ``(L, B, D)`` for data ``(B, ...)``, e.g.
            ``lambda y, L: npe.posterior(y).sample((L,))``.
        theta: True parameters ``(N, D)``.
        y: Their simulated data ``(N, ...)``.
        num_posterior_samples: L.
        batch_size: Data sets per call of ``sample``.
        num_bins: Histogram bins of the uniformity test (see :func:`sbc_uniformity`).

    Returns:
        :class:`SBCResult`.

    Raises:
        TypeError: ``sample`` not callable; ``theta`` or ``y`` not tensors; ``sample`` returns
            something other than a tensor.
        ValueError: ``theta`` not ``(N, D)`` with N ≥ 1 and finite values, ``y`` without N rows;
            a count that is not a positive integer; draws of the wrong shape or with NaN/inf
            values (a rank among NaN draws would be 0, silently).
    """
    num_bins = check_optional_int("num_bins", num_bins)
    ranks = [
        (draws < t).sum(0).cpu()
        for t, _, draws in posterior_draws(sample, theta, y, num_posterior_samples, batch_size)
    ]
    ranks_t = torch.cat(ranks)
    return SBCResult(
        ranks_t,
        num_posterior_samples,
        sbc_uniformity(ranks_t, num_posterior_samples, num_bins),
    )


def sbc_uniformity(
    ranks: torch.Tensor, num_posterior_samples: int, num_bins: int | None = None
) -> torch.Tensor:
    """Chi-square test that SBC ranks are uniform on ``0..L``, per parameter.

    The ``L + 1`` rank values are grouped into ``num_bins`` equal-width bins (default: as many as
    keep at least 10 expected counts per bin, at most 20, and dividing ``L + 1`` evenly when
    possible); the statistic is compared with χ² on ``num_bins − 1`` degrees of freedom.

    Args:
        ranks: ``(N, D)`` ranks.
        num_posterior_samples: L.
        num_bins: Number of bins.

    Returns:
        ``(D,)`` p-values (float64).
    """
    from scipy.stats import chi2

    num_posterior_samples = check_int("num_posterior_samples", num_posterior_samples)
    num_bins = check_optional_int("num_bins", num_bins)
    check_tensor("ranks", ranks)
    if ranks.dim() != 2:
        raise ValueError(f"ranks must have shape (N, D), got {tuple(ranks.shape)}")
    check_tensor("ranks", ranks, nonempty=True)
    if ranks.is_floating_point() or ranks.is_complex() or ranks.dtype == torch.bool:
        raise TypeError(f"ranks must be an integer tensor, got dtype {ranks.dtype}")
    lo, hi = int(ranks.min()), int(ranks.max())
    if lo < 0 or hi > num_posterior_samples:
        raise ValueError(
            f"ranks must lie in 0..num_posterior_samples={num_posterior_samples}, got values in "
            f"{lo}..{hi}"
        )
    n, values = ranks.shape[0], num_posterior_samples + 1
    if num_bins is None:
        top = max(2, min(20, n // 10, values))
        divisors = [b for b in range(2, top + 1) if values % b == 0]
        num_bins = divisors[-1] if divisors else top
    if not 2 <= num_bins <= values:
        raise ValueError(f"num_bins must be in [2, L + 1 = {values}], got {num_bins!r}")
    # bin edges on the rank scale: rank r falls into floor(r * bins / (L + 1))
    idx = (ranks.long() * num_bins) // values
    counts = torch.stack(
        [torch.bincount(idx[:, j], minlength=num_bins) for j in range(ranks.shape[1])]
    )
    width = torch.tensor(
        [((np.arange(values) * num_bins) // values == b).sum() for b in range(num_bins)],
        dtype=torch.float64,
    )
    expected = n * width / values
    stat = ((counts.double() - expected) ** 2 / expected).sum(-1)
    return torch.from_numpy(chi2.sf(stat.numpy(), num_bins - 1))


def plot_sbc_ranks(
    result: SBCResult,
    names: Sequence[str] | None = None,
    num_bins: int = 20,
    path: str | None = None,
):
    """Rank histograms with the 99% band of a uniform histogram (binomial quantiles).

    Args:
        result: From :func:`sbc_ranks`.
        names: Parameter names for the panel titles.
        num_bins: Histogram bins.
        path: Save the figure there when given.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import binom

    ranks = result.ranks.numpy()
    n, d = ranks.shape
    values = result.num_posterior_samples + 1
    num_bins = min(num_bins, values)
    names = list(names) if names is not None else [f"θ{j}" for j in range(d)]
    fig, axes = plt.subplots(1, d, figsize=(3.2 * d, 2.8), squeeze=False)
    lo, hi = binom.ppf([0.005, 0.995], n, 1.0 / num_bins)
    for j, ax in enumerate(axes[0]):
        ax.hist(ranks[:, j], bins=np.linspace(0, values, num_bins + 1), color="C0", alpha=0.8)
        ax.axhspan(lo, hi, color="0.8", zorder=0, label="99% band (uniform)")
        ax.axhline(n / num_bins, color="0.4", lw=1, label="expected count (uniform)")
        ax.set_title(f"{names[j]}  (p = {float(result.p_values[j]):.2f})")
        ax.set_xlabel("rank")
    axes[0][0].set_ylabel("count")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # the legend below the panels covers no bar
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def c2st(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    hidden: int | None = None,
    max_iter: int = 1000,
    early_stopping: bool = True,
) -> float:
    """Classifier two-sample test: cross-validated accuracy of telling ``x`` from ``y``.

    Both sets are z-scored with the mean and standard deviation of ``x`` (the reference), a
    scikit-learn ``MLPClassifier`` (two ReLU hidden layers of width ``hidden``, default ``10 D``,
    Adam) is trained in ``folds``-fold stratified cross-validation, and the mean held-out
    accuracy is returned: 0.5 when the distributions are indistinguishable, 1 when they are
    disjoint. With ``early_stopping`` (default) each classifier stops once the accuracy on 10% of
    its training fold has not improved for 10 epochs (its best epoch is kept); without it, it
    trains until the training loss stalls or ``max_iter`` (sbibm's protocol, far slower when the
    two sets are close, as the classifier then fits noise for many epochs).

    Args:
        x: Reference samples ``(N, D)``.
        y: Samples to compare ``(M, D)``.
        folds: Cross-validation folds.
        seed: Seed of the folds and the classifier.
        hidden: Hidden width.
        max_iter: Maximum training epochs of the classifier.
        early_stopping: Stop on a held-out tenth of each training fold.

    Returns:
        Mean accuracy in [0, 1].
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    folds = check_int("folds", folds, minimum=2)
    hidden = check_optional_int("hidden", hidden)
    max_iter = check_int("max_iter", max_iter)
    seed = check_int("seed", seed, minimum=0)
    early_stopping = check_bool("early_stopping", early_stopping)

    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)
    b = y.detach().cpu().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D), got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite")
    if min(len(a), len(b)) < folds:
        raise ValueError(
            f"folds must be at most the size of each set ({len(a)} and {len(b)}), got {folds!r}"
        )
    mean, std = a.mean(0), a.std(0)
    std = np.where(std > 0, std, 1.0)
    data = np.concatenate([(a - mean) / std, (b - mean) / std])
    labels = np.concatenate([np.zeros(len(a)), np.ones(len(b))])
    width = hidden if hidden is not None else 10 * a.shape[1]
    clf = MLPClassifier(
        hidden_layer_sizes=(width, width),
        activation="relu",
        solver="adam",
        max_iter=max_iter,
        random_state=seed,
        early_stopping=early_stopping,
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, data, labels, cv=cv, scoring="accuracy")))
