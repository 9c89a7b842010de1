"""Where a study's runs train: one after another in this process, in N worker processes, or
as Ray tasks.

Local workers (this process, or the `--jobs N` spawned ones) claim runs atomically in the results
store and write their own epochs, so two `cnnlab run` on one study never train a run twice. Ray
tasks may run on machines that cannot reach the store's SQLite file: there the driver claims
each run and records what the task streams back (`cnnlab.ray_executor`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import platform
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

import cnnlab
from cnnlab.checkpoint import load_latest
from cnnlab.data import Dataset, load_dataset
from cnnlab.devices import configure_threads, describe_device, resolve_device, usable_cores
from cnnlab.errors import CnnlabError, StudyError
from cnnlab.spec import ModelSpec, TrainingSpec
from cnnlab.store import (
    HEARTBEAT_SECONDS,
    STALE_AFTER_SECONDS,
    ClaimLostError,
    EpochMetrics,
    Predictions,
    RunRecord,
    Store,
    StoreError,
    TestMetrics,
    Worker,
    labels_hash,
    open_store,
)
from cnnlab.train import EpochRecord, TrainResult, train_runs

log = logging.getLogger("cnnlab.study")

ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("local", "ray")
STOP_WAIT_SECONDS = 60.0  # how long a stopped worker may take to give its run back
PARENT_CHECK_SECONDS = 1.0  # how often a worker process looks whether its parent still lives
WAIT_SECONDS = 1.0  # how often the Ray driver looks up from waiting (for a stop asked for)


@dataclass(frozen=True)
class RunTask:
    """One run to train: a fully resolved model, its seed and settings, where it checkpoints."""

    key: str
    model: ModelSpec
    seed: int
    training: TrainingSpec
    run_dir: Path  # absolute: DIR/runs/<key>
    study_dir: Path  # checkpoint paths are stored relative to it, so a study can be moved
    params: int
    flops: int


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker of a study shares: the store, the data, the device and threads."""

    store_url: str
    dataset: str  # the source `load_dataset` takes
    dataset_id: str  # name@content-hash, as the run keys hold it
    data_dir: str | None
    device: str | None
    threads: int
    stale_after: float = STALE_AFTER_SECONDS
    stack_seeds: bool = False  # train a model's seeds together (cnnlab.multiseed)
    # Train each run up to this epoch only, then give it back pending (a halving rung).
    until_epoch: int | None = None


@dataclass(frozen=True, eq=False)
class RunReport:
    """How one training ended, in the store's terms (what a Ray task sends back)."""

    key: str
    status: Literal["done", "diverged", "failed", "paused"]  # paused: back to pending
    reason: str
    stopped_epoch: int | None
    history: tuple[EpochMetrics, ...]
    test: TestMetrics | None
    predictions: Predictions | None
    seconds: float
    device: str
    versions: dict[str, str]
    checkpoint: str | None  # relative to the study directory
    notes: tuple[str, ...] = ()
    best_epoch: int | None = None  # EarlyStopping's best epoch


def dataset_identity(dataset: Dataset, source: str) -> str:
    """The dataset as run keys hold it: a readable name plus a hash of every image and label.

    The content, not the path, decides: the same files found elsewhere keep a study's runs,
    and a changed file never mixes its results with the old ones.
    """
    digest = hashlib.sha256()
    for array in (dataset.train_images, dataset.train_labels, dataset.test_images):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(np.ascontiguousarray(dataset.test_labels).tobytes())
    kind, _, rest = source.partition(":")
    name = f"{kind}:{Path(rest).name}" if kind in ("idx", "npz") and rest else source
    return f"{name}@{digest.hexdigest()[:16]}"


