"""A whole study's wall time, as its user waits for it: `cnnlab run` from launch to report.

    .venv/bin/python benchmarks/study_time.py [--study seed] [--seeds 1] [--epochs 12]
        [--models model-2,model-3] [--device cuda] [--jobs N] [--stack-seeds]
        [--precision bf16] [--train-limit N] [--notebook PATH]

Runs `python -m cnnlab run STUDY` into a fresh directory, in its own interpreter, and times it
from launch to exit: interpreter start, imports, data loading, training, validation,
checkpoints and the HTML report all count. Then it reads the study's store and prints:

- the wall time, against the performance issue's target where this setup has one (the seed
  study, 12 epochs on all the data: 60 s for one seed, 180 s for five, on one H100);
- per model, the seconds its runs recorded against the baseline: the seconds the seed
  notebook's own Keras log printed for the same model's first `--epochs` epochs, times the
  seeds (the notebook's author's GPU, Keras 2; it logged model-2 ... model-12, not the
  reference or model-1, so those two have no baseline). Keras 2 printed an epoch's time after
  its validation, so both sides count validation. Not comparable with `--train-limit`;
- the training work (3 x the textbook forward FLOPs per image x images x epochs, zero padding
  included) per wall second, against the device's measured peak.

The notebook is looked for at ../shared/seed/ beside the repository (our machines); elsewhere
pass `--notebook`, or go without the baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import cnnlab
from cnnlab.report import report_path
from epoch_time import _gflops, machine_peak  # a sibling script: benchmarks/ is on sys.path

NOTEBOOK = Path(__file__).resolve().parents[2] / "shared/seed/000_b181433f1d032d6e.txt"
NOTEBOOK_EPOCHS = 12
MNIST_TRAIN_IMAGES = 60_000
# The targets for the seed study, 12 epochs, on one H100: seeds -> wall seconds.
SEED_STUDY_TARGETS = {1: 60.0, 5: 180.0}

_HEADING = re.compile(r"Model-(\d+):")
_EPOCH_LINE = re.compile(r"^\s*60000/60000 \[=*\] - (\d+)s ")


def notebook_epoch_seconds(path: Path) -> dict[str, list[int]]:
    """Seconds per epoch as the notebook's Keras progress bars printed them, by preset name.

    A "Model-N: ..." heading opens a model's cells; each finished epoch's line reads
    "60000/60000 [=====] - 11s 184us/step - loss: ...".
    """
    seconds: dict[str, list[int]] = defaultdict(list)
    model = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.search(line)
        if heading and line.lstrip().startswith("▼"):
            model = f"seed/model-{heading.group(1)}"
        epoch = _EPOCH_LINE.match(line)
        if epoch and model is not None:
            seconds[model].append(int(epoch.group(1)))
    return dict(seconds)


def run_study_command(args: argparse.Namespace, directory: Path) -> list[str]:
    command = [sys.executable, "-m", "cnnlab", "run", args.study, "--dir", str(directory)]
    command += ["--seeds", str(args.seeds), "--precision", args.precision, "--quiet"]
    for flag, value in [
        ("--epochs", args.epochs),
        ("--models", args.models),
        ("--device", args.device),
        ("--jobs", args.jobs),
        ("--train-limit", args.train_limit),
    ]:
        if value is not None:
            command += [flag, str(value)]
    if args.stack_seeds:
        command.append("--stack-seeds")
    return command


def device_peaks(device: str) -> dict[str, float]:
    """Measured TFLOP/s per number format: on a GPU a large matrix product (and TF32, which
    cuDNN uses for fp32 convolutions by default); on a CPU the best of torch.mm and oneDNN
    (epoch_time.machine_peak: on AMD CPUs oneDNN beats MKL's sgemm)."""
    if not device.startswith("cuda"):
        measured = machine_peak("bf16")
        return {
            label: max(v for k, v in measured.items() if k.endswith(label)) / 1e3
            for label in ("fp32", "bf16")
        }
    size = 8192
    peaks = {}
    for label, dtype in {"fp32": torch.float32, "bf16": torch.bfloat16}.items():
        peaks[label] = _gpu_matmul_tflops(size, dtype, device)
    allowed = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        peaks["tf32"] = _gpu_matmul_tflops(size, torch.float32, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allowed
    return peaks


def _gpu_matmul_tflops(size: int, dtype: torch.dtype, device: str) -> float:
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)

    def product() -> None:
        a @ b
        torch.cuda.synchronize(device)

    return _gflops(product, 2 * size**3, repeats=10) / 1e3


def resolved_device(requested: str | None) -> str:
    if requested not in (None, "auto"):
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="seed")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="default: the study's")
    parser.add_argument("--models", default=None, help="only these: a,b,...")
    parser.add_argument("--device", default=None)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--stack-seeds", action="store_true")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--dir", type=Path, default=None, help="default: a temporary one")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cnnlab-study-time-") as scratch:
        directory = args.dir or Path(scratch) / "study"
        if directory.exists():
            raise SystemExit(f"{directory} exists: the timing needs a study that starts empty")
        command = run_study_command(args, directory)
        print("$", " ".join(command), flush=True)
        start = time.perf_counter()
        finished = subprocess.run(command, check=False)
        wall = time.perf_counter() - start
        if finished.returncode != 0:
            raise SystemExit(f"cnnlab run exited with {finished.returncode}")
        if not report_path(directory).is_file():
            raise SystemExit(f"no report at {report_path(directory)}")
        runs = cnnlab.study_runs(directory)
    report(args, runs, wall)


