"""A normal model with a conjugate prior: posterior and evidence in closed form (float64)."""

import pyro
import pyro.distributions as dist
import torch


class ConjugateNormal:
    """``mu ~ N(0, tau²)``, ``x_i | mu ~ N(mu, sigma²)`` for i = 1..n (plate ``"data"``).

    The model also records a per-datapoint deterministic site ``"mean"`` (mu for every datapoint)
    and a global one, ``"mu2"`` (twice mu). It broadcasts over an outer plate of draws.
    """

    def __init__(self, n=20, tau=2.0, sigma=1.0, seed=0, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        self.x = (1.0 + sigma * torch.randn(n, generator=g, dtype=torch.float64)).to(device)
        self.tau, self.sigma = tau, sigma

    def model(self, x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), self.tau))
        pyro.deterministic("mu2", 2 * mu)
        with pyro.plate("data", x.shape[0]):
            pyro.deterministic("mean", mu * torch.ones_like(x), event_dim=0)
            pyro.sample("x", dist.Normal(mu, self.sigma), obs=x)

    def posterior(self, x):
        """Exact ``p(mu | x)``."""
        precision = 1 / self.tau**2 + x.shape[0] / self.sigma**2
        return dist.Normal(x.sum() / self.sigma**2 / precision, precision**-0.5)

    def guide(self, x, width=1.0):
        """The exact posterior with its scale multiplied by ``width``."""
        post = self.posterior(x)
        pyro.sample("mu", dist.Normal(post.loc, width * post.scale))

    def log_evidence(self, x):
        n = x.shape[0]
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        cov = self.sigma**2 * eye + self.tau**2 * torch.ones_like(eye)
        return dist.MultivariateNormal(torch.zeros_like(x), covariance_matrix=cov).log_prob(x)
