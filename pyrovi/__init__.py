"""pyrovi: variational inference with neural networks on Pyro.

Generative models are Pyro model functions, amortized encoders are Pyro guides, and training is
SVI. Subpackages: :mod:`pyrovi.data`, :mod:`pyrovi.nn`, :mod:`pyrovi.models`,
:mod:`pyrovi.guides`, :mod:`pyrovi.infer`, :mod:`pyrovi.diagnostics`, :mod:`pyrovi.compress`.
"""

__version__ = "0.1.0"

from pyrovi import (  # noqa: E402
    compress,
    data,
    diagnostics,
    distributions,
    guides,
    infer,
    models,
    nn,
)
from pyrovi.diagnostics import to_inference_data  # noqa: E402
from pyrovi.distributions import EulerMaruyama, FeynmanKac, NFlowsDistribution  # noqa: E402
from pyrovi.guides import (  # noqa: E402
    AmortizedFlow,
    AmortizedMultivariateNormal,
    AmortizedNormal,
    FlowGuide,
    PosteriorSDE,
)
from pyrovi.infer import (  # noqa: E402
    FastTrace_ELBO,
    FitResult,
    elbo,
    fit,
    log_marginal_likelihood,
)
from pyrovi.models import VAE, ConditionalVAE, FlowDensity, LatentSDE  # noqa: E402

__all__ = [
    "__version__",
    "data",
    "diagnostics",
    "distributions",
    "nn",
    "models",
    "guides",
    "infer",
    "compress",
    "VAE",
    "ConditionalVAE",
    "FlowDensity",
    "LatentSDE",
    "NFlowsDistribution",
    "EulerMaruyama",
    "FeynmanKac",
    "AmortizedNormal",
    "AmortizedMultivariateNormal",
    "AmortizedFlow",
    "FlowGuide",
    "PosteriorSDE",
    "to_inference_data",
    "fit",
    "FitResult",
    "FastTrace_ELBO",
    "elbo",
    "log_marginal_likelihood",
]
