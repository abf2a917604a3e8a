"""``GroundState``: quantum ground states as variational inference over paths.

Barr, Gispen & Lamacraft (2020). For ``H = −½∇² + V`` the model samples a path from the
Feynman–Kac measure (:class:`~pyrovi.distributions.FeynmanKac`) and the guide samples it from the
drift SDE ``dX = v_θ(X) dt + dW`` (an :class:`~pyrovi.distributions.EulerMaruyama`); both start
from the same walkers. Pyro's ``Trace_ELBO`` loss is then ``E[ℓ_T]`` (averaged over walkers) with

``ℓ_T = Σ v·ΔW + Σ (½|v|² + V) Δt``,   ``log dP_v/dP_FK = ℓ_T − E₀T + log φ₀(r₀)/φ₀(r_T)``,

so ``E[ℓ_T]/T ≥ E₀`` (up to the time-step error) with equality for the optimal drift
``v = ∇ log φ₀``, whose paths all have ``ℓ_T − E₀T = log φ₀(r_T)/φ₀(r₀)`` (zero variance up to the
boundary term).

Walkers persist: every guide call starts its paths where the previous call's paths ended, so the
walkers approach the stationary distribution of the drift SDE (``|φ₀|²`` for the optimal drift).

Estimators (:meth:`GroundState.estimate`), each with its standard error over independent walkers:

* ``energy``: ``Σ ℓ_T / Σ T`` per walker over consecutive paths, averaged over walkers;
* ``corrected``: the same with the boundary term removed, ``ℓ_T − [log ψ(r_T) − log ψ(r₀)]``,
  ``log ψ(r_T) − log ψ(r₀) = ∫₀¹ v(r₀ + s(r_T − r₀))·(r_T − r₀) ds`` (Gauss–Legendre) being
  ``log ψ`` of the drift itself when it is a gradient field (the optimal drift is): the large
  ``O(1/T)`` fluctuation of ``ℓ_T/T`` goes;
* :func:`richardson`: ``2 E(dt/2) − E(dt)`` removes the ``O(dt)`` Euler–Maruyama bias.

With a gradient-field drift (:class:`~pyrovi.nn.GradientDrift`, ``v = ∇ log ψ_θ``) the trained
``ψ_θ`` also gives estimators without time-step bias in the sampling:
:meth:`GroundState.variational` (``⟨E_L⟩`` over ``|ψ|²`` by Metropolis-adjusted Langevin steps,
:mod:`pyrovi.models.vmc`) and :meth:`GroundState.projected` (importance-sampled diffusion Monte
Carlo extrapolated to ``dt → 0``, :mod:`pyrovi.models.dmc`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import PyroModule
from pyro.optim import ClippedAdam
from torch import nn

from pyrovi._checks import (
    check_bool,
    check_callable,
    check_int,
    check_nonnegative,
    check_output,
    check_positive,
    check_tensor,
)
from pyrovi._progress import progress_bar
from pyrovi.distributions.feynman_kac import ACTION_ESTIMATORS, FeynmanKac
from pyrovi.distributions.sde import EulerMaruyama
from pyrovi.models.dmc import ProjectedExtrapolation, projected_extrapolation
from pyrovi.models.hamiltonians import Hamiltonian
from pyrovi.models.vmc import VariationalEstimate, variational_energy
from pyrovi.nn.registration import registration_skipped
from pyrovi.nn.wavefunctions import GradientDrift

__all__ = [
    "GroundState",
    "EnergyEstimate",
    "Extrapolation",
    "RichardsonEstimate",
    "format_estimate",
    "richardson",
    "line_integral",
    "train_ground_state",
]

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def format_estimate(value: float, stderr: float) -> str:
    """``value ± stderr`` with the standard error to two significant digits.

    The value is rounded to the same decimal place as the error (``-0.49961 ± 0.00031``), so no
    digit below the statistical noise is printed; with a zero or non-finite error both are
    printed to six significant digits.

    Args:
        value: The estimate.
        stderr: Its standard error (same units).

    Returns:
        The text, e.g. ``"-0.49961 ± 0.00031"``.
    """
    value, stderr = float(value), float(stderr)
    if not (math.isfinite(stderr) and stderr > 0 and math.isfinite(value)):
        return f"{value:.6g} ± {stderr:.6g}"
    decimals = max(0, 1 - math.floor(math.log10(stderr)))
    return f"{value:.{decimals}f} ± {stderr:.{decimals}f}"


@dataclass(repr=False)
class EnergyEstimate:
    """An energy estimate from ``num_walkers`` independent walkers (energy units of ``H``).

    Attributes:
        energy: Mean of ``Σℓ_T / ΣT`` over walkers.
        stderr: Its standard error (std over walkers / √walkers).
        corrected: The boundary-corrected estimate.
        corrected_stderr: Its standard error.
        path_std: Standard deviation over paths of ``ℓ_T/T`` for one path (horizon ``horizon``).
        corrected_path_std: The same for the boundary-corrected ``(ℓ_T − B)/T``.
        num_walkers: Walkers.
        num_paths: Paths per walker.
        horizon: Time of one path.
        dt: Euler–Maruyama step.
        seconds: Wall time of the estimate.
    """

    energy: float
    stderr: float
    corrected: float
    corrected_stderr: float
    path_std: float
    corrected_path_std: float
    num_walkers: int
    num_paths: int
    horizon: float
    dt: float
    seconds: float

    def as_dict(self) -> dict:
        """Plain ``dict`` (for JSON)."""
        return asdict(self)

    def __repr__(self) -> str:
        return (
            f"EnergyEstimate(corrected={format_estimate(self.corrected, self.corrected_stderr)}, "
            f"energy={format_estimate(self.energy, self.stderr)}, dt={self.dt:g}, "
            f"horizon={self.horizon:g}, walkers={self.num_walkers}, paths={self.num_paths}, "
            f"seconds={self.seconds:.1f})"
        )


class RichardsonEstimate(dict):
    """What :func:`richardson` returns: a ``dict`` with keys ``"energy"``, ``"stderr"``, ``"dt"``
    and ``"dt_fine"`` (JSON-serializable as it is) that prints as ``energy ± stderr``.
    """

    def __repr__(self) -> str:
        return (
            f"{format_estimate(self['energy'], self['stderr'])} "
            f"(Richardson, dt={self['dt']:g} and {self['dt_fine']:g})"
        )

    __str__ = __repr__


class Extrapolation(dict):
    """What :meth:`GroundState.extrapolate` returns.

    A ``dict`` with keys ``"coarse"`` and ``"fine"`` (:class:`EnergyEstimate` at ``dt`` and
    ``dt/2``) and ``"extrapolated"`` (:class:`RichardsonEstimate`), which prints as three lines of
    ``energy ± standard error``, each to the precision its standard error allows.
    """

    def __repr__(self) -> str:
        coarse, fine, ext = self["coarse"], self["fine"], self["extrapolated"]
        key = "corrected" if getattr(self, "corrected", True) else "energy"
        err = "corrected_stderr" if key == "corrected" else "stderr"
        labels = [f"E(dt={est.dt:g})" for est in (coarse, fine)] + ["extrapolated"]
        width = max(map(len, labels))
        figures = [(getattr(est, key), getattr(est, err)) for est in (coarse, fine)]
        figures.append((ext["energy"], ext["stderr"]))
        lines = [
            f"{label:<{width}} = {format_estimate(*fig)}"
            for label, fig in zip(labels, figures, strict=True)
        ]
        lines.append(
            f"({coarse.num_walkers} walkers x {coarse.num_paths} paths of horizon "
            f"{coarse.horizon:g}, {coarse.seconds + fine.seconds:.1f} s)"
        )
        return "\n".join(lines)

    __str__ = __repr__


def richardson(
    coarse: EnergyEstimate, fine: EnergyEstimate, *, corrected: bool = True
) -> RichardsonEstimate:
    """Richardson extrapolation ``2 E(dt/2) − E(dt)`` of two estimates with ``O(dt)`` bias.

    Args:
        coarse: Estimate at step ``dt``.
        fine: Estimate at step ``dt/2``.
        corrected: Extrapolate the boundary-corrected estimates (else the plain ones).

    Returns:
        A :class:`RichardsonEstimate`, the dict ``{"energy", "stderr", "dt", "dt_fine"}``; the
        standard errors add in quadrature (``√(4 se_fine² + se_coarse²)``: the two runs are
        independent).
    """
    if not math.isclose(fine.dt * 2, coarse.dt, rel_tol=1e-6):
        raise ValueError(
            f"richardson: fine.dt must be half of coarse.dt, got {fine.dt:g} and {coarse.dt:g}"
        )
    key, err = ("corrected", "corrected_stderr") if corrected else ("energy", "stderr")
    ec, ef = getattr(coarse, key), getattr(fine, key)
    sc, sf = getattr(coarse, err), getattr(fine, err)
    return RichardsonEstimate(
        energy=2 * ef - ec,
        stderr=math.sqrt(4 * sf**2 + sc**2),
        dt=coarse.dt,
        dt_fine=fine.dt,
    )


def line_integral(
    drift: Drift, start: torch.Tensor, end: torch.Tensor, nodes: int = 8
) -> torch.Tensor:
    """``∫₀¹ v(a + s(b − a))·(b − a) ds`` by ``nodes``-point Gauss–Legendre quadrature.

    For a gradient drift ``v = ∇ log ψ`` this is ``log ψ(b) − log ψ(a)`` (up to quadrature error).

    Args:
        drift: ``v(t, x)``; called once with all nodes stacked in a leading dimension.
        start: ``a``, states ``(..., d)``.
        end: ``b``, states ``(..., d)``.
        nodes: Quadrature nodes (≥ 1).

    Returns:
        ``(...)``.
    """
    nodes = check_int("nodes", nodes)
    s, w = np.polynomial.legendre.leggauss(nodes)
    s = torch.as_tensor((s + 1) / 2, dtype=start.dtype, device=start.device)
    w = torch.as_tensor(w / 2, dtype=start.dtype, device=start.device)
    delta = end - start
    shape = (nodes,) + (1,) * start.dim()
    x = start + s.reshape(shape) * delta  # (nodes, ..., d)
    v = check_output("drift", drift(start.new_zeros(()), x), tuple(x.shape), last=x.shape[-1])
    v = v.expand(x.shape)  # a drift constant over the walkers broadcasts
    return torch.einsum("k,k...->...", w, (v * delta).sum(-1))


def _frozen(module: nn.Module) -> Callable[..., torch.Tensor]:
    """``module`` as a function of its inputs (a drift's ``(t, x)``, a ``log ψ``'s ``x``) whose
    parameters receive no gradient."""
    state = {k: p.detach() for k, p in module.named_parameters()}
    return lambda *args: torch.func.functional_call(module, state, args)


class GroundState(PyroModule):
    r"""Model (``forward``) and guide (``guide``) whose ``Trace_ELBO`` loss is ``E[ℓ_T]``.

    ``forward()`` samples site ``"path"`` ``(W, n + 1, N·dim)`` from
    ``FeynmanKac(V, walkers, times)``; ``guide()`` samples it from
    ``EulerMaruyama(drift, 1.0, walkers, times)``. Both run inside ``pyro.plate("walkers", W)``
    scaled by ``1/W``, so ``Trace_ELBO().loss(model, guide)`` is the walker average of ``ℓ_T`` and
    ``loss / horizon`` an energy estimate. Every guide call moves the walkers to the ends of its
    paths (``persistent=True``), so training and estimation continue the same Markov chains.

    Args:
        hamiltonian: The system (potential, initial walker sampler).
        drift: ``v(t, x)``: an ``nn.Module`` (trained) or a fixed callable; default
            :func:`pyrovi.nn.drift_for` of the Hamiltonian.
        num_walkers: W.
        horizon: Imaginary time T of one path (ħ/energy).
        dt: Euler–Maruyama step (``horizon / dt`` must be an integer).
        kl_estimator: ``"full"`` (``ℓ_T`` with the Itô term) or ``"quadratic"`` (without).
        boundary_loss: Add ``pyro.factor("boundary", log ψ(r_T) − log ψ(r₀))`` to the model (the
            line integral of the drift with its parameters held fixed): the loss becomes the
            boundary-corrected ``E[ℓ_T − B]``, a lower-variance objective without the
            terminal-time pull of finite-``T`` paths (for ``E[ℓ_T]`` alone the best
            time-homogeneous drift is biased by ``O(1/T)``: measured on the 1-D oscillator with
            ``T = 1``, training reaches ≈ 0.69 without it and ≈ 0.50 with it). ``False`` gives
            the plain ``E[ℓ_T]`` loss of the lectures.
        persistent: Carry the walkers over between guide calls.
        walkers: Initial walkers ``(W, N·dim)``; default ``hamiltonian.sample_init(W)``.
        quadrature: Gauss–Legendre nodes of the boundary line integral.
    """

    def __init__(
        self,
        hamiltonian: Hamiltonian,
        drift: Drift | None = None,
        num_walkers: int = 256,
        horizon: float = 1.0,
        dt: float = 0.01,
        *,
        kl_estimator: str = "full",
        boundary_loss: bool = True,
        persistent: bool = True,
        walkers: torch.Tensor | None = None,
        quadrature: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(hamiltonian, Hamiltonian):
            raise TypeError(
                f"hamiltonian must be a pyrovi.models.hamiltonians.Hamiltonian, got "
                f"{type(hamiltonian).__name__}"
            )
        if isinstance(num_walkers, bool) or not isinstance(num_walkers, int) or num_walkers < 2:
            raise ValueError(f"num_walkers must be an integer >= 2, got {num_walkers!r}")
        if kl_estimator not in ACTION_ESTIMATORS:
            raise ValueError(
                f"kl_estimator must be one of {ACTION_ESTIMATORS}, got {kl_estimator!r}"
            )
        self.hamiltonian = hamiltonian
        self.num_walkers = num_walkers
        self.horizon, self.dt = _check_grid(horizon, dt)
        self.kl_estimator = kl_estimator
        self.boundary_loss = check_bool("boundary_loss", boundary_loss)
        self.persistent = check_bool("persistent", persistent)
        self.quadrature = check_int("quadrature", quadrature)
        if drift is None:
            from pyrovi.nn.quantum_drifts import drift_for

            drift = drift_for(hamiltonian)
        if not callable(drift):
            raise TypeError(f"drift must be a callable v(t, x), got {type(drift).__name__}")
        if isinstance(drift, nn.Module):
            self.drift = drift
        else:
            self._fixed_drift = drift
        if walkers is None:
            walkers = hamiltonian.sample_init(num_walkers)
        walkers = torch.as_tensor(walkers)
        if walkers.shape != (num_walkers, hamiltonian.state_dim):
            raise ValueError(
                f"walkers: expected shape ({num_walkers}, {hamiltonian.state_dim}), got "
                f"{tuple(walkers.shape)}"
            )
        check_tensor("walkers", walkers, floating=True, finite=True)
        self.register_buffer("walkers", walkers.detach().clone())
        self._pending: torch.Tensor | None = None

    # ------------------------------------------------------------------ pieces
    def _drift(self, register: bool = False) -> Drift:
        """The drift; with ``register``, its parameters are announced to Pyro (``pyro.module``)."""
        if "drift" in self._modules:
            drift = self._modules["drift"]
            if register and not _skipping_registration():
                pyro.module("drift", drift)
            return drift
        return self._fixed_drift

    def times(self, dt: float | None = None, horizon: float | None = None) -> torch.Tensor:
        """The grid ``(n + 1,)`` of one path (``dt``/``horizon`` default to the model's).

        Raises:
            ValueError: ``dt`` or ``horizon`` not a positive finite number (0 included), or
                ``dt`` not dividing ``horizon`` into whole steps.
        """
        horizon, dt = _check_grid(
            self.horizon if horizon is None else horizon, self.dt if dt is None else dt
        )
        n = round(horizon / dt)
        return torch.linspace(
            0.0, horizon, n + 1, dtype=self.walkers.dtype, device=self.walkers.device
        )

    def _current_walkers(self) -> torch.Tensor:
        """Commit the previous guide call's path ends (persistent walkers) and return them."""
        if self._pending is not None:
            if self.persistent and self._pending.shape == self.walkers.shape:
                self.walkers.copy_(self._pending)
            self._pending = None
        return self.walkers

    def _boundary(self, drift: Drift, path: torch.Tensor) -> torch.Tensor:
        """``log ψ(r_T) − log ψ(r₀)``: exact for a :class:`~pyrovi.nn.GradientDrift`, else the
        line integral of the drift."""
        log_psi = self._log_psi()
        if log_psi is not None:
            ends = torch.stack([path[..., -1, :], path[..., 0, :]])
            if torch.is_grad_enabled():  # parameters held fixed, as for the line integral
                values = _frozen(log_psi)(ends)
            else:
                values = log_psi(ends)
            return values[0] - values[1]
        return line_integral(drift, path[..., 0, :], path[..., -1, :], self.quadrature)

    def _log_psi(self) -> nn.Module | None:
        """The ``log ψ`` of a :class:`~pyrovi.nn.GradientDrift` drift, else None."""
        drift = self._modules.get("drift")
        return drift.log_psi if isinstance(drift, GradientDrift) else None

    # ----------------------------------------------------------- model / guide
    def forward(self) -> torch.Tensor:
        """The model: a Feynman–Kac path from the current walkers (site ``"path"``)."""
        fk = FeynmanKac(
            self.hamiltonian.potential,
            self.walkers,
            self.times(),
            kl_estimator=self.kl_estimator,
        )
        with pyro.plate("walkers", self.num_walkers), poutine.scale(scale=1.0 / self.num_walkers):
            path = pyro.sample("path", fk)
            if self.boundary_loss:
                drift = self._drift()
                frozen = _frozen(drift) if isinstance(drift, nn.Module) else drift
                pyro.factor("boundary", self._boundary(frozen, path))
        return path

    model = forward

    def guide(self) -> torch.Tensor:
        """The guide: a path of ``dX = v dt + dW`` from the walkers; moves the walkers."""
        walkers = self._current_walkers()
        sde = EulerMaruyama(self._drift(register=True), 1.0, walkers, self.times())
        with pyro.plate("walkers", self.num_walkers), poutine.scale(scale=1.0 / self.num_walkers):
            path = pyro.sample("path", sde)
        self._pending = path[..., -1, :].detach()
        return path

    # -------------------------------------------------------------- estimation
    @torch.no_grad()
    def estimate(
        self,
        num_paths: int,
        *,
        dt: float | None = None,
        horizon: float | None = None,
        burn_in: int = 0,
        progress: bool = True,
    ) -> EnergyEstimate:
        """Energy from ``num_paths`` consecutive paths per walker (no gradients).

        The walkers continue from where training left them; with a ``dt`` other than the
        model's, ``burn_in`` paths first let them relax to that step's stationary distribution.
        The model's walkers are updated only when ``dt`` is the model's.

        Args:
            num_paths: Paths per walker that enter the estimate.
            dt: Euler–Maruyama step (default the model's).
            horizon: Time of one path (default the model's).
            burn_in: Paths per walker run first and discarded.
            progress: Show a tqdm bar over the paths (only when stderr is a terminal).

        Returns:
            An :class:`EnergyEstimate`; its ``dt`` and ``horizon`` are the values given (or the
            model's), not their float32 images.

        Raises:
            ValueError: A bad count, ``dt``/``horizon`` not positive finite numbers or not
                fitting each other; a drift or potential that returns NaN/inf or a wrong shape.
        """
        for name, value, low in (("num_paths", num_paths, 1), ("burn_in", burn_in, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        check_bool("progress", progress)
        start = time.perf_counter()
        span, step = _check_grid(
            self.horizon if horizon is None else horizon, self.dt if dt is None else dt
        )
        times = self.times(step, span)
        drift = self._drift()
        walkers = self._current_walkers().clone()
        fk = FeynmanKac(self.hamiltonian.potential, walkers, times)
        total = walkers.new_zeros(self.num_walkers)
        total_b = walkers.new_zeros(self.num_walkers)
        per_path, per_path_b = [], []
        with progress_bar(
            burn_in + num_paths, desc=f"paths (dt={step:g})", progress=progress, unit="path"
        ) as bar:
            for k in range(burn_in + num_paths):
                path = EulerMaruyama(drift, 1.0, walkers, times).rsample()
                if k >= burn_in:
                    ell = fk.action(path, self.kl_estimator)
                    boundary = self._boundary(drift, path)
                    total += ell
                    total_b += ell - boundary
                    per_path.append(ell / span)
                    per_path_b.append((ell - boundary) / span)
                walkers = path[:, -1, :]
                fk.init = walkers
                bar.update(1)
        if math.isclose(step, self.dt, rel_tol=1e-9) and self.persistent:
            self.walkers.copy_(walkers)
        per_walker = total / (num_paths * span)
        per_walker_b = total_b / (num_paths * span)
        sqrt_w = math.sqrt(self.num_walkers)
        return EnergyEstimate(
            energy=float(per_walker.mean()),
            stderr=float(per_walker.std()) / sqrt_w,
            corrected=float(per_walker_b.mean()),
            corrected_stderr=float(per_walker_b.std()) / sqrt_w,
            path_std=float(torch.stack(per_path).std()),
            corrected_path_std=float(torch.stack(per_path_b).std()),
            num_walkers=self.num_walkers,
            num_paths=num_paths,
            horizon=span,
            dt=step,
            seconds=time.perf_counter() - start,
        )

    def extrapolate(
        self,
        num_paths: int,
        *,
        burn_in: int = 0,
        corrected: bool = True,
        progress: bool = True,
    ) -> Extrapolation:
        """Estimates at ``dt`` and ``dt/2`` and their Richardson extrapolation.

        Each of the two estimates runs ``burn_in + num_paths`` consecutive paths of length
        ``horizon`` from every walker (:meth:`estimate`): the cost grows like
        ``(burn_in + num_paths) × num_walkers × 3 horizon / dt`` (``horizon/dt`` steps at ``dt``,
        twice as many at ``dt/2``), and the standard errors fall roughly like
        ``1 / √(num_walkers × num_paths × horizon)``. Measured for hydrogen with 256 walkers,
        ``horizon = 1`` and ``dt = 0.002`` on one CPU core (a loaded machine): 0.5 s per path
        at ``dt`` and 1.1 s at ``dt/2``, so ``extrapolate(8, burn_in=2)`` takes about 20 s and
        ``extrapolate(4096)`` about 2 hours. With a trained drift, 64 walkers and 40 paths of
        horizon 0.2 gave standard errors of about 0.01 Hartree (5 s); thousands of paths are
        for a long unattended run aiming at 10⁻⁴.

        Args:
            num_paths: Paths per walker that enter each estimate (≥ 1).
            burn_in: Paths per walker run and discarded before each estimate (the walkers
                relax to the stationary distribution of the new step).
            corrected: Extrapolate the boundary-corrected estimates (else the plain ones).
            progress: Show tqdm bars over the paths (only when stderr is a terminal).

        Returns:
            An :class:`Extrapolation`: the dict ``{"coarse": EnergyEstimate, "fine":
            EnergyEstimate, "extrapolated": RichardsonEstimate}``, which prints as
            ``energy ± standard error`` lines.
        """
        check_bool("corrected", corrected)
        coarse = self.estimate(num_paths, burn_in=burn_in, progress=progress)
        fine = self.estimate(num_paths, dt=self.dt / 2, burn_in=burn_in, progress=progress)
        out = Extrapolation(
            coarse=coarse, fine=fine, extrapolated=richardson(coarse, fine, corrected=corrected)
        )
        out.corrected = corrected
        return out

    # ------------------------------------------- estimators without time-step bias
    def _trial(self, log_psi: Callable[[torch.Tensor], torch.Tensor] | None):
        if log_psi is not None:
            return log_psi
        log_psi = self._log_psi()
        if log_psi is None:
            raise ValueError(
                "the variational and projected estimates need log ψ: train a gradient-field "
                "drift (GroundState(hamiltonian, GradientDrift(log_psi), ...), e.g. "
                "drift_for(hamiltonian, 'gradient')) or pass log_psi="
            )
        return log_psi

    def _start(self, num_walkers: int | None) -> torch.Tensor:
        """``num_walkers`` positions resampled from the persistent walkers (all by default)."""
        walkers = self._current_walkers()
        if num_walkers is None:
            return walkers.clone()
        num_walkers = check_int("num_walkers", num_walkers, minimum=2)
        index = torch.randint(len(walkers), (num_walkers,), device=walkers.device)
        return walkers[index]

    def variational(
        self,
        num_walkers: int | None = None,
        *,
        steps: int = 1000,
        dt: float = 0.05,
        burn_in: int = 200,
        log_psi: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: bool = True,
    ) -> VariationalEstimate:
        """Variational energy of the learned ``ψ`` (MALA on ``|ψ|²``; an upper bound on E₀).

        The walkers start from the training chain's (resampled to ``num_walkers``). See
        :func:`~pyrovi.models.variational_energy` for the arguments; ``log_psi`` defaults to
        the drift's (a :class:`~pyrovi.nn.GradientDrift`).
        """
        return variational_energy(
            self.hamiltonian,
            self._trial(log_psi),
            self._start(num_walkers),
            steps=steps,
            dt=dt,
            burn_in=burn_in,
            progress=progress,
        )

    def projected(
        self,
        num_walkers: int | None = None,
        *,
        dts: tuple[float, ...] = (0.04, 0.02, 0.01),
        time_per_dt: float = 20.0,
        burn_in_time: float = 2.0,
        walkers: torch.Tensor | None = None,
        log_psi: Callable[[torch.Tensor], torch.Tensor] | None = None,
        resample_below: float = 0.5,
        progress: bool = True,
    ) -> ProjectedExtrapolation:
        """Projected (DMC) energy at each of ``dts`` and extrapolated to ``dt → 0``.

        Converges to E₀ as ``dt → 0`` for a nodeless ground state, whatever ``ψ``, up to a
        population-control bias of order ``1/walkers``. The walkers start from ``walkers``
        (e.g. ``self.variational(...).walkers``) or ``num_walkers`` of the training chain's (not
        both). See :func:`~pyrovi.models.projected_extrapolation` for the arguments.
        """
        if walkers is not None and num_walkers is not None:
            raise ValueError("give num_walkers or walkers, not both (walkers sets the number)")
        start = self._start(num_walkers) if walkers is None else walkers
        return projected_extrapolation(
            self.hamiltonian,
            self._trial(log_psi),
            start,
            dts=dts,
            time_per_dt=time_per_dt,
            burn_in_time=burn_in_time,
            resample_below=resample_below,
            progress=progress,
        )


def _skipping_registration() -> bool:
    return registration_skipped()


def _check_grid(horizon: float, dt: float) -> tuple[float, float]:
    horizon, dt = check_positive("horizon", horizon), check_positive("dt", dt)
    n = round(horizon / dt)
    if n < 1 or abs(n * dt - horizon) > 1e-6 * horizon:
        raise ValueError(
            f"dt must divide horizon into a whole number of steps, got horizon={horizon}, dt={dt}"
        )
    return horizon, dt


def train_ground_state(
    ground_state: GroundState,
    steps: int,
    *,
    lr: float = 1e-3,
    final_lr: float | None = None,
    clip_norm: float = 10.0,
    callback: Callable[[int, float], None] | None = None,
    max_seconds: float | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train the drift by ``SVI(model, guide, ClippedAdam, Trace_ELBO())``.

    Args:
        ground_state: The model/guide pair (its drift must be an ``nn.Module``).
        steps: Optimizer steps (one path per walker each).
        lr: Initial learning rate.
        final_lr: Learning rate at the last step (exponential decay); default ``lr``.
        clip_norm: Gradient clipping of ``ClippedAdam`` (each gradient entry is clamped to
            ``[−clip_norm, clip_norm]``): a positive number, or None for no clipping.
        callback: Called as ``callback(step, energy)`` after every step.
        max_seconds: Stop once this much wall time has passed (a number >= 0, or None).
            The learning-rate decay is then re-timed after 20 steps so that ``final_lr`` is
            reached at the expected last step.
        progress: Show a tqdm bar over the steps with the running energy (the mean loss per
            unit time of the last 20 steps) in its postfix (only when stderr is a terminal).
            Nothing is printed.

    Returns:
        ``{"step", "energy", "seconds"}``: per step, the loss per unit time (the batch estimate
        ``mean ℓ_T / T``, boundary-corrected with ``boundary_loss``) and the elapsed wall time.
    """
    if not isinstance(ground_state, GroundState):
        raise TypeError(f"ground_state must be a GroundState, got {type(ground_state).__name__}")
    steps = check_int("steps", steps)
    if "drift" not in ground_state._modules:
        raise ValueError("train_ground_state: the drift is a fixed callable, nothing to train")
    lr = check_positive("lr", lr)
    final_lr = lr if final_lr is None else check_positive("final_lr", final_lr)
    clip = math.inf if clip_norm is None else check_positive("clip_norm", clip_norm)
    if callback is not None:
        check_callable("callback", callback, "a callable callback(step, energy) or None")
    max_seconds = check_nonnegative("max_seconds", max_seconds, allow_none=True)
    check_bool("progress", progress)
    decay = (final_lr / lr) ** (1.0 / steps)
    optim = ClippedAdam({"lr": lr, "lrd": decay, "clip_norm": clip})
    svi = SVI(ground_state.model, ground_state.guide, optim, Trace_ELBO())
    history: dict[str, list[float]] = {"step": [], "energy": [], "seconds": []}
    start = time.perf_counter()
    with progress_bar(steps, desc="ground state", progress=progress, unit="step") as bar:
        for k in range(1, steps + 1):
            loss = svi.step() / ground_state.horizon
            if not math.isfinite(loss):
                raise FloatingPointError(f"train_ground_state: the loss became {loss} at step {k}")
            history["step"].append(k)
            history["energy"].append(loss)
            history["seconds"].append(time.perf_counter() - start)
            if callback is not None:
                callback(k, loss)
            if not bar.disable:
                recent = history["energy"][-20:]
                bar.set_postfix(energy=f"{sum(recent) / len(recent):.5g}", refresh=False)
            bar.update(1)
            elapsed = history["seconds"][-1]
            if max_seconds is not None:
                if elapsed > max_seconds:
                    break
                if k == 20:
                    expected = min(steps, int(max_seconds / (elapsed / k)))
                    _retime_decay(optim, final_lr, max(1, expected - k))
    return history


def _retime_decay(optim: ClippedAdam, final_lr: float, remaining: int) -> None:
    """Set every parameter group's decay so its learning rate reaches ``final_lr`` in time."""
    for opt in optim.optim_objs.values():
        for group in opt.param_groups:
            group["lrd"] = (final_lr / group["lr"]) ** (1.0 / remaining)