def versions() -> dict[str, str]:
    """What produced a run, recorded beside it (not part of its key)."""
    return {
        "cnnlab": cnnlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


# -- training one run ------------------------------------------------------------------------


def train_tasks(
    tasks: Sequence[RunTask],
    dataset: Dataset,
    *,
    device: str | None,
    threads: int | None,
    on_epoch: Callable[[int, EpochRecord], None] | None = None,
    until_epoch: int | None = None,
) -> list[RunReport]:
    """Train runs that differ only in their seed (one run is a group of one); a report each.

    Several seeds train as one stacked computation where the network allows it
    (`cnnlab.train.train_runs`). Each resumes from its run directory; failures are reports
    too. Store errors (a lost claim, a broken store) and Ctrl-C propagate: the caller decides.
    until_epoch: train only that far (a run short of its last epoch reports "paused").
    """
    started = time.perf_counter()
    first = tasks[0]
    try:
        results = train_runs(
            first.model,
            dataset,
            seeds=[task.seed for task in tasks],
            training=first.training,
            device=device,
            run_dirs=[task.run_dir for task in tasks],
            on_epoch=on_epoch,
            progress="quiet",
            threads=threads,
            stack=len(tasks) > 1,
            until_epoch=until_epoch,
        )
    except StoreError:
        raise
    except Exception as error:  # runs that cannot even start are recorded, not raised
        reason = f"{type(error).__name__}: {error}"
        seconds = (time.perf_counter() - started) / len(tasks)
        return [failed_report(task, reason, seconds, device) for task in tasks]
    return [
        _pruned_report(task, dataset, result) for task, result in zip(tasks, results, strict=True)
    ]


def _pruned_report(task: RunTask, dataset: Dataset, result: TrainResult) -> RunReport:
    """The run's report; a finished run keeps only its last checkpoint."""
    if result.status == "done" and result.checkpoint is not None:
        prune_checkpoints(task.run_dir, keep=result.checkpoint)
    return _report_of(task, dataset, result)


def _report_of(task: RunTask, dataset: Dataset, result: TrainResult) -> RunReport:
    predictions = None
    if result.test_predictions is not None:
        predictions = Predictions(result.test_predictions, labels_hash(dataset.test_labels))
    test = None
    if result.test_loss is not None and result.test_accuracy is not None:
        test = TestMetrics(loss=result.test_loss, accuracy=result.test_accuracy)
    return RunReport(
        key=task.key,
        status=result.status,
        reason=result.reason,
        stopped_epoch=result.epoch if result.epoch is not None else result.stopped_epoch,
        history=tuple(epoch_metrics(record) for record in result.history),
        test=test,
        predictions=predictions,
        seconds=_run_seconds(result),
        device=result.device,
        versions=versions(),
        checkpoint=_relative(task, result.checkpoint) if result.checkpoint else None,
        notes=result.notes,
        best_epoch=result.best_epoch,
    )


def _run_seconds(result: TrainResult) -> float:
    """The run's time over all its attempts: a resumed run's earlier epochs count too (their
    recorded seconds), not only the last attempt's."""
    resumed = sum(record.seconds for record in result.history[: result.resumed_from])
    return resumed + result.timings.total_seconds


def failed_report(
    task: RunTask, reason: str, seconds: float = 0.0, device: str | None = None
) -> RunReport:
    """The report of a run that raised instead of reporting (on Ray: it never trained)."""
    return RunReport(
        key=task.key,
        status="failed",
        reason=reason,
        stopped_epoch=None,
        history=(),
        test=None,
        predictions=None,
        seconds=seconds,
        device=device or "",
        versions=versions(),
        checkpoint=None,
    )


def epoch_metrics(record: EpochRecord | Mapping[str, Any]) -> EpochMetrics:
    """A training epoch record (or a checkpoint's dict of one) as the store keeps it."""
    values = record if isinstance(record, Mapping) else asdict(record)
    return EpochMetrics(
        epoch=int(values["epoch"]),
        loss=values["loss"],
        accuracy=values["accuracy"],
        val_loss=values["val_loss"],
        val_accuracy=values["val_accuracy"],
        seconds=values["seconds"],
        images_per_second=values["images_per_second"],
        learning_rate=values.get("learning_rate"),
    )


def checkpoint_path(task: RunTask, epoch: int) -> str:
    """Where epoch `epoch`'s weights lie, relative to the study (cnnlab.checkpoint's names)."""
    return _relative(task, task.run_dir / f"epoch-{epoch:04d}.safetensors")


def _relative(task: RunTask, path: Path) -> str:
    try:
        return str(Path(path).relative_to(task.study_dir))
    except ValueError:
        return str(path)


def prune_checkpoints(run_dir: Path, *, keep: Path) -> None:
    """Keep only a finished run's last checkpoint: the one before it only served resuming.

    Halves a finished study's disk use (cnnlab.checkpoint keeps two while a run trains).
    """
    stem = Path(keep).stem
    for path in run_dir.glob("epoch-*"):
        if path.stem != stem:
            path.unlink(missing_ok=True)


# Failures of the place a run writes to, not of the run: no space, over quota, read-only,
# permission denied, I/O error. The run is given back and the study stops, so that fixing the
# disk and running again resumes it (recorded as failed, it would need --retry-failed).
STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission is denied",
    errno.EIO: "the disk reports an I/O error",
}


