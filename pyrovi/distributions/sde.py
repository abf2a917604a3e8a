"""``EulerMaruyama``: discretized SDE paths as a reparameterized Pyro distribution.

A path of ``dX = f(t, X) dt + g(t, X) dW`` on the grid ``times`` is one sample site. Its
``log_prob`` is the Euler–Maruyama density: the initial log-density plus a Gaussian transition
``N(x_{k+1}; x_k + f Δt, g² Δt)`` per step. When a model and its guide sample the same path site,
the difference ``log p − log q`` that Pyro's ELBOs form is the discretized Girsanov log-ratio
``−Σ_k (u_k·ΔW_k + ½|u_k|² Δt_k)`` with ``u = (f_q − f_p) / g`` and ``ΔW`` the guide's Brownian
increments: a Monte Carlo estimate of ``−KL(q‖p)`` in path space.

How a path remembers where it came from
---------------------------------------
``rsample`` records, for the tensor it returns, the fine-grid path, its Brownian increments and the
drift and diffusion values it used. Any ``EulerMaruyama`` that later scores that very tensor (the
model's prior SDE, scoring the guide's path inside ``Trace_ELBO``) reads the record instead of the
coarse values, so that

* with ``substeps > 1`` the log-ratio is computed on the fine integration grid;
* with ``kl_estimator="quadratic"`` the zero-mean Itô term ``Σ u·ΔW`` can be dropped, leaving
  ``Σ ½|u|² Δt`` (what torchsde's ``logqp`` returns); it has the same expectation under the guide;
* paths drawn by torchsde's higher-order solvers are scored by the same Girsanov formula.

A path that was not sampled by an ``EulerMaruyama`` (observed data, an edited tensor) is scored by
the plain Euler–Maruyama transition density on the coarse grid (``substeps`` must then be 1).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.poutine.util import is_validation_enabled
from torch.distributions import Distribution

from pyrovi._checks import check_bool, check_output
from pyrovi._validation import all_finite

__all__ = ["EulerMaruyama", "KL_ESTIMATORS", "SOLVERS"]

#: Options of ``kl_estimator``: the full Girsanov log-ratio, or its quadratic part only.
KL_ESTIMATORS = ("full", "quadratic")
#: Options of ``solver``: pyrovi's own vectorized Euler–Maruyama loop, or a torchsde method.
SOLVERS = ("em", "euler", "milstein", "srk", "reversible_heun")

Coefficient = Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | torch.Tensor | float


@dataclass
class _PathRecord:
    """What ``rsample`` computed for one returned path (all on the fine grid, time first).

    ``path`` is ``(n + 1, *shape, d)``; ``dw``, ``drift`` and ``diffusion`` are ``(n, *shape, d)``
    (``diffusion`` may broadcast in its last dimension); ``dt`` is ``(n,)``.
    """

    source: EulerMaruyama
    times: torch.Tensor
    dt: torch.Tensor
    path: torch.Tensor
    dw: torch.Tensor
    drift: torch.Tensor
    diffusion: torch.Tensor


# id(tensor) -> (weak reference to the tensor, record); entries go when the tensor is collected.
_RECORDS: dict[int, tuple[weakref.ref, _PathRecord]] = {}


def _remember(value: torch.Tensor, record: _PathRecord) -> None:
    key = id(value)
    _RECORDS[key] = (weakref.ref(value), record)
    weakref.finalize(value, _RECORDS.pop, key, None)


def _recall(value: torch.Tensor) -> _PathRecord | None:
    entry = _RECORDS.get(id(value))
    if entry is None or entry[0]() is not value:
        return None
    return entry[1]


def _coefficient(coef: Coefficient, name: str) -> tuple[Callable, torch.Tensor | None]:
    """A callable ``(t, x) -> tensor`` for ``coef``, and the constant tensor when it is one."""
    if callable(coef):
        return coef, None
    if isinstance(coef, bool) or not isinstance(coef, torch.Tensor | int | float):
        raise TypeError(
            f"{name} must be a callable (t, x) -> tensor, a number or a (d,) tensor, got "
            f"{type(coef).__name__}"
        )
    value = torch.as_tensor(coef)
    if not torch.is_floating_point(value):
        value = value.to(torch.get_default_dtype())
    if value.dim() > 1:
        raise ValueError(f"{name}: a constant must be a scalar or a vector (d,), got {value.shape}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name}: the constant must be finite, got {value}")

    def constant(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return value.to(dtype=x.dtype, device=x.device)

    return constant, value


def _check_times(times: torch.Tensor | Sequence[float]) -> torch.Tensor:
    times = torch.as_tensor(times)
    if not torch.is_floating_point(times):
        times = times.to(torch.get_default_dtype())
    if times.dim() != 1 or times.numel() < 2:
        raise ValueError(
            f"times must be a 1-D tensor of at least 2 increasing times, got shape "
            f"{tuple(times.shape)}"
        )
    if not torch.isfinite(times).all() or not (times[1:] > times[:-1]).all():
        raise ValueError("times must be finite and strictly increasing")
    return times


def _time_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``t`` of shape ``(n,)`` as ``(n, 1, ..., 1)`` with ``ndim`` dimensions in all."""
    return t.reshape((-1,) + (1,) * (ndim - 1))


