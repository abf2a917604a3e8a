"""Pareto-smoothed importance sampling (PSIS) and its k-hat diagnostic for variational guides.

Draws ``z_s ~ q`` weighted by ``p(x, z_s) / q(z_s)`` estimate expectations under the posterior.
The tail of those weights is fitted with a generalized Pareto distribution; its shape ``k``
says how far the estimates can be trusted (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it
work?: Evaluating variational inference"):

* ``k < 0.5``: the weights have finite variance; q is close to the posterior;
* ``0.5 <= k < 0.7``: finite mean, PSIS estimates still usable;
* ``k >= 0.7``: unreliable; q misses mass the posterior has.

The generalized Pareto fit is implemented here (profile likelihood of Zhang & Stephens 2009 with
the weakly informative prior of Vehtari et al. 2024), in float64 NumPy, vectorized over sets of
weights. It agrees with ``arviz.psislw``, which the tests check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pyrovi._checks import check_model_args, check_positive
from pyrovi._validation import positive_int
from pyrovi.infer.importance import inspect_model
from pyrovi.infer.particles import log_weights, resolve_vectorize

__all__ = ["GOOD_KHAT", "BAD_KHAT", "psis", "pareto_khat", "psis_khat", "ParetoKHat"]

GOOD_KHAT = 0.5
"""Below this, importance weights have finite variance (Yao et al. 2018)."""
BAD_KHAT = 0.7
"""At or above this, PSIS estimates are unreliable (Yao et al. 2018)."""

_MIN_TAIL = 5


def _tail_length(num_samples: int, r_eff: float) -> int:
    return int(math.ceil(min(0.2 * num_samples, 3.0 * math.sqrt(num_samples / r_eff))))


def _gpd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape ``k`` and scale of a generalized Pareto fit to exceedances.

    Args:
        x: ``(R, M)`` non-negative exceedances over the threshold, sorted ascending per row,
            with a positive maximum.

    Returns:
        ``(k, sigma)``, each ``(R,)``.
    """
    r, n = x.shape
    grid = 30 + int(math.sqrt(n))
    j = np.arange(1, grid + 1, dtype=np.float64)
    quartile = np.maximum(x[:, int(n / 4 + 0.5) - 1], np.finfo(np.float64).tiny)
    # theta = -k / sigma on a grid around 1 / max(x) (Zhang & Stephens 2009).
    theta = 1.0 / x[:, -1:] + (1.0 - np.sqrt(grid / (j - 0.5)))[None, :] / (3.0 * quartile[:, None])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # For a fixed theta the maximum-likelihood shape is k(theta) = mean log(1 - theta x).
        k = np.log1p(-theta[:, :, None] * x[:, None, :]).mean(axis=2)
        profile = n * (np.log(-theta / k) - k - 1.0)
        profile = np.where(np.isfinite(profile), profile, -np.inf)
        weights = np.exp(profile - profile.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        theta_hat = (theta * weights).sum(axis=1)
        k_hat = np.log1p(-theta_hat[:, None] * x).mean(axis=1)
        sigma = -k_hat / theta_hat
    # Weakly informative prior pulling k towards 0.5, worth 10 observations.
    k_hat = (n * k_hat + 10 * 0.5) / (n + 10)
    return k_hat, sigma


def _gpd_quantile(p: np.ndarray, k: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Quantiles ``(R, M)`` of generalized Pareto distributions with shapes/scales ``(R,)``."""
    k, sigma = k[:, None], sigma[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = sigma * np.expm1(-k * np.log1p(-p)) / k
    return np.where(np.abs(k) < 1e-12, -sigma * np.log1p(-p), q)


def _psis_rows(lw: np.ndarray, r_eff: float, atol: float) -> tuple[np.ndarray, np.ndarray]:
    """PSIS for each row of ``lw`` ``(R, S)``: smoothed normalized log weights and k-hat."""
    r, s = lw.shape
    m = _tail_length(s, r_eff)
    order = np.argsort(lw, axis=1, kind="stable")
    sorted_lw = np.take_along_axis(lw, order, axis=1)
    lw_max = sorted_lw[:, -1:]
    cutoff = sorted_lw[:, -m - 1 : -m]
    tail = sorted_lw[:, -m:]
    empty = ~np.isfinite(lw_max[:, 0])  # every weight zero: importance sampling failed
    # Rows without a finite weight are shifted by 0, not by -inf (-inf - -inf is NaN): their
    # exceedances are exp(-inf) - exp(-inf) = 0 and they are never fitted.
    shift = np.where(empty[:, None], 0.0, lw_max)
    exceed = np.exp(tail - shift) - np.exp(cutoff - shift)
    # Constant weights (up to rounding) or a tail tied with its threshold: nothing to fit; a
    # proposal with bounded weights has k -> -inf.
    spread = lw_max[:, 0] - np.where(empty, 0.0, sorted_lw[:, 0])  # inf with a zero weight
    flat = ~empty & ((spread <= atol) | (exceed[:, -1] <= 0))
    khat = np.where(empty, np.inf, -np.inf)
    smoothed = sorted_lw.copy()
    fit = ~flat & ~empty
    if fit.any():
        k, sigma = _gpd_fit(exceed[fit])
        p = (np.arange(1, m + 1, dtype=np.float64) - 0.5) / m
        quant = _gpd_quantile(p[None, :].repeat(fit.sum(), 0), k, sigma)
        new_tail = np.log(quant + np.exp(cutoff[fit] - lw_max[fit])) + lw_max[fit]
        smoothed[fit, -m:] = np.minimum(new_tail, lw_max[fit])
        khat[fit] = k
    out = np.empty_like(lw)
    np.put_along_axis(out, order, smoothed, axis=1)
    out[~empty] -= np.logaddexp.reduce(out[~empty], axis=1, keepdims=True)
    return out, khat


def _as_float64(log_weights: Any, name: str) -> tuple[np.ndarray, float, torch.Tensor | None]:
    """``log_weights`` as float64 NumPy, the rounding tolerance of its dtype, the source tensor."""
    like = log_weights if isinstance(log_weights, torch.Tensor) else None
    if like is not None:
        eps = float(torch.finfo(like.dtype).eps) if like.is_floating_point() else 0.0
        arr = like.detach().cpu().double().numpy()
    else:
        arr = np.asarray(log_weights)
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a tensor or an array of numbers, got {arr.dtype}")
        eps = float(np.finfo(arr.dtype).eps) if np.issubdtype(arr.dtype, np.floating) else 0.0
        arr = arr.astype(np.float64)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have the draws along dimension 0, got a scalar")
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise ValueError(f"{name} contains NaN or +inf; log weights must be finite or -inf")
    return arr, eps, like


def psis(log_weights: torch.Tensor | np.ndarray, r_eff: float = 1.0):
    """Pareto-smoothed importance sampling of log weights (Vehtari et al. 2024).

    The largest ``M = ceil(min(S / 5, 3 sqrt(S / r_eff)))`` weights of each set are replaced by
    the expected order statistics of a generalized Pareto fit to them (truncated at the largest
    raw weight), and the weights are normalized.

    Args:
        log_weights: ``(S, ...)`` log importance weights with the S draws along dimension 0;
            every other index is a separate set (e.g. ``(S, N)``: one per datapoint).
        r_eff: Relative efficiency of the draws (1 for independent draws from a guide).

    Returns:
        ``(smoothed, khat)``: smoothed log weights normalized to sum to 1 over the draws,
        shape ``(S, ...)``, and the Pareto shape estimates, shape ``(...)``; float64 tensors
        (on the input's device for tensor input). Numerically constant weights get
        ``k = -inf`` and are returned unchanged (normalized).

    Raises:
        ValueError: Fewer than 21 draws (the tail needs at least 5), NaN or +inf weights, or a
            non-positive ``r_eff``.
    """
    r_eff = check_positive("r_eff", r_eff)
    arr, eps, like = _as_float64(log_weights, "log_weights")
    s = arr.shape[0]
    if _tail_length(s, r_eff) < _MIN_TAIL or _tail_length(s, r_eff) >= s:
        raise ValueError(
            f"log_weights: PSIS needs at least 21 draws along dimension 0 (a tail of "
            f"{_MIN_TAIL}), got {s}"
        )
    rest = arr.shape[1:]
    rows = np.moveaxis(arr.reshape(s, -1), 0, 1)
    finite = np.where(np.isfinite(rows), rows, np.nan)
    scale = np.nanmax(np.abs(finite), axis=1, initial=1.0)
    atol = 64 * eps * np.maximum(scale, 1.0)
    smoothed = np.empty_like(rows)
    khat = np.empty(rows.shape[0])
    chunk = 256
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        smoothed[sl], khat[sl] = _psis_rows(rows[sl], float(r_eff), atol[sl])
    smoothed = np.moveaxis(smoothed, 0, 1).reshape(arr.shape)
    khat = khat.reshape(rest)
    device = like.device if like is not None else "cpu"
    return (
        torch.as_tensor(smoothed, device=device),
        torch.as_tensor(khat, device=device),
    )


def pareto_khat(log_weights: torch.Tensor | np.ndarray, r_eff: float = 1.0) -> torch.Tensor:
    """The Pareto k-hat of each set of log weights ``(S, ...)`` -> ``(...)``; see :func:`psis`."""
    return psis(log_weights, r_eff)[1]


@dataclass
class ParetoKHat:
    """What :func:`psis_khat` returns.

    Attributes:
        khat: Pareto k-hat, ``(N,)`` per datapoint when ``pointwise``, else a scalar tensor.
        log_weights: The log importance weights it was fitted to, ``(S, N)`` or ``(S,)``.
        pointwise: Whether there is one k-hat per datapoint (local latents, amortized guide)
            or one for the joint weights of all latents (global latents).
    """

    khat: torch.Tensor
    log_weights: torch.Tensor
    pointwise: bool

    @property
    def good(self) -> torch.Tensor:
        """``k < 0.5``: finite-variance weights (boolean, shaped like ``khat``)."""
        return self.khat < GOOD_KHAT

    @property
    def ok(self) -> torch.Tensor:
        """``0.5 <= k < 0.7``: finite mean, PSIS estimates usable."""
        return (self.khat >= GOOD_KHAT) & (self.khat < BAD_KHAT)

    @property
    def bad(self) -> torch.Tensor:
        """``k >= 0.7``: unreliable importance weights."""
        return self.khat >= BAD_KHAT

    @property
    def category(self) -> np.ndarray:
        """``"good"``, ``"ok"`` or ``"bad"`` for each k-hat (NumPy array of strings)."""
        k = self.khat.detach().cpu().numpy()
        return np.where(k < GOOD_KHAT, "good", np.where(k < BAD_KHAT, "ok", "bad"))

    def counts(self) -> dict[str, int]:
        """How many k-hats fall in each category."""
        return {
            "good": int(self.good.sum()),
            "ok": int(self.ok.sum()),
            "bad": int(self.bad.sum()),
        }

    def summary(self) -> str:
        """One line: the k-hat (overall) or its distribution and the category counts."""
        s = self.log_weights.shape[0]
        if not self.pointwise:
            k = float(self.khat)
            return f"Pareto k-hat {k:.3f} ({self.category.item()}; {s} draws, joint weights)"
        k = self.khat.double()
        c = self.counts()
        n = k.numel()
        return (
            f"Pareto k-hat over {n} datapoints ({s} draws each): median "
            f"{k.median().item():.3f}, max {k.max().item():.3f}; k < {GOOD_KHAT}: {c['good']} "
            f"({100 * c['good'] / n:.1f}%), {GOOD_KHAT} <= k < {BAD_KHAT}: {c['ok']} "
            f"({100 * c['ok'] / n:.1f}%), k >= {BAD_KHAT}: {c['bad']} ({100 * c['bad'] / n:.1f}%)"
        )

    def __str__(self) -> str:
        return self.summary()


def psis_khat(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    plate: str | None = None,
    vectorize: bool | None = None,
    parallel: bool | None = None,
    max_samples_per_pass: int = 16384,
    **kwargs: Any,
) -> ParetoKHat:
    """Pareto k-hat of the importance weights ``p(x, z) / q(z)`` of a guide's draws.

    With an amortized guide whose latents are all per-datapoint (every scored site inside plate
    ``plate``), the weights factorize over datapoints and there is one k-hat per datapoint.
    Otherwise (global latents, or no plate at all) there is one k-hat for the joint weights of
    all latents given all the data. The weights are those of
    :func:`pyrovi.infer.log_importance_weights` (each site's scale and mask applied; discrete
    sites the model enumerates summed out).

    Args:
        model: Pyro model, called as ``model(*args, **kwargs)``.
        guide: Pyro guide with the same signature.
        *args: Model arguments (e.g. ``x``).
        num_samples: Draws S from the guide (at least 21; a few hundred or more for a stable
            estimate).
        plate: Name of the per-datapoint plate. None (default) means ``"data"``; a model whose
            plates are called otherwise and hold every site must name its plate (else a
            ``ValueError`` says which one); a name the model and guide do not have is refused
            (unless they have no plate at all). See :func:`pyrovi.infer.importance.resolve_plate`.
        vectorize: True: draw in an outer ``pyro.plate`` (errors propagate); False: one draw at
            a time (any model); None: try the plate and fall back to one at a time, with a
            ``UserWarning``, when the model raises under it or the shapes come out wrong.
        parallel: Older name of ``vectorize``.
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass.
        **kwargs: Model keyword arguments.

    Returns:
        :class:`ParetoKHat`.

    Raises:
        ValueError: ``num_samples`` below 21 or not an integer; ``max_samples_per_pass`` not a
            positive integer; the guide misses a latent site; ``plate`` is not a plate of the
            model; the data (the first tensor argument) is empty or an argument holds NaN/inf.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 21:
        raise ValueError(
            f"num_samples must be an integer >= 21 (PSIS fits a tail of at least 5 draws), "
            f"got {num_samples!r}"
        )
    max_samples_per_pass = positive_int("max_samples_per_pass", max_samples_per_pass)
    vectorize = resolve_vectorize(vectorize, parallel)
    check_model_args(args, kwargs, "psis_khat")
    with torch.no_grad():
        layout = inspect_model(model, guide, args, kwargs, plate, caller="psis_khat")
        log_w = log_weights(
            model,
            guide,
            args,
            kwargs,
            layout,
            num_samples,
            max(1, max_samples_per_pass // (layout.num_data or 1)),
            vectorize=vectorize,
            caller="psis_khat",
        )
    _, khat = psis(log_w)
    return ParetoKHat(khat=khat.to(log_w.device), log_weights=log_w, pointwise=layout.local)
