"""pyrovi: variational inference with neural networks on Pyro.

Generative models are Pyro model functions, amortized encoders are Pyro guides, and training is
SVI. Subpackages: :mod:`pyrovi.data`, :mod:`pyrovi.nn`, :mod:`pyrovi.models`,
:mod:`pyrovi.guides`, :mod:`pyrovi.infer`, :mod:`pyrovi.diagnostics`, :mod:`pyrovi.compress`.
"""

__version__ = "0.1.0"

from pyrovi._lazy import lazy_exports

# Subpackages and the names re-exported here load on first use (PEP 562), so that
# ``import pyrovi.cli`` (the examples' argument parsing) does not pay for torch and Pyro.
_SUBPACKAGES = (
    "compress",
    "data",
    "diagnostics",
    "distributions",
    "guides",
    "infer",
    "models",
    "nn",
)
_EXPORTS = {name: f"pyrovi.{name}" for name in _SUBPACKAGES} | {
    "to_inference_data": "pyrovi.diagnostics",
    "EulerMaruyama": "pyrovi.distributions",
    "FeynmanKac": "pyrovi.distributions",
    "NFlowsDistribution": "pyrovi.distributions",
    "AmortizedFlow": "pyrovi.guides",
    "AmortizedMultivariateNormal": "pyrovi.guides",
    "AmortizedNormal": "pyrovi.guides",
    "FlowGuide": "pyrovi.guides",
    "PosteriorSDE": "pyrovi.guides",
    "FastTrace_ELBO": "pyrovi.infer",
    "FitResult": "pyrovi.infer",
    "elbo": "pyrovi.infer",
    "fit": "pyrovi.infer",
    "log_marginal_likelihood": "pyrovi.infer",
    "VAE": "pyrovi.models",
    "ConditionalVAE": "pyrovi.models",
    "FlowDensity": "pyrovi.models",
    "LatentSDE": "pyrovi.models",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
