"""The Ray executor's parts that need no cluster: GPU shares, the shared-directory check, and
how a run directory is mirrored into the driver's study directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.executors import RunTask, StudyError, WorkerSetup, make_executor
from cnnlab.ray_executor import (
    SHARED_MARKER,
    NodeSetupError,
    RayExecutor,
    TaskPlace,
    check_gpus_per_run,
    mark_study_dir,
    mirror_files,
    read_files,
    sees_shared_dir,
)


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
