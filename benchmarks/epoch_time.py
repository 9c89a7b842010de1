"""Seconds per training epoch: cnnlab against Keras 3 (TensorFlow, and torch) on this machine.

    .venv/bin/python benchmarks/epoch_time.py [--models seed/reference,seed/model-2]
        [--steps 60] [--warmup 15] [--repeats 3] [--keras-python /work/kerasenv/bin/python]
        [--whole-epochs 3] [--precision bf16]
        [--keras-backends tensorflow,tensorflow+mixed_bfloat16]

An MNIST epoch is 469 steps of batch 128 (60,000 images). Each side trains `warmup + steps`
steps of the real training loop on real MNIST (cnnlab: `train_model`; Keras: `model.fit`) and
stamps the clock after every batch; steps after the warmup are timed and scaled to 469. Two
estimates are printed: the mean over the timed steps, and the fastest 10-step stretch (robust
to other processes sharing the CPU). The sides alternate model by model, `repeats` times, and
each estimate keeps its best repeat. Keras runs in its own interpreter (`--keras-python`), so
cnnlab never depends on it; Keras on torch borrows this venv's torch through `--extra-path`.
A backend written `BACKEND+POLICY` runs Keras under that dtype policy: `tensorflow+mixed_bfloat16`
is Keras's own mixed precision, the fair peer of cnnlab's `--precision bf16` (and is added to
the backends by default with `--precision bf16`).

With `--whole-epochs N` each side instead trains N whole epochs as the seed study does
(60,000 images, validation on the 10,000 test images after each epoch; cnnlab also writes its
checkpoints) and the wall time of epochs 2..N is what is compared: everything a user waits for,
the validation, the checkpoints and any idling between epochs included. Also printed: how long
the training call takes to return after its last epoch (Keras's fit() sometimes idles there).

Also printed (step mode): training GFLOP/s against the machine's measured peak (the best of a big
torch.mm, i.e. MKL, and a 1x1 convolution, i.e. oneDNN, which on AMD CPUs beats MKL's sgemm).
Training work = 3 x the forward FLOPs of `cnnlab summary` (forward, input gradient, weight
gradient), less the multiply-adds with 'same' padding's zeros, which oneDNN skips (about 30 %
of a 7x7 model's textbook count): the work the hardware really does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import site
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from cnnlab.data import Dataset, load_dataset
from cnnlab.optim import resolve_optimizer
from cnnlab.shapes import same_padding
from cnnlab.spec import Conv2D, ModelSpec, load_model
from cnnlab.summary import summarize
from cnnlab.train import train_model

EPOCH_STEPS = 469  # ceil(60000 / 128)
CHUNK = 10  # steps per stretch for the "fastest stretch" estimate
MODELS = "seed/reference,seed/model-2,seed/model-3,seed/model-10"
KERAS_SCRIPT = Path(__file__).with_name("keras_epoch.py")
DEFAULT_KERAS_PYTHON = "/work/kerasenv/bin/python"
KERAS_MIXED = "tensorflow+mixed_bfloat16"  # Keras-TF under its own mixed-precision policy


@dataclass(frozen=True)
class Timing:
    """Seconds per step of one side on one model: mean of the timed steps, fastest stretch."""

    mean: float
    fastest: float


class StepClock:
    """A cnnlab progress reporter that only stamps the clock after each batch."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def update(self, step: int, running: object) -> None:
        self.stamps.append(time.perf_counter())

    def end_epoch(self, record: object) -> None:
        pass

    def close(self) -> None:
        pass


def steady_timing(stamps: list[float], warmup: int) -> Timing:
    """Per-step seconds after `warmup` steps: overall mean, and the best CHUNK-step stretch."""
    steps = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:], strict=True)]
    stretches = [statistics.fmean(steps[i : i + CHUNK]) for i in range(0, len(steps) - CHUNK + 1)]
    return Timing(mean=statistics.fmean(steps), fastest=min(stretches))


@dataclass(frozen=True)
class WholeEpochs:
    """Seconds per whole epoch after the first, from the last epoch's end to the return, and
    the longest wait for one batch after the first epoch."""

    per_epoch: float
    tail: float
    longest_batch_wait: float


def whole_epochs(stamps: list[float], returned: float, longest_batch_wait: float) -> WholeEpochs:
    """From the clock at each epoch's end and at the training call's return."""
    per_epoch = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return WholeEpochs(per_epoch, returned - stamps[-1], longest_batch_wait)


