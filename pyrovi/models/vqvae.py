"""VQ-VAE (van den Oord et al. 2017) as a Pyro model with a discrete codebook latent.

Each datapoint has ``M`` latent positions; each position takes one of ``K`` codes, the rows of a
learned codebook ``e ∈ R^{K×D}``. The model is

``k_m ~ Categorical(π_m)`` (uniform during training), ``x ~ p(x | decoder([e_{k_1}, …, e_{k_M}]))``.

The latent site ``"z"`` carries the code *vectors* ``(batch, M, D)`` rather than the indices, so
that the straight-through gradient of the guide (:class:`pyrovi.guides.VQEncoder`) reaches the
encoder through the decoder; its prior :class:`CodebookCategorical` scores a vector by the index
of its nearest code. With the deterministic guide ``q(k | x) = δ(k = argmin_k ‖z_e(x) − e_k‖)`` the
ELBO is ``log p(x | e_k(x)) + Σ_m log π_m(k_m)``, i.e. ``log p(x | ·) − M log K`` under the uniform
prior. After training, :meth:`VQVAE.fit_prior` fits a categorical prior per position to the codes
of the training data (maximum likelihood), used by :meth:`VQVAE.sample` and by the ELBO.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled
from torch import nn

from pyrovi._checks import check_hidden_dims, check_positive
from pyrovi._validation import positive_int as _positive_int
from pyrovi.models._checks import check_features, check_likelihood, check_number, check_values
from pyrovi.models.vae import make_likelihood
from pyrovi.nn import MLP, submodule

__all__ = ["VQVAE", "Codebook", "CodebookCategorical"]


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row (Euclidean) for each vector.

    Args:
        z: ``(..., D)`` vectors.
        codebook: ``(K, D)``.

    Returns:
        Long tensor ``(...)`` with values in ``[0, K)``.
    """
    flat = z.reshape(-1, z.shape[-1])
    dist2 = (
        flat.pow(2).sum(-1, keepdim=True)
        - 2 * flat @ codebook.T
        + codebook.pow(2).sum(-1).unsqueeze(0)
    )
    return dist2.argmin(-1).reshape(z.shape[:-1])


