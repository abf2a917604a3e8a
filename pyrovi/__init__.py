"""pyrovi: variational inference with neural networks on Pyro.

Generative models are Pyro model functions, amortized encoders are Pyro guides, and training is
SVI. Subpackages: :mod:`pyrovi.data`, :mod:`pyrovi.nn`, :mod:`pyrovi.models`,
:mod:`pyrovi.guides`, :mod:`pyrovi.infer`, :mod:`pyrovi.diagnostics`.
"""

__version__ = "0.1.0"

from pyrovi import data, diagnostics, guides, infer, models, nn  # noqa: E402
from pyrovi.guides import AmortizedMultivariateNormal, AmortizedNormal  # noqa: E402
from pyrovi.infer import (  # noqa: E402
    FastTrace_ELBO,
    FitResult,
    elbo,
    fit,
    log_marginal_likelihood,
)
from pyrovi.models import VAE, ConditionalVAE  # noqa: E402

__all__ = [
    "__version__",
    "data",
    "diagnostics",
    "nn",
    "models",
    "guides",
    "infer",
    "VAE",
    "ConditionalVAE",
    "AmortizedNormal",
    "AmortizedMultivariateNormal",
    "fit",
    "FitResult",
    "FastTrace_ELBO",
    "elbo",
    "log_marginal_likelihood",
]
