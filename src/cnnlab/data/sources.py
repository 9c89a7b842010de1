"""Source strings to datasets: a registry name, `idx:DIR` or `npz:FILE`."""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.cache import locate_file, read_checked, resolve_data_dir
from cnnlab.data.dataset import ROLES, CheckedFile, Dataset, Verification, assemble
from cnnlab.data.download import download_missing
from cnnlab.data.idx import verify_idx_dir
from cnnlab.data.npz import verify_npz
from cnnlab.data.registry import DatasetInfo, get_dataset_info
from cnnlab.errors import DataError


def verify_registered(
    info: DatasetInfo, data_dir: str | Path | None, offline: bool, download: bool
) -> Verification:
    directory = resolve_data_dir(data_dir)
    arrays, checked = [], []
    for role, file in zip(ROLES, info.files, strict=True):
        path = locate_file(info, file, directory)
        if path is None and download:
            path, _ = download_missing(info, file, directory, offline)
        elif path is None:
            raise DataError(
                f"{info.name}: {file.name}[.gz] not found in {directory} or "
                f"{directory / info.name}; run `cnnlab data fetch {info.name}`, or pass "
                "--data-dir DIR with local copies"
            )
        array, check = read_checked(path, file, info)
        arrays.append(array)
        checked.append(CheckedFile(role, path, check, array.shape))
    return assemble(info.name, arrays, checked, expected_classes=info.classes)


def verify_source(
    source: str | DatasetInfo, data_dir: str | Path | None, offline: bool, download: bool
) -> Verification:
    if isinstance(source, DatasetInfo):
        return verify_registered(source, data_dir, offline, download)
    kind, _, rest = source.partition(":")
    if kind == "idx" and rest:
        return verify_idx_dir(source, Path(rest).expanduser())
    if kind == "npz" and rest:
        return verify_npz(source, Path(rest).expanduser())
    return verify_registered(get_dataset_info(source), data_dir, offline, download)


def load_dataset(
    source: str | Path | DatasetInfo = "mnist",
    *,
    data_dir: str | Path | None = None,
    offline: bool = False,
) -> Dataset:
    """Load a dataset: a registry name (downloaded if missing), `idx:DIR` or `npz:FILE`.

    Registry files are looked for flat in the data directory, then in DATA_DIR/<name>/, and
    verified by content checksum on every load. A Path is read as `idx:DIR` (a directory) or
    `npz:FILE`. Arrays are read-only; copy to modify.
    """
    if isinstance(source, Path):
        source = f"{'idx' if source.is_dir() else 'npz'}:{source}"
    return verify_source(source, data_dir, offline, download=True).dataset


def verify_dataset(
    source: str | DatasetInfo = "mnist", *, data_dir: str | Path | None = None
) -> Verification:
    """Check a dataset's files where they lie, never downloading; per-file evidence included."""
    return verify_source(source, data_dir, offline=True, download=False)
