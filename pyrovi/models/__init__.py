"""Generative models written as Pyro model functions (``PyroModule`` s)."""

from pyrovi.models import hamiltonians
from pyrovi.models.cvae import ConditionalVAE
from pyrovi.models.ddpm import DDPM
from pyrovi.models.dmc import (
    ProjectedEstimate,
    ProjectedExtrapolation,
    projected_energy,
    projected_extrapolation,
)
from pyrovi.models.flow_density import FlowDensity
from pyrovi.models.forward_sde import ForwardSDE
from pyrovi.models.ground_state import (
    EnergyEstimate,
    Extrapolation,
    GroundState,
    RichardsonEstimate,
    format_estimate,
    richardson,
    train_ground_state,
)
from pyrovi.models.hamiltonians import Hamiltonian
from pyrovi.models.hierarchical_vae import HierarchicalVAE
from pyrovi.models.langevin import Walkers, local_energy
from pyrovi.models.latent_sde import LatentSDE
from pyrovi.models.markov_chain import MarkovChainVAE
from pyrovi.models.rbm import RBM, RBMTrainResult, train_rbm
from pyrovi.models.sbi_tasks import SBI_TASKS, SLCP, BernoulliGLM, GaussianMixture, sbi_task
from pyrovi.models.simulators import (
    RICKER_TRUTH,
    GaussianLinear,
    RickerModel,
    WoodSummary,
    simulate_ricker_at,
    wood_summaries,
)
from pyrovi.models.vae import VAE
from pyrovi.models.vmc import VariationalEstimate, variational_energy
from pyrovi.models.vqvae import VQVAE, Codebook, CodebookCategorical

__all__ = [
    "SLCP",
    "GaussianMixture",
    "BernoulliGLM",
    "SBI_TASKS",
    "sbi_task",
    "VAE",
    "HierarchicalVAE",
    "VQVAE",
    "Codebook",
    "CodebookCategorical",
    "RBM",
    "RBMTrainResult",
    "train_rbm",
    "ConditionalVAE",
    "FlowDensity",
    "LatentSDE",
    "MarkovChainVAE",
    "DDPM",
    "ForwardSDE",
    "GroundState",
    "EnergyEstimate",
    "Extrapolation",
    "RichardsonEstimate",
    "format_estimate",
    "richardson",
    "train_ground_state",
    "local_energy",
    "Walkers",
    "variational_energy",
    "VariationalEstimate",
    "projected_energy",
    "projected_extrapolation",
    "ProjectedEstimate",
    "ProjectedExtrapolation",
    "Hamiltonian",
    "hamiltonians",
    "RickerModel",
    "GaussianLinear",
    "WoodSummary",
    "wood_summaries",
    "simulate_ricker_at",
    "RICKER_TRUTH",
]
