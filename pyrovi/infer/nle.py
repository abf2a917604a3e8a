"""Neural likelihood estimation (NLE): a learned likelihood ``q(y | θ)`` that is a Pyro
distribution, for use inside any Pyro model.

A conditional normalizing flow over the (standardized) data or summaries, conditioned on the
(standardized) parameters, is fitted by maximum likelihood on simulations ``(θ_i, y_i)`` from a
Pyro model (Papamakarios, Sterratt & Murray 2019). Unlike a posterior estimate it does not depend
on the prior, and it factorizes over i.i.d. trials: :meth:`NLE.likelihood` returns a
:class:`LearnedLikelihood` whose ``log_prob`` is differentiable in ``θ``, so a user writes::

    def model(y):                                   # y: (num_trials, S)
        theta = pyro.sample("theta", prior)
        with pyro.plate("trials", len(y)):
            pyro.sample("y", nle.likelihood(theta), obs=y)

    MCMC(NUTS(model), num_samples=1000, warmup_steps=500).run(y)

with global and per-group parameters as the model needs. :meth:`NLE.posterior` samples
``p(θ) Π_i q(y_i | θ)`` under the simulator's own prior with a batched ensemble sampler
(:func:`~pyrovi.infer.ensemble.ensemble_mcmc`), and :meth:`NLE.train_rounds` is sequential NLE:
later rounds simulate at parameters drawn from the current posterior (no correction needed, as
the likelihood does not depend on where its parameters came from).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro.distributions as dist
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from pyro.distributions import constraints
from torch import nn

from pyrovi._checks import check_tensor
from pyrovi._validation import positive_int as _positive_int
from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.flow_layers import flow_layers
from pyrovi.infer.ensemble import ensemble_mcmc
from pyrovi.infer.rounds import RoundsResult, run_rounds
from pyrovi.infer.simulation import SimulationEstimator
from pyrovi.nn.embedding import Standardize

__all__ = ["NLE", "LearnedLikelihood", "NLEPosterior"]


class LearnedLikelihood(dist.TorchDistribution):
    """``q(y | θ)`` learned by :class:`NLE`: a Pyro distribution over one trial's data.

    ``log_prob(y)`` maps ``y`` through the summary (if any) and the data standardization, and
    evaluates the flow conditioned on the standardized ``θ``; the log-determinant of the
    standardization is included, so it is a density of the data (or of the summaries when a
    summary is used). Batch shape: ``θ``'s leading shape (broadcast further by plates through
    :meth:`expand`); event shape: the observed site's shape.

    Sampling is possible without a summary (the flow's samples are the data); with one, the flow
    models the summaries, and :meth:`sample` raises.

    Args:
        nle: The trained estimator.
        theta: Parameters ``batch + (D,)``, concatenated in the order of ``nle.params``.
        batch_shape: Expanded batch shape (must end with ``theta``'s batch shape).
    """

    has_rsample = False

    def __init__(self, nle: NLE, theta: torch.Tensor, batch_shape: torch.Size | None = None):
        self.nle, self.theta = nle, theta
        self.base = NFlowsDistribution(
            nle.net["flow"], theta, features=nle.summary_dim, batch_shape=batch_shape
        )
        std = nle.net["y_standardize"]
        self._log_det = std.std.log().sum()
        super().__init__(self.base.batch_shape, torch.Size(nle.data_shape), validate_args=False)

    @constraints.dependent_property(is_discrete=False)
    def support(self) -> constraints.Constraint:  # noqa: D102
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None) -> LearnedLikelihood:  # noqa: D102
        return LearnedLikelihood(self.nle, self.theta, torch.Size(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(y | θ)`` for ``value`` of shape ``... + batch_shape + event_shape``."""
        nle = self.nle
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"value must be a tensor, got {type(value).__name__}")
        n = len(nle.data_shape)
        if tuple(value.shape[value.dim() - n :]) != nle.data_shape or value.dim() < n:
            raise ValueError(
                f"value must have shape (..., *{nle.data_shape}) (one trial per row), got "
                f"{tuple(value.shape)}"
            )
        s = nle._summarize(value.to(self.theta.device))
        std = nle.net["y_standardize"]
        z = std(s.to(std.mean.dtype))
        return self.base.log_prob(z) - self._log_det

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        if self.nle.summary is not None:
            raise NotImplementedError(
                "LearnedLikelihood.sample: this likelihood models summary statistics (the NLE "
                "was built with a summary), so it cannot draw data; simulate from the model"
            )
        std = self.nle.net["y_standardize"]
        with torch.no_grad():
            z = self.base.sample(sample_shape)
        return (z * std.std + std.mean).reshape(z.shape[:-1] + self.event_shape)


class NLEPosterior:
    """``p(θ | y_obs) ∝ p(θ) Π_i q(y_i | θ)`` under the simulator's prior, for one data set or a
    batch of them.

    Attributes:
        nle: The estimator.
        y_obs: ``(B, n, *data shape)``: B data sets of n i.i.d. trials each.
        batched: Whether the caller passed a batch of data sets (``sample`` then returns
            ``(L, B, D)``, else ``(L, D)``).
    """

    def __init__(self, nle: NLE, y_obs: torch.Tensor, batched: bool, **mcmc: Any) -> None:
        self.nle, self.y_obs, self.batched, self.mcmc = nle, y_obs, batched, mcmc

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        """Unnormalized ``log p(θ) + Σ_i log q(y_i | θ)`` for ``theta`` ``(..., B, D)`` (or
        ``(..., D)`` for one data set): enough to rank draws (highest-density regions), not a
        normalized density."""
        if not self.batched:
            theta = theta.unsqueeze(-2)
        lp = self.nle.prior_log_prob(theta) + self.log_likelihood(theta)
        return lp if self.batched else lp.squeeze(-1)

    def log_likelihood(self, theta: torch.Tensor) -> torch.Tensor:
        """``Σ_i log q(y_i | θ)`` for ``theta`` ``(..., B, D)``; NaN for θ outside the prior's
        support is replaced by ``−inf``."""
        lik = self.nle.likelihood(theta.unsqueeze(-2))  # batch (..., B, 1)
        y = self.y_obs.to(theta.device)
        ll = lik.log_prob(y).sum(-1)
        return torch.where(torch.isnan(ll), torch.full_like(ll, -math.inf), ll)

    def _initial(self, num_chains: int, num_candidates: int) -> torch.Tensor:
        """Chains ``(C, B, D)`` resampled from prior draws by their learned likelihood."""
        b = self.y_obs.shape[0]
        cand = []
        for prior, size in zip(self.nle.priors, self.nle.sizes, strict=True):
            draw = prior.sample((num_candidates, b))
            cand.append(draw.reshape(num_candidates, b, size))
        theta = torch.cat(cand, -1).to(self.nle.device).float()
        with torch.no_grad():
            lp = self.log_likelihood(theta)
        w = torch.softmax(torch.where(torch.isfinite(lp), lp, -math.inf).T, -1)  # (B, K)
        idx = torch.multinomial(w, num_chains, replacement=True).T  # (C, B)
        return theta.gather(0, idx.unsqueeze(-1).expand(-1, -1, theta.shape[-1]))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Posterior draws ``sample_shape + (B, D)`` (``sample_shape + (D,)`` for one data set)
        in the constrained space, by :func:`~pyrovi.infer.ensemble.ensemble_mcmc` on the
        unconstrained parameters, started from prior draws resampled by their likelihood."""
        sample_shape = torch.Size(sample_shape)
        num = max(1, math.prod(sample_shape))
        opts = dict(self.mcmc)
        num_chains = _positive_int("num_chains", opts.pop("num_chains", 100))
        num_candidates = _positive_int("num_candidates", opts.pop("num_candidates", 10_000))
        constrain = self.nle.constrain
        with torch.no_grad():
            u0 = constrain.inv(self._initial(num_chains, num_candidates))

            def log_density(u: torch.Tensor) -> torch.Tensor:
                theta = constrain(u)
                jac = constrain.log_abs_det_jacobian(u, theta)
                return self.nle.prior_log_prob(theta) + self.log_likelihood(theta) + jac

            draws = ensemble_mcmc(log_density, u0, num, **opts)
            theta = constrain(draws)
        out = theta.reshape(sample_shape + theta.shape[1:])
        return out if self.batched else out.squeeze(-2)


class NLE(SimulationEstimator):
    """Neural likelihood estimation for a Pyro simulator model.

    The flow models ``y -> summary(y) -> standardize`` conditioned on ``θ -> standardize`` (the
    constrained parameters, concatenated in the order of ``params``), so :meth:`likelihood`
    accepts any ``θ`` a user's model produces. Training, saving and loading are those of
    :class:`~pyrovi.infer.NPE` (:class:`~pyrovi.infer.simulation.SimulationEstimator`).

    Args:
        model: Pyro model sampling the parameter sites and the observed site (one trial).
        params: Names of the parameter sites (event shape ``()`` or ``(k,)``).
        observed: Name of the observed site.
        summary: Optional fixed map ``(..., *data shape) -> (..., S)``; the likelihood is then
            that of the summaries; default: the data itself, a vector ``(S,)`` per trial.
        flow: Flow kind (``"maf"`` or ``"nsf"``: both evaluate ``log q`` in one pass per layer).
        num_layers: Flow layers.
        hidden_features: Width of the flow's conditioner networks.
        num_bins: Spline bins (``nsf``).
        device: Device for simulation and training (default: the model's, else CPU).
        model_args: Positional arguments for ``model``.
    """

    name = "NLE"

    def __init__(
        self,
        model: Callable,
        params: Sequence[str],
        observed: str,
        *,
        summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
        flow: str = "maf",
        num_layers: int = 5,
        hidden_features: int = 50,
        num_bins: int = 10,
        device: Any = None,
        model_args: tuple = (),
    ) -> None:
        settings = self._flow_settings(flow, num_layers, hidden_features, num_bins)
        super().__init__(
            model, params, observed, summary=summary, device=device, model_args=model_args
        )
        self.config = {
            "params": self.params,
            "observed": observed,
            **settings,
        }
        layers = flow_layers(
            flow, self.summary_dim, num_layers, hidden_features, self.theta_dim, num_bins=num_bins
        )
        self.net = nn.ModuleDict(
            {
                "flow": Flow(
                    layers, StandardNormal([self.summary_dim]), Standardize((self.theta_dim,))
                ),
                "y_standardize": Standardize((self.summary_dim,)),
            }
        ).to(self.device)

    def _training_data(
        self, theta: torch.Tensor, u: torch.Tensor, s: torch.Tensor, train_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The flow models the standardized summaries given the parameters."""
        if not self.trained:
            self.net["flow"]._embedding_net.fit(theta[train_idx])
            self.net["y_standardize"].fit(s[train_idx])
        return self.net["y_standardize"](s), theta

    def _theta(self, theta: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenated ``(..., D)`` parameters from a tensor or a ``{site: value}`` mapping."""
        if isinstance(theta, Mapping):
            missing = [n for n in self.params if n not in theta]
            if missing:
                raise ValueError(f"theta: the mapping lacks the parameter sites {missing}")
            values = [torch.as_tensor(theta[n]) for n in self.params]
            parts = []
            for name, v, shape in zip(self.params, values, self.site_shapes, strict=True):
                if tuple(v.shape[v.dim() - len(shape) :]) != shape or v.dim() < len(shape):
                    raise ValueError(
                        f"theta[{name!r}] must have shape (..., *{shape}), got {tuple(v.shape)}"
                    )
                parts.append(v.reshape(*v.shape[: v.dim() - len(shape)], -1))
            batch = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
            theta = torch.cat([p.expand(*batch, p.shape[-1]) for p in parts], -1)
        check_tensor("theta", theta, floating=True, finite=True)
        if theta.dim() < 1 or theta.shape[-1] != self.theta_dim:
            raise ValueError(
                f"theta must have shape (..., {self.theta_dim}) (the parameters {self.params} "
                f"concatenated), got {tuple(theta.shape)}"
            )
        return theta

    def likelihood(self, theta: torch.Tensor | Mapping[str, torch.Tensor]) -> LearnedLikelihood:
        """``q(y | θ)`` as a Pyro distribution over one trial.

        Args:
            theta: Parameters ``batch + (D,)`` concatenated in the order of ``params``, or a
                mapping ``{site: value}`` with each value ``batch + site shape`` (broadcast).

        Returns:
            :class:`LearnedLikelihood` with batch shape ``batch`` and event shape the observed
            site's shape; differentiable in ``theta``.

        Raises:
            NotTrainedError: (a ``RuntimeError``) The estimator is not trained.
            ValueError: ``theta`` has the wrong shape or lacks a site.
        """
        theta = self._theta(theta)
        self._check_trained("likelihood")
        dtype = self.net["y_standardize"].mean.dtype
        return LearnedLikelihood(self, theta.to(device=self.device, dtype=dtype))

    def _observations(self, y_obs: torch.Tensor, batched: bool) -> torch.Tensor:
        """``(B, n, *data shape)`` from one data set or a batch."""
        if not isinstance(y_obs, torch.Tensor):
            raise TypeError(f"y_obs must be a tensor, got {type(y_obs).__name__}")
        k, shape = len(self.data_shape), tuple(y_obs.shape)
        if shape[len(shape) - k :] != self.data_shape or len(shape) < k:
            raise ValueError(
                f"y_obs must have shape {self.data_shape} (one trial), (n, *{self.data_shape}) "
                f"(n i.i.d. trials) or, batched, (B, n, *{self.data_shape}); got {shape}"
            )
        lead = len(shape) - k
        allowed = (1, 2) if batched else (0, 1)
        if lead not in allowed:
            expected = (
                f"(B, *{self.data_shape}) or (B, n, *{self.data_shape}) with batched=True"
                if batched
                else f"{self.data_shape} or (n, *{self.data_shape})"
            )
            raise ValueError(f"y_obs must have shape {expected}, got {shape}")
        y = y_obs.reshape((1,) * (2 - lead) + shape) if not batched else y_obs
        if batched and lead == 1:
            y = y_obs.unsqueeze(1)
        s = self.summarize(y.reshape(-1, *self.data_shape))
        if not torch.isfinite(s).all():
            raise ValueError("y_obs gives non-finite summary statistics")
        return y.to(self.device)

    def posterior(self, y_obs: torch.Tensor, *, batched: bool = False, **mcmc: Any) -> NLEPosterior:
        """The posterior of the simulator's prior times the learned likelihood of ``y_obs``.

        Args:
            y_obs: One trial (the observed site's shape), ``n`` i.i.d. trials ``(n, *shape)``, or
                with ``batched=True`` several data sets ``(B, *shape)`` / ``(B, n, *shape)``.
            batched: Treat the leading dimension as separate data sets.
            **mcmc: Options of the sampler: ``num_chains`` (100), ``num_candidates`` (10,000
                prior draws to start from), and :func:`~pyrovi.infer.ensemble.ensemble_mcmc`'s
                ``warmup``, ``thin``, ``progress``.

        Returns:
            :class:`NLEPosterior` with ``sample`` and an unnormalized ``log_prob``.
        """
        y = self._observations(y_obs, batched)
        self._check_trained("posterior")
        return NLEPosterior(self, y, batched, **mcmc)

    def sampler(self, **mcmc: Any) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``sample(y_batch, L) -> (L, B, D)`` for :func:`~pyrovi.infer.expected_coverage`,
        :func:`~pyrovi.infer.tarp` and :func:`~pyrovi.infer.sbc_ranks`: one trial per data set,
        all data sets sampled together."""
        self._check_trained("sampler")
        return lambda y, num: self.posterior(y, batched=True, **mcmc).sample((num,))

    def train_rounds(
        self,
        y_obs: torch.Tensor,
        num_rounds: int,
        num_simulations: int,
        *,
        progress: bool = True,
        seed: int | None = None,
        mcmc: dict | None = None,
        **train_kwargs: Any,
    ) -> RoundsResult:
        """Sequential NLE for one observed data set (one trial or ``(n, *shape)`` trials).

        Round 1 simulates ``num_simulations`` pairs from the prior; each later round simulates at
        ``num_simulations`` draws of the current posterior :meth:`posterior` ``(y_obs)``; after
        each round the flow is trained further on all pairs so far. The likelihood does not
        depend on where its parameters were drawn, so no correction is needed.

        Args:
            y_obs: The observed data.
            num_rounds: Rounds (1: plain NLE).
            num_simulations: Simulations per round (the per-round budget).
            progress: Progress bars.
            seed: Round ``r`` (from 0) uses ``seed + r``.
            mcmc: Options of the posterior sampler (see :meth:`posterior`).
            **train_kwargs: Passed to :meth:`train`.

        Returns:
            :class:`~pyrovi.infer.rounds.RoundsResult`.
        """
        self._observations(y_obs, False)
        opts = {"progress": progress, **(mcmc or {})}

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            theta = self.posterior(y_obs, **opts).sample((n,))
            return theta, self.simulate_at(theta), n

        return run_rounds(
            self,
            num_rounds,
            num_simulations,
            draw,
            progress=progress,
            seed=seed,
            train_kwargs=train_kwargs,
        )
