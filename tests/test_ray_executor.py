"""The Ray executor's parts that need no cluster: GPU shares, the shared-directory check, and
how a run directory is mirrored into the driver's study directory."""

from __future__ import annotations

import errno
import traceback
from dataclasses import replace
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.executors import RunTask, StudyError, WorkerSetup, make_executor, storage_failure
from cnnlab.ray_executor import (
    SHARED_MARKER,
    Driver,
    NodeSetupError,
    RayExecutor,
    TaskPlace,
    check_gpus_per_run,
    epoch_sender,
    mark_study_dir,
    mirror_files,
    read_files,
    sees_shared_dir,
)
from cnnlab.store import NewRun, Worker, open_store


def setup(device: str | None = None) -> WorkerSetup:
    return WorkerSetup(
        store_url="", dataset="mnist", dataset_id="mnist@0", data_dir=None, device=device, threads=2
    )


@pytest.mark.parametrize("gpus", [0, -0.5, 1.5, float("nan")])
def test_gpus_per_run_must_be_a_share_of_one_gpu_or_whole_gpus(gpus):
    with pytest.raises(StudyError, match=rf"--gpus-per-run must be .* got {gpus}"):
        check_gpus_per_run(gpus)


def test_a_quarter_gpu_per_run_asks_ray_for_that_share_and_trains_on_cuda():
    pytest.importorskip("ray")
    executor = RayExecutor(gpus_per_run=0.25)
    assert executor.resources(setup()) == {"num_cpus": 2, "num_gpus": 0.25}
    assert executor.device(setup()) == "cuda"


def test_gpus_per_run_with_a_cpu_device_is_refused():
    pytest.importorskip("ray")
    with pytest.raises(StudyError, match="--gpus-per-run 0.5 asks for GPUs, but --device is cpu"):
        RayExecutor(gpus_per_run=0.5).resources(setup("cpu"))


def test_gpus_per_run_on_the_local_executor_points_to_jobs():
    with pytest.raises(StudyError, match=r"--gpus-per-run is for a Ray cluster.*--jobs N"):
        make_executor("local", gpus_per_run=0.5)


def task_in(study_dir: Path) -> RunTask:
    return RunTask(
        key="k",
        model=None,  # type: ignore[arg-type]  # not looked at here
        seed=0,
        training=None,  # type: ignore[arg-type]
        run_dir=study_dir / "runs" / "k",
        study_dir=study_dir,
        params=0,
        flops=0,
    )


def test_a_node_shares_the_study_directory_only_when_it_reads_this_drivers_token(tmp_path):
    task = task_in(tmp_path)
    assert not sees_shared_dir(task, TaskPlace(None, "token"))  # no marker: not shared
    token = mark_study_dir(tmp_path)
    assert sees_shared_dir(task, TaskPlace(None, token))
    assert not sees_shared_dir(task, TaskPlace(None, "another driver's"))
    assert not sees_shared_dir(task, TaskPlace(False, token))  # --shared-dir no


def test_shared_dir_yes_on_a_node_without_the_directory_says_so(tmp_path):
    with pytest.raises(NodeSetupError, match=r"is not shared with this node.*--shared-dir no"):
        sees_shared_dir(task_in(tmp_path / "elsewhere"), TaskPlace(True, "token"))


def test_mirroring_writes_new_files_and_drops_what_the_task_dropped(tmp_path):
    run_dir = tmp_path / "run"
    first = {"epoch-0001.json": b"1", "epoch-0001.safetensors": b"a"}
    mirror_files(run_dir, first, list(first))
    assert read_files(run_dir) == first
    (run_dir / SHARED_MARKER).write_text("hidden files are not the task's")
    present = ["epoch-0002.json", "epoch-0002.safetensors"]
    mirror_files(run_dir, {"epoch-0002.json": b"2", "epoch-0002.safetensors": b"b"}, present)
    assert read_files(run_dir) == {"epoch-0002.json": b"2", "epoch-0002.safetensors": b"b"}
    assert (run_dir / SHARED_MARKER).exists()


def test_shared_dir_takes_auto_yes_or_no(tmp_path, capsys):
    assert main(["run", "x.toml", "--executor", "ray", "--shared-dir", "maybe"]) == 2
    assert "--shared-dir must be auto, yes or no, got 'maybe'" in capsys.readouterr().err


# -- errors raised on another node read as they do locally --------------------------------------


def remote_error(cause: Exception, where: str = "Depot.epoch") -> Exception:
    """What `ray.get` raises for an exception in a task or actor: a traceback, then the cause."""
    ray = pytest.importorskip("ray")
    try:
        raise cause
    except Exception:
        text = traceback.format_exc()
    return ray.exceptions.RayTaskError(where, text, cause).as_instanceof_cause()


class Raising:
    """Ray as the task sees it when the call it waits for raised `error`."""

    def __init__(self, error: Exception) -> None:
        import ray

        self.error, self.exceptions = error, ray.exceptions

    def get(self, ref):
        raise self.error


class Depot:
    class epoch:  # noqa: N801  # Ray's actor method handle: depot.epoch.remote(...)
        @staticmethod
        def remote(*args):
            return "ref"


EPOCH = {
    "epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": None, "val_accuracy": None,
    "seconds": 1.0, "images_per_second": 10.0,
}  # fmt: skip


def test_a_driver_disk_that_is_full_stops_the_study_with_one_line_as_locally(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    send = epoch_sender(
        task_in(tmp_path), tmp_path, Depot(), Raising(remote_error(full)), shared=True
    )
    with pytest.raises(OSError) as raised:
        send(EPOCH)
    reason = f"{type(raised.value).__name__}: {raised.value}"
    assert reason == "OSError: [Errno 28] No space left on device"
    assert storage_failure(reason) == "the disk is full"


def test_a_task_that_raised_is_failed_with_the_errors_own_line(tmp_path):
    pytest.importorskip("ray")
    with open_store(tmp_path) as store:
        task = task_in(tmp_path)
        store.add_runs([NewRun("m", 0, "mnist", {"name": "m"}, {})])
        key = store.list_runs()[0].key
        task = replace(task, key=key)
        worker = Worker.current("ray")
        store.claim_next(worker)
        error = remote_error(ValueError("no such layer"), "ray_train_task")
        Driver(store, worker, {key: task}, Depot(), Raising(error)).settle("ref", task)
        run = store.get_run(key)
    assert (run.status, run.reason) == ("failed", "Ray task failed: ValueError: no such layer")
