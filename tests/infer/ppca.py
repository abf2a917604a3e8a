"""Probabilistic PCA: a linear-Gaussian VAE whose evidence and posterior are known exactly."""

import pyro
import pyro.distributions as dist
import torch


class PPCA:
    """``z ~ N(0, I_k)``, ``x | z ~ N(W z + b, σ² I_d)`` in float64."""

    def __init__(self, d=5, k=2, sigma=0.5, seed=0, device="cpu", correlation=None):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d, k, generator=g, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64).to(device)
        if correlation is not None:
            # k = 2 columns with this cosine: a strongly correlated exact posterior
            a, c = self.W[:, 0], torch.randn(d, generator=g, dtype=torch.float64)
            self.W = torch.stack([a, correlation * a + (1 - correlation**2) ** 0.5 * c], 1)
        self.W = self.W.to(device)
        self.sigma = sigma
        self.d, self.k = d, k

    def model(self, x):
        zeros = x.new_zeros(self.k)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.sigma).to_event(1), obs=x)

    def posterior(self, x):
        """Exact ``p(z | x)`` as a MultivariateNormal with batch shape ``(batch,)``."""
        M = self.W.T @ self.W + self.sigma**2 * torch.eye(self.k, dtype=x.dtype, device=x.device)
        mean = torch.linalg.solve(M, self.W.T @ (x - self.b).T).T
        cov = self.sigma**2 * torch.linalg.inv(M)
        return dist.MultivariateNormal(mean, covariance_matrix=cov)

    def exact_guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))

    def prior_guide(self, x):
        zeros = x.new_zeros(self.k)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))

    def diagonal_gap(self):
        """KL(q*‖p(z|x)) of the best diagonal Gaussian q*: the ELBO gap mean-field must leave."""
        precision = (self.W.T @ self.W) / self.sigma**2 + torch.eye(
            self.k, dtype=self.W.dtype, device=self.W.device
        )
        return 0.5 * (torch.log(torch.diagonal(precision)).sum() - torch.logdet(precision))

    def log_evidence(self, x):
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.d, dtype=x.dtype, device=x.device)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def sample(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.k, generator=g, dtype=torch.float64).to(self.W.device)
        eps = torch.randn(n, self.d, generator=g, dtype=torch.float64).to(self.W.device)
        return z @ self.W.T + self.b + self.sigma * eps
