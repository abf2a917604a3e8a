"""Restricted Boltzmann machines: Bernoulli–Bernoulli and Gaussian–Bernoulli.

An RBM is the energy-based model ``p(v, h) = exp(−E(v, h)) / Z`` with binary hidden units h and

* Bernoulli visible units: ``E(v, h) = −aᵀv − bᵀh − vᵀWh``;
* Gaussian visible units (fixed σ): ``E(v, h) = Σ_i (v_i − a_i)² / (2σ_i²) − bᵀh − (v/σ)ᵀWh``.

Summing out h gives the free energy ``F(v) = −log Σ_h exp(−E(v, h))`` and ``log p(v) = −F(v) −
log Z``. The log-likelihood gradient is a positive phase (data) minus a negative phase (model):
``∇ log p(v) = −∇F(v) + E_model[∇F(v')]``; :func:`train_rbm` estimates the negative phase with
k steps of block Gibbs sampling started at the data (CD-k) or at persistent chains (PCD).
``log Z`` is computed exactly by enumerating the hidden states of a small RBM
(:meth:`RBM.log_partition`), else estimated by annealed importance sampling
(:meth:`RBM.log_partition_ais`, Salakhutdinov & Murray 2008).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from pyrovi._checks import (
    check_bool,
    check_callable,
    check_finite,
    check_nonnegative,
    check_positive,
    check_real,
    check_tensor,
)
from pyrovi._progress import progress_bar
from pyrovi._validation import all_finite
from pyrovi._validation import positive_int as _positive_int
from pyrovi.infer.ais import AISResult, annealed_importance_sampling

__all__ = ["RBM", "RBMTrainResult", "train_rbm"]

_VISIBLE = ("bernoulli", "gaussian")
_MAX_ENUMERATE = 24


class RBM(nn.Module):
    """A restricted Boltzmann machine with binary hidden units.

    Args:
        num_visible: Number of visible units V.
        num_hidden: Number of hidden units H.
        visible: ``"bernoulli"`` (binary data) or ``"gaussian"`` (real data, unit-free scale σ).
        sigma: Standard deviation σ of the Gaussian visible units (fixed; standardize the data).
        init_std: Standard deviation of the initial weights (biases start at 0).

    Attributes:
        weight: ``(V, H)``. visible_bias: ``(V,)``. hidden_bias: ``(H,)``. sigma: buffer ``(V,)``.
    """

    def __init__(
        self,
        num_visible: int,
        num_hidden: int,
        visible: str = "bernoulli",
        sigma: float = 1.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_visible = _positive_int("num_visible", num_visible)
        self.num_hidden = _positive_int("num_hidden", num_hidden)
        if visible not in _VISIBLE:
            raise ValueError(f"visible must be one of {_VISIBLE}, got {visible!r}")
        sigma = check_positive("sigma", sigma)
        init_std = check_nonnegative("init_std", init_std)
        self.visible = visible
        self.weight = nn.Parameter(torch.randn(num_visible, num_hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(num_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(num_hidden))
        self.register_buffer("sigma", torch.full((num_visible,), float(sigma)))

    # ------------------------------------------------------------------ checks and conditionals

    def _check_v(self, v: torch.Tensor, name: str = "v") -> None:
        if not isinstance(v, torch.Tensor) or v.dim() < 1 or v.shape[-1] != self.num_visible:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name} must have shape (..., {self.num_visible}), got {shape}")

    def _check_h(self, h: torch.Tensor, name: str = "h") -> None:
        if not isinstance(h, torch.Tensor) or h.dim() < 1 or h.shape[-1] != self.num_hidden:
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"{name} must have shape (..., {self.num_hidden}), got {shape}")

    def _scaled(self, v: torch.Tensor) -> torch.Tensor:
        return v / self.sigma if self.visible == "gaussian" else v

    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``b + (v/σ)ᵀW`` (σ = 1 for Bernoulli visibles): ``(..., V) -> (..., H)``."""
        return self.hidden_bias + self._scaled(v) @ self.weight

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """``p(h_j = 1 | v)``: ``(..., V) -> (..., H)``."""
        return torch.sigmoid(self.hidden_logits(v))

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """``E[v | h]``: ``σ(a + Wh)`` (Bernoulli) or ``a + σ Wh`` (Gaussian), ``(..., V)``."""
        wh = h @ self.weight.T
        if self.visible == "bernoulli":
            return torch.sigmoid(self.visible_bias + wh)
        return self.visible_bias + self.sigma * wh

    def sample_hidden(
        self, v: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw of ``h ~ p(h | v)``, ``(..., H)`` in {0, 1}."""
        return torch.bernoulli(self.hidden_probs(v), generator=generator)

    def sample_visible(
        self, h: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw of ``v ~ p(v | h)``, ``(..., V)``."""
        mean = self.visible_mean(h)
        if self.visible == "bernoulli":
            return torch.bernoulli(mean, generator=generator)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + self.sigma * noise

    @torch.no_grad()
    def gibbs(
        self, v: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``steps`` sweeps of block Gibbs sampling ``v -> h -> v``; returns the last v."""
        self._check_v(v)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        for _ in range(steps):
            v = self.sample_visible(self.sample_hidden(v, generator), generator)
        return v

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        steps: int = 1000,
        init: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Approximate samples of ``p(v)`` from ``num_samples`` Gibbs chains of ``steps`` sweeps.

        Chains start at ``init`` ``(num_samples, V)`` or at draws from ``p(v | h)`` with uniform
        random h. Returns ``(num_samples, V)``.
        """
        num_samples = _positive_int("num_samples", num_samples)
        if init is None:
            h = torch.bernoulli(
                torch.full((num_samples, self.num_hidden), 0.5, device=self.weight.device),
                generator=generator,
            ).to(self.weight.dtype)
            init = self.sample_visible(h, generator)
        return self.gibbs(init, steps, generator)

    # ------------------------------------------------------------------ energies and evidence

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``E(v, h)``: ``(..., V), (..., H) -> (...)``."""
        self._check_v(v)
        self._check_h(h)
        inter = ((self._scaled(v) @ self.weight) * h).sum(-1) + h @ self.hidden_bias
        if self.visible == "bernoulli":
            return -(v @ self.visible_bias) - inter
        return ((v - self.visible_bias) ** 2 / (2 * self.sigma**2)).sum(-1) - inter

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) = −log Σ_h exp(−E(v, h))``: ``(..., V) -> (...)``, nats."""
        self._check_v(v)
        hidden = F.softplus(self.hidden_logits(v)).sum(-1)
        if self.visible == "bernoulli":
            return -(v @ self.visible_bias) - hidden
        return ((v - self.visible_bias) ** 2 / (2 * self.sigma**2)).sum(-1) - hidden

    def _visible_normalizer(self) -> torch.Tensor:
        """``Σ_i log(√(2π) σ_i)``: the Gaussian integral's constant."""
        return (0.5 * math.log(2 * math.pi) + self.sigma.log()).sum()

    @torch.no_grad()
    def log_partition(self) -> float:
        """Exact ``log Z`` (nats) by enumerating the ``2^H`` hidden states (H ≤ 24).

        The visible units are summed (Bernoulli) or integrated (Gaussian) in closed form:
        ``log Z = logsumexp_h [bᵀh + Σ_i softplus(a_i + (Wh)_i)]`` or
        ``logsumexp_h [bᵀh + Σ_i ((Wh)_i²/2 + a_i (Wh)_i / σ_i)] + Σ_i log(√(2π) σ_i)``.
        """
        if self.num_hidden > _MAX_ENUMERATE:
            raise ValueError(
                f"log_partition enumerates 2^num_hidden states; num_hidden={self.num_hidden} > "
                f"{_MAX_ENUMERATE}: use log_partition_ais instead"
            )
        total = None
        chunk = 1 << min(self.num_hidden, 16)
        states = itertools.product((0.0, 1.0), repeat=self.num_hidden)
        while True:
            block = list(itertools.islice(states, chunk))
            if not block:
                break
            h = torch.tensor(block, dtype=self.weight.dtype, device=self.weight.device)
            wh = h @ self.weight.T
            if self.visible == "bernoulli":
                terms = h @ self.hidden_bias + F.softplus(self.visible_bias + wh).sum(-1)
            else:
                terms = h @ self.hidden_bias + (
                    wh**2 / 2 + self.visible_bias * wh / self.sigma
                ).sum(-1)
            part = torch.logsumexp(terms, 0)
            total = part if total is None else torch.logaddexp(total, part)
        if self.visible == "gaussian":
            total = total + self._visible_normalizer()
        return float(total)

    def log_prob(self, v: torch.Tensor, log_z: float | torch.Tensor) -> torch.Tensor:
        """``log p(v) = −F(v) − log Z``: ``(..., V) -> (...)``, nats (a density for Gaussian v)."""
        if isinstance(log_z, torch.Tensor):
            if log_z.is_floating_point() and not all_finite(log_z):
                raise ValueError("log_z must be finite, got NaN or infinite values")
        else:
            check_finite("log_z", log_z)
        return -self.free_energy(v) - log_z

    @torch.no_grad()
    def log_partition_ais(
        self,
        num_chains: int = 100,
        betas: torch.Tensor | int = 10000,
        base: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        progress: bool = True,
    ) -> AISResult:
        """Estimate ``log Z`` by annealed importance sampling (Salakhutdinov & Murray 2008).

        The path runs from a base RBM with no weights, zero hidden biases and visible biases
        ``a_A`` (Bernoulli: logits; Gaussian: means) to this RBM, through the RBMs with
        parameters ``((1−β) a_A + β a, β b, β W)`` — geometric averages of the two joints — and
        each transition is one block-Gibbs sweep at β. The base partition function is
        ``2^H Π_i (1 + e^{a_A,i})`` (Bernoulli) or ``2^H Π_i √(2π) σ_i`` (Gaussian).

        Args:
            num_chains: Number of independent AIS runs.
            betas: Inverse temperatures 0 … 1, or their number (sigmoid schedule).
            base: Visible biases ``a_A`` ``(V,)`` of the base model. Default: this RBM's visible
                biases. For Bernoulli data ``logit(mean of the training data)`` (clamped) gives
                a base closer to the target and lower variance.
            generator: Random generator on the parameters' device.
            progress: Show a tqdm bar over the temperatures (only when stderr is a terminal).

        Returns:
            An :class:`~pyrovi.infer.AISResult` whose ``log_z`` estimates ``log Z``.
        """
        num_chains = _positive_int("num_chains", num_chains)
        check_bool("progress", progress)
        a_b, b, w = self.visible_bias, self.hidden_bias, self.weight
        if base is None:
            a_a = a_b.detach().clone()
        else:
            if not isinstance(base, torch.Tensor) or base.shape != (self.num_visible,):
                shape = tuple(base.shape) if isinstance(base, torch.Tensor) else base
                raise ValueError(f"base must have shape ({self.num_visible},), got {shape}")
            a_a = base.to(a_b)
        sigma, bern = self.sigma, self.visible == "bernoulli"
        cache: dict[str, torch.Tensor] = {}

        def hidden_pre(v: torch.Tensor) -> torch.Tensor:
            if cache.get("v") is not v:
                cache["v"], cache["pre"] = v, b + (v if bern else v / sigma) @ w
            return cache["pre"]

        def log_density(v: torch.Tensor, beta: float) -> torch.Tensor:
            hidden = F.softplus(beta * hidden_pre(v)).sum(-1)
            if bern:
                return v @ ((1 - beta) * a_a + beta * a_b) + hidden
            quad_a = ((v - a_a) ** 2 / (2 * sigma**2)).sum(-1)
            quad_b = ((v - a_b) ** 2 / (2 * sigma**2)).sum(-1)
            return -(1 - beta) * quad_a - beta * quad_b + hidden

        def transition(v: torch.Tensor, beta: float) -> torch.Tensor:
            h = torch.bernoulli(torch.sigmoid(beta * hidden_pre(v)), generator=generator)
            wh = h @ w.T
            a_beta = (1 - beta) * a_a + beta * a_b
            if bern:
                return torch.bernoulli(torch.sigmoid(a_beta + beta * wh), generator=generator)
            mean = a_beta + beta * sigma * wh
            noise = torch.randn(
                mean.shape, generator=generator, dtype=mean.dtype, device=mean.device
            )
            return mean + sigma * noise

        shape = (num_chains, self.num_visible)
        if bern:
            init = torch.bernoulli(torch.sigmoid(a_a).expand(shape), generator=generator)
            log_z0 = self.num_hidden * math.log(2) + float(F.softplus(a_a).sum())
        else:
            noise = torch.randn(shape, generator=generator, dtype=a_a.dtype, device=a_a.device)
            init = a_a + sigma * noise
            log_z0 = self.num_hidden * math.log(2) + float(self._visible_normalizer())
        return annealed_importance_sampling(
            init, log_z0, log_density, transition, betas, progress=progress
        )

    @staticmethod
    def base_from_data(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """``logit`` of the clamped mean of binary data ``(N, V)``: a base for AIS, ``(V,)``.

        ``eps`` (in ``(0, 0.5)``) clamps the mean to ``[eps, 1 − eps]``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError("x must be a tensor of shape (N, V)")
        check_tensor("x", x, nonempty=True, finite=True)
        eps = check_real("eps", eps, low=0.0, high=0.5, low_open=True, high_open=True)
        p = x.float().mean(0).clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)


@dataclass
class RBMTrainResult:
    """What :func:`train_rbm` returns.

    Attributes:
        history: Per-epoch ``recon_error`` (mean squared error of a one-step reconstruction,
            per datapoint, summed over units) and ``free_energy_gap`` (mean F(data) − mean
            F(negative samples), the CD loss), ``epoch_time`` (seconds).
        steps: Parameter updates.
        chains: The persistent chains at the end (PCD), else None.
        timings: ``total_s`` and ``step_ms`` (median).
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    chains: torch.Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


def train_rbm(
    rbm: RBM,
    data: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 100,
    lr: float = 0.01,
    k: int = 1,
    persistent: bool = False,
    num_chains: int | None = None,
    momentum: float = 0.5,
    weight_decay: float = 0.0,
    seed: int | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
) -> RBMTrainResult:
    """Train an RBM by contrastive divergence (CD-k) or persistent CD (PCD-k, Tieleman 2008).

    Each step takes a minibatch (the positive phase), runs k Gibbs sweeps from the minibatch
    (CD) or from the persistent chains (PCD) to get negative samples, and follows the gradient
    of ``mean F(negative) − mean F(data)`` (the log-likelihood gradient with the model
    expectation replaced by the samples) with SGD and momentum.

    Args:
        rbm: The machine to train (in place).
        data: ``(N, V)`` training data on the RBM's device (binary for Bernoulli visibles).
        epochs: Passes over the data.
        batch_size: Minibatch size.
        lr: Learning rate.
        k: Gibbs sweeps per step.
        persistent: Use persistent chains (PCD).
        num_chains: Number of persistent chains (default ``batch_size``).
        momentum: SGD momentum.
        weight_decay: L2 penalty on the weights.
        seed: Seeds the shuffling and the Gibbs sampler.
        transform: Applied to each minibatch (e.g. :class:`pyrovi.data.DynamicBinarization`).
        progress: Show a tqdm bar over the epochs, with the latest reconstruction error and
            free-energy gap (only when stderr is a terminal).

    Returns:
        An :class:`RBMTrainResult`.
    """
    if not isinstance(rbm, RBM):
        raise ValueError(f"rbm must be an RBM, got {type(rbm).__name__}")
    rbm._check_v(data, "data")
    if data.dim() != 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (N, {rbm.num_visible}) with N > 0")
    if not data.is_floating_point():
        raise TypeError(f"data must be a floating-point tensor, got dtype {data.dtype}")
    if not all_finite(data):
        raise ValueError("data contains NaN or infinite values")
    if rbm.visible == "bernoulli" and (data.min() < 0 or data.max() > 1):
        raise ValueError("data must lie in [0, 1] for Bernoulli visible units")
    epochs, batch_size, k = (
        _positive_int("epochs", epochs),
        _positive_int("batch_size", batch_size),
        _positive_int("k", k),
    )
    lr = check_positive("lr", lr)
    persistent = check_bool("persistent", persistent)
    check_bool("progress", progress)
    momentum = check_real("momentum", momentum, low=0.0, high=1.0, high_open=True)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    if transform is not None:
        check_callable("transform", transform, "a callable on a minibatch, or None")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    device = rbm.weight.device
    g_cpu = torch.Generator()
    g_dev = torch.Generator(device=device)
    if seed is not None:
        g_cpu.manual_seed(seed)
        g_dev.manual_seed(seed + 1)
    else:
        g_cpu.seed()
        g_dev.seed()
    opt = torch.optim.SGD(
        [
            {"params": [rbm.weight], "weight_decay": weight_decay},
            {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=momentum,
    )
    n = data.shape[0]
    batch_size = min(batch_size, n)
    chains = None
    if persistent:
        m = _positive_int("num_chains", num_chains) if num_chains is not None else batch_size
        init = data[torch.randint(n, (m,), generator=g_cpu).to(device)]
        chains = transform(init) if transform is not None else init.clone()
    result = RBMTrainResult(history={"recon_error": [], "free_energy_gap": [], "epoch_time": []})
    step_times: list[float] = []
    t_total = time.perf_counter()
    with progress_bar(epochs, desc="RBM epochs", progress=progress, unit="epoch") as bar:
        for _ in range(epochs):
            t_epoch = time.perf_counter()
            order = torch.randperm(n, generator=g_cpu).to(device)
            recon, gap, count = 0.0, 0.0, 0
            for start in range(0, n - batch_size + 1, batch_size):
                t_step = time.perf_counter()
                v = data[order[start : start + batch_size]]
                if transform is not None:
                    v = transform(v)
                start_neg = chains if persistent else v
                neg = rbm.gibbs(start_neg, k, g_dev)
                if persistent:
                    chains = neg
                opt.zero_grad(set_to_none=True)
                loss = rbm.free_energy(v).mean() - rbm.free_energy(neg).mean()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    rec = rbm.visible_mean(rbm.hidden_probs(v))
                    recon += float(((rec - v) ** 2).sum(-1).mean())
                    gap += float(loss.detach())
                count += 1
                result.steps += 1
                step_times.append(time.perf_counter() - t_step)
            result.history["recon_error"].append(recon / max(count, 1))
            result.history["free_energy_gap"].append(gap / max(count, 1))
            result.history["epoch_time"].append(time.perf_counter() - t_epoch)
            if not math.isfinite(result.history["free_energy_gap"][-1]):
                raise FloatingPointError(
                    "RBM training diverged (non-finite free energy); lower lr or, for Gaussian "
                    "visible units, standardize the data"
                )
            bar.set_postfix(
                recon=f"{result.history['recon_error'][-1]:.4g}",
                gap=f"{result.history['free_energy_gap'][-1]:.4g}",
            )
            bar.update(1)
    step_times.sort()
    result.chains = chains
    result.timings = {
        "total_s": time.perf_counter() - t_total,
        "step_ms": 1e3 * step_times[len(step_times) // 2] if step_times else float("nan"),
    }
    return result
