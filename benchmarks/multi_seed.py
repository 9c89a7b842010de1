"""Training S seeds of a model stacked (cnnlab.train_seeds) against S separate runs.

    .venv/bin/python benchmarks/multi_seed.py [--models seed/reference seed/model-2]
        [--seeds 4] [--images 3840] [--device cuda] [--precision bf16] [--repeats 2]

Both sides are the library's real training calls on the same MNIST slice (one epoch, no
validation, batch 128): S x `cnnlab.train_model` against one `cnnlab.train_seeds`. Only the
training time counts (data setup and the test pass are left out); a warm-up run of each side
comes first and the best of `--repeats` alternating runs is kept. Prints images/s of both, the
gain (> 1: stacking pays) and each side's fraction of the device's measured peak (training work
counted as epoch_time.py counts it: 3 x forward FLOPs over the convolutions' real taps).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

import cnnlab
from epoch_time import training_gflop_per_step  # sibling scripts: benchmarks/ is on sys.path
from study_time import device_peaks

BATCH = 128


def separate_seconds(spec, dataset, seeds, options) -> float:
    runs = [cnnlab.train_model(spec, dataset, seed=seed, **options) for seed in seeds]
    return sum(run.timings.train_seconds for run in runs)


def stacked_seconds(spec, dataset, seeds, options) -> float:
    runs = cnnlab.train_seeds(spec, dataset, seeds=seeds, **options)
    statuses = {run.status for run in runs}
    if statuses != {"done"}:
        raise SystemExit(f"{spec.name}: stacked runs ended {statuses}")
    # Each stacked run records its share (1/S) of the group's time: they sum to the group's.
    return sum(run.timings.train_seconds for run in runs)


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
    peak = device_peaks(device)["bf16" if args.precision == "bf16" else "fp32"]
    print(f"measured {args.precision} peak: {peak:.2f} TFLOP/s")
    header = ("separate img/s", "stacked img/s", "gain", "sep. of peak", "stk. of peak")
    print(f"{'model':<16}" + "".join(f"{h:>16}" for h in header))
    for model in args.models:
        spec = cnnlab.load_model(model)
        separate, stacked = measure(spec, dataset, seeds, options, args.repeats)
        images = args.images * args.seeds
        work = training_gflop_per_step(spec, batch=1) * images / 1e3  # TFLOP
        figures = (
            f"{images / separate:.0f}",
            f"{images / stacked:.0f}",
            f"{separate / stacked:.2f}",
            f"{work / separate / peak:.3f}",
            f"{work / stacked / peak:.3f}",
        )
        print(f"{model:<16}" + "".join(f"{f:>16}" for f in figures))


if __name__ == "__main__":
    main()
