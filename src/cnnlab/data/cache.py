"""Where dataset files live (data directory, offline mode), and checking their content.

Registry files are verified by the SHA-256 of their *decompressed* bytes: mirrors recompress, so
archive checksums differ between them while the content does not. Hashing MNIST's 47 MB of
images takes ~25 ms against ~150 ms to gunzip them (measured on this project's 2-core CPU box),
so files are simply re-verified on every load; no "already verified" marker is kept.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from cnnlab.data.files import CHUNK, GZIP_MAGIC, candidates
from cnnlab.data.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx_file
from cnnlab.data.registry import KNOWN_CONTENT, DataFile, DatasetInfo
from cnnlab.errors import DataError

DATA_DIR_ENV = "CNNLAB_DATA_DIR"
OFFLINE_ENV = "CNNLAB_OFFLINE"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $CNNLAB_DATA_DIR, else the per-user cache."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return Path(platformdirs.user_cache_dir("cnnlab")) / "datasets"


def is_offline(offline: bool = False) -> bool:
    """True if downloads are forbidden, by the argument or by CNNLAB_OFFLINE=1."""
    return offline or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def locate_file(info: DatasetInfo, file: DataFile, data_dir: Path) -> Path | None:
    """The first copy of `file` found: flat in data_dir, then in data_dir/<dataset>; gz or raw.

    Flat IDX files whose labels are another registered dataset's are passed over when the
    subfolder has a copy, so one directory can hold MNIST flat and fashion-mnist/ beside it.
    """
    names = (lambda d: candidates(d, file.name)) if file.gzipped else (lambda d: (d / file.name,))
    flat = [path for path in names(data_dir) if path.is_file()]
    own = [path for path in names(data_dir / info.directory) if path.is_file()]
    if flat and own and _flat_labels_belong_elsewhere(info, data_dir):
        return own[0]
    return next(iter([*flat, *own]), None)


def _flat_labels_belong_elsewhere(info: DatasetInfo, data_dir: Path) -> bool:
    """True if data_dir's flat IDX labels are another registered dataset's, by content."""
    labels = next((file for file in info.files if file.gzipped and "labels" in file.name), None)
    if labels is None:
        return False
    path = next((p for p in candidates(data_dir, labels.name) if p.is_file()), None)
    if path is None:
        return False
    digest = hashlib.sha256()
    try:
        read_idx_file(
            path,
            expected_magic=IDX_LABELS_MAGIC,
            where=str(path),
            remedy="",
            limit=labels.size,
            digest=digest,
        )
    except DataError:
        return False  # not readable as labels: the usual lookup, whose check names the problem
    return digest.hexdigest() in KNOWN_CONTENT and digest.hexdigest() != labels.sha256


def check_content(
    digest: str,
    size: int,
    archive: Path | None,
    file: DataFile,
    dataset: str,
    where: str,
    remedy: str,
) -> str:
    """Verify a file's content (its SHA-256 and size, as read) against the registry.

    `archive`: the gzip file the content came from, whose MD5 is checked where the registry has
    only that. Returns how the content was checked.
    """
    if file.sha256 is not None:
        if digest != file.sha256:
            raise DataError(_mismatch(where, digest, file, dataset, remedy))
        return "content SHA-256"
    if digest in KNOWN_CONTENT:
        raise DataError(_mismatch(where, digest, file, dataset, remedy))
    if size != file.size:
        raise DataError(
            f"{where}: decompressed size is {size} bytes, expected {file.size} for "
            f"{dataset}'s {file.name}; {remedy}"
        )
    if archive is not None and file.archive_md5 is not None:
        archive_md5 = _file_digest(archive, hashlib.md5(), where, remedy)
        if archive_md5 != file.archive_md5:
            raise DataError(
                f"{where}: archive MD5 is {archive_md5}, expected {file.archive_md5} "
                f"(the canonical {file.name}.gz; no checksum of {dataset}'s decompressed "
                f"content is published, so only the canonical archive can be checked); {remedy}"
            )
        return "archive MD5"
    return "structure only"


def _file_digest(path: Path, digest, where: str, remedy: str) -> str:
    """A file's hash, read in chunks."""
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise DataError(f"{where}: cannot be read ({error.strerror}); {remedy}") from error
    return digest.hexdigest()