class BatchClock(StepClock):
    """Stamps each epoch's start and each batch's end, epoch by epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[list[float]] = []

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs.append([time.perf_counter()])

    def update(self, step: int, running: object) -> None:
        self.epochs[-1].append(time.perf_counter())

    def longest_wait(self) -> float:
        """After the first epoch: the longest wait for a batch, from its epoch's start or the
        batch before."""
        return max(
            b - a for clock in self.epochs[1:] for a, b in zip(clock[:-1], clock[1:], strict=True)
        )


def time_cnnlab_epochs(spec: ModelSpec, mnist: Dataset, epochs: int, precision: str) -> WholeEpochs:
    """`train_model` as a study runs it: whole epochs, the test set as validation, checkpoints."""
    stamps: list[float] = []
    clock = BatchClock()
    with tempfile.TemporaryDirectory() as run_dir:
        train_model(
            spec,
            mnist,
            epochs=epochs,
            validation="test",
            run_dir=run_dir,
            progress=clock,
            precision=precision,
            on_epoch=lambda record: stamps.append(time.perf_counter()),
        )
        returned = time.perf_counter()
    return whole_epochs(stamps, returned, clock.longest_wait())


def time_cnnlab(spec: ModelSpec, mnist: Dataset, steps: int, warmup: int, precision: str) -> Timing:
    """The real `train_model` loop for `warmup + steps` steps; the test set shrunk to one batch."""
    small_test = dataclasses.replace(
        mnist, test_images=mnist.test_images[:128], test_labels=mnist.test_labels[:128]
    )
    clock = StepClock()
    train_model(
        spec,
        small_test,
        epochs=1,
        train_limit=(warmup + steps) * 128,
        validation=0.0,
        progress=clock,
        precision=precision,
    )
    return steady_timing(clock.stamps, warmup)


def keras_model_json(spec: ModelSpec) -> dict:
    """The spec as Keras layer arguments, with the optimiser's Keras parameters resolved."""
    optimizer = resolve_optimizer(spec.optimizer)
    return {
        "name": spec.name,
        "layers": [
            {"type": type(layer).__name__, **dataclasses.asdict(layer)} for layer in spec.layers
        ],
        "optimizer": {"name": optimizer.name, "params": optimizer.kwargs()},
    }


def time_keras(
    python: str,
    backend: str,
    spec: ModelSpec,
    data_dir: Path,
    steps: int,
    warmup: int,
    epochs: int = 0,
) -> Timing | WholeEpochs | str:
    """Keras's fit() in its own interpreter, over steps or (epochs > 0) whole epochs; a reason
    string when it cannot run."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(keras_model_json(spec), handle)
    command = [python, str(KERAS_SCRIPT), handle.name, "--data-dir", str(data_dir)]
    command += (
        ["--epochs", str(epochs)] if epochs else ["--steps", str(steps), "--warmup", str(warmup)]
    )
    backend, _, policy = backend.partition("+")
    if policy:
        command += ["--policy", policy]
    if backend == "torch":
        command += ["--extra-path", site.getsitepackages()[0]]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return f"failed: {last_line}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if epochs:
        return whole_epochs(
            result["epoch_stamps"], result["returned"], result["longest_batch_wait"]
        )
    return steady_timing(result["stamps"], warmup)


def training_gflop_per_step(spec: ModelSpec, batch: int = 128) -> float:
    """3 x forward FLOPs, each Conv2D's counted over its real (unpadded) taps only."""
    rows = summarize(spec, (28, 28, 1), 10).rows
    inputs = [(28, 28, 1), *(row.output_shape for row in rows[:-1])]
    flops = 0.0
    for layer, row, shape in zip(spec.layers, rows, inputs, strict=True):
        real = 1.0
        if isinstance(layer, Conv2D) and layer.padding == "same":
            real = _real_taps(shape[0], layer.kernel_size[0], layer.strides[0]) * _real_taps(
                shape[1], layer.kernel_size[1], layer.strides[1]
            )
        flops += row.flops * real
    return 3 * flops * batch / 1e9


