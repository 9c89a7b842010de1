"""The embedded backend: one SQLite file in WAL mode in the study's directory.

WAL lets `cnnlab status` read while a study writes, and a writer killed mid-transaction leaves
the file as it was before that transaction (https://www.sqlite.org/wal.html). Every write runs
in `BEGIN IMMEDIATE`, which takes the write lock up front, so two processes claiming runs are
serialised by SQLite itself rather than by a lock file of ours.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.store.errors import ClaimLostError, StoreError
from cnnlab.store.identity import canonical_json
from cnnlab.store.interface import (
    FINAL_STATUSES,
    STALE_AFTER_SECONDS,
    STATUSES,
    EpochMetrics,
    NewRun,
    Predictions,
    RunRecord,
    RunStatus,
    StudyInfo,
    TestMetrics,
    Worker,
    claim_is_stale,
)

SCHEMA_VERSION = 3  # PRAGMA user_version; bump with a migration when the tables change

RUNS_TABLE = """CREATE TABLE {name} (
        seq INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        seed INTEGER NOT NULL,
        dataset TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        training_json TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'running', 'done', 'failed', 'diverged', 'pruned')),
        reason TEXT,
        stopped_epoch INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        worker_id TEXT,
        worker_host TEXT,
        worker_pid INTEGER,
        heartbeat_at REAL,
        device TEXT,
        versions_json TEXT,
        params INTEGER,
        flops INTEGER,
        checkpoint TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        seconds REAL,
        test_loss REAL,
        test_accuracy REAL,
        test_labels_hash TEXT,
        best_epoch INTEGER)"""
RUNS_INDEX = "CREATE INDEX runs_by_status ON runs (status, seq)"

SCHEMA = (
    """CREATE TABLE study (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        name TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL)""",
    RUNS_TABLE.format(name="runs"),
    RUNS_INDEX,
    """CREATE TABLE epochs (
        run_key TEXT NOT NULL REFERENCES runs (key) ON DELETE CASCADE,
        epoch INTEGER NOT NULL CHECK (epoch >= 1),
        loss REAL,
        accuracy REAL,
        val_loss REAL,
        val_accuracy REAL,
        seconds REAL,
        images_per_second REAL,
        recorded_at REAL NOT NULL,
        learning_rate REAL,
        PRIMARY KEY (run_key, epoch)) WITHOUT ROWID""",
    """CREATE TABLE predictions (
        run_key TEXT PRIMARY KEY REFERENCES runs (key) ON DELETE CASCADE,
        dtype TEXT NOT NULL CHECK (dtype IN ('int8', 'int16')),
        data BLOB NOT NULL)""",
)

# Version 1 -> 2: the learning rate of each epoch and EarlyStopping's best epoch (cnnlab.train).
# Version 2 -> 3: the `pruned` status (cnnlab.halving). SQLite cannot change a CHECK in place, so
# the runs table is rebuilt as https://www.sqlite.org/lang_altertable.html#otheralter says, with
# foreign keys off (dropping the old table would otherwise delete every epoch and prediction).
# A cnnlab that knows only version 2 refuses a version-3 store by its user_version, with a line
# saying to upgrade, before it could misread a pruned run.
MIGRATIONS = {
    1: (
        "ALTER TABLE epochs ADD COLUMN learning_rate REAL",
        "ALTER TABLE runs ADD COLUMN best_epoch INTEGER",
    ),
    2: (
        RUNS_TABLE.format(name="runs_v3"),
        "INSERT INTO runs_v3 SELECT * FROM runs",
        "DROP TABLE runs",
        "ALTER TABLE runs_v3 RENAME TO runs",
        RUNS_INDEX,
    ),
}
REBUILDS = (2,)  # migrations from these versions rebuild a table: foreign keys must be off

# SQLite turns a bound NaN into NULL; a diverged run's NaN loss is a result worth keeping, so
# NaN travels as this text (REAL affinity leaves non-numeric text as it is).
_NAN = "NaN"


def ensure_writable(path: Path) -> None:
    """Fail early, naming the path, where the store could not be written.

    WAL needs the database file and its directory writable (the -wal and -shm files live
    beside it), so both are probed before SQLite would fail somewhere in the middle of a study.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the study directory {directory} ({error.strerror}); create it or"
            " choose another study directory"
        ) from error
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise StoreError(
            f"the study directory {directory} is not writable ({error.strerror}): the results "
            f"store needs to write {path.name} and its -wal/-shm files there; make it writable "
            "or choose another study directory"
        ) from error
    if path.exists():
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as error:
            raise StoreError(
                f"the results store {path} cannot be opened for writing ({error.strerror}); "
                "make it writable (chmod u+w) or choose another study directory"
            ) from error


