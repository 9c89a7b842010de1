"""`cnnlab run` processes killed, interrupted or racing each other never lose or repeat a run.

Signals must land while the study still has work, however fast or slow the machine: the test
holds the store's write lock ("freezes" it) while it reads the study's state and sends the
signal, so no run can record an epoch, finish or be claimed in between. A kill inside a SQLite
transaction is the store's own test (D1 in test_store_sqlite.py and test_store_contract.py).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cnnlab import study
from cnnlab.store import STORE_FILENAME, open_store
from cnnlab.store.interface import pid_is_alive
from test_study import TINY

pytestmark = pytest.mark.slow

# Two small models, three epochs each, 1000 images: a second or two of training per study.
STUDY = TINY.replace('name = "tiny"', 'name = "faults"').replace("epochs = 2", "epochs = 3")
TRAIN_LIMIT = 1000
RUNS, EPOCHS = 4, 3
KILLS = 3
POLL_SECONDS = 0.01


def start(study_file: Path, directory: Path, mnist_dir: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "cnnlab", "run", str(study_file), "--dir", str(directory)]
    command += ["--train-limit", str(TRAIN_LIMIT), "--data-dir", str(mnist_dir), *options]
    # One thread per process: studies racing on 2 cores would otherwise spin against each other.
    command += ["--threads", "1", "--no-report"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@dataclass(frozen=True)
class Snapshot:
    """The study's state as a frozen store shows it."""

    statuses: list[str]
    live_claims: int  # running runs whose process is alive (a killed one's claim is not)
    epochs: int  # recorded, over all runs
    quickest_epoch: float  # seconds, or 0 before any epoch


def read_snapshot(db: sqlite3.Connection) -> Snapshot:
    runs = db.execute("SELECT status, worker_pid FROM runs").fetchall()
    epochs, quickest = db.execute("SELECT COUNT(*), MIN(seconds) FROM epochs").fetchone()
    live = sum(status == "running" and pid_is_alive(pid) for status, pid in runs)
    return Snapshot([status for status, _ in runs], live, epochs, quickest or 0.0)


@contextmanager
def looking(directory: Path, *, freeze: bool) -> Iterator[Snapshot | None]:
    """The study's state (None before the store exists). `freeze` holds the store's write lock
    until the block ends: meanwhile no process records an epoch, finishes, claims or gives
    back a run, so the state read stays true while the test acts on it."""
    path = directory / STORE_FILENAME
    if not path.exists():
        yield None
        return
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None, timeout=60)
    try:
        db.execute("BEGIN IMMEDIATE" if freeze else "BEGIN")
        created = db.execute("PRAGMA user_version").fetchone()[0] > 0  # the tables exist
        yield read_snapshot(db) if created else None
        db.execute("ROLLBACK")
    finally:
        db.close()


def signal_when(
    directory: Path,
    child: subprocess.Popen,
    signum: int,
    ready: Callable[[Snapshot], bool],
    rng: random.Random | None = None,
) -> Snapshot:
    """Send `signum` to `child`, inside a frozen store, once `ready` holds with a run training.

    The study runs free between looks (a frozen store would stall it), each a random fraction
    of its quickest epoch apart: the signal finds it mid-epoch, saving a checkpoint, waiting
    to record an epoch, evaluating the test set...
    """

    def due(snapshot: Snapshot | None) -> bool:
        return snapshot is not None and snapshot.live_claims > 0 and ready(snapshot)

    while child.poll() is None:
        with looking(directory, freeze=False) as seen:
            pass
        if due(seen):
            with looking(directory, freeze=True) as snapshot:
                if due(snapshot):
                    child.send_signal(signum)
                    return snapshot
        pause = seen.quickest_epoch / 2 if seen else 0
        time.sleep(rng.uniform(0, pause) if rng and pause else POLL_SECONDS)
    _, err = child.communicate()
    raise AssertionError(f"the study ended (exit code {child.returncode}) before the signal: {err}")