def _mismatch(where: str, digest: str, file: DataFile, dataset: str, remedy: str) -> str:
    belongs = KNOWN_CONTENT.get(digest)
    if belongs is not None and not remedy:  # a download: the mirror is wrong, not a directory
        return f"{where}: this is {belongs}, not {dataset}'s {file.name}"
    if belongs is not None:
        return (
            f"{where}: this is {belongs}, not {dataset}'s {file.name}; point --data-dir at a "
            f"directory holding {dataset}'s files (or its parent, with them in {dataset}/)"
        )
    expected = file.sha256 or "a file of no known dataset"
    return (
        f"{where}: SHA-256 of the decompressed content is {digest[:16]}..., expected "
        f"{expected[:16]}... ({dataset}'s {file.name}); the file is corrupt or not "
        f"{dataset}'s; {remedy}"
    )


def read_checked(
    path: Path,
    file: DataFile,
    info: DatasetInfo,
    where: str | None = None,
    remedy: str | None = None,
) -> tuple[np.ndarray, str]:
    """Read a registry IDX file (structure first: its errors say most), then verify its content.

    The content is hashed as it streams into the array; nothing beyond the array is held.
    Returns the array and how its content was checked.
    """
    where, remedy = where or str(path), info.remedy if remedy is None else remedy
    magic = IDX_LABELS_MAGIC if "labels" in file.name else IDX_IMAGES_MAGIC
    digest = hashlib.sha256()
    array = read_idx_file(
        path,
        expected_magic=magic,
        where=where,
        remedy=remedy,
        limit=file.size or None,
        digest=digest,
    )
    size = array.size + 4 + 4 * array.ndim
    archive = path if _is_gzip(path) else None
    check = check_content(digest.hexdigest(), size, archive, file, info.name, where, remedy)
    return array, check


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(2) == GZIP_MAGIC


def check_stored(
    path: Path,
    file: DataFile,
    info: DatasetInfo,
    where: str | None = None,
    remedy: str | None = None,
) -> str:
    """Check a file kept as served (an archive, a .mat) by its size, then its hash, streamed.

    Returns how it was checked. The size comes first: it costs nothing and rules out a
    truncated download or a file claiming to be larger than the dataset is.
    """
    where, remedy = where or str(path), info.remedy if remedy is None else remedy
    try:
        size = path.stat().st_size
        if size != file.size:
            raise DataError(
                f"{where}: {size:,} bytes, expected {file.size:,} for {info.name}'s {file.name}; "
                f"the file is truncated or not {info.name}'s; {remedy}"
            )
        if file.sha256 is None and file.archive_md5 is None:
            return "size only"
        digest = hashlib.sha256() if file.sha256 else hashlib.md5()
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise DataError(f"{where}: cannot be read ({error.strerror}); {remedy}") from error
    expected, kind = (file.sha256, "SHA-256") if file.sha256 else (file.archive_md5, "MD5")
    if digest.hexdigest() != expected:
        raise DataError(
            f"{where}: {kind} is {digest.hexdigest()}, expected {expected} ({info.name}'s "
            f"{file.name}, as its publisher lists it); the file is corrupt or not "
            f"{info.name}'s; {remedy}"
        )
    return f"file {kind}" if kind == "SHA-256" else "archive MD5"


def verify_file(
    path: Path,
    file: DataFile,
    info: DatasetInfo,
    where: str | None = None,
    remedy: str | None = None,
) -> str:
    """Check one registry file's content, whatever its format; return how it was checked."""
    if file.gzipped:
        return read_checked(path, file, info, where, remedy)[1]
    return check_stored(path, file, info, where, remedy)


@dataclass(frozen=True)
class LocalCopy:
    """Where a registered dataset's files lie, and whether their cheap checks pass.

    Only IDX label files (60 kB) are verified, and other files' sizes: enough to tell another
    dataset's files found flat in the data directory from the right ones, at no noticeable cost.
    """

    paths: tuple[Path | None, ...]
    problem: str | None  # the first verification error of a label file, if any

    @property
    def complete(self) -> bool:
        return self.problem is None and all(self.paths)


def inspect_local_copy(info: DatasetInfo, data_dir: str | Path | None = None) -> LocalCopy:
    """Locate the files and verify the cheap ones among them (IDX labels, other files' sizes)."""
    directory = resolve_data_dir(data_dir)
    paths = tuple(locate_file(info, file, directory) for file in info.files)
    for file, path in zip(info.files, paths, strict=True):
        try:
            if path is not None and file.gzipped and "labels" in file.name:
                read_checked(path, file, info)
            elif path is not None and not file.gzipped and path.stat().st_size != file.size:
                check_stored(path, file, info)
        except (DataError, OSError) as error:
            return LocalCopy(paths, str(error))
    return LocalCopy(paths, None)