class SqliteStore:
    """The `Store` contract on a SQLite file (see `cnnlab.store.interface.Store`)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self._clock = clock
        self._timeout = timeout  # seconds a write waits for another process's transaction
        self._lock = threading.RLock()
        if read_only:  # an archived study: nothing is created, configured or written
            self._conn = self._connect_read_only()
            return
        ensure_writable(self.path)
        self._conn = self._connect()
        try:
            self._create_schema()
        except BaseException:
            self._conn.close()
            raise

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- study -----------------------------------------------------------------------------

    def get_study(self) -> StudyInfo | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM study WHERE id = 1").fetchone()
        return _study_from_row(row) if row else None

    def set_study(self, name: str, settings: Mapping[str, Any]) -> StudyInfo:
        settings_json = canonical_json(settings)
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO study (id, name, settings_json, created_at, updated_at)"
                " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " name = excluded.name, settings_json = excluded.settings_json,"
                " updated_at = excluded.updated_at",
                (name, settings_json, now, now),
            )
            return _study_from_row(db.execute("SELECT * FROM study WHERE id = 1").fetchone())

    # -- runs ------------------------------------------------------------------------------

    def add_runs(self, runs: Iterable[NewRun]) -> list[RunRecord]:
        rows = [_new_run_row(run) for run in runs]  # hashed and validated before locking
        now = self._clock()
        with self._write() as db:
            db.executemany(
                "INSERT INTO runs (key, model, seed, dataset, spec_json, training_json, status,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)"
                " ON CONFLICT (key) DO NOTHING",
                [(*row, now) for row in rows],
            )
            stored = {run.key: run for run in self._select_runs(db, keys={r[0] for r in rows})}
        return [stored[row[0]] for row in rows]

    def get_run(self, key: str) -> RunRecord:
        with self._read() as db:
            return self._one_run(db, key)

    def list_runs(
        self,
        *,
        status: RunStatus | Iterable[RunStatus] | None = None,
        model: str | None = None,
        keys: Iterable[str] | None = None,
    ) -> list[RunRecord]:
        statuses = _statuses(status)
        with self._read() as db:
            return self._select_runs(
                db, statuses=statuses, model=model, keys=None if keys is None else set(keys)
            )

    def get_predictions(self, key: str) -> Predictions | None:
        with self._read() as db:
            run = self._one_run(db, key)
            row = db.execute("SELECT * FROM predictions WHERE run_key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            values = np.frombuffer(row["data"], dtype=np.dtype(row["dtype"]).newbyteorder("<"))
            return Predictions(values.copy(), test_labels_hash=run.test_labels_hash or "")
        except (ValueError, TypeError, StoreError) as error:  # bytes no run could have written
            raise StoreError(damaged(self.path, f"the predictions of run {key}: {error}")) from None

    # -- claims ----------------------------------------------------------------------------

    def claim_next(
        self,
        worker: Worker,
        *,
        keys: Iterable[str] | None = None,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> RunRecord | None:
        wanted = None if keys is None else set(keys)
        with self._write() as db:
            now = self._clock()
            candidates = db.execute(
                "SELECT key, status, worker_host, worker_pid, heartbeat_at FROM runs"
                " WHERE status IN ('pending', 'running') ORDER BY seq"
            ).fetchall()
            for row in candidates:
                if wanted is not None and row["key"] not in wanted:
                    continue
                if row["status"] == "running" and not _stale(row, now, stale_after):
                    continue
                db.execute(
                    "UPDATE runs SET status = 'running', worker_id = ?, worker_host = ?,"
                    " worker_pid = ?, heartbeat_at = ?, attempts = attempts + 1,"
                    " started_at = COALESCE(started_at, ?) WHERE key = ?",
                    (worker.id, worker.host, worker.pid, now, now, row["key"]),
                )
                return self._one_run(db, row["key"])
        return None

    def heartbeat(self, key: str, worker: Worker) -> None:
        with self._write() as db:
            self._hold(db, key, worker)

    def release(self, key: str, worker: Worker) -> None:
        with self._write() as db:
            self._hold(db, key, worker)
            db.execute(
                "UPDATE runs SET status = 'pending', worker_id = NULL, worker_host = NULL,"
                " worker_pid = NULL, heartbeat_at = NULL WHERE key = ?",
                (key,),
            )

    # -- results ---------------------------------------------------------------------------

    def record_setup(
        self,
        key: str,
        worker: Worker,
        *,
        device: str,
        versions: Mapping[str, str],
        params: int,
        flops: int,
    ) -> None:
        versions_json = canonical_json(versions)
        with self._write() as db:
            self._hold(db, key, worker)
            db.execute(
                "UPDATE runs SET device = ?, versions_json = ?, params = ?, flops = ?"
                " WHERE key = ?",
                (device, versions_json, int(params), int(flops), key),
            )

    def record_epoch(
        self, key: str, worker: Worker, metrics: EpochMetrics, *, checkpoint: str | None = None
    ) -> None:
        epoch = metrics.epoch
        with self._write() as db:
            self._hold(db, key, worker)
            last = db.execute(
                "SELECT COALESCE(MAX(epoch), 0) FROM epochs WHERE run_key = ?", (key,)
            ).fetchone()[0]
            if not 1 <= epoch <= last + 1:
                recorded = f"epochs 1..{last} are" if last else "no epoch is"
                raise StoreError(
                    f"run {key}: cannot record epoch {epoch} when {recorded} recorded; epochs"
                    f" are recorded in order from 1 (resume from a checkpoint of epoch {last}"
                    " or earlier)"
                )
            db.execute("DELETE FROM epochs WHERE run_key = ? AND epoch >= ?", (key, epoch))
            db.execute(
                "INSERT INTO epochs (run_key, epoch, loss, accuracy, val_loss, val_accuracy,"
                " seconds, images_per_second, recorded_at, learning_rate)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, epoch, *_epoch_values(metrics), self._clock(), _real(metrics.learning_rate)),
            )
            if checkpoint is not None:
                db.execute("UPDATE runs SET checkpoint = ? WHERE key = ?", (checkpoint, key))

    def finish_run(
        self,
        key: str,
        worker: Worker,
        *,
        status: RunStatus,
        reason: str | None = None,
        stopped_epoch: int | None = None,
        test: TestMetrics | None = None,
        predictions: Predictions | None = None,
        seconds: float | None = None,
        best_epoch: int | None = None,
    ) -> RunRecord:
        _check_outcome(key, status, reason, test, stopped_epoch)
        with self._write() as db:
            self._hold(db, key, worker)
            if predictions is not None:
                _store_predictions(db, key, predictions)
            db.execute(
                "UPDATE runs SET status = ?, reason = ?, stopped_epoch = ?, test_loss = ?,"
                " test_accuracy = ?, test_labels_hash = ?, seconds = ?, finished_at = ?,"
                " best_epoch = ?,"
                " worker_id = NULL, worker_host = NULL, worker_pid = NULL, heartbeat_at = NULL"
                " WHERE key = ?",
                (
                    status,
                    reason,
                    stopped_epoch,
                    _real(test.loss if test else None),
                    _real(test.accuracy if test else None),
                    predictions.test_labels_hash if predictions else None,
                    _real(seconds),
                    self._clock(),
                    best_epoch,
                    key,
                ),
            )
            return self._one_run(db, key)

    def requeue(self, key: str) -> RunRecord:
        with self._write() as db:
            run = self._one_run(db, key)
            if run.status not in ("failed", "diverged"):
                raise StoreError(
                    f"run {key} is {run.status}; only failed or diverged runs can be queued again"
                )
            db.execute("DELETE FROM epochs WHERE run_key = ?", (key,))
            db.execute("DELETE FROM predictions WHERE run_key = ?", (key,))
            db.execute(
                "UPDATE runs SET status = 'pending', reason = NULL, stopped_epoch = NULL,"
                " best_epoch = NULL,"
                " checkpoint = NULL, started_at = NULL, finished_at = NULL, seconds = NULL,"
                " test_loss = NULL, test_accuracy = NULL, test_labels_hash = NULL WHERE key = ?",
                (key,),
            )
            return self._one_run(db, key)

    # -- health ----------------------------------------------------------------------------

    def verify(self) -> list[str]:
        with self._read() as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            orphans = db.execute("PRAGMA foreign_key_check").fetchall()
        problems = [p for p in problems if p != "ok"]
        return problems + [f"row {row[1]} of table {row[0]} has no run" for row in orphans]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- internals -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode: transactions are begun explicitly below."""
        with self._errors():
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            try:
                _schema_version(conn, self.path)  # before any write: a foreign file stays as is
                _configure(conn, self.path, self._timeout)
            except BaseException:
                conn.close()
                raise
            return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A connection that never writes, for a study on a read-only disk or directory.

        WAL readers need the -shm file; where it is gone and cannot be made (the last writer
        closed cleanly, the directory is read-only) nobody can be writing, so the file is
        opened as immutable (https://www.sqlite.org/uri.html#uriimmutable)."""
        if not self.path.is_file():
            raise StoreError(f"no results store at {self.path}")
        uri = self.path.as_uri()
        with self._errors():
            for query in ("?mode=ro", "?mode=ro&immutable=1"):
                conn = sqlite3.connect(
                    uri + query, uri=True, timeout=self._timeout, isolation_level=None,
                    check_same_thread=False,
                )  # fmt: skip
                conn.row_factory = sqlite3.Row
                try:
                    if _schema_version(conn, self.path) == 0:
                        raise StoreError(f"{self.path} is an empty file, not a cnnlab store")
                    return conn
                except sqlite3.OperationalError:
                    conn.close()
                    if query.endswith("immutable=1"):
                        raise
                except BaseException:
                    conn.close()
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _create_schema(self) -> None:
        # Foreign keys can only be switched outside a transaction (a no-op inside one).
        rebuild = 0 < _schema_version(self._conn, self.path) <= max(REBUILDS)
        if rebuild:
            self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._write() as db:
                version = _schema_version(db, self.path)  # again: another process may have won
                if version == 0:
                    for statement in SCHEMA:
                        db.execute(statement)
                while 0 < version < SCHEMA_VERSION:  # an older store gains what is new
                    for statement in MIGRATIONS[version]:
                        db.execute(statement)
                    version += 1
                if rebuild and db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError(damaged(self.path, "rows without their run"))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            if rebuild:
                self._conn.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock before anything is read."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so a run and its epochs come from the same snapshot."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors as StoreErrors that name the file and what to do."""
        try:
            yield
        except sqlite3.Error as error:
            raise StoreError(_explain(self.path, error, self._timeout)) from error

    def _hold(self, db: sqlite3.Connection, key: str, worker: Worker) -> None:
        """Check that `worker` holds the run, and refresh its heartbeat."""
        row = db.execute("SELECT status, worker_id FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(_unknown_run(key, self.path))
        if row["status"] != "running" or row["worker_id"] != worker.id:
            holder = f" under {row['worker_id']}" if row["worker_id"] else ""
            raise ClaimLostError(
                f"run {key} is {row['status']}{holder}, not claimed by {worker.id}: its claim"
                " went stale and was taken over, or was never made; stop working on it"
            )
        db.execute("UPDATE runs SET heartbeat_at = ? WHERE key = ?", (self._clock(), key))

    def _one_run(self, db: sqlite3.Connection, key: str) -> RunRecord:
        found = self._select_runs(db, keys={key})
        if not found:
            raise StoreError(_unknown_run(key, self.path))
        return found[0]

    def _select_runs(
        self,
        db: sqlite3.Connection,
        *,
        statuses: tuple[str, ...] | None = None,
        model: str | None = None,
        keys: set[str] | None = None,
    ) -> list[RunRecord]:
        """Runs matching every filter given, in insertion order, with their epochs."""
        where, params = ["1"], []
        if statuses is not None:
            where.append(f"status IN ({_marks(statuses)})")
            params.extend(statuses)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        sql = f"SELECT * FROM runs WHERE {' AND '.join(where)}"
        if keys is None:
            rows = db.execute(sql, params).fetchall()
        else:
            sql += " AND key IN ({})"
            rows = [
                r
                for chunk in _chunks(keys)
                for r in db.execute(sql.format(_marks(chunk)), [*params, *chunk])
            ]
        rows.sort(key=lambda row: row["seq"])
        epochs = _epochs_of(db, [row["key"] for row in rows])
        return [_run_from_row(row, epochs.get(row["key"], ())) for row in rows]


def _schema_version(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version (0: empty file), refusing newer stores and foreign files."""
    # One statement, one snapshot: read apart, another process creating the store could
    # commit its tables in between, and a cnnlab store would be taken for a foreign file.
    version, tables = db.execute(
        "SELECT user_version, (SELECT COUNT(*) FROM sqlite_master) FROM pragma_user_version"
    ).fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the results store {path} has schema version {version}, newer than this cnnlab"
            f" understands ({SCHEMA_VERSION}); upgrade cnnlab to open it"
        )
    if version == 0 and tables:
        raise StoreError(
            f"{path} is a SQLite database but not a cnnlab results store;"
            " move it away or choose another study directory"
        )
    return version