def report(args: argparse.Namespace, runs: list, wall: float) -> None:
    not_done = [f"{r.model} seed {r.seed}: {r.status}" for r in runs if r.status != "done"]
    if not_done:
        raise SystemExit("runs not done: " + "; ".join(not_done))
    epochs = runs[0].training["epochs"]
    device = resolved_device(args.device)
    print(
        f"\n{args.study}: {len({r.model for r in runs})} models x {args.seeds} seed(s) x "
        f"{epochs} epochs, {args.precision}, {device} ({device_name(device)}), "
        f"torch {torch.__version__}, jobs {args.jobs or 1}"
        f"{', stacked seeds' if args.stack_seeds else ''}"
    )
    trained = sum(run.seconds or 0.0 for run in runs)
    print(f"wall time, launch to report: {wall:.1f} s (the runs' seconds, summed: {trained:.1f})")
    full_data = args.train_limit is None
    target = SEED_STUDY_TARGETS.get(args.seeds)
    whole_seed_study = args.study == "seed" and epochs == NOTEBOOK_EPOCHS and not args.models
    if whole_seed_study and full_data and target is not None:
        verdict = "met" if wall <= target else "not met"
        print(f"target (one H100): <= {target:.0f} s; {wall / target:.2f} of it: {verdict}")

    print_baseline(args, runs, epochs, full_data)

    images = (args.train_limit or MNIST_TRAIN_IMAGES) * epochs
    work = sum(3 * (run.flops or 0) * images for run in runs)
    achieved = work / wall / 1e12
    shares = ", ".join(
        f"{achieved / peak:.4f} of {name} ({peak:.1f})"
        for name, peak in device_peaks(device).items()
    )
    print(
        f"training work (textbook FLOPs) {work / 1e12:.2f} TFLOP over the wall time: "
        f"{achieved:.3f} TFLOP/s "
        f"= {shares} TFLOP/s peak"
    )


def print_baseline(args: argparse.Namespace, runs: list, epochs: int, full_data: bool) -> None:
    if not args.notebook.is_file():
        print(f"baseline: no notebook at {args.notebook} (pass --notebook)")
        return
    if not full_data:
        print("baseline: not comparable with --train-limit (the notebook trained all images)")
        return
    logged = notebook_epoch_seconds(args.notebook)
    seconds = defaultdict(float)
    seeds = defaultdict(int)
    for run in runs:
        seconds[run.model] += run.seconds or 0.0
        seeds[run.model] += 1
    rows = [
        (model, sum(logged[model][:epochs]) * seeds[model], seconds[model])
        for model in seconds
        if model in logged and len(logged[model]) >= epochs
    ]
    if not rows:
        print("baseline: the notebook logged none of these models")
        return
    print(f"\nper model, {epochs} epochs x seeds: notebook's Keras log (its GPU) against cnnlab")
    if (args.jobs or 1) > 1:
        print(f"(with --jobs {args.jobs} runs overlap, each on a share of the machine)")
    print(f"{'model':<16}{'notebook s':>12}{'cnnlab s':>10}{'ratio':>8}")
    for model, notebook, ours in rows:
        print(f"{model:<16}{notebook:>12.0f}{ours:>10.1f}{ours / notebook:>8.3f}")
    notebook_total = sum(row[1] for row in rows)
    ours_total = sum(row[2] for row in rows)
    ratio = ours_total / notebook_total
    print(f"{'total':<16}{notebook_total:>12.0f}{ours_total:>10.1f}{ratio:>8.3f}")
    unlogged = sorted(set(seconds) - {row[0] for row in rows})
    if unlogged:
        print(f"(no baseline for {', '.join(unlogged)}: the notebook logged no epochs of them)")


if __name__ == "__main__":
    main()
