"""Command-line plumbing shared by pyrovi's example scripts and tools.

Argument types (:func:`positive_int`, :func:`int_list`), groups of options that every training
script has (:func:`add_data_arguments`, :func:`add_training_arguments`), and
:func:`resolve_device`/:func:`load_data_or_exit` that turn bad input into argparse errors.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from pyrovi.data import DATASETS, ImageData, load_dataset

__all__ = [
    "positive_int",
    "int_list",
    "add_data_arguments",
    "add_training_arguments",
    "add_vae_arguments",
    "resolve_device",
    "load_data_or_exit",
    "finite_or_none",
]


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive integers, e.g. ``"512,256"``."""
    try:
        dims = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return dims


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-dir``, ``--subset``."""
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digits: scikit-learn 8x8 (bundled); fashion-mnist: --data-dir or the "
        "Debian dataset-fashion-mnist folder; mnist: needs --data-dir",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four MNIST-format files (for mnist / fashion-mnist)",
    )
    parser.add_argument(
        "--subset",
        type=positive_int,
        default=None,
        help="use only the first N training and N test images (quick runs)",
    )


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    out: str,
    defaults: Mapping[str, Any] | None = None,
    epochs_help: str = "training epochs",
) -> None:
    """Options of a training run: epochs, batch size, lr, device, seed, threads, output folder,
    progress, checkpoint/resume. ``defaults`` may set ``epochs`` (None: the script decides)."""
    defaults = dict(defaults or {})
    parser.add_argument(
        "--epochs", type=positive_int, default=defaults.get("epochs"), help=epochs_help
    )
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch",
    )
    parser.add_argument("--out", default=out, help="output folder (created if missing)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint file written after every epoch (optional)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from --checkpoint if it exists"
    )


def add_vae_arguments(parser: argparse.ArgumentParser, *, z_dim_help: str = "latent dimension"):
    """Options of a VAE experiment: latent size, networks, guide, likelihood, β, KL annealing,
    binarization and the evaluation (IWAE K, ELBO samples)."""
    parser.add_argument("--z-dim", type=positive_int, default=None, help=z_dim_help)
    parser.add_argument(
        "--hidden",
        type=int_list,
        default="512,256",
        help="encoder hidden widths, comma separated; the decoder uses them reversed",
    )
    parser.add_argument(
        "--guide",
        choices=("normal", "mvn"),
        default="normal",
        help="normal: diagonal Gaussian q(z|x); mvn: full-covariance Gaussian",
    )
    parser.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli")
    parser.add_argument(
        "--obs-scale",
        type=float,
        default=0.1,
        help="standard deviation of the Gaussian likelihood; unused for bernoulli",
    )
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight (beta-VAE)")
    parser.add_argument(
        "--kl-annealing",
        type=float,
        default=0.0,
        help="KL warm-up epochs (weight rises linearly from 0 to beta); 0 = off",
    )
    parser.add_argument(
        "--binarize",
        choices=("auto", "none", "static", "dynamic"),
        default="auto",
        help="auto: dynamic for bernoulli, none for gaussian. dynamic: a fresh "
        "Bernoulli sample of each training batch; the test set always gets one "
        "fixed binarization (seed 0) when binarizing",
    )
    parser.add_argument(
        "--iwae-k",
        type=positive_int,
        default=1000,
        help="importance samples K for the test log-likelihood",
    )
    parser.add_argument(
        "--elbo-samples",
        type=positive_int,
        default=10,
        help="Monte Carlo samples per test image for the test ELBO",
    )


def resolve_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> torch.device:
    """``torch.device(args.device)``, checked to be usable; also checks ``--resume``."""
    if getattr(args, "resume", False) and getattr(args, "checkpoint", None) is None:
        parser.error("--resume needs --checkpoint")
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        parser.error(f"device {args.device!r} is not available: {err}")
    return device


def load_data_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ImageData:
    """Load ``args.dataset`` (with ``--data-dir``/``--subset``); missing data is a usage error."""
    if args.dataset == "mnist" and args.data_dir is None:
        parser.error("--dataset mnist needs --data-dir (a folder with the four MNIST files)")
    try:
        return load_dataset(args.dataset, args.data_dir, subset=args.subset)
    except FileNotFoundError as err:
        parser.error(f"{err}\n(pass --data-dir with the {args.dataset} files)")
    raise AssertionError("unreachable")  # parser.error exits


def finite_or_none(value: float) -> float | None:
    """``value`` if finite, else ``None`` (JSON has no NaN)."""
    return value if math.isfinite(value) else None
