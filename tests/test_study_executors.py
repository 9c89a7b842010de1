"""`--jobs N` and `--executor ray` train the same runs to the same numbers as one process.

With the same CPU threads per run, a run's numbers are bit-identical wherever it trains: the
executor adds nothing. With the default threads (all cores for one run, split between jobs)
float sums are ordered differently, so the numbers agree to float tolerance only.
"""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from cnnlab import study
from cnnlab.cli import main
from cnnlab.ray_executor import connect_ray
from cnnlab.store import open_store
from test_study import TINY

pytestmark = pytest.mark.slow

TRAIN_LIMIT = 500


def train(study_file: Path, directory: Path, mnist_dir: Path, **options) -> dict[str, tuple]:
    """Run the study; each run's per-epoch metrics, test metrics and test predictions by key."""
    outcome = study.run_study(
        study_file,
        directory=directory,
        train_limit=TRAIN_LIMIT,
        data_dir=mnist_dir,
        progress="quiet",
        **options,
    )
    assert outcome.counts["done"] == len(outcome.runs) == 4
    return results_of(directory)


def results_of(directory: Path) -> dict[str, tuple]:
    with open_store(directory) as store:
        return {
            run.key: (
                np.array([astuple(epoch)[1:5] for epoch in run.epochs]),  # loss ... val_accuracy
                run.test,
                store.get_predictions(run.key).predicted,
            )
            for run in store.list_runs()
        }


def assert_identical(expected: dict[str, tuple], found: dict[str, tuple]) -> None:
    assert found.keys() == expected.keys()
    for key, (epochs, test, predicted) in expected.items():
        assert np.array_equal(found[key][0], epochs), key
        assert found[key][1] == test, key
        assert np.array_equal(found[key][2], predicted), key


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("executors") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def one_thread(study_file, tmp_path_factory, mnist_dir) -> dict[str, tuple]:
    """The study trained in this process, one run after another, one CPU thread each."""
    return train(study_file, tmp_path_factory.mktemp("sequential"), mnist_dir, threads=1)


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine, started once for the module as `cnnlab run` starts one."""
    ray = pytest.importorskip("ray", reason="the Ray executor needs `pip install cnnlab[ray]`")
    assert connect_ray(ray, None), "a Ray instance was already running"
    yield ray
    ray.shutdown()


def test_jobs_2_trains_every_run_to_the_same_numbers_as_one_process(
    study_file, tmp_path, mnist_dir, one_thread
):
    found = train(study_file, tmp_path, mnist_dir, jobs=2, threads=1)
    assert_identical(one_thread, found)


def test_ray_tasks_train_every_run_to_the_same_numbers_as_one_process(
    study_file, tmp_path, mnist_dir, one_thread, local_ray
):
    found = train(study_file, tmp_path, mnist_dir, executor="ray", threads=1)
    assert_identical(one_thread, found)
    with open_store(tmp_path) as store:  # the driver recorded what the tasks reported
        assert all(run.device.startswith("cpu") and run.versions for run in store.list_runs())


def test_jobs_2_with_default_threads_agrees_with_one_process_to_float_tolerance(
    study_file, tmp_path, mnist_dir
):
    whole = train(study_file, tmp_path / "whole", mnist_dir)  # all cores for each run
    split = train(study_file, tmp_path / "jobs", mnist_dir, jobs=2)  # the cores split in two
    for key, (epochs, test, predicted) in whole.items():
        np.testing.assert_allclose(split[key][0], epochs, rtol=1e-5, atol=1e-6)
        assert split[key][1].accuracy == pytest.approx(test.accuracy, abs=1e-3)
        assert np.mean(split[key][2] != predicted) <= 1e-3


def test_cnnlab_run_executor_ray_trains_the_study_and_prints_its_runs(
    study_file, tmp_path, mnist_dir, one_thread, local_ray, capsys
):
    options = ["--dir", str(tmp_path), "--data-dir", str(mnist_dir), "--threads", "1"]
    options += ["--train-limit", str(TRAIN_LIMIT), "--no-report", "--json"]
    assert main(["run", str(study_file), "--executor", "ray", *options]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["status"] for row in rows] == ["done"] * 4
    assert_identical(one_thread, results_of(tmp_path))


def test_ray_tasks_standardise_per_channel_as_one_process_does(
    study_file, tmp_path, mnist_dir, local_ray
):
    # The statistics come from each task's own training part, as in this process.
    here = train(study_file, tmp_path / "here", mnist_dir, threads=1, normalize="per-channel")
    found = train(
        study_file, tmp_path / "ray", mnist_dir, executor="ray", threads=1, normalize="per-channel"
    )
    assert_identical(here, found)
    with open_store(tmp_path / "ray") as store:
        assert all(run.training["normalize"] == "per-channel" for run in store.list_runs())
