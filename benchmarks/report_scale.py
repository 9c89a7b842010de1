"""How long the report takes to build for studies of 13, 36 and 200 models.

    .venv/bin/python benchmarks/report_scale.py [--sizes 13,36,200] [--repeats 2]
        [--seeds 2] [--epochs 12] [--data-dir ../shared/data/mnist] [--keep DIR]

Training 200 models takes days, so the studies are generated: real grid specs expanded and
checked by `cnnlab.study.plan_study`, stored through the real store API (claim, setup, one
record per epoch, finish with test metrics and 10,000 test predictions), and a real checkpoint
per run (the model built by `cnnlab.build`, its Keras initial weights moved a little, as a
trained network's would be). Only the figures are made up: accuracy is a function of the grid's
factors plus seed noise, some sigmoid models sit at chance (11.35 %, always the most common
digit), and one run of the first model had its epochs slowed fivefold from the fourth on, as
when another process shares the CPU. The report then builds from the store as for any study.

The sizes are built in turn, `repeats` times (13, 36, 200, 13, 36, 200, ...), so load from
other processes falls on all of them; each keeps its fastest build. Wall and CPU time are both
printed: on a machine shared with other jobs the CPU time is the figure that compares. Ratios
are against the 13-model study, the seed study's size.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cnnlab.store import EpochMetrics, Predictions, TestMetrics, Worker, labels_hash

CHANCE_ACCURACY = 0.1135  # MNIST's most common test digit (1): a model that always says "1"
SLOWED = 5.0  # the disturbed run's epochs take this many times as long
# A grid per size: every combination of the axes is one model.
GRIDS = {
    13: {"depth": [1, 2, 3, 4], "kernel": [3, 5, 7], "bn": [False]},  # 12, + 1 below
    36: {"depth": [1, 2, 3], "kernel": [3, 5, 7], "width": [16, 32], "bn": [False, True]},
    200: {
        "depth": [1, 2, 3, 4, 5],
        "kernel": [3, 5],
        "width": [8, 16, 24, 32, 48],
        "bn": [False, True],
        "activation": ["relu", "sigmoid"],
    },
}


def study_toml(size: int, *, seeds: int, epochs: int) -> str:
    """A grid study of `size` models (13: a 12-model grid plus one plain model)."""
    axes = GRIDS[size]
    width = '"{width}"' if "width" in axes else "32"
    activation = '"{activation}"' if "activation" in axes else '"relu"'
    layer = (
        f'{{ conv = {width}, kernel = "{{kernel}}", activation = {activation}, padding = "same" }}'
    )
    name = "d{depth}-k{kernel}" + ("-w{width}" if "width" in axes else "") + "{bn:-bn}"
    name += "-{activation}" if "activation" in axes else ""
    axes_text = ", ".join(f"{key} = {_toml_list(values)}" for key, values in axes.items())
    extra = "" if size != 13 else DENSE_MODEL
    return f"""name = "scale-{size}"
description = "a generated {size}-model grid for the report's scale benchmark"
dataset = "mnist"
seeds = {seeds}

[training]
epochs = {epochs}
batch_size = 128
validation = 0.1

