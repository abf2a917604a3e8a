"""Inference: the SVI training loop, evidence estimates, scaling handlers."""

from pyrovi.infer.abc import ABCResult, abc_rejection
from pyrovi.infer.ais import AISResult, ais_schedule, annealed_importance_sampling
from pyrovi.infer.calibration import SBCResult, c2st, plot_sbc_ranks, sbc_ranks, sbc_uniformity
from pyrovi.infer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyrovi.infer.coverage import (
    CoverageResult,
    abc_sampler,
    expected_coverage,
    plot_coverage,
    tarp,
)
from pyrovi.infer.distributed import DistributedError, init_distributed
from pyrovi.infer.ensemble import ensemble_mcmc
from pyrovi.infer.evidence import elbo, log_importance_weights, log_marginal_likelihood
from pyrovi.infer.fit import FitResult, TrainingDivergedError, fit, load_into
from pyrovi.infer.free_bits import FreeBitsELBO
from pyrovi.infer.handlers import data_scale, latent_scale
from pyrovi.infer.losses import FastTrace_ELBO
from pyrovi.infer.nle import NLE, LearnedLikelihood, NLEPosterior
from pyrovi.infer.npe import NPE, NotTrainedError, NPEPosterior, NPETrainResult, simulate
from pyrovi.infer.optim import default_adam
from pyrovi.infer.rounds import RoundsResult
from pyrovi.infer.simulation import TrainResult
from pyrovi.infer.step_elbo import StochasticStep_ELBO, chain_steps

__all__ = [
    "DistributedError",
    "init_distributed",
    "fit",
    "default_adam",
    "FitResult",
    "TrainingDivergedError",
    "load_into",
    "FastTrace_ELBO",
    "StochasticStep_ELBO",
    "chain_steps",
    "FreeBitsELBO",
    "annealed_importance_sampling",
    "ais_schedule",
    "AISResult",
    "elbo",
    "log_marginal_likelihood",
    "log_importance_weights",
    "data_scale",
    "latent_scale",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "NPE",
    "NotTrainedError",
    "NPEPosterior",
    "NPETrainResult",
    "simulate",
    "NLE",
    "LearnedLikelihood",
    "NLEPosterior",
    "RoundsResult",
    "TrainResult",
    "ensemble_mcmc",
    "abc_rejection",
    "ABCResult",
    "sbc_ranks",
    "sbc_uniformity",
    "plot_sbc_ranks",
    "c2st",
    "SBCResult",
    "expected_coverage",
    "tarp",
    "plot_coverage",
    "abc_sampler",
    "CoverageResult",
]
