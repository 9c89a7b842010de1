"""Training images/s with augmentation (random crop after padding + horizontal flip) against
the same training without it.

    .venv/bin/python benchmarks/augment_throughput.py [--models seed/reference seed/model-2]
        [--images 6000] [--repeats 3] [--device cpu] [--threads N]

Both sides are `cnnlab.train_model` on the same MNIST slice (one epoch, no validation, batch
128, seed 0); only the training time counts (`timings.train_seconds`: data setup and the test
pass are left out). The sides alternate A/B/A/B after a warm-up of each, so drift on a shared
machine hits both; the best of `--repeats` is kept. Prints images/s of both sides and the ratio
(augmented / plain; >= 0.90 is the goal), with the CPU named.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

import cnnlab
from cnnlab.spec import TrainingSpec

AUGMENT = ({"random_crop": 28, "pad": 4}, {"random_flip": "horizontal"})  # the CIFAR recipe


def train_seconds(spec, dataset, training: TrainingSpec, device, threads) -> float:
    result = cnnlab.train_model(
        spec, dataset, training=training, device=device, threads=threads, progress="quiet"
    )
    if result.status != "done":
        raise SystemExit(f"{spec.name}: {result.status} ({result.reason})")
    return result.timings.train_seconds


def measure(spec, dataset, images: int, repeats: int, device, threads) -> tuple[float, float]:
    """Best-of-`repeats` images/s (plain, augmented), interleaved, after a warm-up of each."""
    plain = TrainingSpec(epochs=1, validation=0.0, train_limit=images)
    augmented = plain.replace(augment=AUGMENT)
    for training in (plain, augmented):
        train_seconds(spec, dataset, training.replace(train_limit=256), device, threads)
    best = {"plain": float("inf"), "augmented": float("inf")}
    for _ in range(repeats):
        best["plain"] = min(best["plain"], train_seconds(spec, dataset, plain, device, threads))
        best["augmented"] = min(
            best["augmented"], train_seconds(spec, dataset, augmented, device, threads)
        )
    return images / best["plain"], images / best["augmented"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["seed/reference", "seed/model-2"])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    dataset = cnnlab.load_dataset("mnist", data_dir=args.data_dir)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"{'model':<16} {'plain img/s':>12} {'crop+flip img/s':>16} {'ratio':>6}")
    for name in args.models:
        spec = cnnlab.load_model(name)
        plain, augmented = measure(
            spec, dataset, args.images, args.repeats, args.device, args.threads
        )
        print(f"{name:<16} {plain:>12,.0f} {augmented:>16,.0f} {augmented / plain:>6.3f}")


if __name__ == "__main__":
    main()
