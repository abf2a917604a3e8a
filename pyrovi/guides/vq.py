"""Deterministic vector-quantizing encoder guide for :class:`pyrovi.models.VQVAE`."""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.poutine.util import is_validation_enabled

from pyrovi._checks import check_hidden_dims, check_nonnegative, check_plate_name
from pyrovi.models._checks import check_features, check_values
from pyrovi.nn import MLP, submodule

__all__ = ["VQEncoder"]


class VQEncoder(PyroModule):
    """``q(k | x) = δ(k = argmin_k ‖z_e(x) − e_k‖)`` with a straight-through gradient.

    The encoder maps ``x`` to ``z_e ∈ R^{M×D}``; each of the M vectors is replaced by its nearest
    code ``e_k``. The site ``"z"`` is a point mass at ``z_e + sg(e_k − z_e)``: its value is the
    code vector, its gradient goes straight through to the encoder (van den Oord et al. 2017).
    In training mode the guide adds the VQ-VAE's codebook and commitment losses,
    ``‖sg(z_e) − e‖² + commitment · ‖z_e − sg(e)‖²`` per datapoint (the first term only when
    ``ema_decay is None``; with EMA updates the codebook follows the encoder without it), at an
    auxiliary site
    ``"vq_loss"`` whose log-density is that loss (so the ELBO estimate is lowered by it). In
    evaluation mode (``guide.eval()``) the site is left out, so :func:`pyrovi.infer.elbo` and
    :func:`pyrovi.infer.log_marginal_likelihood` see the model's ELBO only.

    Args:
        model: The :class:`~pyrovi.models.VQVAE` whose codebook is shared.
        hidden_dims: Widths of the encoder MLP (default: the model's).
        commitment: Weight β of the commitment term (0.25 in the paper).
        plate: Name of the per-datapoint plate.
        ema_decay: ``None`` to learn the codebook by the codebook loss above (gradient steps);
            a decay in (0, 1) (default 0.99) to update it instead by exponential moving averages
            of the encoder vectors assigned to each code (van den Oord et al. 2017, appendix),
            on every training step with gradients enabled. Then the loss has the commitment
            term only, and codes unused for a while (EMA count below ``dead_threshold``) are
            restarted at random encoder vectors of the batch.
        dead_threshold: EMA assignment count under which a code is restarted (EMA mode).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        hidden_dims: Sequence[int] | None = None,
        commitment: float = 0.25,
        plate: str = "data",
        ema_decay: float | None = 0.99,
        dead_threshold: float = 0.01,
    ) -> None:
        super().__init__()
        for attr in ("codebook", "x_dim", "num_latents", "code_dim"):
            if not hasattr(model, attr):
                raise ValueError(f"model must be a VQVAE (it lacks {attr!r}), got {model!r}")
        commitment = check_nonnegative("commitment", commitment)
        plate = check_plate_name(plate, "plate", allow_none=False)
        self.x_dim, self.num_latents, self.code_dim = model.x_dim, model.num_latents, model.code_dim
        hidden = check_hidden_dims(model.hidden_dims if hidden_dims is None else hidden_dims)
        self.encoder = MLP(self.x_dim, hidden, self.num_latents * self.code_dim)
        self.codebook = model.codebook
        self.commitment, self.plate = float(commitment), plate
        if ema_decay is not None and not (isinstance(ema_decay, int | float) and 0 < ema_decay < 1):
            raise ValueError(f"ema_decay must be None or a number in (0, 1), got {ema_decay!r}")
        dead_threshold = check_nonnegative("dead_threshold", dead_threshold)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.dead_threshold = float(dead_threshold)
        # In EMA mode no gradient reaches the codebook (it is only used detached), so
        # optimizers leave it alone; the EMA statistics live here.
        self.register_buffer("ema_count", torch.ones(self.codebook.num_codes))
        self.register_buffer("ema_sum", self.codebook.weight.detach().clone())

    def _check(self, x: torch.Tensor) -> None:
        check_features("x", x, self.x_dim)
        if is_validation_enabled():
            check_values("x", x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous encoder output ``z_e``: ``(batch, M, D)``."""
        self._check(x)
        z_e = submodule(self, "encoder")(x)
        return z_e.reshape(x.shape[0], self.num_latents, self.code_dim)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices ``(batch, M)`` of ``x``."""
        with torch.no_grad():
            return self.codebook.nearest(self.encode(x))

    @torch.no_grad()
    def init_codebook(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codes to encoder outputs of random rows of ``x`` (data-dependent init).

        Args:
            x: ``(N, x_dim)`` data; its ``N * M`` encoder vectors are sampled without
                replacement (with replacement when fewer than K).
            generator: Random generator for the choice (CPU).
        """
        z_e = self.encode(x).reshape(-1, self.code_dim)
        k = self.codebook.num_codes
        n = z_e.shape[0]
        if n >= k:
            pick = torch.randperm(n, generator=generator)[:k]
        else:
            pick = torch.randint(n, (k,), generator=generator)
        self.codebook.weight.copy_(z_e[pick.to(z_e.device)])
        self.ema_count.fill_(1.0)
        self.ema_sum.copy_(self.codebook.weight)

    @torch.no_grad()
    def _ema_update(self, z_e: torch.Tensor, index: torch.Tensor) -> None:
        flat, idx = z_e.detach().reshape(-1, self.code_dim), index.reshape(-1)
        k = self.codebook.num_codes
        one_hot = torch.zeros(flat.shape[0], k, dtype=flat.dtype, device=flat.device)
        one_hot.scatter_(1, idx.unsqueeze(1), 1.0)
        gamma = self.ema_decay
        self.ema_count.mul_(gamma).add_(one_hot.sum(0), alpha=1 - gamma)
        self.ema_sum.mul_(gamma).add_(one_hot.T @ flat, alpha=1 - gamma)
        dead = self.ema_count < self.dead_threshold
        if dead.any():
            pick = torch.randint(flat.shape[0], (int(dead.sum()),), device=flat.device)
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0
        self.codebook.weight.copy_(self.ema_sum / self.ema_count.unsqueeze(1))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The guide. ``x``: ``(batch, x_dim)``. Returns the quantized ``(batch, M, D)``."""
        z_e = self.encode(x)
        codebook = submodule(self, "codebook")
        index = codebook.nearest(z_e)
        e = codebook(index)
        z_q = z_e + (e - z_e).detach()
        ema = self.ema_decay is not None
        if ema and self.training and torch.is_grad_enabled():
            self._ema_update(z_e, index)
        with pyro.plate(self.plate, x.shape[0]):
            pyro.sample("z", dist.Delta(z_q, event_dim=2))
            if self.training:
                loss = self.commitment * (z_e - e.detach()).pow(2).sum((-2, -1))
                if not ema:
                    loss = loss + (z_e.detach() - e).pow(2).sum((-2, -1))
                pyro.sample(
                    "vq_loss",
                    dist.Delta(torch.zeros_like(loss), log_density=loss),
                    infer={"is_auxiliary": True},
                )
        return z_q
