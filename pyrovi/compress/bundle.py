"""Saving, loading and training the VAE/guide pairs that the command line compresses with."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrovi.data import DynamicBinarization
from pyrovi.guides import AmortizedNormal
from pyrovi.infer import fit
from pyrovi.models import VAE

__all__ = ["save_vae", "load_vae", "train_vae"]

_FORMAT = "pyrovi.compress.vae/1"


def save_vae(
    path: str | os.PathLike,
    model: VAE,
    guide: AmortizedNormal,
    hidden_dims: Sequence[int],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write an MLP :class:`~pyrovi.models.VAE` and its :class:`~pyrovi.guides.AmortizedNormal`.

    Args:
        path: Destination file (``torch.save`` format, loadable with ``weights_only=True``).
        model: The model (default MLP decoder with ``reversed(hidden_dims)``).
        guide: The guide (default MLP trunk with ``hidden_dims``).
        hidden_dims: Hidden widths both were built with.
        meta: Extra JSON-like information (training settings, test ELBO, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "x_dim": model.x_dim,
        "z_dim": model.z_dim,
        "hidden_dims": [int(h) for h in hidden_dims],
        "likelihood": model.likelihood,
        "scale": float(model.obs_scale.mean()) if model.likelihood == "gaussian" else 1.0,
        "learn_scale": bool(model.learn_scale),
    }
    state = {
        "format": _FORMAT,
        "config": config,
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "guide": {k: v.cpu() for k, v in guide.state_dict().items()},
        "meta": dict(meta or {}),
    }
    torch.save(state, path)
    return path


def load_vae(path: str | os.PathLike) -> tuple[VAE, AmortizedNormal, dict[str, Any]]:
    """Read a file written by :func:`save_vae`: ``(model, guide, meta)``, in eval mode on CPU.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If it is not such a file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model: no file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"model: {path} was not written by pyrovi.compress.save_vae")
    c = state["config"]
    model = VAE(
        c["x_dim"],
        c["z_dim"],
        likelihood=c["likelihood"],
        hidden_dims=c["hidden_dims"],
        scale=c["scale"],
        learn_scale=c["learn_scale"],
    )
    guide = AmortizedNormal(c["x_dim"], c["z_dim"], hidden_dims=c["hidden_dims"])
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    return model.eval(), guide.eval(), state.get("meta", {})


def train_vae(
    x_train: torch.Tensor,
    z_dim: int,
    *,
    hidden_dims: Sequence[int] = (512, 256),
    likelihood: str = "bernoulli",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[VAE, AmortizedNormal, Any]:
    """Train an MLP VAE with :func:`pyrovi.infer.fit` (Bernoulli: dynamic binarization).

    Args:
        x_train: Training images ``(N, D)`` in [0, 1] (grey levels; binarized on the fly for a
            Bernoulli likelihood).
        z_dim: Latent dimension.
        hidden_dims: Encoder widths (the decoder uses them reversed).
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        epochs: Training epochs.
        batch_size: Minibatch size.
        lr: Adam learning rate.
        seed: Seed of initialization, minibatches and binarization.
        progress: Show fit's progress bar.

    Returns:
        ``(model, guide, fit_result)`` with model and guide in eval mode.
    """
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    x_dim = x_train.shape[1]
    model = VAE(x_dim, z_dim, likelihood=likelihood, hidden_dims=hidden_dims, scale=0.1)
    guide = AmortizedNormal(x_dim, z_dim, hidden_dims=hidden_dims)
    transform = None
    if likelihood == "bernoulli":
        transform = DynamicBinarization(torch.Generator().manual_seed(seed))
    result = fit(
        model,
        guide,
        x_train,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        transform=transform,
        seed=seed,
        progress=progress,
    )
    return model.eval(), guide.eval(), result
