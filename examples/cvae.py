"""Train a conditional VAE ``p(x | z, c) p(z | c)`` and report its test ELBO and IWAE NLL.

Two conditioning tasks:

* ``--condition label``: ``c`` is the one-hot class label and ``x`` the whole image; the figure
  shows samples of every class (one class per row).
* ``--condition quadrant``: ``x`` is the bottom-right quadrant of the image and ``c`` the other
  three quadrants ("predict the rest of the image"); the figure shows test images with the hidden
  quadrant filled in by ``model.sample(c)``.

Examples::

    python examples/cvae.py                          # digits, label-conditioned: about 50 s
    python examples/cvae.py --condition quadrant
    python examples/cvae.py --dataset fashion-mnist --epochs 20

Writes ``metrics.json`` and ``samples.png`` to ``--out`` (default ``outputs/cvae``);
``main(argv)`` returns the metrics as a dict.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

# OpenMP threads that sleep instead of spinning while they wait. With spinning threads (the
# default) these small-batch steps slow down 10-30x whenever another process competes for the
# cores. Read when torch loads its OpenMP runtime, so it has to come before `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import (  # noqa: E402
    HelpFormatter,
    add_data_arguments,
    add_training_arguments,
    add_vae_arguments,
    describe,
    finite_or_none,
    load_data_or_exit,
    print_written,
    resolve_binarize,
    resolve_device,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Wall time of `python examples/cvae.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 50 s"
DEFAULT_EPOCHS = {"digits": 300, "fashion-mnist": 20, "mnist": 20}
DEFAULT_Z_DIM = {"digits": 8, "fashion-mnist": 16, "mnist": 16}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Train a conditional VAE with pyrovi; report test ELBO and NLL (IWAE).",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    add_data_arguments(p)
    add_training_arguments(
        p,
        out="outputs/cvae",
        epochs_help=f"training epochs (default per data set: {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--condition",
        choices=("label", "quadrant"),
        default="label",
        help="label: c = one-hot label, x = image; quadrant: x = bottom-right "
        "quadrant, c = the other three quadrants",
    )
    add_vae_arguments(p, z_dim_help=f"latent dimension (default per data set: {DEFAULT_Z_DIM})")
    p.add_argument(
        "--prior",
        choices=("learned", "standard"),
        default="learned",
        help="p(z | c): learned from c by an MLP, or N(0, I)",
    )
    return p


def quadrant_mask(image_shape: tuple[int, int]) -> torch.Tensor:
    """Boolean ``(H*W,)`` mask of the bottom-right quadrant (rows ``H//2:``, cols ``W//2:``)."""
    import torch

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
    from torch.nn import functional as F

    if condition == "label":
        return targets, F.one_hot(labels, num_classes).to(images.dtype)
    mask = quadrant_mask(image_shape).to(images.device)
    return targets[:, mask], images[:, ~mask]


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    z_dim = args.z_dim or DEFAULT_Z_DIM[args.dataset]
    binarize = resolve_binarize(parser, args)
    if args.kl_annealing < 0:
        parser.error("--kl-annealing must be >= 0")

    # Heavy imports after the arguments are parsed: --help and usage errors come back at once.
    import pyro
    import torch

    from pyrovi import (
        AmortizedMultivariateNormal,
        AmortizedNormal,
        ConditionalVAE,
        elbo,
        fit,
        log_marginal_likelihood,
    )
    from pyrovi.data import DynamicBinarization, binarize_data
    from pyrovi.diagnostics import plot_image_rows

    device = resolve_device(parser, args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data_or_exit(parser, args)
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
        "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
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
            plot_image_rows(
                rows,
                f"{data.name}: samples of p(x | class), one class per row",
                path=out / "samples.png",
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
            plot_image_rows(
                rows,
                f"{data.name}: bottom-right quadrant sampled from p(x | c)",
                path=out / "samples.png",
                box=(h // 2, w // 2, h - h // 2, w - w // 2),
            )

    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print_written(out, ["metrics.json", "samples.png"])
    return metrics


if __name__ == "__main__":
    main()