class Codebook(nn.Module):
    """``K`` learned code vectors of dimension ``D``, shared by a VQ-VAE model and its guide.

    Args:
        num_codes: K.
        code_dim: D.

    Attributes:
        weight: ``(K, D)`` parameter, initialized uniform in ``[-1/K, 1/K]``.
    """

    def __init__(self, num_codes: int, code_dim: int) -> None:
        super().__init__()
        self.num_codes = _positive_int("num_codes", num_codes)
        self.code_dim = _positive_int("code_dim", code_dim)
        w = torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.weight = nn.Parameter(w)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices ``(...)`` of the codes nearest to ``z`` ``(..., D)``."""
        return nearest_code(z.detach(), self.weight.detach())

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """Code vectors ``(..., D)`` of long indices ``(...)``."""
        return self.weight[index]


class CodebookCategorical(TorchDistribution):
    """Independent categoricals over the rows of a codebook at ``M`` positions; values are vectors.

    ``sample`` returns ``codebook[k]`` with ``k_m ~ Categorical(logits[..., m, :])``, shape
    ``batch_shape + (M, D)``; ``log_prob(value)`` is ``Σ_m log π_m(k_m)`` with ``k_m`` the index of
    the code nearest to ``value[..., m, :]`` (exact for values that are codes, and for the
    straight-through values of :class:`pyrovi.guides.VQEncoder`).

    Args:
        codebook: ``(K, D)`` code vectors.
        logits: ``batch_shape + (M, K)`` unnormalized log-probabilities.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(
        self, codebook: torch.Tensor, logits: torch.Tensor, validate_args: bool | None = None
    ) -> None:
        if codebook.dim() != 2:
            raise ValueError(f"codebook must have shape (K, D), got {tuple(codebook.shape)}")
        if logits.dim() < 2 or logits.shape[-1] != codebook.shape[0]:
            raise ValueError(
                f"logits must have shape (..., M, K={codebook.shape[0]}), got {tuple(logits.shape)}"
            )
        self.codebook = codebook
        self.logits = logits
        batch_shape = logits.shape[:-2]
        event_shape = torch.Size((logits.shape[-2], codebook.shape[1]))
        super().__init__(batch_shape, event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        batch_shape = torch.Size(batch_shape)
        logits = self.logits.expand(batch_shape + self.logits.shape[-2:])
        return CodebookCategorical(self.codebook, logits)

    def index(self, value: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices ``(..., M)`` of vectors ``(..., M, D)``."""
        return nearest_code(value.detach(), self.codebook.detach())

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:  # noqa: D102
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            k = dist.Categorical(logits=self.logits).sample(sample_shape)
            return self.codebook.detach()[k]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        k = self.index(value)
        log_pi = torch.log_softmax(self.logits, dim=-1)
        shape = torch.broadcast_shapes(k.shape, log_pi.shape[:-1])
        log_pi = log_pi.expand(shape + log_pi.shape[-1:])
        return log_pi.gather(-1, k.expand(shape).unsqueeze(-1)).squeeze(-1).sum(-1)


class VQVAE(PyroModule):
    """A VQ-VAE written as a Pyro model: latent site ``"z"`` (code vectors), observed ``"x"``.

    Pair it with :class:`pyrovi.guides.VQEncoder` (which shares :attr:`codebook`) and train
    with :func:`pyrovi.infer.fit` (keep β = 1 and no KL annealing: the KL of a point-mass guide
    is the constant ``M log K``).

    Args:
        x_dim: Observed features D_x.
        num_codes: Codebook size K.
        code_dim: Dimension D of each code vector.
        num_latents: Number of latent positions M (the decoder sees ``M * D`` features).
        hidden_dims: Widths of the encoder side; the MLP decoder uses them reversed.
        likelihood: ``"bernoulli"`` (logits) or ``"gaussian"`` (means, standard deviation
            ``scale``).
        scale: Standard deviation of the Gaussian likelihood.

    Attributes:
        codebook: The shared :class:`Codebook`.
        prior_logits: Buffer ``(M, K)``; zeros (uniform) until :meth:`fit_prior`.
    """

    def __init__(
        self,
        x_dim: int,
        num_codes: int = 64,
        code_dim: int = 8,
        num_latents: int = 16,
        hidden_dims: Sequence[int] = (512, 256),
        likelihood: str = "bernoulli",
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.x_dim = _positive_int("x_dim", x_dim)
        self.num_codes = _positive_int("num_codes", num_codes)
        self.code_dim = _positive_int("code_dim", code_dim)
        self.num_latents = _positive_int("num_latents", num_latents)
        self.hidden_dims = check_hidden_dims(hidden_dims)
        self.likelihood = check_likelihood(likelihood)
        scale = check_number("scale", scale, positive=True)
        self.codebook = Codebook(num_codes, code_dim)
        self.decoder = MLP(num_latents * code_dim, tuple(reversed(self.hidden_dims)), x_dim)
        self.register_buffer("prior_logits", torch.zeros(num_latents, num_codes))
        self.register_buffer("obs_scale_", torch.full((x_dim,), float(scale)))

    @property
    def obs_scale(self) -> torch.Tensor | None:
        """Standard deviation of the Gaussian likelihood ``(x_dim,)``, None if Bernoulli."""
        return self.obs_scale_ if self.likelihood == "gaussian" else None

    def check_data(self, x: torch.Tensor, *args: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(batch, x_dim)``, finite, [0, 1] if Bernoulli."""
        check_features("x", x, self.x_dim)
        check_values("x", x, self.likelihood)

    def prior(self) -> CodebookCategorical:
        """``p(z)`` over code vectors, event shape ``(M, D)``."""
        return CodebookCategorical(self.codebook.weight, self.prior_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model. ``x``: ``(batch, x_dim)``. Returns the code vectors ``(batch, M, D)``."""
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x, self.likelihood)
        prior = CodebookCategorical(submodule(self, "codebook").weight, self.prior_logits)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior)
            out = submodule(self, "decoder")(z.reshape(*z.shape[:-2], -1))
            pyro.sample("x", make_likelihood(self.likelihood, out, self.obs_scale), obs=x)
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | z)`` for code vectors ``(..., M, D)``: ``(..., x_dim)``."""
        out = self.decoder(z.reshape(*z.shape[:-2], -1))
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def decode_indices(self, index: torch.Tensor) -> torch.Tensor:
        """Mean of ``p(x | z)`` for code indices ``(..., M)``: ``(..., x_dim)``."""
        return self.decode(self.codebook(index))

    @torch.no_grad()
    def fit_prior(self, index: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
        """Fit the categorical prior of each position to observed codes (smoothed frequencies).

        Args:
            index: Long tensor ``(N, M)`` of code indices, e.g. ``guide.codes(x_train)``.
            smoothing: Pseudo-count added to every code (Laplace smoothing, > 0 keeps every
                code's probability positive so test codes never get ``-inf``).

        Returns:
            The new ``prior_logits`` ``(M, K)`` (normalized log-probabilities).
        """
        if (
            not isinstance(index, torch.Tensor)
            or index.dim() != 2
            or index.shape[1] != self.num_latents
        ):
            shape = tuple(index.shape) if isinstance(index, torch.Tensor) else type(index).__name__
            raise ValueError(f"index must have shape (N, {self.num_latents}), got {shape}")
        if index.dtype.is_floating_point or index.numel() == 0:
            raise ValueError("index must be a non-empty integer tensor of code indices")
        if int(index.min()) < 0 or int(index.max()) >= self.num_codes:
            raise ValueError(f"index values must lie in [0, {self.num_codes}), got out-of-range")
        smoothing = check_positive("smoothing", smoothing)
        counts = torch.zeros_like(self.prior_logits)
        counts.scatter_add_(
            1, index.T.to(counts.device), torch.ones(index.T.shape, device=counts.device)
        )
        counts += smoothing
        self.prior_logits.copy_(counts.log() - counts.sum(-1, keepdim=True).log())
        return self.prior_logits

    @torch.no_grad()
    def reset_prior(self) -> None:
        """Back to the uniform prior over codes."""
        self.prior_logits.zero_()

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        """Decoded means of ``num_samples`` draws from the (learned) prior, ``(n, x_dim)``."""
        num_samples = _positive_int("num_samples", num_samples)
        k = dist.Categorical(logits=self.prior_logits).sample((num_samples,))
        return self.decode_indices(k)
