"""Training S seeds of a model stacked (cnnlab.train_seeds) against S separate runs.

    .venv/bin/python benchmarks/multi_seed.py [--models seed/reference seed/model-2]
        [--seeds 4] [--images 3840] [--device cuda] [--precision bf16] [--repeats 2]

Both sides are the library's real training calls on the same MNIST slice (one epoch, no
validation, batch 128): S x `cnnlab.train_model` against one `cnnlab.train_seeds`. Only the
training time counts (data setup and the test pass are left out); a warm-up run of each side
comes first and the best of `--repeats` alternating runs is kept. Prints images/s of both and
the gain (> 1: stacking pays).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

import cnnlab

BATCH = 128


def separate_seconds(spec, dataset, seeds, options) -> float:
    runs = [cnnlab.train_model(spec, dataset, seed=seed, **options) for seed in seeds]
    return sum(run.timings.train_seconds for run in runs)


def stacked_seconds(spec, dataset, seeds, options) -> float:
    runs = cnnlab.train_seeds(spec, dataset, seeds=seeds, **options)
    statuses = {run.status for run in runs}
    if statuses != {"done"}:
        raise SystemExit(f"{spec.name}: stacked runs ended {statuses}")
    return runs[0].timings.train_seconds


def measure(spec, dataset, seeds, options, repeats: int) -> tuple[float, float]:
    """Best-of-`repeats` training seconds (separate, stacked), after one warm-up of each."""
    warm = {**options, "train_limit": 2 * BATCH}
    separate_seconds(spec, dataset, seeds, warm)
    stacked_seconds(spec, dataset, seeds, warm)
    best_separate = best_stacked = float("inf")
    for _ in range(repeats):
        best_separate = min(best_separate, separate_seconds(spec, dataset, seeds, options))
        best_stacked = min(best_stacked, stacked_seconds(spec, dataset, seeds, options))
    return best_separate, best_stacked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["seed/reference", "seed/model-2"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--images", type=int, default=30 * BATCH)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    dataset = cnnlab.load_dataset("mnist", data_dir=os.environ.get("CNNLAB_DATA_DIR"))
    seeds = list(range(args.seeds))
    options = {
        "epochs": 1,
        "batch_size": BATCH,
        "validation": 0,
        "train_limit": args.images,
        "device": args.device,
        "progress": "quiet",
        "precision": args.precision,
        "threads": args.threads,
    }
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    print(
        f"{args.seeds} seeds, {args.images} images x 1 epoch, batch {BATCH}, {args.precision}, "
        f"{device} ({name or platform.machine()}), {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"{'model':<16}{'separate img/s':>16}{'stacked img/s':>16}{'gain':>8}")
    for model in args.models:
        spec = cnnlab.load_model(model)
        separate, stacked = measure(spec, dataset, seeds, options, args.repeats)
        images = args.images * args.seeds
        print(
            f"{model:<16}{images / separate:>16.0f}{images / stacked:>16.0f}"
            f"{separate / stacked:>8.2f}"
        )


if __name__ == "__main__":
    main()
