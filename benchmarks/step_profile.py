"""Where one training step's time goes: torch.profiler over steady steps of `train_model`.

    .venv/bin/python benchmarks/step_profile.py [--model seed/model-2] [--precision bf16]
        [--steps 10] [--warmup 5] [--top 15] [--onednn-kernels]

Trains the model on real MNIST with cnnlab's own loop and profiles `--steps` steps after
`--warmup` (the profiler steps with the loop, through the progress hook `train_model` calls
after every batch). Prints the ops by their own CPU time per step, the CPU and whether it has
AMX (bf16 matrix tiles). `--onednn-kernels` also runs one step with ONEDNN_VERBOSE=1 in a child
process and counts which oneDNN kernels (e.g. `brg_conv_fwd:avx512_core_amx`) did the work.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from cnnlab.data import load_dataset
from cnnlab.spec import load_model
from cnnlab.train import train_model

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class ProfilerSteps:
    """A cnnlab progress reporter that advances the profiler after every batch."""

    def __init__(self, profiler: profile) -> None:
        self.profiler = profiler

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def update(self, step: int, running: object) -> None:
        self.profiler.step()

    def end_epoch(self, record: object) -> None:
        pass

    def close(self) -> None:
        pass


def cpu_flags() -> tuple[str, bool]:
    text = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", text)
    return (name.group(1) if name else "unknown CPU"), "amx_bf16" in text


def profile_steps(args: argparse.Namespace) -> profile:
    mnist = load_dataset("mnist", data_dir=args.data_dir)
    spec = load_model(args.model)
    plan = schedule(wait=args.warmup, warmup=2, active=args.steps, repeat=1)
    with profile(activities=[ProfilerActivity.CPU], schedule=plan) as profiler:
        train_model(
            spec,
            mnist,
            epochs=1,
            batch_size=128,
            validation=0,
            train_limit=128 * (args.warmup + 2 + args.steps + 1),
            precision=args.precision,
            progress=ProfilerSteps(profiler),
        )
    return profiler


def onednn_kernels(args: argparse.Namespace) -> collections.Counter:
    """oneDNN's kernels (implementation names) over a few steps, and their milliseconds."""
    command = [sys.executable, __file__, "--model", args.model, "--precision", args.precision]
    command += ["--steps", "2", "--warmup", "1", "--top", "0", "--data-dir", str(args.data_dir)]
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    times: collections.Counter = collections.Counter()
    for line in done.stdout.splitlines():
        parts = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in parts and len(parts) > 6:
            kind, impl = parts[parts.index("exec") + 2], parts[parts.index("exec") + 3]
            times[f"{kind} {impl}"] += float(parts[-1])
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="seed/model-2")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--data-dir", type=Path, default=SHARED_MNIST)
    parser.add_argument("--onednn-kernels", action="store_true")
    args = parser.parse_args(argv)

    profiler = profile_steps(args)
    if not args.top:
        return
    name, amx = cpu_flags()
    print(
        f"CPU: {name} ({os.cpu_count()} cores, AMX bf16: {'yes' if amx else 'no'}); load "
        f"average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, {torch.get_num_threads()}"
        f" threads; {args.model}, {args.precision}, {args.steps} steps of 128"
    )
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    print(f"CPU time per step: {total / args.steps / 1e3:.1f} ms (all threads' own time)")
    rows = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)
    for event in rows[: args.top]:
        share = event.self_cpu_time_total / total
        per_step = event.self_cpu_time_total / args.steps / 1e3
        print(f"  {per_step:7.2f} ms {share:6.1%}  {event.key}")
    if args.onednn_kernels:
        print("oneDNN kernels over 2 steps (ms):")
        for kernel, ms in onednn_kernels(args).most_common(args.top):
            print(f"  {ms:8.2f}  {kernel}")


if __name__ == "__main__":
    main()
