"""Train a variational autoencoder on images and report its ELBO and IWAE log-likelihood.

The default run trains on scikit-learn's 8x8 digits (no download) in well under two minutes on
two CPU cores::

    python examples/vae.py                          # digits, Bernoulli, dynamic binarization
    python examples/vae.py --guide mvn --z-dim 2    # full-covariance guide, 2-D latent plot
    python examples/vae.py --dataset fashion-mnist --epochs 20
    python examples/vae.py --dataset mnist --data-dir ~/data/mnist --epochs 50

It writes ``metrics.json``, ``reconstructions.png``, ``samples.png`` and ``latent.png`` to
``--out`` (default ``outputs/vae``). ``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

# OpenMP threads that sleep instead of spinning while they wait. With spinning threads (the
# default) these small-batch steps slow down 10-30x whenever another process competes for the
# cores. Read when torch loads its OpenMP runtime, so it has to come before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import torch  # noqa: E402

from pyrovi import (  # noqa: E402
    VAE,
    AmortizedMultivariateNormal,
    AmortizedNormal,
    elbo,
    fit,
    log_marginal_likelihood,
)
from pyrovi.data import (  # noqa: E402
    DynamicBinarization,
    ImageData,
    binarize_data,
    load_digits,
    load_fashion_mnist,
    load_mnist,
)

DATASETS = ("digits", "fashion-mnist", "mnist")
# Default epochs per data set: digits has 1438 training images (12 steps of 128).
DEFAULT_EPOCHS = {"digits": 300, "fashion-mnist": 20, "mnist": 20}
DEFAULT_Z_DIM = {"digits": 8, "fashion-mnist": 16, "mnist": 16}


def _hidden(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be comma-separated integers, got {text!r}"
        ) from None
    if any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"--hidden widths must be positive, got {text!r}")
    return dims


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description="Train a VAE with pyrovi and report train/test ELBO and test NLL (IWAE).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digits: scikit-learn 8x8 (bundled); fashion-mnist: --data-dir or the "
        "Debian dataset-fashion-mnist folder; mnist: needs --data-dir",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four MNIST-format files (for mnist / fashion-mnist)",
    )
    p.add_argument(
        "--subset",
        type=_positive_int,
        default=None,
        help="use only the first N training and N test images (quick runs)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"training epochs (default per data set: {DEFAULT_EPOCHS})",
    )
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument(
        "--z-dim",
        type=_positive_int,
        default=None,
        help=f"latent dimension (default per data set: {DEFAULT_Z_DIM})",
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default="512,256",
        help="encoder hidden widths, comma separated; the decoder uses them reversed",
    )
    p.add_argument(
        "--guide",
        choices=("normal", "mvn"),
        default="normal",
        help="normal: diagonal Gaussian q(z|x); mvn: full-covariance Gaussian",
    )
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli")
    p.add_argument(
        "--obs-scale",
        type=float,
        default=0.1,
        help="standard deviation of the Gaussian likelihood (learned with "
        "--learn-scale); unused for bernoulli",
    )
    p.add_argument(
        "--learn-scale",
        action="store_true",
        help="learn a per-pixel standard deviation of the Gaussian likelihood",
    )
    p.add_argument("--beta", type=float, default=1.0, help="KL weight (beta-VAE)")
    p.add_argument(
        "--kl-annealing",
        type=float,
        default=0.0,
        help="KL warm-up epochs (weight rises linearly from 0 to beta); 0 = off",
    )
    p.add_argument(
        "--binarize",
        choices=("auto", "none", "static", "dynamic"),
        default="auto",
        help="auto: dynamic for bernoulli, none for gaussian. dynamic: a fresh "
        "Bernoulli sample of each training batch; the test set always gets one "
        "fixed binarization (seed 0) when binarizing",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--iwae-k",
        type=_positive_int,
        default=1000,
        help="importance samples K for the test log-likelihood",
    )
    p.add_argument(
        "--elbo-samples",
        type=_positive_int,
        default=10,
        help="Monte Carlo samples per test image for the test ELBO",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch",
    )
    p.add_argument("--out", default="outputs/vae", help="output folder (created if missing)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint file written after every epoch (optional)"
    )
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    return p


def load_data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ImageData:
    """Load the data set named by ``args.dataset`` (flattened images in [0, 1])."""
    if args.dataset == "digits":
        data = load_digits()
    elif args.dataset == "fashion-mnist":
        try:
            data = load_fashion_mnist(args.data_dir)
        except FileNotFoundError as err:
            parser.error(f"{err}\n(pass --data-dir with the Fashion-MNIST files)")
    else:
        if args.data_dir is None:
            parser.error("--dataset mnist needs --data-dir (a folder with the four MNIST files)")
        try:
            data = load_mnist(args.data_dir)
        except FileNotFoundError as err:
            parser.error(str(err))
    if args.subset is not None:
        n = args.subset
        data = ImageData(
            data.x_train[:n],
            data.y_train[:n],
            data.x_test[:n],
            data.y_test[:n],
            data.image_shape,
            data.name,
        )
    return data


def _tile(images: torch.Tensor, rows: int, cols: int, pad: float = 0.3) -> torch.Tensor:
    """``(n, H, W)`` images -> one ``(rows*(H+1)-1, cols*(W+1)-1)`` mosaic, row by row."""
    n, h, w = images.shape
    grid = images.new_full((rows * (h + 1) - 1, cols * (w + 1) - 1), pad)
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i]
    return grid


def save_image_rows(
    path: Path, rows: list[tuple[str, torch.Tensor]], title: str, cols: int | None = None
) -> None:
    """One mosaic whose rows are labelled groups of ``(n, H, W)`` images in ``[0, 1]``.

    A group with more than ``cols`` images is continued in a later block, so that matching
    images of different groups stay in the same column (e.g. data above its reconstruction).
    """
    import matplotlib.pyplot as plt

    n = max(len(images) for _, images in rows)
    cols = cols or n
    h, w = rows[0][1].shape[1:]
    blank = torch.zeros(h, w)
    tiles, labels = [], []
    for start in range(0, n, cols):
        for label, images in rows:
            images = images.detach().cpu().float().clamp(0, 1)
            for i in range(start, start + cols):
                tiles.append(images[i] if i < len(images) else blank)
            labels.append(label)
    grid = _tile(torch.stack(tiles), len(labels), cols)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 1.5), 0.45 * len(labels) + 0.9))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(len(labels))], labels)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[str, str]]:
    """The latent itself if 2-D, else its first two principal components."""
    z = z.detach().cpu().double()
    if z.shape[1] == 1:
        return torch.cat([z, torch.zeros_like(z)], dim=1), ("z", "(none)")
    if z.shape[1] == 2:
        return z, ("z[0]", "z[1]")
    centred = z - z.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, ("principal component 1", "principal component 2")


def save_latent_plot(path: Path, z: torch.Tensor, labels: torch.Tensor, title: str) -> None:
    import matplotlib.pyplot as plt

    xy, what = _project_2d(z)
    xy, labels = xy.numpy(), labels.cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=8, alpha=0.8, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel(what[0])
    ax.set_ylabel(what[1])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    import matplotlib

    matplotlib.use("Agg")

    parser = build_parser()
    args = parser.parse_args(argv)
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    z_dim = args.z_dim or DEFAULT_Z_DIM[args.dataset]
    binarize = args.binarize
    if binarize == "auto":
        binarize = "dynamic" if args.likelihood == "bernoulli" else "none"
    if args.kl_annealing < 0:
        parser.error("--kl-annealing must be >= 0")
    if args.resume and args.checkpoint is None:
        parser.error("--resume needs --checkpoint")
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        parser.error(f"device {args.device!r} is not available: {err}")

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data(args, parser)
    if binarize != "none":
        binary = binarize_data(data, seed=0)
        x_test = binary.x_test
        x_train = binary.x_train if binarize == "static" else data.x_train
    else:
        x_train, x_test = data.x_train, data.x_test
    x_train, x_test = x_train.to(device), x_test.to(device)
    transform = None
    if binarize == "dynamic":
        transform = DynamicBinarization(torch.Generator(device=device).manual_seed(args.seed))

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    model = VAE(
        data.x_dim,
        z_dim,
        likelihood=args.likelihood,
        hidden_dims=args.hidden,
        beta=args.beta,
        scale=args.obs_scale,
        learn_scale=args.learn_scale,
    ).to(device)
    guide_cls = AmortizedNormal if args.guide == "normal" else AmortizedMultivariateNormal
    guide = guide_cls(data.x_dim, z_dim, hidden_dims=args.hidden).to(device)
    print(
        f"{data.name}: {len(x_train)} train / {len(x_test)} test images of "
        f"{data.image_shape[0]}x{data.image_shape[1]}; z_dim={z_dim}, hidden={args.hidden}, "
        f"guide={args.guide}, likelihood={args.likelihood}, binarize={binarize}, "
        f"epochs={epochs}, device={device}"
    )

    result = fit(
        model,
        guide,
        x_train,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
        kl_annealing=args.kl_annealing or None,
        transform=transform,
        seed=args.seed,
        progress=not args.no_progress,
        checkpoint=args.checkpoint,
        resume=args.resume,
    )

    model.eval()
    guide.eval()
    t_eval = time.perf_counter()
    with torch.no_grad():
        test_elbo = elbo(model, guide, x_test, num_samples=args.elbo_samples).mean().item()
        test_ll = log_marginal_likelihood(model, guide, x_test, num_samples=args.iwae_k)
        test_nll = -test_ll.mean().item()
    eval_s = time.perf_counter() - t_eval
    train_elbo = result.history["train_elbo"][-1]

    metrics = {
        "dataset": data.name,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "x_dim": data.x_dim,
        "epochs": result.epochs,
        "batch_size": args.batch_size,
        "z_dim": z_dim,
        "hidden": list(args.hidden),
        "guide": args.guide,
        "likelihood": args.likelihood,
        "obs_scale": args.obs_scale if args.likelihood == "gaussian" else None,
        "beta": args.beta,
        "kl_annealing": args.kl_annealing,
        "binarize": binarize,
        "lr": args.lr,
        "seed": args.seed,
        "device": str(device),
        "train_elbo": train_elbo,
        "test_elbo": test_elbo,
        "test_elbo_samples": args.elbo_samples,
        "test_nll_iwae": test_nll,
        "iwae_k": args.iwae_k,
        "train_seconds": result.timings.get("train_s", float("nan")),
        "eval_seconds": eval_s,
        "step_ms": result.timings.get("step_ms", float("nan")),
        "history": {k: [_finite_or_none(v) for v in vals] for k, vals in result.history.items()},
    }
    print(f"train ELBO {train_elbo:.3f} nats/image (last epoch, training objective)")
    print(f"test  ELBO {test_elbo:.3f} nats/image ({args.elbo_samples} samples)")
    print(f"test  NLL  {test_nll:.3f} nats/image (IWAE, K={args.iwae_k})")
    print(
        f"training {metrics['train_seconds']:.1f} s ({metrics['step_ms']:.2f} ms/step), "
        f"evaluation {eval_s:.1f} s"
    )

    # Figures.
    h, w = data.image_shape
    n_show = min(32, len(x_test))
    with torch.no_grad():
        shown = x_test[:n_show]
        recon = model.decode(guide.encode(shown)[0])
        rows = [("data", data.x_test[:n_show].reshape(-1, h, w))]
        if binarize != "none":
            rows.append(("input", shown.reshape(-1, h, w)))
        rows.append(("recon.", recon.reshape(-1, h, w)))
        save_image_rows(
            out / "reconstructions.png",
            rows,
            f"{data.name} test images and reconstructions (decoder mean at encoder mean)",
            cols=16,
        )
        samples = model.sample_prior(64).reshape(-1, h, w)
        save_image_rows(
            out / "samples.png",
            [("", samples)],
            f"{data.name}: decoder means of z ~ N(0, I)",
            cols=16,
        )
        z_mean = guide.encode(x_test)[0]
        save_latent_plot(
            out / "latent.png",
            z_mean,
            data.y_test,
            f"{data.name}: encoder means of test images (z_dim={z_dim})",
        )

    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote metrics.json, reconstructions.png, samples.png, latent.png to {out}")
    return metrics


if __name__ == "__main__":
    main()