def _configure(conn: sqlite3.Connection, path: Path, timeout: float) -> None:
    mode = _enter_wal(conn, timeout)
    if mode != "wal":
        raise StoreError(
            f"the results store {path} cannot use SQLite's WAL journal here (got {mode!r});"
            " put the study directory on a local disk"
        )
    # FULL: a committed epoch survives a power cut too, at one fsync per transaction (a few
    # per epoch); NORMAL would only protect against process crashes.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")


def _enter_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch a new file to WAL, waiting while another process writes its schema.

    The switch needs an exclusive lock, and SQLite answers "locked" at once instead of
    waiting for it (its busy timeout would risk a deadlock here), so two `cnnlab run` on one
    new directory would otherwise fail for a lock held a few milliseconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _explain(path: Path, error: sqlite3.Error, timeout: float) -> str:
    text = str(error)
    if "full" in text:
        hint = "free some disk space and run again; finished results are kept"
    elif "readonly" in text or "read-only" in text:
        hint = "make the store and its directory writable"
    elif "locked" in text or "busy" in text:
        hint = f"another process held it for over {timeout:.0f} s; run again"
    elif "malformed" in text or "corrupt" in text:
        return damaged(path, text)
    elif "not a database" in text:
        hint = "it is not a cnnlab results store or it is damaged; move it away"
    else:
        hint = "check the file and its directory"
    return f"results store {path}: {text}; {hint}"


