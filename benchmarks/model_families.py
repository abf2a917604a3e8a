"""Test NLL of the model families of issue 11 on binarized Fashion-MNIST (or digits).

Each named run trains one model with ``examples/model_families.py`` and records its metrics,
wall times and thread count; results are merged into ``--json`` (one entry per run name), so the
runs can be made one at a time::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/model_families.py --runs hvae2-topdown
    OMP_WAIT_POLICY=PASSIVE python benchmarks/model_families.py --runs vae1 rbm-pcd vqvae
    python benchmarks/model_families.py --list

Data: dynamic binarization of the 60k training images, one fixed binarization (seed 0) of the
test images; the NLL is evaluated on the first ``--eval-subset`` test images (IWAE K=5000 on
all 10k images does not fit a CPU budget). Literature anchors (binarized MNIST, not Fashion-MNIST,
3280 passes): Burda et al. (2015) one-layer VAE 86.76, two-layer VAE 85.33, two-layer IWAE 82.90
nats.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--batch-size", "100", "--no-progress", "--threads", "1"]
RUNS: dict[str, list[str]] = {
    # Burda et al. one-layer architecture 784-200-200-50 (same code path, L = 1)
    "vae1": ["--family", "hvae", "--layers", "1", "--z-dims", "50", "--guide", "bottom-up"],
    # Burda et al. two-layer architecture 784-200-200-100-100-50
    "hvae2-topdown": ["--family", "hvae", "--layers", "2", "--z-dims", "100,50"],
    "hvae2-bottomup": [
        "--family",
        "hvae",
        "--layers",
        "2",
        "--z-dims",
        "100,50",
        "--guide",
        "bottom-up",
    ],
    "hvae2-topdown-freebits": [
        "--family",
        "hvae",
        "--layers",
        "2",
        "--z-dims",
        "100,50",
        "--free-bits",
        "0.05",
        "--kl-annealing",
        "5",
    ],
    "vqvae": ["--family", "vqvae", "--hidden", "512,256"],
    "rbm-pcd": ["--family", "rbm", "--persistent", "--rbm-lr", "0.01"],
    "rbm-cd1": ["--family", "rbm", "--rbm-lr", "0.01"],
}


def _load_example():
    path = ROOT / "examples" / "model_families.py"
    spec = importlib.util.spec_from_file_location("pyrovi_example_model_families", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    """Run the named configurations and merge their metrics into the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=["vae1"], help=f"any of {list(RUNS)}")
    p.add_argument("--list", action="store_true", help="print the configurations and exit")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--iwae-k", type=int, default=5000)
    p.add_argument("--eval-subset", type=int, default=1000)
    p.add_argument("--ais-betas", type=int, default=10000)
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "model_families.json"))
    p.add_argument("--out", default="outputs/model_families_bench")
    args = p.parse_args(argv)
    if args.list:
        for name, extra in RUNS.items():
            print(name, " ".join(extra))
        return {}
    unknown = [r for r in args.runs if r not in RUNS]
    if unknown:
        p.error(f"unknown runs {unknown}; choose from {list(RUNS)}")
    torch.set_num_threads(1)
    example = _load_example()
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault("runs", {})
    for name in args.runs:
        argv_run = [
            *RUNS[name],
            *COMMON,
            "--dataset",
            args.dataset,
            "--epochs",
            str(args.epochs),
            "--iwae-k",
            str(args.iwae_k),
            "--eval-subset",
            str(args.eval_subset),
            "--ais-betas",
            str(args.ais_betas),
            "--ais-chains",
            str(args.ais_chains),
            "--seed",
            str(args.seed),
            "--out",
            str(Path(args.out) / name),
        ]
        print(f"== {name}: {' '.join(argv_run)}", flush=True)
        t0 = time.perf_counter()
        metrics = example.main(argv_run)
        metrics.pop("history", None)
        metrics["wall_seconds"] = time.perf_counter() - t0
        metrics["command"] = "python examples/model_families.py " + " ".join(argv_run)
        results["runs"][name] = metrics
        results["environment"] = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
        }
        results["anchors_binarized_mnist_nats"] = {
            "burda2015_vae_1layer": 86.76,
            "burda2015_vae_2layer": 85.33,
            "burda2015_iwae_2layer_k50": 82.90,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        print(
            f"{name}: test NLL {metrics['test_nll']:.2f} ± {metrics['test_nll_stderr']:.2f} nats "
            f"({metrics['nll_method']}, {metrics['n_eval']} test images), "
            f"wall {metrics['wall_seconds']:.0f} s",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
