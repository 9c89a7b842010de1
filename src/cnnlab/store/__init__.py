"""The results store: every run of a study, its epochs, test metrics and predictions.

`open_store(url)` gives a `Store` (the contract, in `interface.py` and
`docs/store-contract.md`); by default an SQLite file in the study's directory. A server
database is a second backend behind the same contract, chosen by URL scheme.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.store.errors import ClaimLostError, StoreError
from cnnlab.store.identity import canonical_json, labels_hash, run_key
from cnnlab.store.interface import (
    FINAL_STATUSES,
    HEARTBEAT_SECONDS,
    STALE_AFTER_SECONDS,
    STATUSES,
    EpochMetrics,
    NewRun,
    Predictions,
    RunRecord,
    RunStatus,
    Store,
    StudyInfo,
    TestMetrics,
    Worker,
    claim_is_stale,
    count_statuses,
)
from cnnlab.store.sqlite import SqliteStore

STORE_FILENAME = "store.sqlite"  # inside a study directory; *.sqlite is git-ignored

_URL_FORMS = "a path, a study directory, sqlite:///relative/path or sqlite:////absolute/path"


def open_store(url: str | Path, *, read_only: bool = False) -> Store:
    """Open (creating if needed) the store at `url`; StoreError when it cannot be written.

    `url` is a file path, an existing study directory (its `store.sqlite`), or an SQLAlchemy
    style SQLite URL. PostgreSQL URLs are recognised and refused until that backend exists.
    `read_only`: an existing store, opened for reading only (an archived study on a read-only
    disk); writing through it is a StoreError.
    """
    return SqliteStore(sqlite_path(url), read_only=read_only)


def sqlite_path(url: str | Path) -> Path:
    """The SQLite file a store URL points at (relative paths stay relative to the cwd)."""
    text = str(url)
    if not text.strip():
        raise StoreError(f"no store location given; give {_URL_FORMS}")
    scheme, separator, rest = text.partition("://")
    if not separator:
        path = Path(text).expanduser()
    elif scheme == "sqlite":
        path = _path_of_sqlite_url(text, rest)
    elif scheme.split("+")[0] in ("postgresql", "postgres"):
        raise StoreError(
            f"PostgreSQL stores ({text.split('@')[-1]}) are not supported yet: they are planned"
            " as the cnnlab[postgres] extra; use a SQLite store in the study directory for now"
        )
    else:
        raise StoreError(f"unknown store URL scheme {scheme!r} in {text!r}; give {_URL_FORMS}")
    return path / STORE_FILENAME if path.is_dir() else path


def _path_of_sqlite_url(text: str, rest: str) -> Path:
    # SQLAlchemy's form: sqlite:///rel.db is relative, sqlite:////abs.db absolute, and
    # sqlite:// alone is in memory, which workers in other processes could never see.
    if not rest.startswith("/") or len(rest) == 1:
        raise StoreError(f"the SQLite URL {text!r} names no file; give {_URL_FORMS}")
    return Path(rest[1:]).expanduser()


__all__ = [
    "FINAL_STATUSES",
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_SECONDS",
    "STATUSES",
    "STORE_FILENAME",
    "ClaimLostError",
    "EpochMetrics",
    "NewRun",
    "Predictions",
    "RunRecord",
    "RunStatus",
    "SqliteStore",
    "Store",
    "StoreError",
    "StudyInfo",
    "TestMetrics",
    "Worker",
    "canonical_json",
    "claim_is_stale",
    "count_statuses",
    "labels_hash",
    "open_store",
    "run_key",
    "sqlite_path",
]