def damaged(path: Path, what: str) -> str:
    """The line that says a store is damaged and how to check the whole file."""
    return (
        f"the results store {path} is damaged ({what}); `cnnlab status {path.parent} --check` "
        "checks every page (SQLite's PRAGMA integrity_check); keep a copy before repairing it"
    )


def _unknown_run(key: str, path: Path) -> str:
    return f"no run {key!r} in the results store {path}; `cnnlab runs` lists the stored runs"


def _statuses(status: RunStatus | Iterable[RunStatus] | None) -> tuple[str, ...] | None:
    if status is None:
        return None
    wanted = (status,) if isinstance(status, str) else tuple(status)
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise StoreError(f"unknown run status {unknown[0]!r}; known: {', '.join(STATUSES)}")
    return wanted


def _stale(row: sqlite3.Row, now: float, stale_after: float) -> bool:
    return claim_is_stale(
        host=row["worker_host"] or "",
        pid=row["worker_pid"] or 0,
        heartbeat_at=row["heartbeat_at"] or 0.0,
        now=now,
        stale_after=stale_after,
    )


def _check_outcome(
    key: str, status: str, reason: str | None, test: TestMetrics | None, stopped: int | None
) -> None:
    if status not in FINAL_STATUSES:
        raise StoreError(
            f"run {key}: a run finishes as {', '.join(FINAL_STATUSES)}, got {status!r}"
        )
    if status == "done" and test is None:
        raise StoreError(f"run {key}: a done run needs its test metrics")
    if status != "done" and not reason:
        raise StoreError(f"run {key}: a {status} run needs a reason")
    if status == "pruned" and (stopped is None or test is not None):
        raise StoreError(
            f"run {key}: a pruned run needs the epoch it stopped at (stopped_epoch) and has no "
            "test metrics"
        )


