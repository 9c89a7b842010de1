"""Train several seeds of one model together, as one stacked computation (`cnnlab.stacked`).

Each seed keeps everything its separate run has: its initial weights, its shuffling, its dropout
masks and its optimiser state. Its run directory receives the checkpoints a separate run writes,
so a run stacked today resumes alone tomorrow and the other way round. A seed that diverges is
recorded as diverged at that epoch while the others go on; a failure fails the seeds still
training and keeps every finished epoch.

It pays where one seed leaves the hardware idle (a GPU and these small models); on a CPU whose
cores one seed already fills it does not (`benchmarks/multi_seed.py` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.devices import keeps_callers_threads
from cnnlab.errors import SpecError
from cnnlab.progress import Progress, ProgressMode
from cnnlab.spec import ModelSpec, TrainingSpec, parse_seeds
from cnnlab.train import SeedEpochCallback, TrainResult, train_runs

if TYPE_CHECKING:
    from cnnlab.data import Dataset


@keeps_callers_threads
def train_seeds(
    spec: ModelSpec,
    dataset: Dataset,
    *,
    seeds: int | Sequence[int],
    training: TrainingSpec | None = None,
    device: str | None = None,
    run_dirs: Sequence[Path | str] | None = None,
    on_epoch: SeedEpochCallback | None = None,
    progress: ProgressMode | Progress = "auto",
    threads: int | None = None,
    **changes: Any,
) -> list[TrainResult]:
    """Train `spec` once per seed, all seeds in one computation; one TrainResult per seed.

    The same arguments as `train_model`, with `seeds` (a count N: seeds 0..N-1, or the seeds)
    and one run directory per seed. Each result is what `train_model` returns for that seed up
    to float rounding, which training amplifies over many steps (the same run in distribution;
    docs/performance.md). When the seeds' run directories hold different numbers of epochs, or
    the network cannot be stacked (a softmax inside it), the seeds are trained one after
    another instead. The live progress shows the mean over the seeds still training. Times
    (epoch seconds, images/s, timings) are each seed's share of the group's wall time, so they
    add up over runs as separate runs' do. The engine is `train.train_runs`, the one that
    trains a single run as a group of one.
    """
    chosen = parse_seeds(seeds)
    if run_dirs is not None and len(run_dirs) != len(chosen):
        raise SpecError(
            f"one run directory per seed is needed: {len(chosen)} seeds, "
            f"{len(run_dirs)} directories"
        )
    return train_runs(
        spec,
        dataset,
        seeds=chosen,
        training=(training or TrainingSpec()).replace(**changes),
        device=device,
        run_dirs=run_dirs,
        on_epoch=on_epoch,
        progress=progress,
        threads=threads,
        stack=True,
    )