[[grid]]
name = "{name}"
axes = {{ {axes_text} }}
stem = [{layer}, {{ batchnorm = "{{bn}}" }}, {{ maxpool = 2 }}]
block = [{layer}]
repeat = "{{depth}}"
head = ["flatten", {{ dense = "classes", activation = "softmax" }}]
{extra}"""


DENSE_MODEL = """
[[model]]
name = "dense-only"
layers = [
  "flatten", { dense = 64, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
"""


def _toml_list(values: Iterable[object]) -> str:
    return "[" + ", ".join(_toml_value(value) for value in values) + "]"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def target_accuracy(factors: dict[str, object]) -> float:
    """What the generated model reaches: deeper, wider and batch-normed help; deep sigmoid
    stacks never learn (they stay at the most common digit)."""
    depth = int(factors.get("depth", 1))
    if factors.get("activation") == "sigmoid" and depth >= 3:
        return CHANCE_ACCURACY
    width = int(factors.get("width", 32))
    kernel = int(factors.get("kernel", 3))
    accuracy = 0.975 + 0.003 * min(depth, 3) + 0.002 * math.log2(width / 8) / 2.5
    accuracy += 0.002 * (factors.get("bn") is True) - 0.001 * (kernel == 7)
    accuracy -= 0.01 * (factors.get("activation") == "sigmoid")
    return min(accuracy, 0.995)


def make_study(
    directory: Path, *, size: int, seeds: int = 2, epochs: int = 12, data_dir: Path | None = None
) -> Path:
    """Generate a finished study of `size` models in `directory` (see the module's docstring)."""
    from cnnlab import study  # the generator trains nothing, but plans with the real runner

    directory.mkdir(parents=True, exist_ok=True)
    spec_file = directory.parent / f"{directory.name}.toml"
    spec_file.write_text(study_toml(size, seeds=seeds, epochs=epochs))
    plan = study.plan_study(spec_file, directory=directory, data_dir=data_dir)
    labels = np.asarray(plan.dataset.test_labels)
    worker = Worker.current("generator")
    with study.open_study_store(plan.directory) as store:
        study.register_runs(store, plan)
        for index, task in enumerate(plan.tasks):
            store_run(store, worker, task, labels, epochs=epochs, disturbed=index == 0)
    return plan.directory


def store_run(store, worker, task, labels: np.ndarray, *, epochs: int, disturbed: bool) -> None:
    """One generated run, through the same calls a training worker makes."""
    rng = np.random.default_rng([task.seed, task.params, task.flops])
    run = store.claim_next(worker, keys=[task.key])
    device, versions = "cpu (generated)", {"cnnlab": "generated"}
    store.record_setup(
        task.key, worker, device=device, versions=versions, params=task.params, flops=task.flops
    )
    final = target_accuracy(dict(task.model.factors))
    if final > CHANCE_ACCURACY:
        final = min(0.998, final + rng.normal(0, 0.0015))
    steady = 1.0 + task.flops / 4e7  # seconds per epoch, about what our CPU takes
    checkpoint = write_checkpoint(task, epochs, rng)
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-1.2 * epoch)
        accuracy = CHANCE_ACCURACY + (final - CHANCE_ACCURACY) * progress
        loss = -math.log(max(accuracy, 1e-3)) * 1.3 if final > CHANCE_ACCURACY else 2.3010
        seconds = steady * (1 + abs(rng.normal(0, 0.02)))
        seconds *= SLOWED if disturbed and epoch >= 4 else 1.0
        metrics = EpochMetrics(
            epoch=epoch,
            loss=loss * (1 + rng.normal(0, 0.01)),
            accuracy=accuracy * (1 - abs(rng.normal(0, 0.002))),
            val_loss=loss * 1.05,
            val_accuracy=accuracy * (1 - abs(rng.normal(0, 0.003))),
            seconds=seconds,
            images_per_second=54000 / seconds,
        )
        path = checkpoint if epoch == epochs else None
        store.record_epoch(task.key, worker, metrics, checkpoint=path)
    predicted = predictions(labels, final, rng)
    accuracy = float(np.mean(predicted == labels))
    store.finish_run(
        run.key,
        worker,
        status="done",
        test=TestMetrics(loss=-math.log(max(accuracy, 1e-3)) * 1.3, accuracy=accuracy),
        predictions=Predictions(predicted, labels_hash(labels)),
        seconds=steady * epochs,
    )


def predictions(labels: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Predicted classes right on about `accuracy` of the images; at chance, always a "1"."""
    if accuracy <= CHANCE_ACCURACY:
        return np.ones_like(labels)
    wrong = rng.random(labels.shape) > accuracy
    shifted = (labels + rng.integers(1, 10, labels.shape)) % 10
    return np.where(wrong, shifted, labels)


def write_checkpoint(task, epochs: int, rng: np.random.Generator) -> str:
    """The model's Keras initial weights, moved a little as training moves them, saved as
    cnnlab.checkpoint names them; returns the path relative to the study."""
    import torch
    from safetensors.torch import save_file

    from cnnlab.build import build_model

    model = build_model(task.model, (28, 28, 1), 10, generator=torch.Generator().manual_seed(0))
    tensors = {}
    for name, value in model.state_dict().items():
        noise = torch.from_numpy(rng.normal(0, 0.02, tuple(value.shape)).astype(np.float32))
        tensors[f"model/{name}"] = (value.float() + noise).contiguous()
    task.run_dir.mkdir(parents=True, exist_ok=True)
    path = task.run_dir / f"epoch-{epochs:04d}.safetensors"
    save_file(tensors, str(path))
    return str(path.relative_to(task.run_dir.parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="13,36,200")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the studies here (and reuse them later)"
    )
    args = parser.parse_args()
    from cnnlab.report import build_report

    root = args.keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    sizes = [int(size) for size in args.sizes.split(",")]
    studies = {}
    for size in sizes:
        started = time.perf_counter()
        if (root / f"scale-{size}" / "store.sqlite").is_file():  # kept from an earlier run
            studies[size] = root / f"scale-{size}"
            continue
        studies[size] = make_study(
            root / f"scale-{size}",
            size=size,
            seeds=args.seeds,
            epochs=args.epochs,
            data_dir=args.data_dir,
        )
        print(
            f"generated {size} models x {args.seeds} seeds in {time.perf_counter() - started:.1f} s"
        )
    best: dict[int, tuple[float, float]] = {}  # size -> (wall, CPU) seconds of the fastest
    for repeat in range(args.repeats):
        for size in sizes:
            started, cpu = time.perf_counter(), time.process_time()
            page = build_report(studies[size], data_dir=args.data_dir)
            took = (time.perf_counter() - started, time.process_time() - cpu)
            best[size] = min(best.get(size, (math.inf, math.inf)), took)
            mb = page.stat().st_size / 1e6
            print(
                f"repeat {repeat + 1}: {size} models: {took[0]:.1f} s wall, {took[1]:.1f} s CPU, "
                f"report.html {mb:.1f} MB"
            )
    print(
        f"\nCPU: {cpu_name()}; Python {platform.python_version()}; load average now "
        f"{os.getloadavg()[0]:.1f}; fastest of {args.repeats} builds (one process)"
    )
    base = sizes[0]
    for size in sizes:
        wall, cpu = best[size]
        print(
            f"{size:4d} models: {wall:6.1f} s wall, {cpu:6.1f} s CPU ({cpu / size:.2f} s CPU per "
            f"model), CPU {cpu / best[base][1]:.2f}x the {base}-model build"
        )
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