#: Rows (states) per call when a coefficient is evaluated over many time steps at once: large
#: enough to amortize the per-call overhead, small enough for the activations to stay in cache
#: (one call over all steps of a big batch is ~1.7x slower on CPU than calls of this size).
STEP_CHUNK_ROWS = 4096


def _over_steps(
    fn: Callable,
    times: torch.Tensor,
    x: torch.Tensor,
    name: str | None = None,
    last: int | None = None,
) -> torch.Tensor:
    """``fn(t_k, x_k)`` for all steps, time first: ``times`` ``(n,)``, ``x`` ``(n, ..., d)``.

    Calls ``fn`` on chunks of consecutive steps (``t`` of shape ``(m, 1, ..., 1)``) and
    concatenates the results, each broadcast to ``x``'s shape. With a ``name`` (a user-supplied
    coefficient, e.g. ``"drift"``), every output's shape is checked (it must broadcast to the
    states without enlarging them, with last dimension ``last`` when given) and so is the
    finiteness of the result (one reduction), naming ``name`` in the error.
    """
    n = x.shape[0]
    per_step = max(1, x[0].numel() // max(1, x.shape[-1]))
    chunk = max(1, STEP_CHUNK_ROWS // per_step)
    t = _time_view(times, x.dim())
    if chunk >= n:
        out = _step_output(fn(t, x), x, name, last).expand_as(x)
    else:
        parts = [
            _step_output(fn(t[i : i + chunk], x[i : i + chunk]), x[i : i + chunk], name, last)
            for i in range(0, n, chunk)
        ]
        out = torch.cat([y.expand_as(x[i : i + chunk]) for i, y in zip(range(0, n, chunk), parts)])
    if name is not None and out.is_floating_point() and not all_finite(out.detach()):
        if not all_finite(x.detach()):
            raise ValueError(
                f"{name}: evaluated on a path that contains NaN or infinite states; the path "
                "scored must be finite"
            )
        raise ValueError(f"{name} returned NaN or infinite values on finite states")
    return out


def _step_output(out: Any, x: torch.Tensor, name: str | None, last: int | None) -> torch.Tensor:
    """``out`` after the shape check of :func:`_over_steps` (none without a ``name``)."""
    if name is None:
        return out
    if isinstance(out, torch.Tensor) and out.dim() == 0 and last is None:
        out = out.reshape(1)
    return check_output(
        name, out, tuple(x.shape), last=last, finite=False, what=_expected(name, x.shape)
    )


def _expected(name: str, shape: Sequence[int]) -> str:
    shape = tuple(shape)
    if name == "diffusion":
        return f"{shape}, (..., 1) or (d,) (diagonal noise) for states of shape {shape}"
    return f"{shape} (one value per coordinate) for states of shape {shape}"


def _first_bad_step(values: torch.Tensor) -> int | None:
    """Index along dimension 0 of the first slice with a NaN or infinity (None if all finite)."""
    bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(1)
    return int(bad.nonzero()[0]) if bool(bad.any()) else None


class EulerMaruyama(TorchDistribution):
    r"""Paths of the Itô SDE ``dX = f(t, X) dt + g(t, X) dW`` on a time grid.

    Shapes:
        * ``event_shape = (len(times), d)``: the state at every time in ``times``, the first row
          being the initial state ``X(times[0])``;
        * ``batch_shape``: the initial state's batch shape (``init.batch_shape`` for a
          distribution, ``init.shape[:-1]`` for a tensor), or what ``expand`` (``pyro.plate``)
          makes of it;
        * ``sample(sample_shape)`` has shape ``sample_shape + batch_shape + (len(times), d)``.

    Coefficients:
        ``drift`` and ``diffusion`` are callables ``(t, x) -> tensor`` (functions or
        ``nn.Module``\ s) or constants (a number or a ``(d,)`` tensor). ``x`` has shape
        ``(..., d)``; ``t`` is a tensor broadcastable against ``x[..., :1]``: a scalar while
        sampling, ``(n, 1, ..., 1)`` when ``log_prob`` evaluates all ``n`` steps at once. The
        drift returns ``(..., d)``; the diffusion is diagonal: ``(..., d)``, or ``(..., 1)`` /
        a scalar applied to every coordinate (each coordinate has its own Brownian motion).
        Diffusion values must be positive. General (matrix) noise is not offered.

    Checks:
        The shapes of user-supplied coefficients are checked on the first step of every path
        (a drift must return ``(..., d)``, a diffusion ``(..., d)``, ``(..., 1)`` or a scalar;
        anything that would change or silently broadcast the states is refused), and every
        sampled path is checked for NaN and infinities (one reduction); a ``ValueError`` or
        ``TypeError`` then names ``drift``, ``diffusion`` or ``init``, the step and what was
        expected. ``log_prob`` checks the coefficients it evaluates on a path the same way.

    Sampling:
        ``rsample`` runs a vectorized Euler–Maruyama loop over the fine grid (each interval of
        ``times`` split into ``substeps`` equal steps) with Brownian increments drawn up front;
        it is differentiable in the coefficients' parameters and in ``init``. With ``solver``
        set to a torchsde method the path is integrated by ``torchsde.sdeint`` (or
        ``sdeint_adjoint`` with ``adjoint=True``) on the same fine grid and Brownian path;
        the log-ratio below is the same estimator either way.

    Density and path KL:
        ``log_prob(path)`` is ``init.log_prob(path[..., 0, :])`` (0 for a tensor ``init``) plus the
        Gaussian transition log-densities. For a path this distribution did not sample itself
        but another ``EulerMaruyama`` did (the guide's path scored by the model), ``log_prob``
        uses the sampler's fine grid and Brownian increments: ``log p = log q − Σ(u·ΔW + ½|u|²Δt)``
        (``kl_estimator="full"``, exactly the Euler–Maruyama density for ``solver="em"``), or
        ``log q − Σ ½|u|²Δt`` (``"quadratic"``: the zero-mean Itô term dropped, an estimator with
        the same expectation under q but not a density — do not use it for importance weights).
        Both SDEs must have the same diffusion along the path (otherwise the path measures are
        mutually singular); under ``pyro.validation_enabled()`` a mismatch raises.

    Args:
        drift: ``f(t, x)``.
        diffusion: ``g(t, x)``.
        init: Distribution of the initial state (event shape ``(d,)``) or a tensor ``(*batch, d)``.
        times: Increasing 1-D tensor ``(T,)``; ``times[0]`` is the initial time (same time units
            as the coefficients).
        substeps: Euler–Maruyama steps per interval of ``times`` (≥ 1).
        kl_estimator: ``"full"`` or ``"quadratic"`` (see above); used when this distribution
            scores a path another ``EulerMaruyama`` sampled.
        solver: ``"em"`` (default, pyrovi's loop) or a torchsde method: ``"euler"``,
            ``"milstein"``, ``"srk"``, ``"reversible_heun"``.
        adjoint: With a torchsde solver, integrate with ``torchsde.sdeint_adjoint``.
        adjoint_params: Tensors the coefficients depend on besides their module parameters
            (e.g. an encoder's context captured by a closure), for ``adjoint=True``.
        batch_shape: Batch shape to expand to (as ``expand`` does).
        validate_args: As in torch distributions.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        drift: Coefficient,
        diffusion: Coefficient,
        init: Distribution | torch.Tensor,
        times: torch.Tensor | Sequence[float],
        substeps: int = 1,
        *,
        kl_estimator: str = "full",
        solver: str = "em",
        adjoint: bool = False,
        adjoint_params: Sequence[torch.Tensor] = (),
        batch_shape: torch.Size | Sequence[int] | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.drift, self._drift_const = _coefficient(drift, "drift")
        self.diffusion, diff_const = _coefficient(diffusion, "diffusion")
        if diff_const is not None and not (diff_const > 0).all():
            raise ValueError(f"diffusion must be positive, got {diff_const}")
        self._diffusion_const = diff_const
        if isinstance(init, Distribution):
            if len(init.event_shape) != 1:
                raise ValueError(
                    "init: a distribution over states needs event_shape (d,), got "
                    f"{tuple(init.event_shape)} (use .to_event(1) on a batched distribution)"
                )
            dim, base_batch = init.event_shape[0], init.batch_shape
        elif isinstance(init, torch.Tensor):
            if init.dim() < 1 or not torch.is_floating_point(init):
                raise ValueError(
                    f"init: a tensor initial state must be floating point of shape (*batch, d), "
                    f"got dtype {init.dtype} and shape {tuple(init.shape)}"
                )
            dim, base_batch = init.shape[-1], init.shape[:-1]
        else:
            raise TypeError(
                f"init must be a torch Distribution or a tensor, got {type(init).__name__}"
            )
        for name, const in (("drift", self._drift_const), ("diffusion", diff_const)):
            if const is not None and const.dim() == 1 and const.shape[0] not in (1, dim):
                raise ValueError(
                    f"{name}: a constant vector must have the state dimension d={dim} (or 1), "
                    f"got shape {tuple(const.shape)}"
                )
        if isinstance(init, torch.Tensor) and not all_finite(init):
            raise ValueError("init: the initial states contain NaN or infinite values")
        self.init = init
        self.times = _check_times(times)
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        self.substeps = substeps
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
        self.kl_estimator = kl_estimator
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if adjoint and solver == "em":
            raise ValueError("adjoint=True needs a torchsde solver (solver='euler', ...)")
        self.solver, self.adjoint = solver, check_bool("adjoint", adjoint)
        self.adjoint_params = tuple(adjoint_params)
        self.state_dim = int(dim)
        self._base_batch = torch.Size(base_batch)
        batch = self._base_batch if batch_shape is None else torch.Size(batch_shape)
        if torch.broadcast_shapes(batch, self._base_batch) != batch:
            raise ValueError(
                f"batch_shape {tuple(batch)} does not broadcast the initial state's batch "
                f"shape {tuple(self._base_batch)}"
            )
        coarse = self.times.detach().cpu().double()
        steps = torch.arange(1, substeps + 1, dtype=torch.float64) / substeps
        fine = coarse[:-1, None] + (coarse[1:] - coarse[:-1])[:, None] * steps  # (T - 1, substeps)
        fine[:, -1] = coarse[1:]  # exact coarse times
        fine = torch.cat([coarse[:1], fine.reshape(-1)])
        self.fine_times = fine.to(dtype=self.times.dtype, device=self.times.device)
        self._coarse_index = torch.arange(0, len(self.fine_times), substeps)
        super().__init__(batch, torch.Size((len(self.times), self.state_dim)), validate_args)

    # ------------------------------------------------------------------ shapes
    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> EulerMaruyama:
        """Same SDE with i.i.d. copies over the new ``batch_shape`` (for ``pyro.plate``)."""
        new = self._get_checked_instance(EulerMaruyama, _instance)
        new.__dict__.update(self.__dict__)
        batch = torch.Size(batch_shape)
        if torch.broadcast_shapes(batch, self._base_batch) != batch:
            raise ValueError(
                f"cannot expand batch shape {tuple(self.batch_shape)} to {tuple(batch)}"
            )
        super(EulerMaruyama, new).__init__(batch, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def num_steps(self) -> int:
        """Number of Euler–Maruyama steps of the fine grid."""
        return len(self.fine_times) - 1

    # ---------------------------------------------------------------- sampling
    def _initial_state(self, shape: torch.Size) -> torch.Tensor:
        """Initial states of shape ``shape + (d,)`` (``shape`` = sample + batch shape)."""
        if isinstance(self.init, torch.Tensor):
            return self.init.expand(shape + (self.state_dim,))
        init = self.init.expand(self.batch_shape)
        extra = shape[: len(shape) - len(self.batch_shape)]
        return init.rsample(extra) if init.has_rsample else init.sample(extra)

    def _diffusion_values(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g = self.diffusion(t, x)
        if not isinstance(g, torch.Tensor):
            raise TypeError(
                f"diffusion must return a tensor ({_expected('diffusion', x.shape)}), got "
                f"{type(g).__name__}"
            )
        if g.dim() == 0:
            g = g.reshape(1)
        return g

    def _drift_values(self, times: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The drift at every step of a path (time first), checked unless it is a constant."""
        if self._drift_const is not None:
            return _over_steps(self.drift, times, x)
        return _over_steps(self.drift, times, x, "drift", self.state_dim)

    def _diffusion_steps(self, times: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The diffusion at every step of a path (time first), checked unless a constant."""
        if self._diffusion_const is not None:
            return _over_steps(self._diffusion_values, times, x)
        return _over_steps(self._diffusion_values, times, x, "diffusion")

    def _check_step(self, f: Any, g: torch.Tensor, x: torch.Tensor) -> None:
        """Shapes of the coefficients at the first step of a path (O(1), no device sync)."""
        self._check_drift_shape(f, x)
        self._check_diffusion_shape(g, x)

    def _check_drift_shape(self, f: Any, x: torch.Tensor) -> None:
        if self._drift_const is None:
            shape = tuple(x.shape)
            what = _expected("drift", shape)
            check_output("drift", f, shape, last=self.state_dim, finite=False, what=what)

    def _check_diffusion_shape(self, g: torch.Tensor, x: torch.Tensor) -> None:
        if self._diffusion_const is None:
            shape = tuple(x.shape)
            what = _expected("diffusion", shape)
            check_output("diffusion", g, shape, finite=False, what=what)

    def _check_path(self, path: torch.Tensor, drift: torch.Tensor, diffusion: torch.Tensor):
        """Raise, naming the culprit, unless the sampled path is finite (one reduction)."""
        if all_finite(path.detach()):
            return
        k_x = _first_bad_step(path)
        if k_x == 0:
            raise ValueError("init: the initial states contain NaN or infinite values")
        times = self.fine_times
        for name, values in (("drift", drift), ("diffusion", diffusion)):
            k = _first_bad_step(values)
            if k is not None and k < k_x:
                raise ValueError(
                    f"{name} returned NaN or infinite values at step {k} (t = "
                    f"{float(times[k]):g}) on finite states; the path cannot be continued"
                )
        raise ValueError(
            f"the path became NaN or infinite at step {k_x} (t = {float(times[k_x]):g}) although "
            "drift and diffusion were finite before: the states overflowed; use a smaller time "
            "step (more substeps) or check that the drift does not grow too fast"
        )

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        """Draw paths; shape ``sample_shape + batch_shape + (len(times), d)``."""
        shape = self._extended_shape(torch.Size(sample_shape))[:-2]
        x0 = self._initial_state(shape)
        times = self.fine_times.to(device=x0.device, dtype=x0.dtype)
        dt = times[1:] - times[:-1]
        n = len(dt)
        if self.solver == "em":
            dw = torch.randn((n, *x0.shape), dtype=x0.dtype, device=x0.device)
            dw = dw * _time_view(dt.sqrt(), dw.dim())
            path, drift, diffusion = self._euler_maruyama(x0, times, dt, dw)
            self._check_path(path, drift, diffusion)
        else:
            path, dw = self._torchsde_path(x0, times)
            if not all_finite(path.detach()):  # name the culprit from the unchecked values
                drift = _over_steps(self.drift, times[:-1], path[:-1])
                diffusion = _over_steps(self._diffusion_values, times[:-1], path[:-1])
                self._check_path(path, drift, diffusion)
            # a finite path: the checked evaluations refuse wrong shapes and non-finite values
            drift = self._drift_values(times[:-1], path[:-1])
            diffusion = self._diffusion_steps(times[:-1], path[:-1])
        self._check_diffusion(diffusion)
        value = path[self._coarse_index.to(path.device)].movedim(0, -2)
        _remember(value, _PathRecord(self, times, dt, path, dw, drift, diffusion))
        return value

    def _euler_maruyama(
        self, x: torch.Tensor, times: torch.Tensor, dt: torch.Tensor, dw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps = dt.tolist()
        xs, fs, gs = [x], [], []
        for k, h in enumerate(steps):
            t = times[k]
            f = self.drift(t, x)
            g = self._diffusion_values(t, x)
            if k == 0:
                self._check_step(f, g, x)
            x = torch.addcmul(torch.add(x, f, alpha=h), g, dw[k])
            xs.append(x)
            fs.append(f.expand_as(x))
            gs.append(g.expand_as(x))
        return torch.stack(xs), torch.stack(fs), torch.stack(gs)

    def _torchsde_path(
        self, x0: torch.Tensor, times: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from pyrovi.distributions.sde_torchsde import solve_with_torchsde

        return solve_with_torchsde(self, x0, times)

    def _check_diffusion(self, g: torch.Tensor) -> None:
        if self._validate_args and not (g > 0).all():
            raise ValueError(
                "diffusion: g(t, x) must be positive along the path, got values "
                f"<= 0 (min {float(g.min()):.3g}); a negative or zero diffusion has no density"
            )

    # ----------------------------------------------------------------- density
    def _own_log_prob(self, rec: _PathRecord) -> torch.Tensor:
        """Transition part of the sampler's own log-density: ``Σ log N(ΔW; 0, Δt) − log g``."""
        dt = _time_view(rec.dt, rec.dw.dim())
        g = rec.diffusion.expand_as(rec.dw)
        terms = -0.5 * rec.dw.pow(2) / dt - g.log() - 0.5 * torch.log(2 * math.pi * dt)
        return terms.sum(dim=(0, -1))

    def _init_log_prob(self, x0: torch.Tensor) -> torch.Tensor:
        if isinstance(self.init, torch.Tensor):
            if self._validate_args and not torch.allclose(
                x0, self.init.expand_as(x0), rtol=1e-5, atol=1e-6
            ):
                raise ValueError(
                    "path: its initial state differs from this SDE's fixed initial state init "
                    "(a tensor init is a point mass)"
                )
            return x0.new_zeros(x0.shape[:-1])
        return self.init.log_prob(x0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of paths ``(..., len(times), d)``; returns shape ``value.shape[:-2]``."""
        rec = _recall(value)
        if rec is None:
            return self._coarse_log_prob(value)
        x0 = rec.path[0]
        own = self._own_log_prob(rec)
        if rec.source is self or (
            rec.source.drift is self.drift
            and rec.source.diffusion is self.diffusion
            and self._same_grid(rec)
        ):
            return self._init_log_prob(x0) + own
        self._check_grid(rec)
        g = self._matched_diffusion(rec)
        u = (rec.drift - self._drift_values(rec.times[:-1], rec.path[:-1])) / g
        dt = _time_view(rec.dt, u.dim())
        ratio = 0.5 * u.pow(2) * dt
        if self.kl_estimator == "full":
            ratio = ratio + u * rec.dw
        return self._init_log_prob(x0) + own - ratio.sum(dim=(0, -1))

    def _same_grid(self, rec: _PathRecord) -> bool:
        return len(rec.times) == len(self.fine_times) and bool(
            torch.allclose(rec.times, self.fine_times.to(rec.times), rtol=1e-6, atol=1e-9)
        )

    def _check_grid(self, rec: _PathRecord) -> None:
        if not self._same_grid(rec):
            raise ValueError(
                "the path was sampled on a different time grid (times and substeps) than this "
                f"SDE's: {len(rec.times) - 1} steps from {float(rec.times[0]):g} to "
                f"{float(rec.times[-1]):g} against {self.num_steps} steps from "
                f"{float(self.fine_times[0]):g} to {float(self.fine_times[-1]):g}; "
                "give both SDEs the same times and substeps"
            )

    def _matched_diffusion(self, rec: _PathRecord) -> torch.Tensor:
        """The common diffusion along the recorded path (checked when validation is on)."""
        if self.diffusion is rec.source.diffusion:
            return rec.diffusion
        if not is_validation_enabled() and not self._validate_args:
            return rec.diffusion
        mine = self._diffusion_steps(rec.times[:-1], rec.path[:-1])
        if not torch.allclose(mine.expand_as(rec.dw), rec.diffusion.expand_as(rec.dw), rtol=1e-5):
            raise ValueError(
                "diffusion: the path was sampled by an SDE with a different diffusion g(t, x); "
                "path measures with different diffusions are mutually singular (no density "
                "ratio, infinite KL). Share the diffusion between the model and the guide."
            )
        return rec.diffusion

    def _coarse_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.substeps != 1:
            raise ValueError(
                f"log_prob: this SDE integrates with substeps={self.substeps}, so a path is "
                "scored on the fine grid, which only paths sampled by an EulerMaruyama carry; "
                "a path given from outside needs substeps=1"
            )
        if value.shape[-2:] != self.event_shape:
            raise ValueError(
                f"value: expected paths of shape (..., {len(self.times)}, {self.state_dim}), "
                f"got {tuple(value.shape)}"
            )
        if self._validate_args:
            self._validate_sample(value)
        path = value.movedim(-2, 0)
        times = self.times.to(device=value.device, dtype=value.dtype)
        dt = _time_view(times[1:] - times[:-1], path.dim())
        x = path[:-1]
        g = self._diffusion_steps(times[:-1], x)
        self._check_diffusion(g)
        resid = (path[1:] - x - self._drift_values(times[:-1], x) * dt) / g
        terms = -0.5 * resid.pow(2) / dt - g.log() - 0.5 * torch.log(2 * math.pi * dt)
        terms = terms.expand(torch.broadcast_shapes(terms.shape, x.shape))
        return self._init_log_prob(path[0]) + terms.sum(dim=(0, -1))

    def __repr__(self) -> str:
        return (
            f"EulerMaruyama(d={self.state_dim}, times={len(self.times)}, substeps={self.substeps},"
            f" batch_shape={tuple(self.batch_shape)}, kl_estimator={self.kl_estimator!r}, "
            f"solver={self.solver!r})"
        )