def storage_failure(reason: str) -> str | None:
    """What went wrong with the storage when a run failed because of it, else None."""
    for number, what in STORAGE_ERRNOS.items():
        if f"[Errno {number}]" in reason or os.strerror(number) in reason:
            return what
    return None


# -- stopping on Ctrl-C or SIGTERM ----------------------------------------------------------


@contextmanager
def stop_on_signals(
    signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM), *, repeat: bool = True
) -> Iterator[threading.Event]:
    """A flag that Ctrl-C or SIGTERM sets; the signal also raises KeyboardInterrupt at once.

    The exception alone is not enough: raised wherever the interpreter happens to be, it can
    be lost in third-party code (a worker interrupted inside NumPy's lazy import of
    `numpy.random` went on to train the whole study). So the runners also look at the flag
    before each claim and after each epoch. repeat=False ignores a second signal, so that a
    run being given back is not interrupted again. Outside the main thread (where Python
    cannot handle signals) the flag is never set.
    """
    stopping = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stopping.is_set() and not repeat:
            return
        stopping.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield stopping
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)


def stop_if_asked(stopping: threading.Event | None) -> None:
    """Raise KeyboardInterrupt when a stop was asked for (see `stop_on_signals`)."""
    if stopping is not None and stopping.is_set():
        raise KeyboardInterrupt


# -- a run held by a local worker ------------------------------------------------------------