def _store_predictions(db: sqlite3.Connection, key: str, predictions: Predictions) -> None:
    values = predictions.predicted
    db.execute(
        "INSERT OR REPLACE INTO predictions (run_key, dtype, data) VALUES (?, ?, ?)",
        (key, values.dtype.name, values.astype(values.dtype.newbyteorder("<")).tobytes()),
    )


def _new_run_row(run: NewRun) -> tuple[str, str, int, str, str, str]:
    spec_json, training_json = canonical_json(run.spec), canonical_json(run.training)
    return (run.key, run.model, int(run.seed), run.dataset, spec_json, training_json)


def _epochs_of(db: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[EpochMetrics, ...]]:
    grouped: dict[str, list[EpochMetrics]] = {}
    for chunk in _chunks(keys):
        sql = f"SELECT * FROM epochs WHERE run_key IN ({_marks(chunk)}) ORDER BY run_key, epoch"
        for row in db.execute(sql, chunk):
            grouped.setdefault(row["run_key"], []).append(_epoch_from_row(row))
    return {key: tuple(epochs) for key, epochs in grouped.items()}


def _chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    """Keys in lists short enough for one IN (...): old SQLite builds allow 999 parameters."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), 500):
        yield ordered[start : start + 500]


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


def _epoch_values(m: EpochMetrics) -> tuple[Any, ...]:
    if isinstance(m.epoch, bool) or not isinstance(m.epoch, int):
        raise StoreError(f"an epoch number must be an integer, got {m.epoch!r}")
    return tuple(
        _real(v)
        for v in (m.loss, m.accuracy, m.val_loss, m.val_accuracy, m.seconds, m.images_per_second)
    )


def _epoch_from_row(row: sqlite3.Row) -> EpochMetrics:
    return EpochMetrics(
        epoch=row["epoch"],
        loss=_float(row["loss"]),
        accuracy=_float(row["accuracy"]),
        val_loss=_float(row["val_loss"]),
        val_accuracy=_float(row["val_accuracy"]),
        seconds=_float(row["seconds"]),
        images_per_second=_float(row["images_per_second"]),
        # A store opened read-only before its migration has no such column (Row's `in` looks
        # at values, hence keys()).
        learning_rate=_float(row["learning_rate"]) if "learning_rate" in row.keys() else None,  # noqa: SIM118
    )


def _run_from_row(row: sqlite3.Row, epochs: tuple[EpochMetrics, ...]) -> RunRecord:
    worker = None
    if row["worker_id"] is not None:
        worker = Worker(id=row["worker_id"], host=row["worker_host"], pid=row["worker_pid"])
    test = None
    if row["test_loss"] is not None:
        test = TestMetrics(loss=_float(row["test_loss"]), accuracy=_float(row["test_accuracy"]))
    return RunRecord(
        key=row["key"],
        model=row["model"],
        seed=row["seed"],
        dataset=row["dataset"],
        spec=json.loads(row["spec_json"]),
        training=json.loads(row["training_json"]),
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        reason=row["reason"],
        stopped_epoch=row["stopped_epoch"],
        best_epoch=row["best_epoch"] if "best_epoch" in row.keys() else None,  # noqa: SIM118
        worker=worker,
        heartbeat_at=row["heartbeat_at"],
        device=row["device"],
        versions=json.loads(row["versions_json"]) if row["versions_json"] else None,
        params=row["params"],
        flops=row["flops"],
        checkpoint=row["checkpoint"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        seconds=_float(row["seconds"]),
        test=test,
        test_labels_hash=row["test_labels_hash"],
        epochs=epochs,
    )


def _study_from_row(row: sqlite3.Row) -> StudyInfo:
    return StudyInfo(
        name=row["name"],
        settings=json.loads(row["settings_json"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _real(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    return _NAN if math.isnan(value) else value


def _float(value: float | str | None) -> float | None:
    if value is None:
        return None
    return math.nan if value == _NAN else float(value)
