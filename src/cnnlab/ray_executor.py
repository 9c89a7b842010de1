"""Runs as Ray tasks on a cluster: epochs stream to the driver's store, checkpoints travel.

The driver (the `cnnlab run --executor ray` process) claims each run in the store and sends it
as a Ray task. Tasks never open the store: they may run on machines that cannot reach its
SQLite file. Instead each task talks to a `Depot`, a small actor pinned to the driver's node:

- after every epoch the task hands the depot the epoch's metrics and, unless the study
  directory is on a filesystem every node shares, the files of its run directory that changed
  (the checkpoint). The depot writes those files into the driver's study directory before it
  answers, so a checkpoint the task saw acknowledged survives the node;
- the driver drains the depot about once a second and records each epoch in the store, so
  live progress, `cnnlab status` and `cnnlab runs --json` see a Ray run as they see a local
  one, and a driver killed mid-study loses no epoch that reached it;
- a task that starts (first try, a Ray retry after a lost node, or a later `cnnlab run`) asks
  the depot for the run directory and resumes from its last checkpoint.

When Ray's retries of a task are spent (its nodes died, out of memory), the run is given back
as pending, not failed: the next `cnnlab run` resumes it without `--retry-failed`.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnlab.checkpoint import write_file
from cnnlab.data import Dataset
from cnnlab.devices import configure_threads, describe_device, resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.executors import (
    WAIT_SECONDS,
    Heartbeat,
    RunReport,
    RunTask,
    StudyError,
    WorkerSetup,
    catch_up_epochs,
    checkpoint_path,
    epoch_metrics,
    failed_report,
    finish,
    prune_checkpoints,
    release_quietly,
    stop_if_asked,
    stop_on_signals,
    train_tasks,
    versions,
)
from cnnlab.store import ClaimLostError, EpochMetrics, Store, StoreError, Worker
from cnnlab.train import EpochRecord

log = logging.getLogger("cnnlab.study")

# Ray's own default for tasks: a task whose worker or node dies is run again up to 3 times,
# each time resuming from the checkpoint the depot holds.
TASK_RETRIES = 3
SHARED_MARKER = ".cnnlab-shared-dir"  # written by the driver; a node that reads it shares the disk
NODE_DIRNAME = "cnnlab-ray"  # node-local run directories live in $TMPDIR/cnnlab-ray/<node>/<key>


class NodeSetupError(CnnlabError):
    """A node cannot train a run as asked (e.g. told the study directory is shared, it is not)."""


# -- the depot: the driver's end of every task ---------------------------------------------------


class Depot:
    """An actor on the driver's node: takes epochs and checkpoint files from tasks, serves run
    directories to tasks that resume, and queues what the driver records in the store."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, Any]] = []

    def started(self, key: str, setup: dict[str, Any]) -> None:
        self.messages.append(("setup", key, setup))

    def epoch(
        self,
        key: str,
        run_dir: str,
        metrics: EpochMetrics,
        files: dict[str, bytes],
        present: list[str] | None,
    ) -> None:
        """Write the files first, then queue the epoch: the store never points at a missing
        checkpoint. `present` (None in a shared directory): every file the task's run
        directory holds, so older checkpoints it dropped are dropped here too."""
        if present is not None:
            mirror_files(Path(run_dir), files, present)
        self.messages.append(("epoch", key, metrics))

    def files(self, run_dir: str) -> dict[str, bytes]:
        """The run directory's files, for a task that resumes the run elsewhere."""
        return read_files(Path(run_dir))

    def drain(self) -> list[tuple[str, str, Any]]:
        messages, self.messages = self.messages, []
        return messages


