"""Train a variational autoencoder on images and report its ELBO and IWAE log-likelihood.

The default run trains on scikit-learn's 8x8 digits (no download) in about 35 s on two CPU cores
(``RUN_TIME`` below; ``--help`` shows it)::

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
import os
import time
from pathlib import Path

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

# Wall time of `python examples/vae.py` (the defaults) on 2 CPU cores, shown by --help.
RUN_TIME = "about 35 s"

# Default epochs per data set: digits has 1438 training images (12 steps of 128).
DEFAULT_EPOCHS = {"digits": 300, "fashion-mnist": 20, "mnist": 20}
DEFAULT_Z_DIM = {"digits": 8, "fashion-mnist": 16, "mnist": 16}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Train a VAE with pyrovi and report train/test ELBO and test NLL (IWAE).",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    add_data_arguments(p)
    add_training_arguments(
        p,
        out="outputs/vae",
        epochs_help=f"training epochs (default per data set: {DEFAULT_EPOCHS})",
    )
    add_vae_arguments(p, z_dim_help=f"latent dimension (default per data set: {DEFAULT_Z_DIM})")
    p.add_argument(
        "--learn-scale",
        action="store_true",
        help="learn a per-pixel standard deviation of the Gaussian likelihood",
    )
    return p


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
        VAE,
        AmortizedMultivariateNormal,
        AmortizedNormal,
        elbo,
        fit,
        log_marginal_likelihood,
    )
    from pyrovi.data import DynamicBinarization, binarize_data
    from pyrovi.diagnostics import plot_image_rows, plot_latent

    device = resolve_device(parser, args)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data_or_exit(parser, args)
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
        "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
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
        plot_image_rows(
            rows,
            f"{data.name} test images and reconstructions (decoder mean at encoder mean)",
            cols=16,
            path=out / "reconstructions.png",
        )
        samples = model.sample_prior(64).reshape(-1, h, w)
        plot_image_rows(
            [("", samples)],
            f"{data.name}: decoder means of z ~ N(0, I)",
            cols=16,
            path=out / "samples.png",
        )
        z_mean = guide.encode(x_test)[0]
        plot_latent(
            z_mean,
            data.y_test,
            f"{data.name}: encoder means of test images (z_dim={z_dim})",
            path=out / "latent.png",
        )

    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print_written(out, ["metrics.json", "reconstructions.png", "samples.png", "latent.png"])
    return metrics


if __name__ == "__main__":
    main()
