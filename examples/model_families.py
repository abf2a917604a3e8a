"""Train a hierarchical VAE, a VQ-VAE or an RBM on binarized images; report the test NLL.

Three model families beyond the plain VAE, on the same binarized data (dynamic binarization for
training, one fixed binarization with seed 0 for the test set): a hierarchical VAE with one or
two stochastic layers (Burda et al. 2015; top-down or bottom-up guide, optional free bits and KL
warm-up), a VQ-VAE (van den Oord et al. 2017; discrete codes with a fitted categorical prior) and
a restricted Boltzmann machine (Bernoulli units, trained by contrastive divergence CD-k or
persistent CD). The run time of the default run (``--family hvae`` on the digits) is
``RUN_TIME`` below::

    python examples/model_families.py --family hvae                       # two layers, top-down
    python examples/model_families.py --family hvae --layers 1            # one-layer baseline
    python examples/model_families.py --family hvae --guide bottom-up --free-bits 0.1
    python examples/model_families.py --family vqvae
    python examples/model_families.py --family rbm --persistent
    python examples/model_families.py --family hvae --dataset fashion-mnist --epochs 20

Test NLL: IWAE with ``--iwae-k`` samples for the VAEs (the VQ-VAE's deterministic guide makes it
the ELBO under the fitted categorical prior), ``F(v) + log Z`` with log Z by annealed importance
sampling for the RBM. ``--eval-subset N`` evaluates on the first N test images only. Writes
``metrics.json`` and ``samples.png`` to ``--out`` (default ``outputs/model_families/<family>``);
``main(argv)`` returns the metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Sleeping OpenMP threads (see examples/vae.py); must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pyrovi.cli import (  # noqa: E402
    HelpFormatter,
    add_data_arguments,
    add_training_arguments,
    describe,
    finite_or_none,
    int_list,
    load_data_or_exit,
    positive_int,
    print_written,
    resolve_device,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Wall time of `python examples/model_families.py` (the defaults: --family hvae on the digits) on
# 2 CPU cores, shown by --help.
RUN_TIME = "about 20 s"

DEFAULT_EPOCHS = {"digits": 100, "fashion-mnist": 20, "mnist": 20}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        description=describe(
            "Hierarchical VAE, VQ-VAE and RBM on binarized images: test NLL in nats.",
            run_time=RUN_TIME,
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--family",
        choices=("hvae", "vqvae", "rbm"),
        default="hvae",
        help="hvae: hierarchical VAE; vqvae: VQ-VAE; rbm: restricted Boltzmann machine",
    )
    add_data_arguments(p)
    add_training_arguments(
        p,
        out="outputs/model_families/<family>",
        epochs_help=f"training epochs (default per data set: {DEFAULT_EPOCHS})",
    )
    p.add_argument(
        "--eval-subset",
        type=positive_int,
        default=None,
        help="evaluate the test NLL on the first N test images only (default: all)",
    )
    g = p.add_argument_group("hierarchical VAE")
    g.add_argument("--layers", type=int, choices=(1, 2), default=2, help="stochastic layers")
    g.add_argument(
        "--z-dims",
        type=int_list,
        default=None,
        help="latent sizes from the data up (default: digits 8,4; images 100,50; 1 layer: the "
        "first)",
    )
    g.add_argument(
        "--hidden",
        type=int_list,
        default=None,
        help="hidden widths of the first layer (default: digits 128,64; images 200,200)",
    )
    g.add_argument(
        "--hidden-top",
        type=int_list,
        default=None,
        help="hidden widths of the second layer (default: digits 32,32; images 100,100)",
    )
    g.add_argument(
        "--guide",
        choices=("top-down", "bottom-up"),
        default="top-down",
        help="inference network: top-down (ladder-style) or bottom-up",
    )
    g.add_argument(
        "--activation", choices=("relu", "tanh"), default="relu", help="hidden activation"
    )
    g.add_argument(
        "--free-bits", type=float, default=0.0, help="free bits λ per latent dimension; 0 = off"
    )
    g.add_argument("--kl-annealing", type=float, default=0.0, help="KL warm-up epochs; 0 = off")
    g.add_argument(
        "--iwae-k", type=positive_int, default=1000, help="importance samples K of the test NLL"
    )
    g.add_argument(
        "--elbo-samples",
        type=positive_int,
        default=10,
        help="Monte Carlo samples per test image for the test ELBO",
    )
    g = p.add_argument_group("VQ-VAE")
    g.add_argument(
        "--num-codes",
        type=positive_int,
        default=None,
        help="codebook size K (default: 16 for digits, else 64)",
    )
    g.add_argument(
        "--code-dim",
        type=positive_int,
        default=None,
        help="code dimension D (default: 4 for digits, else 8)",
    )
    g.add_argument(
        "--num-latents",
        type=positive_int,
        default=None,
        help="codes per image M (default: 4 for digits, else 16)",
    )
    g.add_argument("--commitment", type=float, default=0.25, help="commitment-loss weight")
    g = p.add_argument_group("RBM")
    g.add_argument(
        "--rbm-hidden",
        type=positive_int,
        default=None,
        help="hidden units (default: 64 for digits, else 500)",
    )
    g.add_argument("--cd-k", type=positive_int, default=1, help="Gibbs steps per update")
    g.add_argument("--persistent", action="store_true", help="persistent CD (PCD)")
    g.add_argument("--rbm-lr", type=float, default=0.01, help="RBM learning rate")
    g.add_argument("--ais-chains", type=positive_int, default=100, help="AIS chains for log Z")
    g.add_argument(
        "--ais-betas", type=positive_int, default=10000, help="AIS temperatures for log Z"
    )
    return p


def _defaults(args: argparse.Namespace, small: bool) -> None:
    if args.z_dims is None:
        args.z_dims = (8, 4) if small else (100, 50)
    if args.hidden is None:
        args.hidden = (128, 64) if small else (200, 200)
    if args.hidden_top is None:
        args.hidden_top = (32, 32) if small else (100, 100)
    args.num_codes = args.num_codes or (16 if small else 64)
    args.code_dim = args.code_dim or (4 if small else 8)
    args.num_latents = args.num_latents or (4 if small else 16)
    args.rbm_hidden = args.rbm_hidden or (64 if small else 500)


def _active_units(guide, x: torch.Tensor, sites, samples: int = 10) -> dict[str, int]:
    """Latent dimensions whose posterior mean varies across data (variance > 0.01)."""
    import pyro
    import torch

    with torch.no_grad():
        sums = {s: 0.0 for s in sites}
        for _ in range(samples):
            trace = pyro.poutine.trace(guide).get_trace(x)
            for s in sites:
                sums[s] = sums[s] + trace.nodes[s]["value"] / samples
    return {s: int((sums[s].var(0) > 0.01).sum()) for s in sites}


def run_hvae(args, data, x_train, x_test, x_eval, transform, device) -> tuple[dict, torch.Tensor]:
    """Train and evaluate a hierarchical VAE; returns metrics and 64 samples."""
    import torch

    from pyrovi.guides import BottomUpGuide, TopDownGuide
    from pyrovi.infer import FreeBitsELBO, elbo, fit, log_marginal_likelihood
    from pyrovi.models import HierarchicalVAE

    z_dims = tuple(args.z_dims[: args.layers])
    if len(z_dims) < args.layers:
        raise SystemExit(f"--z-dims needs {args.layers} sizes, got {args.z_dims}")
    hidden = (tuple(args.hidden), tuple(args.hidden_top))[: args.layers]
    model = HierarchicalVAE(data.x_dim, z_dims, hidden_dims=hidden, activation=args.activation)
    guide_cls = TopDownGuide if args.guide == "top-down" else BottomUpGuide
    guide = guide_cls(data.x_dim, z_dims, hidden_dims=hidden, activation=args.activation)
    model, guide = model.to(device), guide.to(device)
    loss = FreeBitsELBO(args.free_bits) if args.free_bits > 0 else None
    result = fit(
        model,
        guide,
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
        kl_annealing=args.kl_annealing or None,
        loss=loss,
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
        test_ll = log_marginal_likelihood(model, guide, x_eval, num_samples=args.iwae_k)
        active = _active_units(guide, x_test[:1000], model.sites)
        samples = model.sample_prior(64)
    metrics = {
        "layers": args.layers,
        "z_dims": list(z_dims),
        "hidden": [list(h) for h in hidden],
        "guide": args.guide,
        "activation": args.activation,
        "free_bits": args.free_bits,
        "kl_annealing": args.kl_annealing,
        "train_elbo": result.history["train_elbo"][-1],
        "test_elbo": test_elbo,
        "test_elbo_samples": args.elbo_samples,
        "test_nll": -test_ll.mean().item(),
        "test_nll_stderr": (test_ll.std() / len(test_ll) ** 0.5).item() if len(test_ll) > 1 else 0,
        "nll_method": f"IWAE K={args.iwae_k}",
        "iwae_k": args.iwae_k,
        "active_units": active,
        "train_seconds": result.timings.get("train_s", float("nan")),
        "step_ms": result.timings.get("step_ms", float("nan")),
        "eval_seconds": time.perf_counter() - t_eval,
        "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
    }
    print(f"active units per layer: {active}")
    return metrics, samples


def run_vqvae(args, data, x_train, x_test, x_eval, transform, device) -> tuple[dict, torch.Tensor]:
    """Train a VQ-VAE, fit its categorical prior, evaluate; returns metrics and 64 samples."""
    import torch

    from pyrovi.guides import VQEncoder
    from pyrovi.infer import elbo, fit
    from pyrovi.models import VQVAE

    model = VQVAE(
        data.x_dim,
        num_codes=args.num_codes,
        code_dim=args.code_dim,
        num_latents=args.num_latents,
        hidden_dims=tuple(args.hidden),
    ).to(device)
    guide = VQEncoder(model, commitment=args.commitment).to(device)
    init_x = x_train[:1024] if transform is None else transform(x_train[:1024])
    guide.init_codebook(init_x, torch.Generator().manual_seed(args.seed))
    result = fit(
        model,
        guide,
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
        transform=transform,
        seed=args.seed,
        progress=not args.no_progress,
    )
    model.eval()
    guide.eval()
    t_eval = time.perf_counter()
    with torch.no_grad():
        uniform = elbo(model, guide, x_eval).mean().item()
        codes = guide.codes(x_train if transform is None else transform(x_train))
        model.fit_prior(codes)
        learned = elbo(model, guide, x_eval)
        samples = model.sample(64)
    metrics = {
        "num_codes": args.num_codes,
        "code_dim": args.code_dim,
        "num_latents": args.num_latents,
        "hidden": list(args.hidden),
        "commitment": args.commitment,
        "codes_used": int(codes.unique().numel()),
        "train_elbo": result.history["train_elbo"][-1],
        "test_elbo_uniform_prior": uniform,
        "test_elbo": learned.mean().item(),
        "test_nll": -learned.mean().item(),
        "test_nll_stderr": (learned.std() / len(learned) ** 0.5).item() if len(learned) > 1 else 0,
        "nll_method": "-ELBO with fitted categorical prior (deterministic guide: IWAE = ELBO)",
        "train_seconds": result.timings.get("train_s", float("nan")),
        "step_ms": result.timings.get("step_ms", float("nan")),
        "eval_seconds": time.perf_counter() - t_eval,
        "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
    }
    return metrics, samples


def run_rbm(args, data, x_train, x_test, x_eval, transform, device) -> tuple[dict, torch.Tensor]:
    """Train an RBM by CD-k / PCD-k, estimate log Z by AIS; returns metrics and 64 samples."""
    import torch

    from pyrovi.models import RBM, train_rbm

    rbm = RBM(data.x_dim, args.rbm_hidden).to(device)
    with torch.no_grad():
        rbm.visible_bias.copy_(RBM.base_from_data(x_train))
    result = train_rbm(
        rbm,
        x_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.rbm_lr,
        k=args.cd_k,
        persistent=args.persistent,
        seed=args.seed,
        transform=transform,
        progress=not args.no_progress,
    )
    t_eval = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(args.seed)
    ais = rbm.log_partition_ais(
        num_chains=args.ais_chains,
        betas=args.ais_betas,
        base=RBM.base_from_data(x_train),
        generator=gen,
        progress=not args.no_progress,
    )
    with torch.no_grad():
        ll = rbm.log_prob(x_eval, ais.log_z)
        samples = rbm.visible_mean(rbm.hidden_probs(rbm.sample(64, steps=1000, generator=gen)))
    metrics = {
        "rbm_hidden": args.rbm_hidden,
        "training": f"{'PCD' if args.persistent else 'CD'}-{args.cd_k}",
        "rbm_lr": args.rbm_lr,
        "log_z": ais.log_z,
        "log_z_std": ais.log_z_std,
        "ais_chains": args.ais_chains,
        "ais_betas": args.ais_betas,
        "ais_ess": ais.ess,
        "ais_seconds": ais.seconds,
        "test_nll": -ll.mean().item(),
        "test_nll_stderr": (ll.std() / len(ll) ** 0.5).item() if len(ll) > 1 else 0,
        "nll_method": f"F(v) + log Z (AIS, {args.ais_chains} chains, {args.ais_betas} betas)",
        "train_seconds": result.timings["total_s"],
        "step_ms": result.timings["step_ms"],
        "eval_seconds": time.perf_counter() - t_eval,
        "history": {k: [finite_or_none(v) for v in vals] for k, vals in result.history.items()},
    }
    print(f"log Z = {ais.log_z:.3f} ± {ais.log_z_std:.3f} (AIS, ESS {ais.ess:.1f})")
    return metrics, samples


RUNNERS = {"hvae": run_hvae, "vqvae": run_vqvae, "rbm": run_rbm}


def main(argv: list[str] | None = None) -> dict:
    """Run the example; ``argv`` defaults to ``sys.argv[1:]``. Returns the metrics."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    if args.free_bits < 0:
        parser.error("--free-bits must be >= 0")
    if args.kl_annealing < 0:
        parser.error("--kl-annealing must be >= 0")

    import pyro
    import torch

    from pyrovi.data import DynamicBinarization, binarize_data
    from pyrovi.diagnostics import plot_image_rows

    device = resolve_device(parser, args)
    torch.set_num_threads(args.threads)
    out = Path(args.out.replace("<family>", args.family))
    out.mkdir(parents=True, exist_ok=True)

    data = load_data_or_exit(parser, args)
    _defaults(args, small=data.x_dim <= 64)
    x_train = data.x_train.to(device)
    x_test = binarize_data(data, seed=0).x_test.to(device)
    x_eval = x_test[: args.eval_subset] if args.eval_subset else x_test
    transform = DynamicBinarization(torch.Generator(device=device).manual_seed(args.seed))
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()
    print(
        f"{data.name}: {len(x_train)} train / {len(x_test)} test images ({len(x_eval)} for the "
        f"NLL); family={args.family}, epochs={args.epochs}, device={device}"
    )
    metrics, samples = RUNNERS[args.family](args, data, x_train, x_test, x_eval, transform, device)
    metrics = {
        "family": args.family,
        "dataset": data.name,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "n_eval": len(x_eval),
        "x_dim": data.x_dim,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "binarize": "dynamic (train), static seed 0 (test)",
        **metrics,
    }
    print(f"test NLL {metrics['test_nll']:.3f} nats/image ({metrics['nll_method']})")
    print(
        f"training {metrics['train_seconds']:.1f} s ({metrics['step_ms']:.2f} ms/step), "
        f"evaluation {metrics['eval_seconds']:.1f} s"
    )
    h, w = data.image_shape
    plot_image_rows(
        [("", samples.reshape(-1, h, w).cpu())],
        f"{data.name}: {args.family} samples",
        cols=16,
        path=out / "samples.png",
    )
    with open(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=2)
    print_written(out, ["metrics.json", "samples.png"])
    return metrics


if __name__ == "__main__":
    main()