def read_files(run_dir: Path) -> dict[str, bytes]:
    """A run directory's files by name (not the temp files of a writer killed mid-write)."""
    if not run_dir.is_dir():
        return {}
    return {
        path.name: path.read_bytes()
        for path in sorted(run_dir.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }


def mirror_files(run_dir: Path, files: Mapping[str, bytes], present: list[str]) -> None:
    """Make `run_dir` hold what the task's directory holds: write `files` (tensors before
    their manifests, so a half-mirrored epoch never looks whole), delete what it dropped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda name: name.endswith(".json")):
        write_file(run_dir / name, files[name])
    for path in run_dir.iterdir():
        if path.is_file() and not path.name.startswith(".") and path.name not in present:
            path.unlink(missing_ok=True)


# -- the task: one run on some node ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskPlace:
    """Where a task keeps its run directory, and how its checkpoints reach the driver."""

    shared_dir: bool | None  # None: look for the driver's marker in the study directory
    token: str  # the marker's content in this driver's study directory


def ray_train_task(
    task: RunTask,
    dataset: Dataset,
    device: str | None,
    threads: int,
    depot: Any,
    place: TaskPlace,
    until_epoch: int | None = None,
) -> RunReport:
    """What a Ray task runs: train one run, streaming each epoch (and checkpoint) to the depot.

    In a shared study directory it trains in the run's own directory; otherwise in a
    node-local one, seeded from the depot's copy and removed once the run has ended.
    """
    import ray

    configure_threads(threads)
    shared = sees_shared_dir(task, place)
    run_dir = task.run_dir if shared else node_run_dir(task, ray)
    if not shared:
        seed_run_dir(run_dir, ray.get(depot.files.remote(str(task.run_dir))))
    node = ray.get_runtime_context().get_node_id()
    setup = {
        "device": describe_device(resolve_device(device)),
        "versions": versions(),
        "node": node,
        "resumes_after": newest_checkpoint_epoch(run_dir),
    }
    ray.get(depot.started.remote(task.key, setup))
    send = epoch_sender(task, run_dir, depot, ray, shared=shared)
    (report,) = train_tasks(
        [replace(task, run_dir=run_dir)],
        dataset,
        device=device,
        threads=threads,
        on_epoch=lambda _seed, record: send(record),
        until_epoch=until_epoch,
    )
    if not shared:
        shutil.rmtree(run_dir, ignore_errors=True)
    return report


def sees_shared_dir(task: RunTask, place: TaskPlace) -> bool:
    """Whether this node sees the driver's study directory (its marker, with this driver's
    token); NodeSetupError when told it does and it does not."""
    if place.shared_dir is False:
        return False
    try:
        seen = (task.study_dir / SHARED_MARKER).read_text() == place.token
    except OSError:
        seen = False
    if place.shared_dir and not seen:
        raise NodeSetupError(
            f"the study directory {task.study_dir} is not shared with this node (it does not "
            "see the driver's marker file there); run with --shared-dir no or auto"
        )
    return seen


def node_run_dir(task: RunTask, ray: Any) -> Path:
    """The run's directory on this node's own disk ($TMPDIR/cnnlab-ray/<node>/<run key>)."""
    node = ray.get_runtime_context().get_node_id()[:16]
    return Path(tempfile.gettempdir()) / NODE_DIRNAME / node / task.key


def seed_run_dir(run_dir: Path, files: Mapping[str, bytes]) -> None:
    """Start from exactly the driver's copy: an older attempt's files here may be newer than
    what the store recorded, or damaged."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for name, data in files.items():
        write_file(run_dir / name, data)


def newest_checkpoint_epoch(run_dir: Path) -> int:
    """The newest checkpoint's epoch by its manifest's name (0: none); for the driver's log."""
    epochs = [int(p.stem.split("-")[1]) for p in run_dir.glob("epoch-*.json")]
    return max(epochs, default=0)