def _real_taps(size: int, kernel: int, stride: int) -> float:
    """Fraction of a 'same' convolution's taps along one axis that land on the image."""
    before, _ = same_padding(size, kernel, stride)
    outputs = -(-size // stride)
    inside = sum(
        sum(0 <= o * stride - before + t < size for t in range(kernel)) for o in range(outputs)
    )
    return inside / (outputs * kernel)


def machine_peak(precision: str = "fp32") -> dict[str, float]:
    """Measured GFLOP/s of MKL's sgemm (torch.mm) and oneDNN (a 1x1 convolution), in fp32 and,
    for the bf16 mode, in bf16 too: the peak that mode is held against."""
    peaks = _peaks_in(torch.float32, "fp32")
    if precision == "bf16":
        peaks.update(_peaks_in(torch.bfloat16, "bf16"))
    return peaks


def _peaks_in(dtype: torch.dtype, label: str) -> dict[str, float]:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    x = torch.randn(8, 1024, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(1024, 1024, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return {
        f"torch.mm {label}": _gflops(lambda: torch.mm(a, b), 2 * 2048**3),
        f"oneDNN 1x1 conv {label}": _gflops(lambda: torch.conv2d(x, w), 2 * 8 * 32 * 32 * 1024**2),
    }


def _gflops(work, flops: float, repeats: int = 30) -> float:
    for _ in range(3):
        work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def run(args: argparse.Namespace) -> dict:
    """Both sides model by model, alternating, `repeats` times; every repeat is kept. Steps, or
    whole epochs with `--whole-epochs`; the machine's peak only for steps."""
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    sides = ["cnnlab"] + [f"keras-{b}" for b in args.keras_backends if args.keras_python]
    results: dict[str, dict[str, list]] = {m: {s: [] for s in sides} for m in args.models}
    for _ in range(args.repeats):
        for name in args.models:
            spec = load_model(name)
            if args.whole_epochs:
                timing = time_cnnlab_epochs(spec, mnist, args.whole_epochs, args.precision)
            else:
                timing = time_cnnlab(spec, mnist, args.steps, args.warmup, args.precision)
            results[name]["cnnlab"].append(timing)
            for backend in args.keras_backends if args.keras_python else ():
                timing = time_keras(
                    args.keras_python,
                    backend,
                    spec,
                    args.data_dir,
                    args.steps,
                    args.warmup,
                    args.whole_epochs,
                )
                results[name][f"keras-{backend}"].append(timing)
    outcome = {"results": results, "environment": environment(args)}
    if not args.whole_epochs:
        outcome["peak"] = machine_peak(args.precision)
    return outcome


def report_whole_epochs(outcome: dict) -> list[dict]:
    """One row per model and side: best and median s/epoch of the repeats, ratio of the
    medians to Keras-TF's, and the longest wait for the training call to return."""
    rows = []
    for name, sides in outcome["results"].items():
        keras_tf = [t for t in sides.get("keras-tensorflow", []) if isinstance(t, WholeEpochs)]
        for side, timings in sides.items():
            measured = [t for t in timings if isinstance(t, WholeEpochs)]
            row: dict = {"model": name, "side": side}
            if not measured:
                row["note"] = timings[0] if timings else "not run"
                rows.append(row)
                continue
            epoch = statistics.median(t.per_epoch for t in measured)
            row.update(
                epoch_seconds_median=epoch,
                epoch_seconds_best=min(t.per_epoch for t in measured),
                tail_seconds_max=max(t.tail for t in measured),
                longest_batch_wait_max=max(t.longest_batch_wait for t in measured),
            )
            if keras_tf:
                row["ratio_median"] = epoch / statistics.median(t.per_epoch for t in keras_tf)
            rows.append(row)
    return rows


def print_whole_epochs(rows: list[dict], outcome: dict) -> None:
    env = outcome["environment"]
    table = Table(
        title=f"Seconds per whole MNIST epoch (epochs 2..{env['whole_epochs']}: 469 steps, "
        "validation on the test set, checkpoints), over "
        f"{env['repeats']} repeat(s)"
    )
    columns = ("model", "side", "s/epoch (median)", "s/epoch (best)", "ratio vs Keras-TF")
    for column in (*columns, "longest wait for a batch", "return after last epoch"):
        table.add_column(column, justify="left" if column in ("model", "side") else "right")
    for row in rows:
        if "note" in row:
            table.add_row(row["model"], row["side"], row["note"], "", "", "", "")
            continue
        table.add_row(
            row["model"],
            row["side"],
            f"{row['epoch_seconds_median']:.1f}",
            f"{row['epoch_seconds_best']:.1f}",
            f"{row['ratio_median']:.2f}" if "ratio_median" in row else "-",
            f"{row['longest_batch_wait_max']:.2f} s",
            f"{row['tail_seconds_max']:.1f} s",
        )
    console = Console(width=max(140, Console().width))
    console.print(table)
    console.print(f"environment: {env}")


def best(timings: list) -> Timing | str:
    """The best repeat of each estimate, or the first failure's reason."""
    measured = [t for t in timings if isinstance(t, Timing)]
    if not measured:
        return timings[0] if timings else "not run"
    return Timing(mean=min(t.mean for t in measured), fastest=min(t.fastest for t in measured))


def report(outcome: dict, args: argparse.Namespace) -> list[dict]:
    """One row per model and side: s/epoch by both estimates, ratio to Keras-TF, GFLOP/s."""
    peak = max(outcome["peak"].values())
    rows = []
    for name, sides in outcome["results"].items():
        train_gflop = training_gflop_per_step(load_model(name))
        baseline = best(sides.get("keras-tensorflow", []))
        mixed = best(sides.get(f"keras-{KERAS_MIXED}", []))
        for side, timings in sides.items():
            timing = best(timings)
            row = {"model": name, "side": side}
            if isinstance(timing, Timing):
                row.update(
                    epoch_seconds_mean=timing.mean * EPOCH_STEPS,
                    epoch_seconds_fastest=timing.fastest * EPOCH_STEPS,
                    gflops=train_gflop / timing.fastest,
                    peak_fraction=train_gflop / timing.fastest / peak,
                )
                if isinstance(baseline, Timing):
                    row["ratio_mean"] = timing.mean / baseline.mean
                    row["ratio_fastest"] = timing.fastest / baseline.fastest
                if isinstance(mixed, Timing):
                    row["mixed_ratio_mean"] = timing.mean / mixed.mean
                    row["mixed_ratio_fastest"] = timing.fastest / mixed.fastest
            else:
                row["note"] = timing
            rows.append(row)
    return rows


def environment(args: argparse.Namespace) -> dict:
    return {
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "whole_epochs": args.whole_epochs,
        "precision": args.precision,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_report(rows: list[dict], outcome: dict) -> None:
    table = Table(
        title="Seconds per MNIST epoch (469 steps of 128), extrapolated from steady steps"
    )
    for column in (
        "model",
        "side",
        "s/epoch (mean)",
        "s/epoch (fastest)",
        "ratio vs Keras-TF",
        "ratio vs Keras-TF mixed_bfloat16",
        "GFLOP/s",
        "of peak",
    ):
        table.add_column(column, justify="left" if column in ("model", "side") else "right")
    for row in rows:
        if "note" in row:
            table.add_row(row["model"], row["side"], row["note"], "", "", "", "", "")
            continue
        table.add_row(
            row["model"],
            row["side"],
            f"{row['epoch_seconds_mean']:.1f}",
            f"{row['epoch_seconds_fastest']:.1f}",
            _ratios(row, "ratio"),
            _ratios(row, "mixed_ratio"),
            f"{row['gflops']:.0f}",
            f"{row['peak_fraction']:.0%}",
        )
    console = Console(width=max(120, Console().width))
    console.print(table)
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in outcome["peak"].items())
    console.print(f"peak GFLOP/s measured: {peaks}; work = 3 x forward FLOPs, padding excluded")
    console.print(f"environment: {outcome['environment']}")


def _ratios(row: dict, prefix: str) -> str:
    """'mean / fastest' ratios of a row, or '-' without that baseline."""
    if f"{prefix}_mean" not in row:
        return "-"
    return f"{row[f'{prefix}_mean']:.2f} / {row[f'{prefix}_fastest']:.2f}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=MODELS, type=lambda text: text.split(","))
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; best is kept")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist"
    )
    parser.add_argument(
        "--keras-python",
        default=DEFAULT_KERAS_PYTHON if Path(DEFAULT_KERAS_PYTHON).exists() else None,
        help="interpreter of an env with Keras 3 (+ TensorFlow); empty to skip",
    )
    parser.add_argument(
        "--keras-backends", default="tensorflow,torch", type=lambda text: text.split(",")
    )
    parser.add_argument(
        "--whole-epochs",
        type=int,
        default=0,
        metavar="N",
        help="time N whole epochs with validation instead of steps (N >= 2; epoch 1 is warm-up)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.steps < CHUNK:
        parser.error(f"--steps must be at least {CHUNK}")
    if args.keras_python and not Path(args.keras_python).is_file():
        parser.error(f"--keras-python {args.keras_python}: no such interpreter")
    if args.precision == "bf16" and KERAS_MIXED not in args.keras_backends:
        args.keras_backends.append(KERAS_MIXED)  # the fair peer of the fast mode
    if args.whole_epochs == 1 or args.whole_epochs < 0:
        parser.error("--whole-epochs needs at least 2 epochs: the first one is the warm-up")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    outcome = run(args)
    if args.whole_epochs:
        rows = report_whole_epochs(outcome)
        print_whole_epochs(rows, outcome)
    else:
        rows = report(outcome, args)
        print_report(rows, outcome)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": rows, **{k: v for k, v in outcome.items() if k != "results"}}, indent=1
            )
        )


if __name__ == "__main__":
    sys.exit(main())
