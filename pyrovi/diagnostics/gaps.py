"""Inference gaps of an amortized guide (Cremer, Li & Duvenaud 2018).

For each datapoint, ``log p(x) - ELBO(q_φ(z|x))`` (the inference gap) splits into

* the **approximation gap** ``log p(x) - ELBO(q*)``, where q* is the best member of the guide's
  family for this datapoint: what the family cannot express;
* the **amortization gap** ``ELBO(q*) - ELBO(q_φ(z|x))``: what the encoder loses by predicting
  the parameters instead of optimizing them per datapoint.

q* is found by optimizing the encoder's outputs (mean and scale, or mean and Cholesky factor) as
free parameters for every datapoint, starting from the encoder. The datapoints do not interact
(the model is fixed), so one Adam run on the summed ELBO is the same as one run per datapoint.
Gradients use the "sticking the landing" estimator (Roeder, Wu & Duvenaud 2017): the score term
of ``log q`` is dropped, so the gradient noise vanishes where q* is the exact posterior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.torch_distribution import TorchDistribution
from pyro.poutine.util import site_is_subsample
from torch import nn

from pyrovi._checks import check_data, check_positive
from pyrovi._validation import as_tensors, data_names
from pyrovi.diagnostics.collapse import check_amortized
from pyrovi.diagnostics.psis import pareto_khat
from pyrovi.infer.evidence import elbo
from pyrovi.infer.importance import DEFAULT_PLATE, inspect_model, is_deterministic, plate_frame
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.optim import default_adam
from pyrovi.infer.particles import fallback_warning, log_weights

__all__ = ["InferenceGaps", "LocalGaussianGuide", "inference_gaps", "refine_guide"]


class _StickingTheLanding(TorchDistribution):
    """Reparameterized draws from ``q``; log-density from ``q_stop`` (q with detached parameters).

    ``log_prob`` then carries no gradient to the variational parameters except through the
    sample, which is the sticking-the-landing gradient of the ELBO.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, q: TorchDistribution, q_stop: TorchDistribution) -> None:
        self.q, self.q_stop = q, q_stop
        super().__init__(q.batch_shape, q.event_shape, validate_args=False)

    @property
    def support(self):  # noqa: D102
        return self.q.support

    def rsample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:  # noqa: D102
        return self.q.rsample(torch.Size(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.q_stop.log_prob(value)

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        return _StickingTheLanding(self.q.expand(batch_shape), self.q_stop.expand(batch_shape))


def _encoded(guide: Any, encode: Callable, batch: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = encode(*batch)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            f"{type(guide).__name__}.encode must return (loc, scale) or (loc, scale_tril)"
        )
    return out


def _traced_gaussian(guide: Callable, batch: tuple) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The one latent site of a guide run and its Gaussian's ``(loc, scale or scale_tril)``."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(*batch)
    latents = [s for s in trace.nodes.values() if s["type"] == "sample" and not s["is_observed"]]
    latents = [s for s in latents if not site_is_subsample(s)]
    name = getattr(guide, "__name__", type(guide).__name__)
    if len(latents) != 1:
        raise TypeError(
            f"guide must be an amortized Gaussian guide with encode(x) -> (loc, scale), or draw "
            f"one latent site from a Gaussian; {name} draws {[s['name'] for s in latents]}"
        )
    site = latents[0]
    fn, b = site["fn"], batch[0].shape[0]
    base = fn
    while isinstance(base, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        base = base.base_dist
    shape = tuple(site["value"].shape)
    if isinstance(base, dist.MultivariateNormal) and len(shape) == 2 and shape[0] == b:
        return site["name"], base.loc.expand(shape), base.scale_tril.expand(shape + shape[-1:])
    if isinstance(base, dist.Normal) and len(shape) == 2 and shape[0] == b and fn.event_dim == 1:
        return site["name"], base.loc.expand(shape), base.scale.expand(shape)
    raise TypeError(
        "guide must be an amortized Gaussian guide with encode(x) -> (loc, scale), or draw its "
        f"latent from Normal(loc, scale).to_event(1) or MultivariateNormal with one "
        f"(z_dim,) vector per datapoint; {name} draws '{site['name']}' of shape {shape} from "
        f"{type(base).__name__}"
    )


class LocalGaussianGuide(nn.Module):
    """A non-amortized Gaussian guide with free parameters for each datapoint of one batch.

    The family is the amortized guide's: diagonal ``N(loc, diag(scale²))`` when the encoder
    returns ``(loc, scale)`` of shape ``(B, d)``, full ``N(loc, L Lᵀ)`` when it returns
    ``(loc, scale_tril)`` with ``scale_tril`` of shape ``(B, d, d)``. Scales are stored as logs
    (the diagonal of L too), so every parameter value is a valid member of the family.

    Call it like the amortized guide, with the same batch (``B`` rows) it was built for.

    Args:
        loc: ``(B, d)`` means.
        scale: ``(B, d)`` standard deviations or ``(B, d, d)`` lower-triangular Cholesky factors.
        site: Latent sample site.
        plate: Per-datapoint plate.
    """

    def __init__(
        self, loc: torch.Tensor, scale: torch.Tensor, site: str = "z", plate: str = "data"
    ) -> None:
        super().__init__()
        if loc.dim() != 2:
            raise ValueError(f"loc must have shape (batch, z_dim), got {tuple(loc.shape)}")
        b, d = loc.shape
        self.site, self.plate, self.full = site, plate, scale.dim() == 3
        if scale.shape not in ((b, d), (b, d, d)):
            raise ValueError(
                f"scale must have shape ({b}, {d}) (diagonal) or ({b}, {d}, {d}) (Cholesky "
                f"factor), got {tuple(scale.shape)}"
            )
        self.loc = nn.Parameter(loc.detach().clone())
        if self.full:
            rows, cols = torch.tril_indices(d, d, offset=-1, device=loc.device)
            self.register_buffer("_rows", rows, persistent=False)
            self.register_buffer("_cols", cols, persistent=False)
            diag = torch.diagonal(scale, dim1=-2, dim2=-1)
            self.log_scale = nn.Parameter(diag.detach().log().clone())
            self.off_diagonal = nn.Parameter(scale[:, rows, cols].detach().clone())
        else:
            self.log_scale = nn.Parameter(scale.detach().log().clone())

    @classmethod
    def from_encoder(cls, guide: Callable, *batch: torch.Tensor, plate: str = "data"):
        """Initialize from an amortized guide for this batch.

        A guide with ``encode(*batch)`` returning ``(loc, scale)`` or ``(loc, scale_tril)``
        (e.g. :class:`~pyrovi.guides.AmortizedNormal`) is asked for them; any other amortized
        guide (e.g. a function that calls ``pyro.module("encoder", net)``) is run once and the
        parameters are read from the distribution of its one latent site: ``Normal(loc,
        scale).to_event(1)`` or ``MultivariateNormal`` with batch shape ``(B,)``.

        Raises:
            TypeError: A Pyro autoguide, or a guide whose latent is not such a Gaussian.
        """
        check_amortized(guide, "inference_gaps")
        encode = getattr(guide, "encode", None)
        if callable(encode):
            loc, scale = _encoded(guide, encode, batch)
            site = getattr(guide, "site", "z")
        else:
            site, loc, scale = _traced_gaussian(guide, batch)
        return cls(loc, scale, site=site, plate=getattr(guide, "plate", plate))

    @property
    def batch_size(self) -> int:
        """Number of datapoints B."""
        return self.loc.shape[0]

    def distribution(self, detach: bool = False) -> dist.Distribution:
        """``q(z)`` with batch shape ``(B,)`` and event shape ``(d,)``."""
        loc, log_scale = self.loc, self.log_scale
        off = self.off_diagonal if self.full else None
        if detach:
            loc, log_scale = loc.detach(), log_scale.detach()
            off = off.detach() if off is not None else None
        if not self.full:
            return dist.Normal(loc, log_scale.exp()).to_event(1)
        tril = torch.diag_embed(log_scale.exp())
        lower = torch.zeros_like(tril)
        lower[..., self._rows, self._cols] = off
        return dist.MultivariateNormal(loc, scale_tril=tril + lower)

    def _check(self, args: tuple) -> torch.Tensor:
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != self.batch_size:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"this guide holds parameters for the {self.batch_size} datapoints it was built "
                f"for: call it with that batch (first argument with {self.batch_size} rows), "
                f"got {got}"
            )
        return x

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The guide: samples the latent site for the B datapoints (arguments only checked)."""
        self._check(args)
        with pyro.plate(self.plate, self.batch_size):
            return pyro.sample(self.site, self.distribution())

    def sticking_the_landing(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The same guide whose ``log q`` passes no gradient to the parameters directly."""
        self._check(args)
        q = _StickingTheLanding(self.distribution(), self.distribution(detach=True))
        with pyro.plate(self.plate, self.batch_size):
            return pyro.sample(self.site, q)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_refine_arguments(steps: Any, lr: Any, num_particles: Any, prefix: str = "") -> None:
    _positive_int(f"{prefix}steps", steps, minimum=0)
    _positive_int(f"{prefix}particles" if prefix else "num_particles", num_particles)
    check_positive(f"{prefix}lr", lr)


def refine_guide(
    model: Callable,
    guide: nn.Module,
    *batch: torch.Tensor,
    steps: int = 300,
    lr: float = 0.2,
    num_particles: int = 10,
    plate: str | None = None,
    history: list[float] | None = None,
) -> LocalGaussianGuide:
    """Optimize a per-datapoint Gaussian guide for one batch, starting from the encoder.

    Adam on the negative ELBO of the batch (``num_particles`` vectorized draws per step,
    sticking-the-landing gradients), with the learning rate decaying as a cosine from ``lr`` to
    ``lr / 100``. Only the local parameters change; the model's parameters are left alone.

    Args:
        model: Pyro model ``model(*batch)`` with per-datapoint sites in plate ``plate``.
        guide: Amortized Gaussian guide with ``encode(*batch)`` (e.g.
            :class:`~pyrovi.guides.AmortizedNormal`).
        *batch: The datapoints (tensors sharing the leading dimension B).
        steps: Optimizer steps (0: return the encoder's parameters).
        lr: Initial Adam learning rate.
        num_particles: Draws per datapoint per step.
        plate: Per-datapoint plate (the guide's ``plate`` attribute wins when it has one);
            None means ``"data"`` (see :func:`pyrovi.infer.importance.resolve_plate`).
        history: If given, the mean ELBO per datapoint of every step is appended to it.

    Returns:
        :class:`LocalGaussianGuide` for this batch.
    """
    _check_refine_arguments(steps, lr, num_particles)
    check_data(batch, [f"batch[{i}]" for i in range(len(batch))], "refine_guide")
    plate = getattr(guide, "plate", plate)
    if steps > 0:  # the model is run: check the plate against it
        plate = inspect_model(model, guide, batch, {}, plate, caller="refine_guide").plate
    local = LocalGaussianGuide.from_encoder(guide, *batch, plate=plate or DEFAULT_PLATE)
    if steps == 0:
        return local
    params = list(local.parameters())
    opt = default_adam(params, lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 100)
    nesting = inspect_model(model, local, batch, {}, plate).nesting
    loss_fn = FastTrace_ELBO(num_particles, num_particles > 1, max_plate_nesting=nesting)
    b = local.batch_size
    with pyro.validation_enabled(False), poutine.block():
        for step in range(steps):
            try:
                loss = loss_fn.differentiable_loss(model, local.sticking_the_landing, *batch)
            except Exception as err:  # a model that does not broadcast over the particle plate
                if step > 0 or not loss_fn.vectorize_particles:
                    raise
                fallback_warning("refine_guide", num_particles, err, "")
                loss_fn = FastTrace_ELBO(num_particles, False, max_plate_nesting=nesting)
                loss = loss_fn.differentiable_loss(model, local.sticking_the_landing, *batch)
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            sched.step()
            if history is not None:
                history.append(-loss.item() / b)
    for p in params:
        p.grad = None
    return local


@dataclass
class InferenceGaps:
    """Per-datapoint evidence and gaps, in nats (what :func:`inference_gaps` returns).

    Attributes:
        log_px: ``(N,)`` log p(x): IWAE bound with the refined guide as proposal.
        elbo_amortized: ``(N,)`` ELBO of the amortized guide q_φ(z|x).
        elbo_optimized: ``(N,)`` ELBO of the per-datapoint optimized guide q*.
        khat: ``(N,)`` Pareto k-hat of q*'s importance weights (None below 21 draws). Where
            ``k >= 0.7`` the IWAE bound, hence ``log_px`` and the approximation gap, are
            underestimated: q* is too narrow a proposal (typical of a diagonal family for a
            correlated posterior); more draws help slowly.
        refine_history: Mean ELBO per datapoint at each refinement step (averaged over batches).
    """

    log_px: torch.Tensor
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor
    khat: torch.Tensor | None = None
    refine_history: list[float] = field(default_factory=list)

    @property
    def approximation_gap(self) -> torch.Tensor:
        """``(N,)`` log p(x) − ELBO(q*): what the guide family cannot express."""
        return self.log_px - self.elbo_optimized

    @property
    def amortization_gap(self) -> torch.Tensor:
        """``(N,)`` ELBO(q*) − ELBO(q_φ): what predicting parameters with an encoder costs."""
        return self.elbo_optimized - self.elbo_amortized

    @property
    def inference_gap(self) -> torch.Tensor:
        """``(N,)`` log p(x) − ELBO(q_φ) = approximation gap + amortization gap."""
        return self.log_px - self.elbo_amortized

    def mean(self) -> dict[str, float]:
        """Means over the datapoints of every quantity above."""
        return {
            "log_px": self.log_px.mean().item(),
            "elbo_amortized": self.elbo_amortized.mean().item(),
            "elbo_optimized": self.elbo_optimized.mean().item(),
            "approximation_gap": self.approximation_gap.mean().item(),
            "amortization_gap": self.amortization_gap.mean().item(),
            "inference_gap": self.inference_gap.mean().item(),
        }

    def summary(self) -> str:
        """A few lines with the means (nats per datapoint)."""
        m = self.mean()
        n = self.log_px.numel()
        return (
            f"inference gaps over {n} datapoints (nats, mean):\n"
            f"  log p(x) (IWAE)           {m['log_px']:10.3f}\n"
            f"  ELBO, optimized q*        {m['elbo_optimized']:10.3f}\n"
            f"  ELBO, amortized q(z|x)    {m['elbo_amortized']:10.3f}\n"
            f"  approximation gap         {m['approximation_gap']:10.3f}\n"
            f"  amortization gap          {m['amortization_gap']:10.3f}\n"
            f"  inference gap (sum)       {m['inference_gap']:10.3f}"
        )

    def __str__(self) -> str:
        return self.summary()


def _log_weights(
    model: Callable, guide: Callable, batch: tuple, num_samples: int, max_per_pass: int, plate: str
) -> torch.Tensor:
    """``(num_samples, B)`` log importance weights, drawn in passes of bounded size."""
    layout = inspect_model(model, guide, batch, {}, plate, caller="inference_gaps")
    per_pass = max(1, max_per_pass // batch[0].shape[0])
    return log_weights(
        model, guide, batch, {}, layout, num_samples, per_pass, vectorize=None,
        caller="inference_gaps",
    )  # fmt: skip


def _check_local(model: Callable, guide: Callable, batch: tuple, plate: str | None) -> str:
    """The model's only latent must be the guide's site, per datapoint in ``plate``; returns the
    plate's resolved name."""
    check_amortized(guide, "inference_gaps")
    layout = inspect_model(model, guide, batch, {}, plate, caller="inference_gaps")
    plate = layout.plate
    site = getattr(guide, "site", None)
    latents = layout.guide_latents
    if layout.enumerated:
        raise ValueError(
            f"inference_gaps: model site(s) {layout.enumerated} are enumerated, not sampled by "
            "the guide; the per-datapoint Gaussian refinement needs the guide to draw every "
            "latent: use log_marginal_likelihood and psis_khat for this model"
        )
    if not layout.local or len(latents) != 1 or (site is not None and latents != [site]):
        outside = [
            n
            for n, s in {**layout.model_sites, **layout.guide_sites}.items()
            if plate_frame(s, plate) is None and not is_deterministic(s)
        ]
        raise ValueError(
            "inference_gaps needs a model whose only latent site is the guide's per-datapoint "
            f"site{f' {site!r}' if site else ''} inside plate '{plate}', with every observed site "
            f"inside it too (local latents, amortized guide); got guide latent sites {latents}"
            + (f", and site(s) {outside} outside the plate" if outside else "")
            + ". For global latents there is one evidence for the whole data set: use "
            "pyrovi.infer.log_marginal_likelihood / elbo and pyrovi.diagnostics.psis_khat"
        )
    return plate


def inference_gaps(
    model: Callable,
    guide: nn.Module,
    data: torch.Tensor | Sequence[torch.Tensor],
    num_samples: int = 1000,
    refine_steps: int = 300,
    *,
    refine_lr: float = 0.2,
    refine_particles: int = 10,
    batch_size: int | None = None,
    max_samples_per_pass: int = 16384,
    plate: str | None = None,
) -> InferenceGaps:
    """Approximation and amortization gaps of an amortized Gaussian guide, per datapoint.

    For each batch of datapoints a :class:`LocalGaussianGuide` of the guide's family is
    initialized from the encoder and optimized (:func:`refine_guide`). Then, with
    ``num_samples`` draws per datapoint: ``elbo_amortized`` is
    :func:`pyrovi.infer.elbo` of the guide; ``elbo_optimized`` and ``log_px`` are the mean and
    the log-mean-exp of the refined guide's log importance weights (the IWAE bound, from the same
    draws, so ``log_px >= elbo_optimized`` for every datapoint). Hence
    ``approximation_gap + amortization_gap = log_px − elbo_amortized`` exactly.

    The IWAE bound is a lower bound on log p(x), tight when q* is close to the posterior; where
    ``khat`` (PSIS k-hat of q*'s weights) is 0.7 or more it is not, and ``log_px`` and the
    approximation gap are underestimated.

    Args:
        model: Pyro model ``model(*batch)`` whose latents are per-datapoint sites in plate
            ``plate`` (e.g. :class:`~pyrovi.models.VAE`); its parameters stay fixed.
        guide: Amortized Gaussian guide with ``encode(*batch)`` returning ``(loc, scale)`` or
            ``(loc, scale_tril)`` (:class:`~pyrovi.guides.AmortizedNormal`,
            :class:`~pyrovi.guides.AmortizedMultivariateNormal`).
        data: Tensor ``(N, ...)`` or tuple of tensors sharing N (passed as ``model(*batch)``).
        num_samples: Draws per datapoint for the ELBOs and the IWAE bound.
        refine_steps: Adam steps of the per-datapoint optimization.
        refine_lr: Its initial learning rate.
        refine_particles: Its draws per datapoint per step.
        batch_size: Datapoints refined together (default all; lower it to save memory).
        max_samples_per_pass: Bound on datapoints × draws evaluated in one vectorized pass.
        plate: Name of the per-datapoint plate (the guide's ``plate`` attribute wins); None
            means ``"data"`` (see :func:`pyrovi.infer.importance.resolve_plate`).

    Returns:
        :class:`InferenceGaps` with ``(N,)`` tensors on the data's device.

    Raises:
        TypeError: The guide has no ``encode`` returning Gaussian parameters.
        ValueError: Bad sizes or counts (named in the message); ``data`` empty or with NaN/inf;
            ``plate`` not a plate of the model.
    """
    tensors = as_tensors(data, "data")
    check_data(tensors, data_names(tensors), "inference_gaps")
    num_samples = _positive_int("num_samples", num_samples)
    plate = getattr(guide, "plate", plate)
    _check_refine_arguments(refine_steps, refine_lr, refine_particles, prefix="refine_")
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    max_samples_per_pass = _positive_int("max_samples_per_pass", max_samples_per_pass)
    plate = _check_local(model, guide, tuple(t[:2] for t in tensors), plate)
    n = tensors[0].shape[0]
    size = min(n, batch_size or n)
    log_px, elbo_q, elbo_opt, khat = [], [], [], []
    histories: list[list[float]] = []
    for start in range(0, n, size):
        batch = tuple(t[start : start + size] for t in tensors)
        history: list[float] = []
        local = refine_guide(
            model,
            guide,
            *batch,
            steps=refine_steps,
            lr=refine_lr,
            num_particles=refine_particles,
            plate=plate,
            history=history,
        )
        histories.append(history)
        with torch.no_grad():
            lw = _log_weights(model, local, batch, num_samples, max_samples_per_pass, plate)
            amortized = elbo(
                model,
                guide,
                batch,
                num_samples=num_samples,
                batch_size=len(batch[0]),
                max_samples_per_pass=max_samples_per_pass,
                plate=plate,
            )
        log_px.append(torch.logsumexp(lw, 0) - math.log(num_samples))
        elbo_opt.append(lw.mean(0))
        if num_samples >= 21:
            khat.append(pareto_khat(lw).to(lw))
        elbo_q.append(amortized)
    sizes = [min(size, n - s) for s in range(0, n, size)]
    steps = len(histories[0])
    refine_history = [sum(h[i] * w for h, w in zip(histories, sizes)) / n for i in range(steps)]
    return InferenceGaps(
        log_px=torch.cat(log_px),
        elbo_amortized=torch.cat(elbo_q),
        elbo_optimized=torch.cat(elbo_opt),
        khat=torch.cat(khat) if khat else None,
        refine_history=refine_history,
    )
