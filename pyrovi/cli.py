"""Command-line plumbing shared by pyrovi's example scripts and tools.

Argument types (:func:`positive_int`, :func:`int_list`), groups of options that every training
script has (:func:`add_data_arguments`, :func:`add_training_arguments`),
:func:`resolve_device`/:func:`load_data_or_exit` that turn bad input into argparse errors, the
help layout (:class:`HelpFormatter`, :func:`describe`) and the report of what a script wrote
(:func:`print_written`).

Importing this module loads neither torch nor Pyro, so ``--help`` and argument errors come back
at once; the functions that need torch import it when called.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrovi._dataset_names import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pyrovi.data import ImageData

__all__ = [
    "HelpFormatter",
    "describe",
    "print_written",
    "positive_int",
    "int_list",
    "add_data_arguments",
    "add_training_arguments",
    "add_vae_arguments",
    "resolve_device",
    "resolve_binarize",
    "load_data_or_exit",
    "finite_or_none",
]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that shows every option's default and keeps the description's line breaks.

    An option whose help already states its default (the word "default") is left as written; a
    flag (``store_true``) is off unless given; ``None`` shows as ``(default: none)``, so an option
    whose ``None`` means something else must say so in its help.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.default is argparse.SUPPRESS
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        if action.default is None:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


def describe(summary: str, *, run_time: str, details: str = "") -> str:
    """An example's ``--help`` description: what it does, then its run time with the defaults.

    Args:
        summary: One or two sentences on what the script does.
        run_time: Measured wall time with the defaults on 2 CPU cores, e.g. ``"about 40 s"``.
        details: Optional further paragraphs.
    """
    text = f"{summary}\n\nRun time with the defaults: {run_time} on 2 CPU cores (no GPU)."
    return f"{text}\n\n{details}" if details else text


def print_written(out: str | os.PathLike, names: Iterable[str]) -> None:
    """Print which files a script wrote and where, e.g. ``wrote metrics.json, a.png to out/``."""
    folder = Path(out)
    listed = ", ".join(names)
    print(f"wrote {listed} to {folder.resolve()}", flush=True)


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
        help="folder with the four MNIST-format files (default: none; needed for mnist, "
        "optional for fashion-mnist)",
    )
    parser.add_argument(
        "--subset",
        type=positive_int,
        default=None,
        help="use only the first N training and N test images, for quick runs (default: all)",
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
    parser.add_argument("--batch-size", type=positive_int, default=128, help="minibatch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device, e.g. cpu, cuda, cuda:1; auto: cuda when one is visible, else cpu",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of torch, Pyro, NumPy and the batch order"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch (default: 2, or fewer CPUs if the machine has fewer)",
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
    parser.add_argument(
        "--likelihood",
        choices=("bernoulli", "gaussian"),
        default="bernoulli",
        help="p(x | z) per pixel",
    )
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
    """``torch.device(args.device)``, checked to be usable; also checks ``--resume``.

    ``"auto"`` (the default of :func:`add_training_arguments`) is ``cuda`` when a GPU is visible,
    else ``cpu``.
    """
    import torch

    if getattr(args, "resume", False) and getattr(args, "checkpoint", None) is None:
        parser.error("--resume needs --checkpoint")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        parser.error(f"device {args.device!r} is not available: {err}")
    return device


def resolve_binarize(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The binarization of ``--binarize`` for ``--likelihood``: ``"none"``, ``"static"`` or
    ``"dynamic"``.

    ``auto`` is ``dynamic`` for a Bernoulli likelihood and ``none`` for a Gaussian one; a
    Bernoulli likelihood with ``none`` is a usage error, since grey levels are off its support.
    """
    if args.binarize == "auto":
        return "dynamic" if args.likelihood == "bernoulli" else "none"
    if args.binarize == "none" and args.likelihood == "bernoulli":
        parser.error(
            "--binarize none needs --likelihood gaussian: a Bernoulli likelihood scores binary "
            "pixels, and the images are grey levels (use --binarize dynamic or static)"
        )
    return args.binarize


def load_data_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ImageData:
    """Load ``args.dataset`` (with ``--data-dir``/``--subset``); missing data is a usage error."""
    from pyrovi.data import load_dataset

    if args.dataset == "mnist" and args.data_dir is None:
        parser.error("--dataset mnist needs --data-dir (a folder with the four MNIST files)")
    try:
        return load_dataset(args.dataset, args.data_dir, subset=args.subset)
    except FileNotFoundError as err:
        parser.error(str(err))  # the message lists the ways to get the files
    raise AssertionError("unreachable")  # parser.error exits


def finite_or_none(value: float) -> float | None:
    """``value`` if finite, else ``None`` (JSON has no NaN)."""
    return value if math.isfinite(value) else None
