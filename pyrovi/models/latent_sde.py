"""``LatentSDE``: a latent stochastic differential equation model of time series (Li et al. 2020).

Generative model, for B series observed at shared times ``t_0 < ... < t_{T-1}``::

    z(t_0) ~ N(μ_0, σ_0²)                                  site "z0"    (B, d)
    dz = h(t, z) dt + g(z) dW                              site "z"     (B, T, d)  EulerMaruyama
    x(t_i) ~ Normal / Laplace(decoder(z(t_i)), scale)      site "x"     (B, T, D)  observed

The prior drift ``h`` is learned (an MLP) or a fixed Ornstein–Uhlenbeck drift; the diagonal
diffusion ``g`` is shared with the guide (:class:`~pyrovi.guides.PosteriorSDE`), so the path KL is
finite and Pyro's ``Trace_ELBO`` forms the Girsanov log-ratio of the two SDEs.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from pyro.poutine.util import is_validation_enabled
from torch.distributions import constraints

from pyrovi._checks import check_int, check_positive
from pyrovi._validation import all_finite
from pyrovi.distributions.sde import KL_ESTIMATORS, EulerMaruyama, _check_times
from pyrovi.nn.registration import submodule
from pyrovi.nn.sde_nets import DiagonalDiffusion, DriftMLP, OUDrift

__all__ = ["LatentSDE"]

_LIKELIHOODS = ("gaussian", "laplace")
_PRIORS = ("learned", "ou")


class LatentSDE(PyroModule):
    """Latent SDE model with a learned or Ornstein–Uhlenbeck prior and a linear decoder.

    Call as ``model(xs, mask=None)`` (the form :func:`pyrovi.infer.fit` uses) with ``xs`` of shape
    ``(B, T, obs_dim)`` observed at ``model.times``; ``mask`` ``(B, T)`` (bool) marks which
    observations exist (irregular sampling per series). ``model(None, num_series=B)`` samples
    from the prior. Returns the latent path ``(B, T, latent_dim)``.

    Args:
        obs_dim: Observed features D.
        times: Observation times ``(T,)``, increasing (a buffer; move with ``.to``).
        latent_dim: Latent state dimension d.
        hidden: Hidden width of the prior drift and diffusion nets.
        prior: ``"learned"`` (MLP drift) or ``"ou"`` (``−θ z``, θ fixed at ``ou_theta``).
        ou_theta: Mean-reversion rate of the OU prior.
        likelihood: ``"gaussian"`` or ``"laplace"``.
        obs_scale: Scale of the observation noise (fixed), in data units.
        substeps: Euler–Maruyama steps per observation interval (the integration step is
            ``Δt / substeps``).
        kl_estimator: ``"quadratic"`` (default, chosen by measurement: lower variance of the
            path KL for this model, see ``benchmarks/latent_sde_kl_variance.py``) or
            ``"full"`` (the exact Euler–Maruyama density; use it for importance-weighted
            evidence, which needs true density ratios).
        diffusion_scale: Upper bound of the diffusion.
    """

    def __init__(
        self,
        obs_dim: int,
        times: torch.Tensor | Sequence[float],
        latent_dim: int = 4,
        hidden: int = 128,
        *,
        prior: str = "learned",
        ou_theta: float = 1.0,
        likelihood: str = "laplace",
        obs_scale: float = 0.01,
        substeps: int = 1,
        kl_estimator: str = "quadratic",
        diffusion_scale: float = 1.0,
    ) -> None:
        super().__init__()
        obs_dim, latent_dim = check_int("obs_dim", obs_dim), check_int("latent_dim", latent_dim)
        hidden = check_int("hidden", hidden)
        ou_theta = check_positive("ou_theta", ou_theta)
        diffusion_scale = check_positive("diffusion_scale", diffusion_scale)
        if prior not in _PRIORS:
            raise ValueError(f"prior must be one of {_PRIORS}, got {prior!r}")
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
        obs_scale = check_positive("obs_scale", obs_scale)
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}")
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps!r}")
        self.obs_dim, self.latent_dim = int(obs_dim), int(latent_dim)
        self.register_buffer("times", _check_times(times).to(torch.get_default_dtype()))
        self.likelihood, self.obs_scale = likelihood, float(obs_scale)
        self.substeps, self.kl_estimator = substeps, kl_estimator
        self.prior_kind = prior
        self.prior_drift = (
            DriftMLP(latent_dim, (hidden, hidden))
            if prior == "learned"
            else OUDrift(latent_dim, ou_theta)
        )
        self.diffusion = DiagonalDiffusion(latent_dim, hidden, scale=diffusion_scale)
        self.decoder = torch.nn.Linear(latent_dim, obs_dim)
        self.z0_loc = PyroParam(torch.zeros(latent_dim))
        self.z0_scale = PyroParam(torch.ones(latent_dim), constraint=constraints.positive)

    # ------------------------------------------------------------------ checks
    def check_data(self, xs: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless ``xs`` is finite ``(B, T, obs_dim)``, ``mask`` ``(B, T)``."""
        if not isinstance(xs, torch.Tensor) or xs.dim() != 3:
            raise ValueError(
                f"xs must be a tensor (batch, len(times)={len(self.times)}, obs_dim="
                f"{self.obs_dim}), got {getattr(xs, 'shape', type(xs).__name__)}"
            )
        if xs.shape[1:] != (len(self.times), self.obs_dim):
            raise ValueError(
                f"xs must have shape (batch, len(times)={len(self.times)}, obs_dim="
                f"{self.obs_dim}), got {tuple(xs.shape)}"
            )
        if xs.shape[0] == 0:
            raise ValueError(f"xs is empty (shape {tuple(xs.shape)}): no series")
        if not xs.is_floating_point():
            raise TypeError(f"xs must be a floating-point tensor, got dtype {xs.dtype}")
        if not all_finite(xs):
            raise ValueError(
                "xs contains NaN or infinite values; mark missing observations with mask "
                "(False) and fill them with any finite value"
            )
        if mask is not None and (mask.shape != xs.shape[:2] or mask.dtype != torch.bool):
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(xs.shape[:2])}, got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )

    # ------------------------------------------------------------------- model
    def prior_sde(
        self, init: torch.Tensor | dist.Distribution, times: torch.Tensor | None = None
    ) -> EulerMaruyama:
        """The prior SDE from ``init`` over ``times`` (default: the observation times)."""
        times = self.times if times is None else times
        return EulerMaruyama(
            submodule(self, "prior_drift"),
            submodule(self, "diffusion"),
            init,
            times,
            self.substeps,
            kl_estimator=self.kl_estimator,
        )

    def observation(self, path: torch.Tensor) -> dist.Distribution:
        """``p(x | z)`` for paths ``(..., T, d)``: a distribution with event shape ``(T, D)``."""
        loc = submodule(self, "decoder")(path)
        family = dist.Normal if self.likelihood == "gaussian" else dist.Laplace
        return family(loc, torch.full_like(loc, self.obs_scale)).to_event(2)

    def forward(
        self,
        xs: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        num_series: int | None = None,
    ) -> torch.Tensor:
        """The model; see the class docstring. Returns the latent path ``(B, T, d)``."""
        if xs is not None:
            if is_validation_enabled():
                self.check_data(xs, mask)
            batch = xs.shape[0]
        elif num_series is None:
            raise ValueError("num_series is needed when xs is None (sampling from the prior)")
        else:
            batch = check_int("num_series", num_series)
        z0_prior = dist.Normal(self.z0_loc, self.z0_scale).to_event(1)
        with pyro.plate("data", batch):
            z0 = pyro.sample("z0", z0_prior)
            path = pyro.sample("z", self.prior_sde(z0))
            obs = self.observation(path)
            if mask is not None:
                obs = dist.Independent(obs.base_dist.mask(mask.unsqueeze(-1)), 2)
            pyro.sample("x", obs, obs=xs)
        return path

    @torch.no_grad()
    def forecast(
        self,
        guide: torch.nn.Module,
        xs: torch.Tensor,
        future_times: torch.Tensor | Sequence[float],
        mask: torch.Tensor | None = None,
        num_samples: int = 1,
    ) -> dict[str, torch.Tensor]:
        """Forecast past the last observation: the posterior state at ``times[-1]`` continued
        with the prior SDE.

        Args:
            guide: A :class:`~pyrovi.guides.PosteriorSDE` (or any guide sampling ``"z"``).
            xs: Observed series ``(B, T, D)``.
            future_times: Increasing times ``(F,)`` after ``times[-1]``.
            mask: Observation mask ``(B, T)``.
            num_samples: Posterior draws per series.

        Returns:
            ``{"times": (F,), "z": (S, B, F, d), "mean": (S, B, F, D)}``: latent paths and the
            decoded means (S = ``num_samples``).
        """
        num_samples = check_int("num_samples", num_samples)
        self.check_data(xs, mask)
        future = torch.as_tensor(future_times, dtype=self.times.dtype, device=self.times.device)
        if future.dim() != 1 or not len(future) or not bool(future[0] > self.times[-1]):
            raise ValueError(
                "future_times must be a non-empty 1-D tensor of times after the last "
                f"observation time {float(self.times[-1]):g}"
            )
        grid = torch.cat([self.times[-1:], future])
        with pyro.plate("samples", num_samples, dim=-2):
            trace = pyro.poutine.trace(guide).get_trace(xs, mask)
        last = trace.nodes["z"]["value"][..., -1, :]  # (S, B, d)
        z = self.prior_sde(last, _check_times(grid)).sample()[..., 1:, :]
        return {"times": future, "z": z, "mean": self.decoder(z)}
