"""The SQLite backend's own promises: locations, files, schema versions and SQLite faults.

The rules every backend shares are in test_store_contract.py; these are about the file.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.store import (
    STORE_FILENAME,
    NewRun,
    Predictions,
    SqliteStore,
    StoreError,
    TestMetrics,
    Worker,
    open_store,
    sqlite_path,
)
from cnnlab.store.sqlite import RUNS_TABLE, SCHEMA_VERSION
from test_store_contract import epoch, new_run

ME = Worker.current("me")


# -- U1: locations -------------------------------------------------------------------------


def test_u1_a_directory_a_path_and_sqlite_urls_name_the_same_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store(tmp_path / "study" / STORE_FILENAME) as store:
        key = store.add_runs([new_run()])[0].key
    for url in ("study", "study/store.sqlite", "sqlite:///study/store.sqlite"):
        with open_store(url) as store:
            assert store.get_run(key).key == key
    with open_store(f"sqlite:///{tmp_path}/study") as store:
        assert store.url == f"sqlite:///{tmp_path}/study/{STORE_FILENAME}"  # 4 slashes


def test_u1_a_missing_study_directory_is_created(tmp_path):
    with open_store(tmp_path / "a" / "b" / "store.sqlite") as store:
        assert store.list_runs() == []
    assert (tmp_path / "a" / "b" / "store.sqlite").is_file()


# -- U2: unsupported locations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://me:secret@db/cnnlab", r"not supported yet.*cnnlab\[postgres\]"),
        ("postgresql+psycopg://db/cnnlab", "PostgreSQL stores"),
        ("mysql://db/x", "unknown store URL scheme 'mysql'.*sqlite:///relative/path"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("  ", "no store location given"),
    ],
)
def test_u2_unsupported_store_urls_are_refused_with_the_accepted_forms(url, message):
    with pytest.raises(StoreError, match=message) as raised:
        sqlite_path(url)
    assert "secret" not in str(raised.value)
    assert isinstance(raised.value, CnnlabError)


# -- U3: unwritable places -----------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can enter (pytest's tmp_path is private to its owner)."""
    directory = Path(tempfile.mkdtemp())
    directory.chmod(0o755)
    yield directory
    for path in directory.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(directory)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Act as a plain user: root writes through any permission bits, users do not."""
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


def test_u3_a_read_only_directory_is_refused_before_anything_is_written(shared_dir):
    study = shared_dir / "study"
    study.mkdir(mode=0o555)
    study.chmod(0o555)
    with unprivileged(), pytest.raises(StoreError, match=f"study directory {study} is not writ"):
        open_store(study / STORE_FILENAME)
    assert list(study.iterdir()) == []


def test_u3_a_read_only_store_file_is_refused_naming_it(shared_dir):
    SqliteStore(shared_dir / STORE_FILENAME).close()
    (shared_dir / STORE_FILENAME).chmod(0o444)
    shared_dir.chmod(0o777)
    with unprivileged(), pytest.raises(StoreError, match=r"store .*store.sqlite cannot be opened"):
        open_store(shared_dir)


def test_u3_a_study_directory_that_cannot_be_created_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the study directory .*file/study"):
        open_store(tmp_path / "file" / "study" / STORE_FILENAME)


# -- U4: foreign and newer files -----------------------------------------------------------


def test_u4_a_store_from_a_newer_cnnlab_asks_for_an_upgrade(tmp_path):
    SqliteStore(tmp_path / STORE_FILENAME).close()
    with sqlite3.connect(tmp_path / STORE_FILENAME) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer.*upgrade"):
        open_store(tmp_path)


def test_u4_a_foreign_sqlite_file_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="is a SQLite database but not a cnnlab results store"):
        open_store(path)
    assert path.read_bytes() == before


def test_u4_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / STORE_FILENAME
    path.write_bytes(b"these are notes, not a database" * 100)
    with pytest.raises(StoreError, match="not a database; it is not a cnnlab results store"):
        open_store(tmp_path)
    assert path.read_bytes() == b"these are notes, not a database" * 100


def test_new_store_is_a_wal_file_with_the_current_schema_version(tmp_path):
    SqliteStore(tmp_path / STORE_FILENAME).close()
    with sqlite3.connect(tmp_path / STORE_FILENAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- C3: processes opening one new store at once ------------------------------------------


class Rows:
    """A statement's rows, fetched: the connection holds no lock while the test acts."""

    def __init__(self, rows: list) -> None:
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows


def test_a_store_another_process_creates_while_this_one_looks_is_opened(tmp_path, monkeypatch):
    """The other process commits the schema right after this one's first read of the file."""
    path = tmp_path / STORE_FILENAME
    connect = sqlite3.connect
    hooked = []

    class OtherCommitsAfterTheFirstRead(sqlite3.Connection):
        def execute(self, sql, *args):
            rows = Rows(super().execute(sql, *args).fetchall())
            if not hooked:
                hooked.append(sql)
                with monkeypatch.context() as patch:
                    patch.setattr(sqlite3, "connect", connect)
                    SqliteStore(path).close()
            return rows

    factory = OtherCommitsAfterTheFirstRead
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: connect(*a, **k, factory=factory))
    with SqliteStore(path) as store:
        assert store.list_runs() == [] and hooked


def test_a_store_another_process_is_creating_is_waited_for_not_called_locked(tmp_path):
    path = tmp_path / STORE_FILENAME
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("BEGIN IMMEDIATE")  # a new file, its schema being written
    later = threading.Timer(0.3, creator.execute, ["ROLLBACK"])
    later.start()
    try:
        with SqliteStore(path, timeout=5) as store:
            assert store.list_runs() == []
    finally:
        later.join()
        creator.close()


