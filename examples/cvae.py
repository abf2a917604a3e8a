"""Train a conditional VAE ``p(x | z, c) p(z | c)`` and report its test ELBO and IWAE NLL.

Two conditioning tasks:

* ``--condition label``: ``c`` is the one-hot class label and ``x`` the whole image; the figure
  shows samples of every class (one class per row).
* ``--condition quadrant``: ``x`` is the bottom-right quadrant of the image and ``c`` the other
  three quadrants ("predict the rest of the image"); the figure shows test images with the hidden
  quadrant filled in by ``model.sample(c)``.

Examples::

    python examples/cvae.py                          # digits, label-conditioned
    python examples/cvae.py --condition quadrant
    python examples/cvae.py --dataset fashion-mnist --epochs 20

Writes ``metrics.json`` and ``samples.png`` to ``--out`` (default ``outputs/cvae``);
``main(argv)`` returns the metrics as a dict.
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
from torch.nn import functional as F  # noqa: E402

from pyrovi import (  # noqa: E402
    AmortizedMultivariateNormal,
    AmortizedNormal,
    ConditionalVAE,
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
        description="Train a conditional VAE with pyrovi; report test ELBO and NLL (IWAE).",
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
        "--condition",
        choices=("label", "quadrant"),
        default="label",
        help="label: c = one-hot label, x = image; quadrant: x = bottom-right "
        "quadrant, c = the other three quadrants",
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
        help="hidden widths, comma separated; the decoder uses them reversed",
    )
    p.add_argument(
        "--prior",
        choices=("learned", "standard"),
        default="learned",
        help="p(z | c): learned from c by an MLP, or N(0, I)",
    )
    p.add_argument(
        "--guide",
        choices=("normal", "mvn"),
        default="normal",
        help="normal: diagonal Gaussian q(z|x,c); mvn: full-covariance Gaussian",
    )
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli")
    p.add_argument(
        "--obs-scale",
        type=float,
        default=0.1,
        help="standard deviation of the Gaussian likelihood; unused for bernoulli",
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
        help="binarization of the target x (c keeps grey levels). auto: dynamic for "
        "bernoulli, none for gaussian; the test targets always get one fixed "
        "binarization (seed 0) when binarizing",
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
    p.add_argument("--out", default="outputs/cvae", help="output folder (created if missing)")
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


def quadrant_mask(image_shape: tuple[int, int]) -> torch.Tensor:
    """Boolean ``(H*W,)`` mask of the bottom-right quadrant (rows ``H//2:``, cols ``W//2:``)."""
    h, w = image_shape
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[h // 2 :, w // 2 :] = True
    return mask.reshape(-1)


def split_images(
    images: torch.Tensor,
    targets: torch.Tensor,
    labels: torch.Tensor,
    condition: str,
    image_shape: tuple[int, int],
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, c)`` for the task: ``x`` from ``targets`` (maybe binarized), ``c`` from ``images``."""
    if condition == "label":
        return targets, F.one_hot(labels, num_classes).to(images.dtype)
    mask = quadrant_mask(image_shape).to(images.device)
    return targets[:, mask], images[:, ~mask]


def _tile(images: torch.Tensor, rows: int, cols: int, pad: float = 0.3) -> torch.Tensor:
    """``(n, H, W)`` images -> one ``(rows*(H+1)-1, cols*(W+1)-1)`` mosaic, row by row."""
    n, h, w = images.shape
    grid = images.new_full((rows * (h + 1) - 1, cols * (w + 1) - 1), pad)
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i]
    return grid


def save_image_rows(
    path: Path,
    rows: list[tuple[str, torch.Tensor]],
    title: str,
    box: tuple[int, int, int, int] | None = None,
) -> None:
    """A mosaic with one labelled row per ``(n, H, W)`` group of images in ``[0, 1]``.

    ``box = (top, left, height, width)`` outlines that region of every tile (the quadrant).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    cols = max(len(images) for _, images in rows)
    h, w = rows[0][1].shape[1:]
    blank = torch.zeros(h, w)
    tiles = []
    for _, images in rows:
        images = images.detach().cpu().float().clamp(0, 1)
        tiles.extend(images[i] if i < len(images) else blank for i in range(cols))
    grid = _tile(torch.stack(tiles), len(rows), cols)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * cols + 1.8), 0.5 * len(rows) + 0.9))
    ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    if box is not None:
        top, left, bh, bw = box
        for r in range(len(rows)):
            for c in range(cols):
                ax.add_patch(
                    Rectangle(
                        (c * (w + 1) + left - 0.5, r * (h + 1) + top - 0.5),
                        bw,
                        bh,
                        fill=False,
                        edgecolor="tab:red",
                        linewidth=0.8,
                    )
                )
    ax.set_yticks(
        [r * (h + 1) + (h - 1) / 2 for r in range(len(rows))], [label for label, _ in rows]
    )
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
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
    num_classes = max(data.num_classes, 1)
    # Binarize on the CPU so that the test set is the same on every device.
    binary = (binarize_data(data, seed=0) if binarize != "none" else data).to(device)
    data = data.to(device)
    train_targets = binary.x_train if binarize == "static" else data.x_train
    x_train, c_train = split_images(
        data.x_train, train_targets, data.y_train, args.condition, data.image_shape, num_classes
    )
    x_test, c_test = split_images(
        data.x_test, binary.x_test, data.y_test, args.condition, data.image_shape, num_classes
    )
    transform = None
    if binarize == "dynamic":
        transform = DynamicBinarization(torch.Generator(device=device).manual_seed(args.seed))
    x_dim, c_dim = x_train.shape[1], c_train.shape[1]

    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    model = ConditionalVAE(
        x_dim,
        c_dim,
        z_dim,
        likelihood=args.likelihood,
        hidden_dims=args.hidden,
        prior=args.prior,
        beta=args.beta,
        scale=args.obs_scale,
    ).to(device)
    guide_cls = AmortizedNormal if args.guide == "normal" else AmortizedMultivariateNormal
    guide = guide_cls(x_dim, z_dim, hidden_dims=args.hidden, context_dim=c_dim).to(device)
    print(
        f"{data.name}, condition={args.condition}: {len(x_train)} train / {len(x_test)} test; "
        f"x_dim={x_dim}, c_dim={c_dim}, z_dim={z_dim}, hidden={args.hidden}, "
        f"prior={args.prior}, guide={args.guide}, likelihood={args.likelihood}, "
        f"binarize={binarize}, epochs={epochs}, device={device}"
    )

    result = fit(
        model,
        guide,
        (x_train, c_train),
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
        test = (x_test, c_test)
        test_elbo = elbo(model, guide, test, num_samples=args.elbo_samples).mean().item()
        test_nll = -log_marginal_likelihood(model, guide, test, num_samples=args.iwae_k)
        test_nll = test_nll.mean().item()
    eval_s = time.perf_counter() - t_eval
    train_elbo = result.history["train_elbo"][-1]

    metrics = {
        "dataset": data.name,
        "condition": args.condition,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "x_dim": x_dim,
        "c_dim": c_dim,
        "epochs": result.epochs,
        "batch_size": args.batch_size,
        "z_dim": z_dim,
        "hidden": list(args.hidden),
        "prior": args.prior,
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
    what = "image" if args.condition == "label" else "quadrant"
    print(f"train ELBO {train_elbo:.3f} nats/{what} (last epoch, training objective)")
    print(f"test  ELBO {test_elbo:.3f} nats/{what} ({args.elbo_samples} samples)")
    print(f"test  NLL  {test_nll:.3f} nats/{what} (IWAE, K={args.iwae_k}): -log p(x | c)")
    print(
        f"training {metrics['train_seconds']:.1f} s ({metrics['step_ms']:.2f} ms/step), "
        f"evaluation {eval_s:.1f} s"
    )

    h, w = data.image_shape
    with torch.no_grad():
        if args.condition == "label":
            per_class = 12
            c = torch.eye(num_classes, device=device)
            samples = model.sample(c, num_samples=per_class)  # (per_class, classes, x_dim)
            rows = [(str(k), samples[:, k].reshape(-1, h, w)) for k in range(num_classes)]
            save_image_rows(
                out / "samples.png",
                rows,
                f"{data.name}: samples of p(x | class), one class per row",
            )
        else:
            n_show, n_samples = min(12, len(x_test)), 3
            mask = quadrant_mask(data.image_shape).to(device)
            images = data.x_test[:n_show]
            pred = model.sample(c_test[:n_show], num_samples=n_samples)  # (S, n, x_dim)
            rows = [("data", images.reshape(-1, h, w))]
            for s in range(n_samples):
                filled = images.clone()
                filled[:, mask] = pred[s]
                rows.append((f"sample {s + 1}", filled.reshape(-1, h, w)))
            save_image_rows(
                out / "samples.png",
                rows,
                f"{data.name}: bottom-right quadrant sampled from p(x | c)",
                box=(h // 2, w // 2, h - h // 2, w - w // 2),
            )

    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote metrics.json, samples.png to {out}")
    return metrics


if __name__ == "__main__":
    main()