class Heartbeat:
    """Tells the store, from a thread, that this worker still trains its runs.

    Epochs can outlast the store's stale timeout; without beats between them another worker
    would take the run over. A lost claim stops the beats for that run; `record_epoch` then
    raises ClaimLostError in the training loop, which ends the run there.
    """

    def __init__(
        self,
        store: Store,
        worker: Worker,
        keys: Iterable[str] = (),
        every: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.store, self.worker, self.every = store, worker, every
        self._keys = set(keys)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cnnlab-heartbeat", daemon=True)

    def add(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys.discard(key)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                keys = sorted(self._keys)
            for key in keys:
                try:
                    self.store.heartbeat(key, self.worker)
                except ClaimLostError:
                    self.discard(key)
                except StoreError as error:  # a busy store: the next beat tries again
                    log.warning("heartbeat for run %s failed: %s", key, error)


def work_through(
    store: Store,
    worker: Worker,
    tasks: Mapping[str, RunTask],
    dataset: Dataset,
    setup: WorkerSetup,
    stopping: threading.Event | None = None,
) -> None:
    """Claim and train runs of `tasks` until none is left to claim or `stopping` is set.

    With `setup.until_epoch`, a run trained that far goes back pending: it is remembered
    (`reached`), so that neither this worker nor another claims it again in this call.
    """
    reached: set[str] = set()
    while True:
        stop_if_asked(stopping)
        keys = claimable(store, tasks, setup, reached)
        run = store.claim_next(worker, keys=keys, stale_after=setup.stale_after)
        if run is None:
            return
        if at_rung(run, setup):  # another worker took it there since we looked
            store.release(run.key, worker)
            reached.add(run.key)
            continue
        group = []
        if setup.stack_seeds:
            group = claim_other_seeds(store, worker, run, {k: tasks[k] for k in keys}, setup)
        train_claimed(store, worker, [run, *group], tasks, dataset, setup, stopping)
        if setup.until_epoch is not None:
            reached.update(claimed.key for claimed in [run, *group])


def claimable(
    store: Store, tasks: Mapping[str, RunTask], setup: WorkerSetup, reached: set[str]
) -> list[str]:
    """The keys to claim from; with an `until_epoch`, runs already trained that far (by any
    worker) are left out and added to `reached`."""
    keys = [key for key in tasks if key not in reached]
    if setup.until_epoch is None:
        return keys
    waiting = store.list_runs(keys=keys, status="pending")
    reached.update(run.key for run in waiting if at_rung(run, setup))
    return [key for key in keys if key not in reached]


def at_rung(run: RunRecord, setup: WorkerSetup) -> bool:
    """Whether the run holds the epochs `setup.until_epoch` asks for (never without one)."""
    return setup.until_epoch is not None and len(run.epochs) >= setup.until_epoch


def claim_other_seeds(
    store: Store, worker: Worker, run: RunRecord, tasks: Mapping[str, RunTask], setup: WorkerSetup
) -> list[RunRecord]:
    """Claim the runs that differ from `run` only in their seed, those no one else holds."""
    task = tasks[run.key]
    claimed = []
    for key, other in tasks.items():
        if key != run.key and other.model == task.model and other.training == task.training:
            sibling = store.claim_next(worker, keys=[key], stale_after=setup.stale_after)
            if sibling is not None:
                claimed.append(sibling)
    return claimed


def train_claimed(
    store: Store,
    worker: Worker,
    runs: list[RunRecord],
    tasks: Mapping[str, RunTask],
    dataset: Dataset,
    setup: WorkerSetup,
    stopping: threading.Event | None = None,
) -> None:
    """Train runs `worker` holds (one, or a model's seeds), writing each one's setup, epochs
    and outcome to the store.

    Ctrl-C (or any error, or `stopping` seen after an epoch of every seed) gives the runs back,
    to resume from their checkpoints next time; a lost claim (another worker took a run over)
    ends them without writing anything more.
    """
    group = [tasks[run.key] for run in runs]
    by_seed = {task.seed: task for task in group}
    last_seed = group[-1].seed
    try:
        with Heartbeat(store, worker, [task.key for task in group]):
            device = resolve_device(setup.device)
            for run, task in zip(runs, group, strict=True):
                store.record_setup(
                    task.key,
                    worker,
                    device=describe_device(device),
                    versions=versions(),
                    params=task.params,
                    flops=task.flops,
                )
                catch_up_epochs(store, worker, task, stored=len(run.epochs))

            def record(seed: int, epoch: EpochRecord) -> None:
                task = by_seed[seed]
                path = checkpoint_path(task, epoch.epoch)
                store.record_epoch(task.key, worker, epoch_metrics(epoch), checkpoint=path)
                if seed == last_seed:  # every seed's epoch is saved: a stop loses none
                    stop_if_asked(stopping)

            reports = train_tasks(
                group,
                dataset,
                device=str(device),
                threads=setup.threads,
                on_epoch=record,
                until_epoch=setup.until_epoch,
            )
            for task, report in zip(group, reports, strict=True):
                finish(store, worker, task, report)
    except ClaimLostError as lost:
        first = group[0]
        log.warning(
            "run %s (%s, seed %d) stopped: %s", first.key, first.model.name, first.seed, lost
        )
        for task in group:
            release_quietly(store, task.key, worker)
    except BaseException:
        for task in group:
            release_quietly(store, task.key, worker)
        raise


def catch_up_epochs(store: Store, worker: Worker, task: RunTask, *, stored: int) -> None:
    """Record epochs that the run directory's checkpoint holds but the store does not.

    A process killed between saving epoch e and recording it leaves the store one epoch
    behind; training resumes after e, and the store only accepts epochs in order.
    """
    checkpoint, _ = load_latest(task.run_dir)
    if checkpoint is None or checkpoint.epoch <= stored:
        return
    for record in checkpoint.history[stored : checkpoint.epoch]:
        metrics = epoch_metrics(record)
        path = checkpoint_path(task, metrics.epoch)
        store.record_epoch(task.key, worker, metrics, checkpoint=path)


def finish(store: Store, worker: Worker, task: RunTask, report: RunReport) -> None:
    """Write a run's outcome; a run that failed for want of disk space stops the study; a
    paused one (trained to `until_epoch`) goes back pending, its epochs and checkpoint kept."""
    for note in report.notes:
        log.warning("run %s (%s, seed %d): %s", task.key, task.model.name, task.seed, note)
    if report.status == "paused":
        store.release(task.key, worker)
        return
    failure = storage_failure(report.reason) if report.status == "failed" else None
    if failure:
        store.release(task.key, worker)
        raise StudyError(
            f"cannot write {task.run_dir}: {failure} ({report.reason}); finished runs are "
            "kept: fix that (free space, permissions) and run the same command again to resume"
        )
    store.finish_run(
        task.key,
        worker,
        status=report.status,
        reason=report.reason or None,
        stopped_epoch=report.stopped_epoch,
        test=report.test,
        predictions=report.predictions,
        seconds=report.seconds,
        best_epoch=report.best_epoch,
    )


def release_quietly(store: Store, key: str, worker: Worker) -> None:
    """Give a run back; when that fails the claim still goes stale (a dead PID, or the timeout)."""
    with contextlib.suppress(StoreError, KeyboardInterrupt):
        store.release(key, worker)


# -- executors -------------------------------------------------------------------------------


class Executor(Protocol):
    """Trains a study's runs that are not finished, writing everything to the store."""

    name: str

    def execute(
        self, store: Store, tasks: Mapping[str, RunTask], dataset: Dataset, setup: WorkerSetup
    ) -> None: ...


def make_executor(
    name: str,
    *,
    jobs: int | None = None,
    address: str | None = None,
    gpus_per_run: float | None = None,
    shared_dir: bool | None = None,
) -> Executor:
    """The executor called `name` ("local" or "ray"); `jobs` runs at once (local: 1).

    Ray only: `address` of the cluster, `gpus_per_run` (a GPU share, 0.25: four runs per GPU),
    `shared_dir` (whether every node sees the study directory; None: detected).
    """
    if jobs is not None and jobs < 1:
        raise StudyError(f"jobs must be at least 1, got {jobs}")
    if name == "ray":
        from cnnlab.ray_executor import RayExecutor  # it imports this module

        return RayExecutor(
            jobs=jobs, address=address, gpus_per_run=gpus_per_run, shared_dir=shared_dir
        )
    if name != "local":
        raise StudyError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    for option, value in (("--address", address), ("--gpus-per-run", gpus_per_run)):
        if value is not None:
            raise StudyError(
                f"{option} is for a Ray cluster; use it with --executor ray (locally, --jobs N "
                "shares one GPU among N runs)"
            )
    return SequentialExecutor() if (jobs or 1) == 1 else ProcessExecutor(jobs or 1)


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of `jobs` runs at once: the usable cores split between them."""
    return max(1, usable_cores() // jobs)


def device_for_worker(device: str | None, index: int) -> str | None:
    """One GPU per worker when there are several: worker i gets cuda:(i mod GPUs)."""
    gpus = torch.cuda.device_count()
    if gpus < 2 or device not in (None, "auto", "cuda"):
        return device
    return f"cuda:{index % gpus}"


class SequentialExecutor:
    """One run after another, in this process (the default)."""

    name = "local"
    jobs = 1

    def execute(
        self, store: Store, tasks: Mapping[str, RunTask], dataset: Dataset, setup: WorkerSetup
    ) -> None:
        caller_threads = torch.get_num_threads()
        configure_threads(setup.threads)
        try:
            with stop_on_signals() as stopping:
                work_through(store, Worker.current(), tasks, dataset, setup, stopping)
        finally:
            torch.set_num_threads(caller_threads)  # a notebook keeps its own setting


class ProcessExecutor:
    """`jobs` worker processes (spawned: safe with threads and CUDA), each claiming runs."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def execute(
        self, store: Store, tasks: Mapping[str, RunTask], dataset: Dataset, setup: WorkerSetup
    ) -> None:
        context = multiprocessing.get_context("spawn")
        problems = context.Queue()
        workers = [
            context.Process(
                target=process_worker,
                args=(replace(setup, device=device_for_worker(setup.device, i)), dict(tasks)),
                kwargs={"parent": os.getpid(), "problems": problems},
                name=f"cnnlab-worker-{i + 1}",
            )
            for i in range(min(self.jobs, len(tasks)))
        ]
        with stop_on_signals() as stopping:
            try:
                for worker in workers:
                    worker.start()
                while any(worker.is_alive() for worker in workers):
                    stop_if_asked(stopping)
                    for worker in workers:
                        worker.join(timeout=0.2)
            except KeyboardInterrupt:
                stop_workers(workers)
                raise
        _raise_worker_problems(workers, problems)


def stop_workers(workers: list[multiprocessing.process.BaseProcess]) -> None:
    """Ask each worker to give its run back (SIGTERM), and wait until they have."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()  # its claim goes stale at once: the PID is gone


def _raise_worker_problems(workers: list, problems: Any) -> None:
    messages = []
    while True:
        try:
            messages.append(problems.get(timeout=0.1))
        except queue.Empty:
            break
    for worker in workers:
        code = worker.exitcode
        if code in (0, None) or messages:
            continue
        if code < 0:  # killed by a signal: no error of its own to show
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            messages.append(
                f"{worker.name} was killed ({name}); finished runs are kept, and the next "
                "`cnnlab run` trains whatever is left"
            )
        else:
            messages.append(
                f"{worker.name} ended with exit code {code} (its error is above; a script that "
                "runs a study with jobs > 1 needs `if __name__ == '__main__':`, as any program "
                "using multiprocessing); the next `cnnlab run` trains whatever is left"
            )
    if messages:
        raise StudyError(messages[0] + (f" (and {len(messages) - 1} more)" if messages[1:] else ""))


def process_worker(
    setup: WorkerSetup, tasks: dict[str, RunTask], *, parent: int, problems: Any
) -> None:
    """A spawned worker's life: load the data, then claim and train runs until none is left.

    The parent decides when workers stop: Ctrl-C is left to it, and it sends SIGTERM, which
    gives the current run back. A worker whose parent died (SIGKILL) stops the same way.
    """
    logging.basicConfig(format="note: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_signals([signal.SIGTERM], repeat=False) as stopping:
            threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
            configure_threads(setup.threads)
            dataset = load_checked_dataset(setup)
            with open_store(setup.store_url) as store:
                work_through(store, Worker.current(), tasks, dataset, setup, stopping)
    except KeyboardInterrupt:
        pass
    except CnnlabError as error:
        problems.put(str(error))
    except Exception:
        problems.put(traceback.format_exc())


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def load_checked_dataset(setup: WorkerSetup) -> Dataset:
    """The study's dataset as this worker reads it, refused if its content changed since."""
    dataset = load_dataset(setup.dataset, data_dir=setup.data_dir)
    found = dataset_identity(dataset, setup.dataset)
    if found != setup.dataset_id:
        raise StudyError(
            f"the dataset {setup.dataset} changed while the study ran ({setup.dataset_id} "
            f"became {found}); restore it or start the study again"
        )
    return dataset