# -- D1, D2: faults ------------------------------------------------------------------------


def _die_inside_a_transaction(path: str, key: str, ready) -> None:
    """Claim the run, then leave a large write transaction open until killed."""
    with open_store(path) as store:
        store.claim_next(Worker.current("doomed"), keys=[key])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE runs SET status = 'done', reason = 'never committed'")
    db.execute("DELETE FROM epochs")
    # 20 MB: more than SQLite's page cache, so uncommitted pages spill into the WAL file.
    db.execute("INSERT INTO predictions VALUES (?, 'int8', zeroblob(20000000))", (key,))
    ready.set()
    time.sleep(60)


@pytest.mark.slow
def test_d1_a_writer_killed_inside_a_transaction_leaves_nothing_half_written(tmp_path):
    path = tmp_path / STORE_FILENAME
    with SqliteStore(path) as store:
        key = store.add_runs([new_run()])[0].key
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    child = spawn.Process(target=_die_inside_a_transaction, args=(str(path), key, ready))
    child.start()
    assert ready.wait(timeout=60)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with SqliteStore(path, timeout=5) as store:
        run = store.get_run(key)
        assert (run.status, run.reason, run.worker.pid) == ("running", None, child.pid)
        assert store.get_predictions(key) is None
        assert store.claim_next(ME).key == key


def test_d2_a_full_disk_is_a_store_error_and_keeps_earlier_results(tmp_path):
    store = SqliteStore(tmp_path / STORE_FILENAME)
    key = store.add_runs([new_run()])[0].key
    store.claim_next(ME)
    store.record_epoch(key, ME, epoch(1))
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]  # fault injection
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    predictions = Predictions(np.zeros(200_000, dtype=np.int64), "h")
    with pytest.raises(StoreError, match="full; free some disk space"):
        store.finish_run(
            key, ME, status="done", test=TestMetrics(0.1, 0.9), predictions=predictions
        )
    run = store.get_run(key)
    assert (run.status, run.epochs, store.get_predictions(key)) == ("running", (epoch(1),), None)
    assert store.verify() == []
    store.close()


def test_d2_a_lock_held_too_long_is_a_store_error_saying_so(tmp_path):
    path = tmp_path / STORE_FILENAME
    store = SqliteStore(path, timeout=0.05)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked; another process held it"):
            store.add_runs([NewRun("m", 0, "mnist", {"name": "m"}, {})])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.add_runs([NewRun("m", 0, "mnist", {"name": "m"}, {})])[0].status == "pending"
    store.close()


def test_a_version_1_store_gains_the_learning_rate_and_best_epoch_columns(tmp_path):
    """Stores written before schema 2 open, migrate, and keep their runs."""
    path = tmp_path / STORE_FILENAME
    with open_store(path) as store:
        store.add_runs([new_run(seed=0)])
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE epochs DROP COLUMN learning_rate")
    db.execute("ALTER TABLE runs DROP COLUMN best_epoch")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with open_store(path) as store:
        (run,) = store.list_runs()
        assert run.best_epoch is None
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(epochs)")}
    assert "learning_rate" in columns
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


def test_a_version_2_store_learns_the_pruned_status_and_keeps_every_epoch_and_prediction(
    tmp_path,
):
    """Schema 3 rebuilds the runs table for its new CHECK: foreign keys must not cascade."""
    path = tmp_path / STORE_FILENAME
    predicted = Predictions(np.arange(20) % 10, "h")
    with open_store(path) as store:
        done, waiting = (run.key for run in store.add_runs([new_run(seed=0), new_run(seed=1)]))
        store.claim_next(ME)
        store.record_epoch(done, ME, epoch(1))
        store.finish_run(done, ME, status="done", test=TestMetrics(0.3, 0.9), predictions=predicted)
        store.claim_next(ME)
        store.record_epoch(waiting, ME, epoch(1), checkpoint="c1")
        store.release(waiting, ME)
    version_2 = RUNS_TABLE.format(name="runs_v2").replace(", 'pruned'", "")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = OFF")
    for statement in (version_2, "INSERT INTO runs_v2 SELECT * FROM runs", "DROP TABLE runs"):
        db.execute(statement)
    db.execute("ALTER TABLE runs_v2 RENAME TO runs")
    db.execute("PRAGMA user_version = 2")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        db.execute("UPDATE runs SET status = 'pruned'")
    db.close()
    with open_store(path) as store:
        assert [len(run.epochs) for run in store.list_runs()] == [1, 1]
        np.testing.assert_array_equal(store.get_predictions(done).predicted, predicted.predicted)
        store.claim_next(ME)
        pruned = store.finish_run(waiting, ME, status="pruned", reason="last", stopped_epoch=1)
        assert (pruned.status, pruned.checkpoint, len(pruned.epochs)) == ("pruned", "c1", 1)
        assert store.verify() == []
        assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # on again
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    db.close()


def test_an_epochs_learning_rate_and_a_runs_best_epoch_are_stored(tmp_path):
    with open_store(tmp_path / STORE_FILENAME) as store:
        (run,) = store.add_runs([new_run(seed=0)])
        store.claim_next(ME)
        store.record_epoch(run.key, ME, epoch(1, learning_rate=0.05))
        store.finish_run(
            run.key, ME, status="done", test=TestMetrics(0.3, 0.9), stopped_epoch=1, best_epoch=1
        )
        (stored,) = store.list_runs()
    assert stored.epochs[0].learning_rate == 0.05
    assert (stored.stopped_epoch, stored.best_epoch) == (1, 1)
