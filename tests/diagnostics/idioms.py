"""Pyro models written in the documented idioms that trip up vectorized evaluation, each with a
closed form to check against (float64)."""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import config_enumerate
from pyro.nn import PyroModule, PyroSample
from pyro.ops.indexing import Vindex
from torch import nn


def regression_data(n=30, p=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    w = torch.linspace(1.0, -1.0, p, dtype=torch.float64)
    y = x @ w + 0.5 + 0.4 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


class BayesianRegression(PyroModule):
    """Pyro's Bayesian-regression tutorial model: ``PyroModule[nn.Linear]`` with ``PyroSample``
    priors on weight and bias; ``sigma ~ Uniform(0, 10)`` unless ``sigma`` is fixed.

    ``nn.Linear`` computes ``x @ weight.T``, which fails under an outer particle plate (the
    weight gets a leading particle dimension): the model is not vectorizable.
    """

    def __init__(self, p=3, sigma=None, w_scale=1.0, b_scale=10.0):
        super().__init__()
        self.sigma, self.w_scale, self.b_scale = sigma, w_scale, b_scale
        self.linear = PyroModule[nn.Linear](p, 1).double()
        self.linear.weight = PyroSample(dist.Normal(0.0, w_scale).expand([1, p]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, b_scale).expand([1]).to_event(1))

    def forward(self, x, y=None):
        if self.sigma is None:
            sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        else:
            sigma = self.sigma
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean

    def features(self, x):
        return torch.cat([x, torch.ones_like(x[:, :1])], 1)

    def prior_cov(self, p):
        scales = torch.tensor([self.w_scale] * p + [self.b_scale], dtype=torch.float64)
        return torch.diag(scales**2)

    def log_evidence(self, x, y):
        """Fixed sigma: ``y ~ N(0, sigma² I + F S Fᵀ)`` with F = [x, 1], S the prior cov."""
        f = self.features(x)
        cov = (
            self.sigma**2 * torch.eye(len(y), dtype=y.dtype) + f @ self.prior_cov(x.shape[1]) @ f.T
        )
        return dist.MultivariateNormal(torch.zeros_like(y), covariance_matrix=cov).log_prob(y)

    def posterior(self, x, y):
        """Fixed sigma: exact Gaussian posterior of ``[weight, bias]``."""
        f = self.features(x)
        precision = torch.linalg.inv(self.prior_cov(x.shape[1])) + f.T @ f / self.sigma**2
        cov = torch.linalg.inv(precision)
        return dist.MultivariateNormal(cov @ f.T @ y / self.sigma**2, covariance_matrix=cov)

    def exact_guide(self, x, y=None):
        """The exact joint posterior: an auxiliary MVN split into the two sites by Deltas."""
        wb = pyro.sample("wb", self.posterior(x, y), infer={"is_auxiliary": True})
        p = x.shape[1]
        pyro.sample("linear.weight", dist.Delta(wb[..., :p].unsqueeze(-2), event_dim=2))
        pyro.sample("linear.bias", dist.Delta(wb[..., p:], event_dim=1))


def batch_reshaping_model(ppca):
    """Probabilistic PCA written like Pyro's CVAE example, reshaping by the batch size
    (``.view(batch_size, -1)``): fine one particle at a time, broken under an outer plate."""

    def model(x):
        batch_size = x.shape[0]
        zeros = x.new_zeros(ppca.k)
        with pyro.plate("data", batch_size):
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            loc = (z @ ppca.W.T + ppca.b).view(batch_size, -1)
            pyro.sample("x", dist.Normal(loc, ppca.sigma).to_event(1), obs=x)

    return model


# ----------------------------------------------------------------------------- mixtures

GMM_DATA = torch.tensor([0.0, 1.0, 10.0, 11.0, 12.0, 0.5, -0.4], dtype=torch.float64)
GMM_VALUES = {
    "weights": torch.tensor([0.4, 0.6], dtype=torch.float64),
    "scale": torch.tensor(1.5, dtype=torch.float64),
    "locs": torch.tensor([0.5, 11.0], dtype=torch.float64),
}
K = 2


@config_enumerate
def gmm(data):
    """Pyro's Gaussian-mixture tutorial model (``locs[assignment]``: not vectorizable)."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K, dtype=data.dtype)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with pyro.plate("components", K):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


@config_enumerate
def gmm_vectorizable(data):
    """The same mixture indexed with ``Vindex``, so that it broadcasts over a particle plate."""
    weights = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(K, dtype=data.dtype)))
    scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
    locs = pyro.sample("locs", dist.Normal(data.new_zeros(K), 10.0).to_event(1))
    with pyro.plate("data", len(data)):
        assignment = pyro.sample("assignment", dist.Categorical(weights))
        pyro.sample("obs", dist.Normal(Vindex(locs)[..., assignment], scale), obs=data)


def gmm_mixture_log_lik(weights, locs, scale, data=GMM_DATA):
    """``log Σ_k w_k N(x_i | loc_k, scale²)``: ``(..., N)`` for parameters ``(..., K)``."""
    comp = dist.Normal(locs.unsqueeze(-2), scale[..., None, None]).log_prob(data[:, None])
    return torch.logsumexp(weights.log().unsqueeze(-2) + comp, -1)


def gmm_log_joint(values=GMM_VALUES, data=GMM_DATA):
    """``log p(x, weights, scale, locs)`` with the assignments summed out."""
    prior = (
        dist.Dirichlet(0.5 * torch.ones(K, dtype=data.dtype)).log_prob(values["weights"])
        + dist.LogNormal(0.0, 2.0).log_prob(values["scale"])
        + dist.Normal(0.0, 10.0).log_prob(values["locs"]).sum()
    )
    lik = gmm_mixture_log_lik(values["weights"], values["locs"], values["scale"], data)
    return prior + lik.sum()


def normal_kl(m1, s1, m2, s2):
    """KL(N(m1, s1²) ‖ N(m2, s2²))."""
    return math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