def epoch_sender(
    task: RunTask, run_dir: Path, depot: Any, ray: Any, *, shared: bool
) -> Callable[[EpochRecord], None]:
    """The `on_epoch` of a task: hand the depot the epoch and the files that changed, and wait
    until it has them, so that a node lost afterwards costs no finished epoch."""
    sent: dict[str, tuple[int, int]] = {}

    def send(record: EpochRecord) -> None:
        files: dict[str, bytes] = {}
        present = None
        if not shared:
            present = sorted(read_signatures(run_dir))
            for name, signature in read_signatures(run_dir).items():
                if sent.get(name) != signature:
                    files[name] = (run_dir / name).read_bytes()
                    sent[name] = signature
        metrics = epoch_metrics(record)
        try:
            ray.get(depot.epoch.remote(task.key, str(task.run_dir), metrics, files, present))
        except ray.exceptions.RayTaskError as error:  # the driver's disk, not Ray, failed
            raise remote_cause(error) from None

    return send


def read_signatures(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Each file's (size, mtime in ns): what tells a changed file from one already sent."""
    signatures = {}
    for path in run_dir.iterdir():
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            signatures[path.name] = (stat.st_size, stat.st_mtime_ns)
    return signatures


# -- the driver ---------------------------------------------------------------------------------


class RayExecutor:
    """Each run a Ray task with its CPU/GPU needs; the driver claims runs and writes results.

    In flight at once: `jobs`, or as many runs as the cluster's CPUs (GPUs) hold.
    gpus_per_run: a GPU share per run (0.25: four runs share one GPU). shared_dir: whether
    every node sees the study directory (None: detected from a marker file the driver writes).
    """

    name = "ray"

    def __init__(
        self,
        *,
        jobs: int | None = None,
        address: str | None = None,
        gpus_per_run: float | None = None,
        shared_dir: bool | None = None,
    ) -> None:
        check_gpus_per_run(gpus_per_run)
        self.jobs, self.address = jobs, address
        self.gpus_per_run, self.shared_dir = gpus_per_run, shared_dir
        self.ray = import_ray()

    def execute(
        self, store: Store, tasks: Mapping[str, RunTask], dataset: Dataset, setup: WorkerSetup
    ) -> None:
        ray = self.ray
        started_here = connect_ray(ray, self.address)
        try:
            self._drive(store, tasks, dataset, setup)
        finally:
            if started_here:
                ray.shutdown()

    def _drive(
        self, store: Store, tasks: Mapping[str, RunTask], dataset: Dataset, setup: WorkerSetup
    ) -> None:
        ray, worker = self.ray, Worker.current("ray")
        self.check_fits_a_node(setup)
        place = TaskPlace(self.shared_dir, mark_study_dir(next(iter(tasks.values())).study_dir))
        depot = start_depot(ray)
        remote = ray.remote(ray_train_task).options(
            max_retries=TASK_RETRIES, **self.resources(setup)
        )
        dataset_ref = ray.put(dataset)  # one copy in the object store, shared by all tasks
        driver = Driver(store, worker, tasks, depot, ray)
        capacity = self.capacity(setup)
        with Heartbeat(store, worker) as beats, stop_on_signals() as stopping:
            try:
                while True:
                    stop_if_asked(stopping)
                    while len(driver.in_flight) < capacity and (run := driver.claim(setup)):
                        beats.add(run.key)
                        task = tasks[run.key]
                        catch_up_epochs(store, worker, task, stored=len(run.epochs))
                        args = (task, dataset_ref, self.device(setup), setup.threads, depot)
                        ref = remote.remote(*args, place, setup.until_epoch)
                        driver.in_flight[ref] = task
                    if not driver.in_flight:
                        return
                    ready, _ = ray.wait(list(driver.in_flight), num_returns=1, timeout=WAIT_SECONDS)
                    driver.record_streamed()
                    for ref in ready:
                        task = driver.in_flight.pop(ref)
                        driver.settle(ref, task)
                        beats.discard(task.key)
            except BaseException:
                driver.abandon()
                raise

    def check_fits_a_node(self, setup: WorkerSetup) -> None:
        """Refuse runs that no node has the CPUs for: Ray would wait for such a node forever."""
        largest = max(
            (node["Resources"].get("CPU", 0) for node in self.ray.nodes() if node["Alive"]),
            default=0,
        )
        if setup.threads > largest:
            raise StudyError(
                f"each run asks Ray for {setup.threads} CPUs (--threads, by default this "
                f"machine's cores), but the largest node of the cluster has {largest:g}; pass "
                f"--threads {max(1, int(largest))} or add larger nodes"
            )

    def capacity(self, setup: WorkerSetup) -> int:
        """Runs in flight: `jobs`, else what the cluster's CPUs (and GPUs) hold at once."""
        if self.jobs:
            return self.jobs
        resources = self.ray.cluster_resources()
        fits = int(resources.get("CPU", 1)) // max(1, setup.threads)
        gpus = self.resources(setup)["num_gpus"]
        if gpus:
            fits = min(fits, int(resources.get("GPU", 0) / gpus + 1e-9))
        return max(1, fits)

    def resources(self, setup: WorkerSetup) -> dict[str, float]:
        """What Ray reserves for one run: its threads' CPUs, its GPU (share)."""
        gpus = 1 if self._wants_gpu(setup) else 0
        if self.gpus_per_run is not None:
            gpus = self.gpus_per_run
        return {"num_cpus": setup.threads, "num_gpus": gpus}

    def device(self, setup: WorkerSetup) -> str | None:
        return "cuda" if self._wants_gpu(setup) and setup.device in (None, "auto") else setup.device

    def _wants_gpu(self, setup: WorkerSetup) -> bool:
        if self.gpus_per_run is not None:
            if setup.device not in (None, "auto") and not setup.device.startswith("cuda"):
                raise StudyError(
                    f"--gpus-per-run {self.gpus_per_run} asks for GPUs, but --device is "
                    f"{setup.device}; leave out one of them"
                )
            return True
        if setup.device in (None, "auto"):
            return self.ray.cluster_resources().get("GPU", 0) > 0
        return setup.device.startswith("cuda")


def check_gpus_per_run(gpus: float | None) -> None:
    """Ray's rule for a task's GPUs: a fraction up to 1 (shared), or a whole number."""
    if gpus is None:
        return
    if not gpus > 0 or (gpus > 1 and gpus != int(gpus)):
        raise StudyError(
            "--gpus-per-run must be a fraction in (0, 1] (runs sharing one GPU: 0.25 puts "
            f"four on each) or a whole number of GPUs, got {gpus}"
        )


class Driver:
    """The driver's bookkeeping of a study on Ray: the tasks in flight, the epochs the depot
    collected, the outcome of each task."""

    def __init__(
        self, store: Store, worker: Worker, tasks: Mapping[str, RunTask], depot: Any, ray: Any
    ) -> None:
        self.store, self.worker, self.tasks, self.depot, self.ray = store, worker, tasks, depot, ray
        self.in_flight: dict[Any, RunTask] = {}
        self.given_back: set[str] = set()  # not taken again by this driver: Ray gave up on them
        self.reached: set[str] = set()  # trained to the setup's until_epoch: pending, done here

    def claim(self, setup: WorkerSetup):
        keys = [key for key in self.tasks if key not in self.given_back | self.reached]
        return self.store.claim_next(self.worker, keys=keys, stale_after=setup.stale_after)

    def record_streamed(self) -> None:
        """Record what the tasks handed the depot since the last look: setups and epochs."""
        for kind, key, value in self.ray.get(self.depot.drain.remote()):
            task = self.tasks[key]
            try:
                if kind == "setup":
                    self._record_setup(task, value)
                else:
                    path = checkpoint_path(task, value.epoch)
                    self.store.record_epoch(key, self.worker, value, checkpoint=path)
            except ClaimLostError as lost:  # another driver took the run over: its to record
                log.warning("run %s: %s", key, lost)

    def _record_setup(self, task: RunTask, setup: dict[str, Any]) -> None:
        self.store.record_setup(
            task.key,
            self.worker,
            device=setup["device"],
            versions=setup["versions"],
            params=task.params,
            flops=task.flops,
        )
        if setup["resumes_after"]:
            log.warning(
                "run %s (%s, seed %d) resumes after epoch %d on node %s",
                task.key,
                task.model.name,
                task.seed,
                setup["resumes_after"],
                setup["node"][:12],
            )

    def settle(self, ref: Any, task: RunTask) -> None:
        """Record a finished task's outcome; a task Ray gave up on is given back, pending."""
        try:
            report = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            cause = remote_cause(error)
            if isinstance(cause, CnnlabError):  # the setup is wrong, not the run
                release_quietly(self.store, task.key, self.worker)
                raise StudyError(str(cause)) from None
            reason = f"Ray task failed: {type(cause).__name__}: {first_line(cause)}"
            report = failed_report(task, reason)
        except self.ray.exceptions.RayError as error:
            self.give_back(task, error)
            return
        record_report(self.store, self.worker, task, report)
        if report.status == "paused":
            self.reached.add(task.key)

    def give_back(self, task: RunTask, error: Exception) -> None:
        release_quietly(self.store, task.key, self.worker)
        self.given_back.add(task.key)
        log.warning(
            "run %s (%s, seed %d): Ray gave up after %d retries (%s: %s); it is pending "
            "again, and the next `cnnlab run` resumes it from its last checkpoint",
            task.key,
            task.model.name,
            task.seed,
            TASK_RETRIES,
            type(error).__name__,
            first_line(error),
        )

    def abandon(self) -> None:
        """Ctrl-C: record what the depot holds, cancel the tasks, give their runs back."""
        try:
            self.record_streamed()
        except (StoreError, self.ray.exceptions.RayError) as error:
            log.warning("epochs not recorded on stopping: %s", error)
        for ref, task in self.in_flight.items():
            self.ray.cancel(ref)
            release_quietly(self.store, task.key, self.worker)


def remote_cause(error: Exception) -> BaseException:
    """The exception a task or actor raised, as it would read locally: Ray's error for it
    reads as the remote traceback, whose first line only names the process."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def record_report(store: Store, worker: Worker, task: RunTask, report: RunReport) -> None:
    """Write a run trained elsewhere: the epochs the store lacks, then its outcome.

    The epochs normally arrived already (streamed through the depot); a finished run keeps
    only its last checkpoint in the driver's copy too.
    """
    stored = len(store.get_run(task.key).epochs)
    for metrics in report.history[stored:]:
        store.record_epoch(
            task.key, worker, metrics, checkpoint=checkpoint_path(task, metrics.epoch)
        )
    if report.status == "done" and report.history:
        last = report.history[-1].epoch
        prune_checkpoints(task.run_dir, keep=task.run_dir / f"epoch-{last:04d}.safetensors")
    if report.status == "failed" and not report.device:  # it never started: no setup recorded
        store.record_setup(
            task.key,
            worker,
            device="",
            versions=report.versions,
            params=task.params,
            flops=task.flops,
        )
    finish(store, worker, task, report)


def mark_study_dir(study_dir: Path) -> str:
    """Write a fresh token into the study directory; a node that reads it back shares it."""
    token = secrets.token_hex(16)
    study_dir.mkdir(parents=True, exist_ok=True)
    write_file(study_dir / SHARED_MARKER, token.encode())
    return token


def start_depot(ray: Any) -> Any:
    """The depot actor on this (the driver's) node: it writes into the study directory."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor = ray.remote(Depot).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    )
    return actor.remote()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise StudyError(
            "--executor ray needs Ray, which is not installed; install it with "
            "`pip install 'cnnlab[ray]'` or use --executor local"
        ) from None
    return ray


def connect_ray(ray: Any, address: str | None) -> bool:
    """Join the Ray cluster at `address`, or start a local one; True when started here."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at {address}" if address else "locally"
        hint = ""
        if address and not os.environ.get("RAY_AUTH_MODE"):
            hint = (
                " (when `ray start` said token authentication is enabled, run cnnlab with "
                "RAY_AUTH_MODE=token and the cluster's token, as Ray's docs on token "
                "authentication say)"
            )
        message = first_line(error)
        raise StudyError(f"cannot start or reach a Ray cluster {where}: {message}{hint}") from error
    return True