def check_every_run_done_once(directory: Path) -> list:
    """Every run done, epochs 1..E exactly once each, and a healthy SQLite file."""
    with open_store(directory) as store:
        runs = store.list_runs()
        assert [run.status for run in runs] == ["done"] * RUNS
        for run in runs:
            assert [e.epoch for e in run.epochs] == list(range(1, EPOCHS + 1))
            assert store.get_predictions(run.key) is not None
        assert store.verify() == []
    with sqlite3.connect(directory / STORE_FILENAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT run_key, epoch, COUNT(*) FROM epochs GROUP BY 1, 2").fetchall()
        assert len(rows) == RUNS * EPOCHS and {count for _, _, count in rows} == {1}
    return runs


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "faults.toml"
    path.write_text(STUDY)
    return path


def train_here(study_file: Path, directory: Path, mnist_dir: Path) -> study.StudyOutcome:
    """The study trained to its end in this process, one thread like the killed children."""
    return study.run_study(
        study_file,
        directory=directory,
        train_limit=TRAIN_LIMIT,
        data_dir=mnist_dir,
        threads=1,
        progress="quiet",
    )


@pytest.fixture(scope="module")
def unbroken(study_file, tmp_path_factory, mnist_dir) -> dict[str, np.ndarray]:
    """Each run's test predictions from a study that nothing interrupted."""
    directory = tmp_path_factory.mktemp("unbroken")
    outcome = train_here(study_file, directory, mnist_dir)
    with open_store(directory) as store:
        return {run.key: store.get_predictions(run.key).predicted for run in outcome.runs}


def test_sigkill_at_random_moments_then_resume_trains_every_run_once(
    study_file, tmp_path, mnist_dir, unbroken
):
    directory, rng, epochs = tmp_path / "study", random.Random(20240611), 0
    for _ in range(KILLS):
        child = start(study_file, directory, mnist_dir, "--quiet")
        # 0-2 epochs further on each time (0: as it claims a run), in the first half of the study.
        target = min(epochs + rng.randint(0, 2), RUNS * EPOCHS // 2)
        reached = lambda snapshot, target=target: snapshot.epochs >= target  # noqa: E731
        killed = signal_when(directory, child, signal.SIGKILL, reached, rng)
        child.communicate()
        epochs = killed.epochs
    # Here, not in a process: the Ctrl-C test resumes by the CLI.
    finished = train_here(study_file, directory, mnist_dir)
    assert finished.counts["done"] == RUNS
    runs = check_every_run_done_once(directory)
    assert sum(run.attempts for run in runs) > RUNS  # killed runs were taken over
    with open_store(directory) as store:  # resumed runs reach the unbroken runs' exact numbers
        for run in runs:
            assert np.array_equal(store.get_predictions(run.key).predicted, unbroken[run.key])


def has_store_open(child: subprocess.Popen, path: Path) -> bool:
    """Whether `child` opened the SQLite file (Linux's /proc); it then has its data loaded."""
    fds = Path(f"/proc/{child.pid}/fd")
    try:
        return any(fd.resolve() == path for fd in fds.iterdir())
    except OSError:  # the process ended, or a descriptor closed while looking
        return False


def test_two_cnnlab_run_on_one_study_never_train_a_run_twice(study_file, tmp_path, mnist_dir):
    directory = tmp_path / "study"
    directory.mkdir()
    open_store(directory).close()
    # Both processes wait at the frozen store, then race for the runs from the same moment.
    with looking(directory, freeze=True):
        children = [start(study_file, directory, mnist_dir, "--quiet") for _ in range(2)]
        path = (directory / STORE_FILENAME).resolve()
        while not all(has_store_open(child, path) for child in children):
            ended = [child for child in children if child.poll() is not None]
            assert not ended, ended[0].communicate()[1]
            time.sleep(POLL_SECONDS)
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    runs = check_every_run_done_once(directory)
    assert [run.attempts for run in runs] == [1] * RUNS


def interrupt(command: tuple, jobs: str) -> None:
    """Ctrl-C a `cnnlab run --jobs N` while a run trains and others wait: it gives them back."""
    child = start(*command, "--jobs", jobs)
    signal_when(command[1], child, signal.SIGINT, lambda s: "pending" in s.statuses)
    out, err = child.communicate(timeout=120)
    # A shell shows both as $? = 130. Once in about five clean runs the process ended by SIGINT
    # itself after printing its message (seen 2026-12-03, not yet explained; see the issue notes).
    assert child.returncode in (130, -signal.SIGINT), (out, err)
    assert "interrupted: finished runs are kept" in err
    with open_store(command[1]) as store:
        statuses = [run.status for run in store.list_runs()]
    assert "running" not in statuses and "pending" in statuses, err


def test_ctrl_c_gives_the_runs_back_and_the_same_command_resumes(study_file, tmp_path, mnist_dir):
    command = (study_file, tmp_path / "study", mnist_dir)
    interrupt(command, jobs="1")  # the study process trains
    interrupt(command, jobs="2")  # worker processes train: the study process stops them
    again = start(*command, "--jobs", "1")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"{RUNS} runs done" in out
    check_every_run_done_once(tmp_path / "study")
