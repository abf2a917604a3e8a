"""The simulation-based-inference benchmark tasks of sbibm (Lueckmann et al. 2021) as Pyro models.

Each task is a :class:`~pyro.nn.PyroModule` with a parameter site ``theta`` and an observed site
``y`` (``forward(y=None)``), vectorized over leading batch dimensions so that
``pyro.infer.Predictive(task, num_samples=N, parallel=True)`` simulates ``N`` pairs at once. The
definitions (priors, scales, the Bernoulli GLM's stimulus) are sbibm's, so that sbibm's
reference posterior samples apply to these models:

* ``gaussian_linear``: :class:`~pyrovi.models.simulators.GaussianLinear` (D = 10,
  ``θ ~ N(0, 0.1 I)``, ``y | θ ~ N(θ, 0.1 I)``).
* ``slcp``: :class:`SLCP`.
* ``gaussian_mixture``: :class:`GaussianMixture`.
* ``bernoulli_glm``: :class:`BernoulliGLM` (sbibm's default, sufficient summary statistics).

:data:`SBI_TASKS` maps the sbibm names to constructors and :func:`sbi_task` builds one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from pyrovi._checks import check_int, check_positive, check_tensor
from pyrovi._validation import all_finite
from pyrovi.models.simulators import GaussianLinear

__all__ = [
    "SLCP",
    "GaussianMixture",
    "BernoulliGLM",
    "bernoulli_glm_stimulus",
    "bernoulli_glm_design",
    "bernoulli_glm_prior_precision",
    "SBI_TASKS",
    "sbi_task",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _describe(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _check_event(name: str, value: object, size: int, *, finite: bool = False) -> torch.Tensor:
    """``value`` if it is a tensor of shape ``(..., size)`` (and finite when asked)."""
    if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[-1] != size:
        raise ValueError(f"{name} must be a tensor of shape (..., {size}), got {_describe(value)}")
    if finite and value.is_floating_point() and not all_finite(value):
        raise ValueError(f"{name} contains NaN or infinite values")
    return value


def _common_dtype(theta: torch.Tensor, y: torch.Tensor, names: tuple[str, str]) -> torch.dtype:
    """The floating dtype of a ``(theta, y)`` pair whose batch shapes broadcast."""
    try:
        torch.broadcast_shapes(theta.shape[:-1], y.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"{names[0]} and {names[1]} have batch shapes {tuple(theta.shape[:-1])} and "
            f"{tuple(y.shape[:-1])} that do not broadcast"
        ) from None
    dtype = torch.promote_types(theta.dtype, y.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _uniform_box(module: PyroModule, dim: int, bound: float) -> None:
    """Register the buffers ``low = −bound`` and ``high = +bound`` of shape ``(dim,)``."""
    module.register_buffer("low", torch.full((dim,), -float(bound)))
    module.register_buffer("high", torch.full((dim,), float(bound)))


# ---------------------------------------------------------------------------------------- SLCP


class SLCP(PyroModule):
    """SLCP (simple likelihood, complex posterior; Papamakarios et al. 2019), as in sbibm.

    ``θ ∈ R^5`` (site ``theta``, event ``(5,)``), ``θ_i ~ U(−3, 3)``. The data are 4 i.i.d.
    2-d Gaussian points with mean ``(θ1, θ2)``, standard deviations ``s1 = θ3²``, ``s2 = θ4²``
    and correlation ``ρ = tanh(θ5)``, i.e. covariance
    ``[[s1² + ε, ρ s1 s2], [ρ s1 s2, s2² + ε]]`` with sbibm's jitter ``ε = 1e-6`` on the
    diagonal. The observed site ``y`` is the 4 points flattened, ``(x1, y1, x2, y2, …)``, shape
    ``(8,)``. :meth:`log_likelihood` is the closed form.
    """

    params = ("theta",)
    num_points = 4
    jitter = 1e-6

    def __init__(self) -> None:
        super().__init__()
        _uniform_box(self, 5, 3.0)

    def prior(self) -> dist.Distribution:
        """``U(−3, 3)^5``, event shape ``(5,)``."""
        return dist.Uniform(self.low, self.high).to_event(1)

    def covariance_terms(
        self, theta: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Variances ``a, b``, covariance ``c`` and determinant ``ab − c²`` (each ``batch``).

        The determinant is computed as ``s1² s2² sech²(θ5) + ε (s1² + s2²) + ε²``, which is
        positive and free of cancellation even when ``|ρ| → 1``.
        """
        s1, s2 = theta[..., 2] ** 2, theta[..., 3] ** 2
        eps = self.jitter
        a, b = s1**2 + eps, s2**2 + eps
        c = torch.tanh(theta[..., 4]) * s1 * s2
        det = (s1 * s2 / torch.cosh(theta[..., 4])) ** 2 + eps * (s1**2 + s2**2) + eps**2
        return a, b, c, det

    def point_scale_tril(self, theta: torch.Tensor) -> torch.Tensor:
        """Cholesky factor ``(…, 2, 2)`` of one point's covariance, in closed form."""
        a, _, c, det = self.covariance_terms(theta)
        sa = a.sqrt()
        zero = torch.zeros_like(a)
        rows = (torch.stack([sa, zero], -1), torch.stack([c / sa, (det / a).sqrt()], -1))
        return torch.stack(rows, -2)

    def likelihood(self, theta: torch.Tensor) -> dist.MultivariateNormal:
        """``p(y | θ)`` as one 8-d Gaussian with a block-diagonal covariance (batch ``θ[..., 0]``).

        Args:
            theta: Parameters ``(…, 5)``.
        """
        batch = theta.shape[:-1]
        loc = theta[..., None, :2].expand(batch + (self.num_points, 2)).reshape(batch + (8,))
        eye = torch.eye(self.num_points, dtype=theta.dtype, device=theta.device)
        tril = self.point_scale_tril(theta)[..., None, :, None, :] * eye[:, None, :, None]
        return dist.MultivariateNormal(loc, scale_tril=tril.reshape(batch + (8, 8)))

    def forward(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample (or condition on) the data ``y`` of shape ``(8,)``; returns θ ``(5,)``."""
        if y is not None:
            _check_event("y", y, 8)
        theta = pyro.sample("theta", self.prior())
        pyro.sample("y", self.likelihood(theta), obs=y)
        return theta

    def log_likelihood(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y | θ)`` in closed form: the sum of 4 bivariate normal log densities.

        Computed in the promoted floating dtype of ``theta`` and ``y`` (float64 in, float64 out).

        Args:
            theta: Parameters ``(…, 5)``.
            y: Data ``(…, 8)`` (batch shapes broadcast with ``theta``'s).

        Returns:
            ``(…)``, the broadcast batch shape.
        """
        _check_event("theta", theta, 5, finite=True)
        _check_event("y", y, 8, finite=True)
        dtype = _common_dtype(theta, y, ("theta", "y"))
        theta, y = theta.to(dtype), y.to(dtype)
        a, b, c, det = (t.unsqueeze(-1) for t in self.covariance_terms(theta))
        points = y.reshape(y.shape[:-1] + (self.num_points, 2))
        dx = points[..., 0] - theta[..., :1]
        dy = points[..., 1] - theta[..., 1:2]
        quad = (b * dx**2 - 2.0 * c * dx * dy + a * dy**2) / det
        return (-_LOG_2PI - 0.5 * det.log() - 0.5 * quad).sum(-1)


# ------------------------------------------------------------------------- Gaussian mixture


class GaussianMixture(PyroModule):
    """sbibm's Gaussian mixture: ``θ ~ U(−10, 10)^D`` and
    ``y | θ ~ 0.5 N(θ, I) + 0.5 N(θ, 0.01 I)`` (component standard deviations 1 and 0.1).

    Sites ``theta`` and ``y``, both of event shape ``(D,)``. :meth:`log_likelihood` is the closed
    form (a log-sum-exp of the two components).

    Args:
        dim: D (2 in sbibm).
        prior_bound: The prior is uniform on ``[−prior_bound, prior_bound]^D``.
    """

    params = ("theta",)
    mixture_weights = (0.5, 0.5)
    mixture_scales = (1.0, 0.1)

    def __init__(self, dim: int = 2, prior_bound: float = 10.0) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        _uniform_box(self, self.dim, check_positive("prior_bound", prior_bound))

    def _constants(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture log-weights ``(2,)`` and scales ``(2, 1)`` in ``like``'s dtype and device
        (built from Python floats, so that float64 computations are exact to float64)."""
        kw = {"dtype": like.dtype, "device": like.device}
        log_w = torch.tensor(self.mixture_weights, **kw).log()
        return log_w, torch.tensor(self.mixture_scales, **kw)[:, None]

    def prior(self) -> dist.Distribution:
        """``U(−b, b)^D``, event shape ``(D,)``."""
        return dist.Uniform(self.low, self.high).to_event(1)

    def likelihood(self, theta: torch.Tensor) -> dist.MixtureSameFamily:
        """``p(y | θ)``, event shape ``(D,)`` and batch shape ``θ.shape[:-1]``."""
        log_w, scales = self._constants(theta)
        components = dist.Normal(theta.unsqueeze(-2), scales).to_event(1)
        mixture = dist.Categorical(logits=log_w.expand(theta.shape[:-1] + (2,)))
        return dist.MixtureSameFamily(mixture, components)

    def forward(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Sample (or condition on) the data ``y`` of shape ``(D,)``; returns θ ``(D,)``."""
        if y is not None:
            _check_event("y", y, self.dim)
        theta = pyro.sample("theta", self.prior())
        pyro.sample("y", self.likelihood(theta), obs=y)
        return theta

    def log_likelihood(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log p(y | θ) = logsumexp_k [log 0.5 + Σ_i log N(y_i; θ_i, σ_k²)]``, ``σ = (1, 0.1)``.

        Args:
            theta: Parameters ``(…, D)``.
            y: Data ``(…, D)`` (batch shapes broadcast with ``theta``'s).

        Returns:
            ``(…)``, in the promoted floating dtype of the inputs.
        """
        _check_event("theta", theta, self.dim, finite=True)
        _check_event("y", y, self.dim, finite=True)
        dtype = _common_dtype(theta, y, ("theta", "y"))
        z = (y.to(dtype) - theta.to(dtype)).unsqueeze(-2)  # (..., 1, D)
        log_w, scales = self._constants(z)
        log_n = -0.5 * (z / scales) ** 2 - scales.log() - 0.5 * _LOG_2PI
        return torch.logsumexp(log_n.sum(-1) + log_w, -1)


# ---------------------------------------------------------------------------- Bernoulli GLM


def bernoulli_glm_stimulus(duration: int = 100, seed: int = 42) -> torch.Tensor:
    """sbibm's white-noise stimulus: ``numpy.random.RandomState(seed).randn(duration)`` as float32.

    With the defaults this is bit-for-bit sbibm's ``bernoulli_glm/files/stimulus_I.pt`` (numpy's
    legacy ``RandomState`` stream is frozen across numpy versions).

    Returns:
        ``(duration,)`` float32.
    """
    duration = check_int("duration", duration)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.from_numpy(np.random.RandomState(seed).randn(duration).astype(np.float32))


def bernoulli_glm_design(stimulus: torch.Tensor | None = None, num_filter: int = 9) -> torch.Tensor:
    """Design matrix ``X`` ``(T, 1 + num_filter)``: a column of ones (offset ``β0``) then the
    stimulus delayed by ``0..num_filter−1`` bins, ``X[t, 1 + j] = I[t − j]`` (0 for ``t < j``),
    so that ``X β`` is the offset plus the causal convolution of the stimulus with the filter.

    Args:
        stimulus: ``(T,)``; default :func:`bernoulli_glm_stimulus` (sbibm's).
        num_filter: Length of the filter (9 in sbibm).

    Returns:
        ``(T, 1 + num_filter)`` in the stimulus' dtype; with the defaults, equal to sbibm's
        ``design_matrix.pt``.
    """
    num_filter = check_int("num_filter", num_filter)
    if stimulus is None:
        stimulus = bernoulli_glm_stimulus()
    check_tensor("stimulus", stimulus, dim=1, floating=True, finite=True)
    if stimulus.shape[0] < num_filter:
        raise ValueError(
            f"stimulus must have at least num_filter = {num_filter} bins, got {stimulus.shape[0]}"
        )
    t = torch.arange(stimulus.shape[0], device=stimulus.device)
    lags = t[:, None] - torch.arange(num_filter, device=stimulus.device)
    delayed = torch.where(lags >= 0, stimulus[lags.clamp_min(0)], stimulus.new_zeros(()))
    return torch.cat([torch.ones_like(stimulus)[:, None], delayed], -1)


def bernoulli_glm_prior_precision(num_filter: int = 9) -> torch.Tensor:
    """sbibm's prior precision ``B⁻¹`` ``(1 + num_filter,)²`` (float64) of ``(β0, h)``.

    ``β0`` has precision 0.5; the filter ``h`` has precision ``FᵀF`` with ``F = D² + diag(√(i/M))``
    (``M = num_filter``, ``i = 0..M−1``, ``D`` the first-difference matrix: identity minus the
    sub-diagonal), which penalizes second differences and so favours smooth filters.
    """
    m = check_int("num_filter", num_filter)
    d = torch.eye(m, dtype=torch.float64) - torch.diag(torch.ones(m - 1, dtype=torch.float64), -1)
    f = d @ d + torch.diag((torch.arange(m, dtype=torch.float64) / m).sqrt())
    precision = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    precision[0, 0] = 0.5
    precision[1:, 1:] = f.T @ f
    return precision


class BernoulliGLM(PyroModule):
    """sbibm's Bernoulli GLM: a neuron's spikes driven by a white-noise stimulus.

    ``θ = (β0, h_1..h_9)`` (site ``theta``, event ``(10,)``) with the Gaussian prior
    ``N(0, B)``, ``B⁻¹`` = :func:`bernoulli_glm_prior_precision`. Spikes
    ``s_t ~ Bernoulli(σ((X θ)_t))`` for ``T = 100`` bins (site ``spikes``, ``(T,)``), ``X`` the
    design matrix. The observation ``y`` is sbibm's default ``bernoulli_glm`` data (summary
    ``"sufficient"``): the 10 statistics ``Xᵀ s`` — the spike count and the spike-triggered sums
    ``Σ_t s_t I_{t−j}``, ``j = 0..8`` — which sbibm computes with a ``conv1d`` and which equal
    ``Xᵀ s`` exactly. ``y`` is a deterministic function of the spikes (a ``Delta`` site): the
    model simulates ``y``, it does not score it; since ``Xᵀ s`` is sufficient, condition on the
    raw spikes (``forward(spikes=...)``, :meth:`log_likelihood`) or use
    :meth:`log_likelihood_from_summary` for likelihood-based inference — the posteriors agree.

    Args:
        design_matrix: ``X`` ``(T, P)`` (first column the offset's ones). Default:
            :func:`bernoulli_glm_design` on :func:`bernoulli_glm_stimulus`, generated
            deterministically (numpy ``RandomState(42)``) and identical to the ``design_matrix.pt``
            shipped with sbibm, so sbibm's reference posteriors apply.
    """

    params = ("theta",)

    def __init__(self, design_matrix: torch.Tensor | None = None) -> None:
        super().__init__()
        if design_matrix is None:
            design_matrix = bernoulli_glm_design()
        check_tensor("design_matrix", design_matrix, dim=2, floating=True, finite=True)
        if design_matrix.shape[0] < 1 or design_matrix.shape[1] < 2:
            raise ValueError(
                "design_matrix must have shape (T, P) with T >= 1 and P >= 2, got "
                f"{tuple(design_matrix.shape)}"
            )
        self.num_bins, self.dim = design_matrix.shape
        dtype = torch.get_default_dtype()
        self.register_buffer("design_matrix", design_matrix.detach().to(dtype).clone())
        covariance = torch.linalg.inv(bernoulli_glm_prior_precision(self.dim - 1))
        self.register_buffer("prior_scale_tril", torch.linalg.cholesky(covariance).to(dtype))

    def prior(self) -> dist.MultivariateNormal:
        """``N(0, B)``, event shape ``(P,)``."""
        loc = self.prior_scale_tril.new_zeros(self.dim)
        return dist.MultivariateNormal(loc, scale_tril=self.prior_scale_tril)

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """Spike log-odds ``X θ`` ``(…, T)`` of parameters ``(…, P)``."""
        return theta @ self.design_matrix.to(theta.dtype).T

    def summary(self, spikes: torch.Tensor) -> torch.Tensor:
        """sbibm's sufficient statistics ``Xᵀ s`` ``(…, P)`` of spike trains ``(…, T)``."""
        _check_event("spikes", spikes, self.num_bins)
        dtype = spikes.dtype if spikes.is_floating_point() else self.design_matrix.dtype
        return spikes.to(dtype) @ self.design_matrix.to(dtype)

    def forward(
        self, y: torch.Tensor | None = None, spikes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sample ``θ``, the spikes ``(T,)`` (or condition on ``spikes``) and ``y = Xᵀ s``
        ``(P,)``; returns the spikes.
        """
        if y is not None:
            _check_event("y", y, self.dim)
        if spikes is not None:
            self._check_spikes(spikes)
        theta = pyro.sample("theta", self.prior())
        s = pyro.sample("spikes", dist.Bernoulli(logits=self.logits(theta)).to_event(1), obs=spikes)
        pyro.sample("y", dist.Delta(self.summary(s), event_dim=1), obs=y)
        return s

    def _check_spikes(self, spikes: object) -> torch.Tensor:
        _check_event("spikes", spikes, self.num_bins, finite=True)
        if not ((spikes == 0) | (spikes == 1)).all():
            raise ValueError("spikes must contain only 0 and 1")
        return spikes

    def log_likelihood(self, theta: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """``log p(s | θ) = Σ_t [s_t ψ_t − softplus(ψ_t)]``, ``ψ = X θ``.

        Args:
            theta: Parameters ``(…, P)``.
            spikes: Spike trains ``(…, T)`` of 0s and 1s (batch shapes broadcast).

        Returns:
            ``(…)`` in the promoted floating dtype of the inputs.
        """
        _check_event("theta", theta, self.dim, finite=True)
        self._check_spikes(spikes)
        dtype = _common_dtype(theta, spikes, ("theta", "spikes"))
        psi = self.logits(theta.to(dtype))
        return (spikes.to(dtype) * psi - torch.nn.functional.softplus(psi)).sum(-1)

    def log_likelihood_from_summary(self, theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:meth:`log_likelihood` of any spike train whose summary is ``y``: ``θ·y − Σ_t
        softplus((Xθ)_t)``. It depends on the spikes only through ``y = Xᵀ s``, so it is the
        log-likelihood of ``y`` up to a θ-independent constant and gives the exact posterior.

        Args:
            theta: Parameters ``(…, P)``.
            y: Summaries ``(…, P)`` (batch shapes broadcast).

        Returns:
            ``(…)`` in the promoted floating dtype of the inputs.
        """
        _check_event("theta", theta, self.dim, finite=True)
        _check_event("y", y, self.dim, finite=True)
        dtype = _common_dtype(theta, y, ("theta", "y"))
        theta = theta.to(dtype)
        softplus = torch.nn.functional.softplus(self.logits(theta)).sum(-1)
        return (theta * y.to(dtype)).sum(-1) - softplus


# --------------------------------------------------------------------------------- registry

SBI_TASKS: dict[str, Callable[[], PyroModule]] = {
    "gaussian_linear": GaussianLinear,
    "slcp": SLCP,
    "gaussian_mixture": GaussianMixture,
    "bernoulli_glm": BernoulliGLM,
}
"""sbibm task names → constructors of the models with sbibm's settings (the defaults)."""


def sbi_task(name: str) -> PyroModule:
    """The model of the sbibm task ``name`` (a key of :data:`SBI_TASKS`), with sbibm's settings.

    Raises:
        ValueError: ``name`` is not a known task.
    """
    if not isinstance(name, str) or name not in SBI_TASKS:
        raise ValueError(f"name must be one of {sorted(SBI_TASKS)}, got {name!r}")
    return SBI_TASKS[name]()
