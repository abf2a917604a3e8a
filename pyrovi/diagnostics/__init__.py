"""Diagnostics for what variational inference produced: ArviZ export, PSIS k-hat, inference gaps,
posterior collapse and plots."""

from pyrovi.diagnostics.blocking import BlockingResult, blocking
from pyrovi.diagnostics.collapse import (
    ACTIVE_UNIT_THRESHOLD,
    ActiveUnits,
    CollapseReport,
    active_units,
    kl_per_dimension,
    posterior_collapse,
    posterior_means,
)
from pyrovi.diagnostics.gaps import InferenceGaps, LocalGaussianGuide, inference_gaps, refine_guide
from pyrovi.diagnostics.inference_data import load_inference_data, to_inference_data
from pyrovi.diagnostics.plots import (
    plot_elbo,
    plot_gaps,
    plot_image_rows,
    plot_khat,
    plot_kl_per_dimension,
    plot_latent,
    plot_reconstructions,
    plot_samples,
    project_2d,
)
from pyrovi.diagnostics.psis import (
    BAD_KHAT,
    GOOD_KHAT,
    ParetoKHat,
    pareto_khat,
    psis,
    psis_khat,
)

__all__ = [
    "blocking",
    "BlockingResult",
    "to_inference_data",
    "load_inference_data",
    "psis",
    "pareto_khat",
    "psis_khat",
    "ParetoKHat",
    "GOOD_KHAT",
    "BAD_KHAT",
    "inference_gaps",
    "refine_guide",
    "InferenceGaps",
    "LocalGaussianGuide",
    "active_units",
    "kl_per_dimension",
    "posterior_collapse",
    "posterior_means",
    "ActiveUnits",
    "CollapseReport",
    "ACTIVE_UNIT_THRESHOLD",
    "plot_image_rows",
    "plot_latent",
    "project_2d",
    "plot_elbo",
    "plot_reconstructions",
    "plot_samples",
    "plot_khat",
    "plot_kl_per_dimension",
    "plot_gaps",
]
