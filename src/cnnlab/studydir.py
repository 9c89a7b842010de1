"""A study's directory as the readers see it: where it is, and its store opened for reading.

`cnnlab status`, `cnnlab runs` and the report read a study without training it, so this module
stands below the training stack: it imports the store and nothing that imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnlab.errors import StudyError
from cnnlab.store import STORE_FILENAME, Store, open_store

DEFAULT_ROOT = Path("studies")  # studies/<name> under the current directory (git-ignored)

__all__ = [
    "DEFAULT_ROOT",
    "default_directory",
    "is_study_store",
    "open_existing_store",
    "study_directory",
]


def default_directory(name: str) -> Path:
    """studies/<name> under the current directory, the name made safe as one path component."""
    safe = re.sub(r"[^\w.-]+", "-", name).strip("-.")  # \w: letters of any script
    if not safe:  # nothing left (e.g. only emoji): distinct names must not share "study"
        safe = "study-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return DEFAULT_ROOT / safe


@contextmanager
def open_existing_store(directory: str | Path) -> Iterator[Store]:
    """A study's store, refusing to create one where a mistyped path points.

    A bare study name finds `studies/<name>`, where `cnnlab run` puts it by default.
    """
    if not str(directory).strip():  # Path("") is "." and would look there
        raise StudyError("no study directory given (an empty path): name the study's directory")
    given = Path(directory).expanduser()
    path = given if given.is_file() else study_directory(directory)
    store_path = path / STORE_FILENAME if path.is_dir() else path
    if not store_path.is_file():
        raise StudyError(
            f"no study in {directory}: {store_path} does not exist; start one with "
            f"`cnnlab run STUDY --dir {directory}`"
        )
    if not is_study_store(store_path):
        raise StudyError(
            f"{store_path} is not a cnnlab study store (give the directory `cnnlab run` wrote, "
            "or its store.sqlite); left untouched"
        )
    store = open_store(store_path, read_only=True)
    try:
        yield store
    finally:
        store.close()


def study_directory(directory: str | Path) -> Path:
    """The study directory a command names: DIR, its store file's folder, or a bare study name
    (`studies/<name>`, where `cnnlab run` puts it by default)."""
    path = Path(directory).expanduser()
    if not path.exists() and default_directory(str(directory)).is_dir():
        return default_directory(str(directory))
    return path.parent if path.is_file() else path


def is_study_store(path: Path) -> bool:
    """False only where `path` is surely no cnnlab store (not SQLite, or SQLite without its
    tables): a read command must not turn someone's empty or foreign file into a database.
    Where the schema cannot be read (a read-only or full disk), opening the store says why."""
    try:
        with path.open("rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                return False
        uri = f"{path.absolute().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    except (OSError, sqlite3.Error):
        return True
    return {"study", "runs"} <= tables
