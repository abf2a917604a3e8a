"""``FeynmanKac``: the (unnormalized) Feynman–Kac path measure of ``H = −½∇² + V``.

The Feynman–Kac formula writes imaginary-time evolution under ``H`` as an expectation over
Brownian paths weighted by ``exp(−∫ V(X_t) dt)``. On a time grid this defines the unnormalized
path density

``log p_FK(path) = log W(path) − Σ_k V(x_k) Δt_k``

with ``W`` the Euler–Maruyama density of Brownian motion (drift 0, diffusion 1) and the potential
taken at the left end of each step (Itô). When a guide samples the same path site from the drift
SDE ``dX = v(X) dt + dW`` (an :class:`~pyrovi.distributions.EulerMaruyama` with diffusion 1 and the
same initial state and grid), Pyro's ``Trace_ELBO`` loss is, exactly on the discrete grid,

``E[log q − log p_FK] = E[ℓ_T]``,  ``ℓ_T = Σ_k v_k·ΔW_k + Σ_k (½|v_k|² + V(x_k)) Δt_k``,

and ``E[ℓ_T]/T ≥ E₀`` as ``T → ∞`` (Barr, Gispen & Lamacraft 2020): minimizing it over the drift
finds the ground state, whose optimal drift is ``∇ log φ₀``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.distributions import Distribution

from pyrovi._checks import check_output
from pyrovi._validation import all_finite
from pyrovi.distributions.sde import EulerMaruyama, _recall, _time_view

__all__ = ["FeynmanKac", "ACTION_ESTIMATORS"]

#: Options of :meth:`FeynmanKac.action`: with the Itô term ``Σ v·ΔW`` or without it.
ACTION_ESTIMATORS = ("full", "quadratic")

Potential = Callable[[torch.Tensor], torch.Tensor]


class FeynmanKac(EulerMaruyama):
    r"""Unnormalized Feynman–Kac path measure: Brownian paths weighted by ``exp(−Σ V Δt)``.

    Same path conventions as :class:`~pyrovi.distributions.EulerMaruyama` (of which it is the
    case drift 0, diffusion 1, plus the potential weight): ``event_shape = (len(times), d)``, the
    first row the initial state; ``batch_shape`` from ``init``; sampling draws Brownian paths
    (the unweighted reference measure — the weight only enters ``log_prob``).

    ``log_prob(path)`` is the Wiener-measure Euler–Maruyama log-density of the increments minus
    ``Σ_k V(x_k) Δt_k``. For a path sampled by another ``EulerMaruyama`` (the guide) both parts are
    computed on that sampler's fine grid from its record (so ``substeps > 1`` works, and the
    Girsanov form ``log q − Σ(v·ΔW + ½|v|²Δt)`` avoids cancelling large Gaussian terms); for any
    other tensor they are computed on the coarse grid ``times``. It is not normalized (its
    integral is ``E[exp(−∫V)]``), which is what makes ``E[log q − log p]`` an energy.

    Args:
        potential: ``V(x)``: a callable taking states ``(..., d)`` and returning ``(...)``
            (energy units, e.g. Hartree for atoms).
        init: Distribution of the initial state (event shape ``(d,)``) or a tensor ``(*batch, d)``
            (a point mass; share the same tensor with the guide's SDE).
        times: Increasing 1-D tensor ``(T,)`` (imaginary time, in units of ħ/energy).
        substeps: Euler–Maruyama steps per interval of ``times``.
        kl_estimator: ``"full"`` (exact discrete density) or ``"quadratic"`` (drops the zero-mean
            Itô term ``Σ v·ΔW`` when scoring a guide's path: same expectation, no zero-variance
            property; see :class:`~pyrovi.distributions.EulerMaruyama`).
        batch_shape: Batch shape to expand to.
        validate_args: As in torch distributions.
    """

    def __init__(
        self,
        potential: Potential,
        init: Distribution | torch.Tensor,
        times: torch.Tensor | Sequence[float],
        substeps: int = 1,
        *,
        kl_estimator: str = "full",
        batch_shape: torch.Size | Sequence[int] | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not callable(potential):
            raise TypeError(
                f"potential must be a callable V(x) -> (...), got {type(potential).__name__}"
            )
        self.potential = potential
        super().__init__(
            0.0,
            1.0,
            init,
            times,
            substeps,
            kl_estimator=kl_estimator,
            batch_shape=batch_shape,
            validate_args=validate_args,
        )

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> FeynmanKac:
        """Same measure with i.i.d. copies over the new ``batch_shape`` (for ``pyro.plate``)."""
        new = self._get_checked_instance(FeynmanKac, _instance)
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        """Brownian paths (the reference measure; see the class docstring).

        The potential does not enter sampling, but it is evaluated once on the initial states
        of the paths, so that a potential returning a wrong shape or NaN is named here rather
        than when the paths are first scored.
        """
        value = super().rsample(sample_shape)
        self._potential_values(value[..., :2, :].movedim(-2, 0))
        return value

    # ----------------------------------------------------------------- density
    def _potential_values(self, path: torch.Tensor) -> torch.Tensor:
        """``V`` at the left end of every step: ``(n, ...)`` for ``path`` of ``(n + 1, ..., d)``.

        Raises:
            TypeError: The potential does not return a tensor.
            ValueError: It returns a wrong shape (it must map states ``(..., d)`` to one energy
                each, ``(...)``), or NaN / infinite values on finite states.
        """
        states = path[:-1]
        shape = tuple(states.shape[:-1])
        v = self.potential(states)
        what = f"{shape}: one energy per state, for states of shape {tuple(states.shape)}"
        check_output("potential", v, shape, allow_scalar=True, finite=False, what=what)
        if v.is_floating_point() and not all_finite(v):
            if not all_finite(states):
                raise ValueError(
                    "potential: evaluated on a path that contains NaN or infinite states"
                )
            raise ValueError(f"potential returned NaN or infinite values on finite states ({what})")
        return v.expand(shape)

    def potential_integral(self, value: torch.Tensor) -> torch.Tensor:
        """``Σ_k V(x_k) Δt_k`` along paths ``(..., len(times), d)``; returns ``value.shape[:-2]``.

        Uses the sampler's fine grid when ``value`` was drawn by an ``EulerMaruyama`` with this
        grid, the coarse grid ``times`` otherwise.
        """
        rec = _recall(value)
        if rec is not None:
            self._check_grid(rec)
            path, dt = rec.path, rec.dt
        else:
            if value.shape[-2:] != self.event_shape:
                raise ValueError(
                    f"value: expected paths of shape (..., {len(self.times)}, {self.state_dim}), "
                    f"got {tuple(value.shape)}"
                )
            path = value.movedim(-2, 0)
            times = self.times.to(device=value.device, dtype=value.dtype)
            dt = times[1:] - times[:-1]
        v = self._potential_values(path)
        return (v * _time_view(dt, v.dim())).sum(0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Unnormalized log-density of paths ``(..., len(times), d)``; returns ``value.shape[:-2]``.

        ``log W(path) − Σ_k V(x_k) Δt_k`` (Wiener-measure Euler–Maruyama density minus the weight).
        """
        return super().log_prob(value) - self.potential_integral(value)

    def action(self, value: torch.Tensor, estimator: str = "full") -> torch.Tensor:
        """``ℓ_T`` of a path drawn by a drift SDE ``dX = v dt + dW``, computed directly.

        ``ℓ_T = Σ_k v_k·ΔW_k + Σ_k (½|v_k|² + V(x_k)) Δt_k`` on the sampler's fine grid, from the
        drift values and Brownian increments it recorded (no large terms cancel). With
        ``estimator="quadratic"`` the Itô term ``Σ v·ΔW`` is left out. Equals
        ``guide.log_prob(value) − self.log_prob(value)`` for the ``"full"`` estimator and a tensor
        ``init`` shared by both.

        Args:
            value: A path returned by an ``EulerMaruyama`` with diffusion 1 and this grid.
            estimator: ``"full"`` or ``"quadratic"``.

        Returns:
            ``(...)``: ``ℓ_T`` per path (energy × time, e.g. Hartree × ħ/Hartree = nats).
        """
        if estimator not in ACTION_ESTIMATORS:
            raise ValueError(f"estimator must be one of {ACTION_ESTIMATORS}, got {estimator!r}")
        rec = _recall(value)
        if rec is None:
            raise ValueError(
                "action: value must be a path sampled by an EulerMaruyama (the guide's drift "
                "SDE); ℓ_T needs its Brownian increments and drift values"
            )
        self._check_grid(rec)
        g = rec.diffusion.expand_as(rec.dw)
        if not torch.allclose(g, torch.ones_like(g)):
            raise ValueError("action: the path's SDE must have diffusion 1 (dX = v dt + dW)")
        dt = _time_view(rec.dt, rec.dw.dim())
        terms = 0.5 * rec.drift.pow(2) * dt
        if estimator == "full":
            terms = terms + rec.drift * rec.dw
        return terms.sum(dim=(0, -1)) + self.potential_integral(value)

    def __repr__(self) -> str:
        return (
            f"FeynmanKac(d={self.state_dim}, times={len(self.times)}, substeps={self.substeps}, "
            f"batch_shape={tuple(self.batch_shape)}, kl_estimator={self.kl_estimator!r})"
        )
