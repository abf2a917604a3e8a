"""Inference: the SVI training loop, evidence estimates, scaling handlers."""

from pyrovi.infer.checkpoint import load_checkpoint, save_checkpoint
from pyrovi.infer.distributed import DistributedError, init_distributed
from pyrovi.infer.evidence import elbo, log_importance_weights, log_marginal_likelihood
from pyrovi.infer.fit import FitResult, TrainingDivergedError, fit, load_into
from pyrovi.infer.handlers import data_scale, latent_scale
from pyrovi.infer.losses import FastTrace_ELBO

__all__ = [
    "fit",
    "FitResult",
    "TrainingDivergedError",
    "load_into",
    "FastTrace_ELBO",
    "elbo",
    "log_marginal_likelihood",
    "log_importance_weights",
    "data_scale",
    "latent_scale",
    "save_checkpoint",
    "load_checkpoint",
    "DistributedError",
    "init_distributed",
]
