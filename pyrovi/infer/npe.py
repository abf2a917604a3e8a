"""Neural posterior estimation (NPE): amortized simulation-based inference with conditional flows,
in one round or in truncated sequential rounds (TSNPE).

A conditional normalizing flow ``q_φ(θ | y)`` is fitted by maximizing ``Σ log q_φ(θ_i | y_i)``
over pairs ``(θ_i, y_i) ~ p(θ) p(y | θ)`` simulated from a Pyro model; that maximizes
``E_{p(y)}[−KL(p(θ | y) ‖ q_φ(θ | y))]`` up to a constant, so ``q_φ(θ | y_o)`` approximates the
posterior of any data set ``y_o`` in one forward pass (Papamakarios & Murray 2016; Greenberg et
al. 2019). Truncated sequential NPE (Deistler et al. 2022) spends later rounds' simulations on the
prior truncated to the current posterior's highest-probability region: the prior is unchanged
inside the region, so the same loss needs no proposal correction.

The simulation, summaries, training loop, saving and loading are shared with
:class:`~pyrovi.infer.NLE` (:mod:`pyrovi.infer.simulation`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro.distributions as dist
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import CompositeTransform
from pyro.distributions.transforms import AffineTransform
from torch import nn

from pyrovi._checks import check_bool, check_int, check_probability
from pyrovi._validation import positive_int as _positive_int
from pyrovi.distributions import NFlowsDistribution
from pyrovi.distributions.elementwise_affine import ElementwiseAffine
from pyrovi.distributions.flow_layers import flow_layers
from pyrovi.infer.rounds import RoundsResult, run_rounds, truncated_prior_draws
from pyrovi.infer.simulation import (
    ConstrainTransform,
    NotTrainedError,
    SimulationEstimator,
    TrainResult,
    simulate,
)
from pyrovi.nn.embedding import Standardize, embedding_net

__all__ = [
    "NPE",
    "NPEPosterior",
    "NPETrainResult",
    "NotTrainedError",
    "simulate",
    "ConstrainTransform",
]

#: What :meth:`NPE.train` returns (the name :class:`~pyrovi.infer.simulation.TrainResult` had
#: before NLE shared it).
NPETrainResult = TrainResult


class NPEPosterior(dist.TransformedDistribution):
    """``q(θ | y)`` in the constrained parameter space.

    An :class:`~pyrovi.distributions.NFlowsDistribution` over the standardized unconstrained
    parameters (``base_dist``), followed by the inverse standardization (an affine map) and
    :class:`ConstrainTransform`; ``log_prob`` includes both log-determinants. Event shape
    ``(D,)``: the parameter sites flattened and concatenated in the order of ``names``.

    Attributes:
        names: Parameter site names.
        sizes: Number of entries of each site in the concatenated vector.
    """

    def __init__(
        self, base: NFlowsDistribution, transforms: list, names: Sequence[str], sizes: Sequence[int]
    ) -> None:
        super().__init__(base, transforms)
        self.names, self.sizes = list(names), list(sizes)

    def sample_and_log_prob(
        self, sample_shape: torch.Size | tuple = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``sample_shape + batch_shape + (D,)`` and their log-density, in one flow pass."""
        with torch.no_grad():
            u, log_p = self.base_dist.sample_and_log_prob(sample_shape)
            x = u
            for t in self.transforms:
                y = t(x)
                log_p = log_p - t.log_abs_det_jacobian(x, y)
                x = y
        return x, log_p

    def split(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: values}`` from a concatenated ``(..., D)`` tensor (1-entry sites squeezed)."""
        parts = theta.split(self.sizes, -1)
        return {
            n: (p.squeeze(-1) if s == 1 else p)
            for n, p, s in zip(self.names, parts, self.sizes, strict=True)
        }


# --------------------------------------------------------------------------- NPE


class NPE(SimulationEstimator):
    """Neural posterior estimation for a Pyro simulator model.

    The pipeline is ``y -> summary(y) -> standardize -> embedding net -> context`` and
    ``θ -> biject_to(support)^{-1} -> standardize -> conditional flow``. The summary (a fixed
    function such as :class:`~pyrovi.models.simulators.WoodSummary`) is optional; the embedding
    net (an MLP on a feature vector, a 1-D conv or GRU on a raw series, or any module) is trained
    jointly with the flow. The flow is ``flow_layers(flow, D, ...)``, optionally followed by a
    conditional elementwise affine layer (``affine=True``; off by default: on the Gaussian linear
    task it made C2ST worse at 10³ and 10⁴ simulations, see ``benchmarks/npe_gaussian.py``).

    Args:
        model: Pyro model function (or ``PyroModule``) sampling the parameter sites and the observed
            site; called with no arguments for simulation (``model_args`` otherwise).
        params: Names of the parameter sites (event shape ``()`` or ``(k,)``).
        observed: Name of the observed site.
        summary: Optional fixed map ``(..., *data shape) -> (..., S)``; default: the data itself,
            which must then be a vector ``(S,)`` per simulation.
        embedding: ``"mlp"``, ``"conv"``, ``"gru"``, ``"identity"`` or an ``nn.Module`` on
            ``(batch, S)``.
        embedding_features: Output width of a named embedding net.
        embedding_hidden: Hidden width of a named embedding net.
        flow: Flow kind from :data:`~pyrovi.distributions.flow_layers.FLOW_KINDS` (``"maf"`` or
            ``"nsf"`` for NPE: both evaluate ``log q`` in one pass per layer).
        num_layers: Flow layers.
        hidden_features: Width of the flow's conditioner networks.
        num_bins: Spline bins (``nsf``).
        affine: Add a conditional elementwise affine layer (shift and scale linear in the
            embedded context) between the base noise and the flow layers.
        device: Device for simulation and training (default: the model's, else CPU).
        model_args: Positional arguments for ``model``.
    """

    name = "NPE"

    def __init__(
        self,
        model: Callable,
        params: Sequence[str],
        observed: str,
        *,
        summary: Callable[[torch.Tensor], torch.Tensor] | None = None,
        embedding: str | nn.Module = "mlp",
        embedding_features: int = 32,
        embedding_hidden: int = 64,
        flow: str = "maf",
        num_layers: int = 5,
        hidden_features: int = 50,
        num_bins: int = 10,
        affine: bool = False,
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
            "embedding": embedding if isinstance(embedding, str) else None,
            "embedding_features": check_int("embedding_features", embedding_features),
            "embedding_hidden": check_int("embedding_hidden", embedding_hidden),
            **settings,
            "affine": check_bool("affine", affine),
        }
        embed, context_dim = embedding_net(
            embedding, self.summary_dim, embedding_features, embedding_hidden
        )
        layers = flow_layers(
            flow, self.theta_dim, num_layers, hidden_features, context_dim, num_bins=num_bins
        )
        if affine:
            layers = CompositeTransform([layers, ElementwiseAffine(self.theta_dim, context_dim)])
        self.net = nn.ModuleDict(
            {
                "flow": Flow(
                    layers,
                    StandardNormal([self.theta_dim]),
                    nn.Sequential(Standardize((self.summary_dim,)), embed),
                ),
                "theta_standardize": Standardize((self.theta_dim,)),
            }
        ).to(self.device)

    def _training_data(
        self, theta: torch.Tensor, u: torch.Tensor, s: torch.Tensor, train_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The flow models the standardized unconstrained parameters given the summaries."""
        if not self.trained:
            self.net["flow"]._embedding_net[0].fit(s[train_idx])
            self.net["theta_standardize"].fit(u[train_idx])
        return self.net["theta_standardize"](u), s

    @classmethod
    def _rebuild(
        cls,
        model: Callable,
        params: list,
        observed: str,
        cfg: dict,
        embedding: nn.Module | None = None,
        **kwargs: Any,
    ) -> NPE:
        if cfg.get("embedding") is None and embedding is None:
            raise ValueError("embedding: this NPE used a custom embedding module; pass it to load")
        emb = embedding if embedding is not None else cfg["embedding"]
        cfg = {k: v for k, v in cfg.items() if k != "embedding"}
        return cls(model, params, observed, embedding=emb, **kwargs, **cfg)

    def _observed_summaries(self, y_obs: torch.Tensor) -> torch.Tensor:
        """Checked summaries ``(S,)`` or ``(B, S)`` of one data set or a batch."""
        if not isinstance(y_obs, torch.Tensor):
            raise TypeError(f"y_obs must be a tensor, got {type(y_obs).__name__}")
        shape = tuple(y_obs.shape)
        if shape == self.data_shape:
            s = self.summarize(y_obs.unsqueeze(0)).squeeze(0)
        elif shape[1:] == self.data_shape:
            s = self.summarize(y_obs)
        else:
            raise ValueError(
                f"y_obs must have shape {self.data_shape} or (B, *{self.data_shape}), got {shape}"
            )
        if not torch.isfinite(s).all():
            raise ValueError("y_obs gives non-finite summary statistics")
        return s

    def posterior(self, y_obs: torch.Tensor) -> NPEPosterior:
        """``q(θ | y_obs)`` over the constrained parameters (event shape ``(D,)``).

        Args:
            y_obs: One data set (the observed site's shape) or a batch ``(B,) + data shape``,
                giving batch shape ``()`` or ``(B,)``.

        Returns:
            :class:`NPEPosterior` with ``sample``, ``log_prob`` and ``sample_and_log_prob``.

        Raises:
            TypeError: ``y_obs`` is not a tensor.
            ValueError: ``y_obs`` has the wrong shape or gives non-finite summaries.
            NotTrainedError: (a ``RuntimeError``) The estimator has not been trained (nor
                loaded trained).
        """
        s = self._observed_summaries(y_obs)
        self._check_trained("posterior")
        std = self.net["theta_standardize"]
        base = NFlowsDistribution(self.net["flow"], s, features=self.theta_dim)
        affine = AffineTransform(std.mean, std.std, event_dim=1)
        return NPEPosterior(base, [affine, self.constrain], self.params, self.sizes)

    def train_rounds(
        self,
        y_obs: torch.Tensor,
        num_rounds: int,
        num_simulations: int,
        *,
        quantile: float = 1e-4,
        num_threshold_samples: int = 10_000,
        max_proposals: int | None = None,
        progress: bool = True,
        seed: int | None = None,
        **train_kwargs: Any,
    ) -> RoundsResult:
        """Truncated sequential NPE (TSNPE) for one observed data set.

        Round 1 simulates ``num_simulations`` pairs from the prior. Each later round simulates
        ``num_simulations`` pairs from the prior truncated to the current posterior's
        highest-probability region ``{θ : q(θ | y_obs) ≥ τ}``, where ``τ`` is the ``quantile``
        of ``log q`` over ``num_threshold_samples`` draws of ``q(· | y_obs)`` (so the region holds
        about ``1 − quantile`` of the posterior mass), by rejection from the prior predictive;
        then the flow is trained further on all pairs so far with the usual NPE loss. Inside the
        region the truncated prior equals the prior up to a constant, so no proposal correction
        is needed (Deistler, Gonçalves & Macke 2022). The estimator stays amortized in form but
        is accurate only near ``y_obs`` afterwards.

        Args:
            y_obs: The observed data set (the observed site's shape).
            num_rounds: Rounds (1: plain NPE).
            num_simulations: Accepted simulations per round (the per-round budget).
            quantile: Posterior mass left outside the truncated region.
            num_threshold_samples: Posterior draws that set the threshold.
            max_proposals: Prior draws allowed per round before giving up (default
                ``1000 × num_simulations``).
            progress: Progress bars.
            seed: Seeds every round (round ``r`` uses ``seed + r``).
            **train_kwargs: Passed to :meth:`train` (``batch_size``, ``lr``, ``patience``, ...).

        Returns:
            :class:`~pyrovi.infer.rounds.RoundsResult`: each round's :class:`TrainResult`, the
            acceptance rate of the truncation and the simulations used.

        Raises:
            RuntimeError: The truncated region accepted fewer than ``num_simulations`` of
                ``max_proposals`` prior draws.
        """
        if self._observed_summaries(y_obs).dim() != 1:
            raise ValueError(
                f"y_obs must be one data set of shape {self.data_shape}, got {tuple(y_obs.shape)}"
            )
        num_simulations = _positive_int("num_simulations", num_simulations)
        quantile = check_probability("quantile", quantile)
        num_threshold_samples = _positive_int("num_threshold_samples", num_threshold_samples)

        max_proposals = _positive_int(
            "max_proposals", 1000 * int(num_simulations) if max_proposals is None else max_proposals
        )

        def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            posterior = self.posterior(y_obs)
            with torch.no_grad():
                _, log_q = posterior.sample_and_log_prob((num_threshold_samples,))
                threshold = torch.quantile(log_q.double(), quantile).to(log_q)

            def accept(theta: torch.Tensor) -> torch.Tensor:
                return posterior.log_prob(theta.to(self.device).float()) >= threshold

            return truncated_prior_draws(
                self, n, accept, max_proposals=max_proposals, progress=progress
            )

        return run_rounds(
            self,
            num_rounds,
            num_simulations,
            draw,
            progress=progress,
            seed=seed,
            train_kwargs=train_kwargs,
        )
