"""One small study three ways: 1 process, `--jobs 2`, and a 2-node local Ray cluster.

    .venv/bin/python benchmarks/ray_scaling.py [--repeats 2] [--epochs 2] [--train-limit 3000]
        [--seeds 2] [--data-dir DIR]

Each way runs `python -m cnnlab run STUDY --no-report` into a fresh directory in its own
interpreter and is timed from launch to exit (imports, data loading, training, checkpoints,
and for Ray connecting to the cluster and sending the data to the nodes). The ways take turns
(A B C A B C ...) so that drift in the machine's load falls on all of them.

The Ray cluster is started once, before the timings, as a user keeps one running: a head node
for the driver with no CPUs (no run trains beside it) and two worker nodes of one CPU each,
started with `ray.cluster_utils.Cluster` (each node its own raylet and object store). Runs on
Ray send checkpoints through the driver (`--shared-dir no`), the costlier case.

Printed per way: the wall time (median over repeats), its ratio to 1 process, and the overhead
per run: (wall seconds x runs at once - the runs' own recorded seconds) / runs, i.e. what
each run cost beyond its training, spread over the slots that train at once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.store import open_store

STUDY = """
name = "scaling"
seeds = {seeds}
[[model]]
name = "conv"
optimizer = "adam"
layers = [
  {{ conv = 16, kernel = 3, activation = "relu" }}, {{ maxpool = 2 }}, {{ dropout = 0.25 }},
  "flatten", {{ dense = "classes", activation = "softmax" }},
]
[[model]]
name = "dense"
optimizer = "adam"
layers = [
  "flatten", {{ dense = 64, activation = "relu" }}, {{ dense = "classes", activation = "softmax" }},
]
[training]
epochs = {epochs}
batch_size = 64
validation = 0.1
"""
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def ways(address: str) -> dict[str, tuple[list[str], int]]:
    """Each way's extra `cnnlab run` arguments and how many runs it trains at once."""
    return {
        "1 process": ([], 1),
        "--jobs 2": (["--jobs", "2"], 2),
        "ray, 2 nodes": (
            ["--executor", "ray", "--address", address, "--threads", "1", "--shared-dir", "no"],
            2,
        ),
    }


def run_once(study: Path, directory: Path, extra: list[str], args: argparse.Namespace) -> float:
    command = [sys.executable, "-m", "cnnlab", "run", str(study), "--dir", str(directory)]
    command += ["--train-limit", str(args.train_limit), "--quiet", "--no-report"]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def run_seconds(directory: Path) -> tuple[int, float]:
    """The study's runs and the seconds they recorded (training, validation, test, setup)."""
    with open_store(directory) as store:
        runs = store.list_runs()
    return len(runs), sum(run.seconds or 0.0 for run in runs)


def start_cluster():
    from ray._common.utils import reset_ray_address
    from ray._private.utils import read_ray_address
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    if read_ray_address() == cluster.address:  # else a plain ray.init() here would join it
        reset_ray_address()
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=400 * 1024 * 1024)
    cluster.wait_for_nodes()
    return cluster


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=3000)
    default_data = SHARED_MNIST if SHARED_MNIST.is_dir() else None
    parser.add_argument("--data-dir", type=Path, default=default_data)
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="cnnlab-scaling-"))
    study = root / "scaling.toml"
    study.write_text(STUDY.format(seeds=args.seeds, epochs=args.epochs))
    cluster = start_cluster()
    walls: dict[str, list[float]] = {}
    overheads: dict[str, list[float]] = {}
    try:
        for repeat in range(args.repeats):
            for name, (extra, slots) in ways(cluster.address).items():
                directory = root / f"{name.replace(' ', '-')}-{repeat}"
                wall = run_once(study, directory, extra, args)
                runs, seconds = run_seconds(directory)
                walls.setdefault(name, []).append(wall)
                overheads.setdefault(name, []).append((wall * slots - seconds) / runs)
                print(f"  {name}: {wall:.1f} s wall, runs' own {seconds:.1f} s", flush=True)
    finally:
        cluster.shutdown()
    print_table(walls, overheads, args)


def print_table(walls: dict, overheads: dict, args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; load average at the end: {load}")
    print(
        f"study: 2 models x {args.seeds} seeds, {args.epochs} epochs on {args.train_limit} "
        f"images; median of {args.repeats} (A B C interleaved)"
    )
    base = statistics.median(walls["1 process"])
    print(f"{'way':<14} {'wall s':>8} {'vs 1 process':>13} {'overhead s/run':>15}")
    for name in walls:
        wall = statistics.median(walls[name])
        overhead = statistics.median(overheads[name])
        print(f"{name:<14} {wall:>8.1f} {wall / base:>13.2f} {overhead:>15.1f}")


if __name__ == "__main__":
    main()
