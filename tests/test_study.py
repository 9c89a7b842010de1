"""Studies as a user runs them: expansion and identity, resume, faults, checks before training."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cnnlab import study
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.errors import SpecError
from cnnlab.executors import StudyError, WorkerSetup, work_through
from cnnlab.spec import TrainingSpec
from cnnlab.store import StoreError, Worker, open_store
from cnnlab.train import train_model

# Two small models that learn something from 500 images in a second, two seeds, two epochs.
TINY = """
name = "tiny"
seeds = 2
[[model]]
name = "conv"
optimizer = "adam"
layers = [
  { conv = 8, kernel = 3, activation = "relu" }, { maxpool = 2 }, { dropout = 0.25 },
  "flatten", { dense = "classes", activation = "softmax" },
]
[[model]]
name = "dense"
optimizer = "adam"
layers = [
  "flatten", { dense = 32, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[training]
epochs = 2
batch_size = 64
validation = 0.1
"""

DIVERGING = """
[[model]]
name = "exploding"
optimizer = { name = "sgd", learning_rate = 1e6 }
layers = [
  "flatten", { dense = 32, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
"""


def write_study(directory: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run(study_file: Path, directory: Path, mnist_dir: Path, **options) -> study.StudyOutcome:
    options = {"train_limit": 500, "progress": "quiet", **options}
    return study.run_study(study_file, directory=directory, data_dir=mnist_dir, **options)


# -- expansion and identity (no training) --------------------------------------------------------


def test_a_study_expands_to_models_times_seeds_seed_first(tmp_path, mnist_dir):
    plan = study.plan_study(write_study(tmp_path), directory=tmp_path / "s", data_dir=mnist_dir)
    assert [(t.model.name, t.seed) for t in plan.tasks] == [
        ("conv", 0),
        ("dense", 0),
        ("conv", 1),
        ("dense", 1),
    ]
    assert len(set(plan.keys)) == 4
    assert all(t.run_dir == tmp_path / "s" / "runs" / t.key for t in plan.tasks)
    assert plan.tasks[0].params == 8 * 9 + 8 + 13 * 13 * 8 * 10 + 10  # conv + dense


def test_overrides_are_part_of_each_runs_identity(tmp_path, mnist_dir):
    path = write_study(tmp_path)

    def keys(**overrides):
        return study.plan_study(path, directory=tmp_path, data_dir=mnist_dir, **overrides).keys

    base = keys()
    assert keys() == base
    assert keys(seeds=1) == base[:2]
    assert keys(precision="fp32") == base
    for changed in (
        keys(epochs=3),
        keys(train_limit=500),
        keys(seeds=[5, 6]),
        keys(precision="bf16"),
    ):
        assert not set(changed) & set(base)
    assert keys(models="dense") == [base[1], base[3]]


def test_a_crop_larger_than_the_datasets_images_is_refused_before_anything_trains(
    tmp_path, mnist_dir
):
    training = TrainingSpec(augment=[{"random_crop": 40}])
    with pytest.raises(SpecError, match=r"augment\[0\] \(random_crop\): a 40x40 crop is larger"):
        study.plan_study(write_study(tmp_path), data_dir=mnist_dir, training=training)


def test_a_training_spec_replaces_the_studys_training_and_reaches_every_task(tmp_path, mnist_dir):
    path = write_study(tmp_path)
    training = TrainingSpec(epochs=3, batch_size=64, validation=0.2)
    plan = study.plan_study(
        path, directory=tmp_path, data_dir=mnist_dir, training=training, train_limit=500
    )
    assert plan.training == training.replace(train_limit=500)
    assert all(task.training == plan.training for task in plan.tasks)


def test_an_unknown_precision_is_refused_with_the_choices(tmp_path, mnist_dir):
    with pytest.raises(SpecError, match=r"--precision must be fp32 or bf16, got 'fp16'"):
        study.plan_study(write_study(tmp_path), data_dir=mnist_dir, precision="fp16")


def test_editing_one_model_reruns_only_that_model(tmp_path, mnist_dir):
    before = study.plan_study(write_study(tmp_path), directory=tmp_path, data_dir=mnist_dir)
    edited = write_study(tmp_path, TINY.replace("dense = 32", "dense = 16"), "edited.toml")
    after = study.plan_study(edited, directory=tmp_path, data_dir=mnist_dir)
    same = [a == b for a, b in zip(before.keys, after.keys, strict=True)]
    assert same == [True, False, True, False]  # conv kept, dense changed, for both seeds


def test_the_default_directory_is_studies_slash_the_study_name(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = study.plan_study(write_study(tmp_path), data_dir=mnist_dir)
    assert plan.directory == tmp_path / "studies" / "tiny"


def test_an_unknown_model_name_is_refused_with_a_close_match(mnist_dir):
    with pytest.raises(SpecError, match=r"no model 'modle-12'; did you mean 'model-12'"):
        study.plan_study("seed", models="model-1,modle-12", data_dir=mnist_dir)


def test_a_model_too_deep_for_the_images_is_refused_before_anything_is_written(tmp_path, mnist_dir):
    deep = TINY.replace("{ maxpool = 2 }", "{ conv = 8, kernel = 30 }")
    with pytest.raises(
        SpecError,
        match=r"model 'conv' on mnist \(28x28x1 images\): .*tiny.toml:8: layer 2 \(Conv2D\)",
    ):
        run(write_study(tmp_path, deep), tmp_path / "study", mnist_dir)
    assert not (tmp_path / "study").exists()


def test_a_train_limit_beyond_the_dataset_is_refused(tmp_path, mnist_dir):
    with pytest.raises(SpecError, match="between 1 and the 60000 training images of mnist"):
        run(write_study(tmp_path), tmp_path / "study", mnist_dir, train_limit=70_000)


def test_checkpoints_that_would_not_fit_on_the_disk_are_refused(tmp_path, mnist_dir, monkeypatch):
    full = shutil._ntuple_diskusage(total=10**9, used=10**9 - 1000, free=1000)
    monkeypatch.setattr(study.shutil, "disk_usage", lambda path: full)
    with pytest.raises(StudyError, match=r"not enough disk space .* 4 runs need about"):
        run(write_study(tmp_path), tmp_path / "study", mnist_dir)
    assert study.study_status(tmp_path / "study").counts["pending"] == 4


def test_the_disk_estimate_counts_one_checkpoint_per_run_and_one_more_per_job():
    per_param = study.CHECKPOINT_BYTES_PER_PARAM
    runs = study.STORE_BYTES_PER_RUN * 3
    assert study.estimate_disk_bytes([10, 20, 30], jobs=2) == (60 + 2 * 30) * per_param + runs
    assert study.estimate_disk_bytes([], jobs=2) == 0


# -- training, resuming, faults --------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_dir) -> tuple[Path, Path, study.StudyOutcome]:
    """The tiny study trained once: its file, its directory and the outcome."""
    root = tmp_path_factory.mktemp("finished")
    path, directory = write_study(root), root / "study"
    return path, directory, run(path, directory, mnist_dir)


def test_a_finished_study_run_again_does_nothing(finished, mnist_dir):
    path, directory, first = finished
    assert first.counts["done"] == 4 and len(first.finished) == 4
    again = run(path, directory, mnist_dir)
    assert again.nothing_to_do and again.counts["done"] == 4
    assert [r.attempts for r in again.runs] == [1, 1, 1, 1]


def test_every_finished_run_holds_its_epochs_test_metrics_predictions_and_checkpoint(finished):
    _, directory, outcome = finished
    with open_store(directory) as store:
        for record in outcome.runs:
            assert [e.epoch for e in record.epochs] == [1, 2]
            assert record.test is not None and record.test.accuracy > 0.3  # chance: 0.1
            assert len(store.get_predictions(record.key).predicted) == 10_000
            assert record.params and record.flops and record.device.startswith("cpu")
            assert record.versions["torch"] and record.training["train_limit"] == 500
            kept = sorted(p.name for p in (directory / "runs" / record.key).iterdir())
            # the last epoch's checkpoint, and the best validation epoch's weights
            assert kept == [
                "best.json",
                "best.safetensors",
                "epoch-0002.json",
                "epoch-0002.safetensors",
            ]
            assert record.checkpoint == f"runs/{record.key}/epoch-0002.safetensors"


def test_status_counts_runs_and_epochs_of_a_finished_study(finished):
    _, directory, _ = finished
    status = study.study_status(directory)
    assert status.counts["done"] == 4 and status.epochs_done == status.epochs_total == 8
    assert status.eta_seconds == 0 and status.other_runs == 0


def test_a_diverging_model_is_recorded_with_its_reason_and_the_study_goes_on(tmp_path, mnist_dir):
    path = write_study(tmp_path, TINY + DIVERGING)
    outcome = run(path, tmp_path / "study", mnist_dir, seeds=1, epochs=1)
    by_model = {r.model: r for r in outcome.runs}
    assert by_model["exploding"].status == "diverged"
    assert "loss" in by_model["exploding"].reason and by_model["exploding"].stopped_epoch == 1
    assert by_model["conv"].status == by_model["dense"].status == "done"
    again = run(path, tmp_path / "study", mnist_dir, seeds=1, epochs=1, retry_failed=True)
    assert again.finished == (by_model["exploding"].key,)


class SlowSteps:
    """A progress display that takes its time inside each step, so epochs take long."""

    def start_epoch(self, epoch, epochs, steps):
        pass

    def update(self, step, running):
        time.sleep(0.2)

    def end_epoch(self, record):
        pass

    def close(self):
        pass


def train_part_of(task, mnist_dir: Path, epochs: int, progress="quiet") -> None:
    """What an interrupted study leaves: a run directory holding the first epochs."""
    settings = task.training
    train_model(
        task.model,
        load_dataset("mnist", data_dir=mnist_dir),
        seed=task.seed,
        epochs=epochs,
        batch_size=settings.batch_size,
        validation=settings.validation,
        train_limit=settings.train_limit,
        run_dir=task.run_dir,
        progress=progress,
    )


def test_a_damaged_checkpoint_is_reported_and_the_run_resumes_from_the_last_good_one(
    tmp_path, mnist_dir, caplog
):
    path, directory = write_study(tmp_path), tmp_path / "study"
    options = {"models": "conv", "seeds": 1, "epochs": 3}
    clean = run(path, tmp_path / "clean", mnist_dir, **options)
    (task,) = study.plan_study(
        path, directory=directory, train_limit=500, data_dir=mnist_dir, **options
    ).tasks
    train_part_of(task, mnist_dir, epochs=2)
    blob = task.run_dir / "epoch-0002.safetensors"
    blob.write_bytes(blob.read_bytes()[:-8] + b"damaged!")
    with caplog.at_level(logging.WARNING, logger="cnnlab.study"):
        resumed = run(path, directory, mnist_dir, **options)
    assert "damaged checkpoint passed over: epoch-0002" in caplog.text
    (record,) = resumed.runs
    assert record.status == "done" and [e.epoch for e in record.epochs] == [1, 2, 3]
    with open_store(directory) as store, open_store(tmp_path / "clean") as reference:
        assert record.test == clean.runs[0].test
        assert np.array_equal(
            store.get_predictions(record.key).predicted,
            reference.get_predictions(record.key).predicted,
        )


class AskingToStopAtFirstEpoch:
    """A store that asks for a stop as the first epoch is recorded, with no KeyboardInterrupt:
    what is left when third-party code swallows the one that Ctrl-C raised."""

    def __init__(self, store, stopping: threading.Event) -> None:
        self.store, self.stopping = store, stopping

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def record_epoch(self, *args, **kwargs) -> None:
        self.store.record_epoch(*args, **kwargs)
        self.stopping.set()


def test_stacked_seeds_give_the_runs_separate_training_gives(finished, tmp_path, mnist_dir):
    path, _, separate = finished
    stacked = run(path, tmp_path / "stacked", mnist_dir, stack_seeds=True)
    assert stacked.counts["done"] == 4
    alone = {(r.model, r.seed): r for r in separate.runs}
    for record in stacked.runs:
        twin = alone[(record.model, record.seed)]
        assert record.key == twin.key  # the same runs: stacking is not part of their identity
        assert [e.epoch for e in record.epochs] == [1, 2] and record.attempts == 1
        assert record.test.accuracy == pytest.approx(twin.test.accuracy, abs=0.005)
        kept = sorted(p.name for p in (tmp_path / "stacked" / "runs" / record.key).iterdir())
        assert kept == [
            "best.json",
            "best.safetensors",
            "epoch-0002.json",
            "epoch-0002.safetensors",
        ]


@pytest.mark.parametrize(("seeds", "stacked"), [(1, False), (2, True)], ids=["alone", "stacked"])
def test_a_stop_whose_interrupt_was_lost_gives_the_runs_back_after_the_epoch(
    tmp_path, mnist_dir, seeds, stacked
):
    path, directory = write_study(tmp_path), tmp_path / "study"
    options = {"models": "conv", "seeds": seeds, "epochs": 3, "train_limit": 500}
    plan = study.plan_study(path, directory=directory, data_dir=mnist_dir, **options)
    setup = WorkerSetup(
        "", "mnist", plan.dataset_id, str(mnist_dir), None, threads=1, stack_seeds=stacked
    )
    stopping, worker = threading.Event(), Worker.current()
    with study.open_study_store(directory) as store:
        study.register_runs(store, plan)
        asking = AskingToStopAtFirstEpoch(store, stopping)
        with pytest.raises(KeyboardInterrupt):
            work_through(asking, worker, study.tasks_by_key(plan), plan.dataset, setup, stopping)
        given_back = store.list_runs()
        assert [(r.status, [e.epoch for e in r.epochs]) for r in given_back] == [
            ("pending", [1])
        ] * seeds  # a stacked group's stop waits until every seed's epoch is saved
        with pytest.raises(KeyboardInterrupt):  # a stop asked for claims nothing more
            work_through(store, worker, study.tasks_by_key(plan), plan.dataset, setup, stopping)
        assert [store.get_run(r.key).attempts for r in given_back] == [1] * seeds
    resumed = run(path, directory, mnist_dir, stack_seeds=stacked, **options).runs
    assert [(r.status, [e.epoch for e in r.epochs]) for r in resumed] == [
        ("done", [1, 2, 3])
    ] * seeds


def test_stacked_seeds_are_refused_with_the_ray_executor(tmp_path, mnist_dir):
    path = write_study(tmp_path)
    with pytest.raises(StudyError, match="--executor local"):
        run(path, tmp_path / "study", mnist_dir, executor="ray", stack_seeds=True)


# -- unwritable places ------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can enter (pytest's tmp_path is private to its owner)."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Act as a plain user: root writes through any permission bits."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(65534)  # nobody
    except PermissionError:
        pytest.skip("running as root without the right to drop privileges")
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_read_only_directory_is_refused_before_training(shared_dir, mnist_dir):
    path = write_study(shared_dir)
    path.chmod(0o644)
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    with unprivileged(), pytest.raises(StoreError, match=f"study directory {locked} is not writ"):
        run(path, locked, mnist_dir)
    assert list(locked.iterdir()) == []


def test_status_of_a_directory_without_a_study_says_how_to_start_one(tmp_path):
    with pytest.raises(StudyError, match=r"no study in .*nothing: .* start one with `cnnlab run"):
        study.study_status(tmp_path / "nothing")


def test_an_empty_study_path_is_refused_instead_of_read_as_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    open_store(tmp_path).close()  # a study here: "" must still not mean "."
    with pytest.raises(StudyError, match="no study directory given"):
        study.study_status("")


def test_read_commands_leave_a_file_that_is_no_study_untouched(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"")
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE things (x)")
    for path in (notes, foreign):
        before = path.read_bytes()
        with pytest.raises(StudyError, match=r"is not a cnnlab study store .* left untouched"):
            study.study_status(path)
        with pytest.raises(StudyError, match="is not a cnnlab study store"):
            study.study_runs(path)
        assert path.read_bytes() == before


def test_study_names_in_other_scripts_get_their_own_directories():
    assert study.default_directory("αβγ") == Path("studies/αβγ")
    assert study.default_directory("δεζ") == Path("studies/δεζ")
    emoji_a, emoji_b = study.default_directory("🚀"), study.default_directory("🚀🚀")
    assert emoji_a != emoji_b and emoji_a.name.startswith("study-")
    assert study.default_directory("../escape") == Path("studies/escape")


def test_a_second_study_is_refused_in_a_directory_that_holds_another(tmp_path, mnist_dir):
    run(write_study(tmp_path), tmp_path / "d", mnist_dir, seeds=1, epochs=1, models="dense")
    other = write_study(tmp_path, TINY.replace('name = "tiny"', 'name = "other"'), "other.toml")
    with pytest.raises(StudyError, match=r"holds study 'tiny', not 'other'.*another --dir"):
        run(other, tmp_path / "d", mnist_dir, seeds=1, epochs=1)


def test_training_some_models_again_keeps_the_others_in_view(tmp_path, mnist_dir):
    directory = tmp_path / "d"
    run(write_study(tmp_path), directory, mnist_dir, seeds=1, epochs=1)
    run(write_study(tmp_path), directory, mnist_dir, seeds=1, epochs=1, models="dense")
    status = study.study_status(directory)
    assert status.counts["done"] == 2 and status.other_runs == 0
    # Another recipe for one model: the other model's runs of the old recipe are not mixed in.
    run(write_study(tmp_path), directory, mnist_dir, seeds=1, epochs=2, models="dense")
    assert [(r.model, r.training["epochs"]) for r in study.study_runs(directory)] == [("dense", 2)]


def test_a_checkpoint_the_disk_refuses_stops_the_study_and_the_run_resumes_later(
    tmp_path, mnist_dir, monkeypatch
):
    import cnnlab.train

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "d"))

    with monkeypatch.context() as patch:
        patch.setattr(cnnlab.train, "save_checkpoint", read_only)
        with pytest.raises(StudyError, match=r"the file system is read-only .* run the same"):
            run(write_study(tmp_path), tmp_path / "d", mnist_dir, seeds=1, epochs=1)
    assert study.study_status(tmp_path / "d").counts["failed"] == 0  # given back, not failed
    outcome = run(write_study(tmp_path), tmp_path / "d", mnist_dir, seeds=1, epochs=1)
    assert [r.status for r in outcome.runs] == ["done", "done"]


def test_status_counts_a_killed_workers_run_as_pending_not_training(tmp_path, mnist_dir):
    from cnnlab.store.interface import host_identity

    directory = tmp_path / "d"
    plan = study.plan_study(write_study(tmp_path), directory=directory, seeds=1, data_dir=mnist_dir)
    with study.open_study_store(directory) as store:
        study.register_runs(store, plan)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()  # a worker that was killed: its PID is dead on this host
        assert store.claim_next(Worker("killed", host_identity(), gone.pid)) is not None
        assert store.claim_next(Worker.current("alive")) is not None
    status = study.study_status(directory)
    assert status.counts["running"] == 1 and status.counts["pending"] == 1
    assert [run.worker.id for run in status.running] == [Worker.current("alive").id]


def test_runs_show_a_killed_workers_run_as_pending_as_status_does(tmp_path, mnist_dir, capsys):
    from cnnlab.store.interface import host_identity

    directory = tmp_path / "d"
    plan = study.plan_study(write_study(tmp_path), directory=directory, seeds=1, data_dir=mnist_dir)
    with study.open_study_store(directory) as store:
        study.register_runs(store, plan)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        first, second = plan.keys
        assert store.claim_next(Worker("killed", host_identity(), gone.pid), keys=[first])
        assert store.claim_next(Worker.current("alive"), keys=[second])
    assert [run.status for run in study.study_runs(directory)] == ["pending", "running"]
    assert main(["runs", str(directory), "--json"]) == 0
    assert [row["status"] for row in json.loads(capsys.readouterr().out)] == ["pending", "running"]


def test_a_loaded_dataset_given_to_a_study_is_told_to_be_a_name(tmp_path, mnist_dir):
    loaded = load_dataset("mnist", data_dir=mnist_dir)
    with pytest.raises(SpecError, match=r"dataset must name a dataset .* got Dataset"):
        study.plan_study(write_study(tmp_path), dataset=loaded, data_dir=mnist_dir)


def test_a_resumed_runs_time_counts_the_epochs_of_its_earlier_attempt(tmp_path, mnist_dir):
    path, directory = write_study(tmp_path), tmp_path / "study"
    options = {"models": "conv", "seeds": 1, "epochs": 3}
    (task,) = study.plan_study(
        path, directory=directory, train_limit=500, data_dir=mnist_dir, **options
    ).tasks
    train_part_of(task, mnist_dir, epochs=2, progress=SlowSteps())  # 2 slow epochs, then a stop
    (record,) = run(path, directory, mnist_dir, **options).runs
    assert sum(epoch.seconds for epoch in record.epochs[:2]) > 2.5  # 8 steps x 0.2 s each
    assert record.seconds >= sum(epoch.seconds for epoch in record.epochs)
