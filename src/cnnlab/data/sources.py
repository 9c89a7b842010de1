"""Source strings to datasets: a registry name, `idx:DIR`, `npz:FILE`, `cifar:DIR`, `folder:DIR`.

A folder takes options after `?`: `folder:photos?image_size=32x32&channels=3&test_fraction=0.2`;
a CIFAR-100 directory `cifar:DIR?labels=coarse`.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.cache import locate_file, read_checked, resolve_data_dir, verify_file
from cnnlab.data.cifar import LAYOUTS, python_version_note, read_cifar, verify_cifar_source
from cnnlab.data.dataset import ROLES, CheckedFile, Dataset, Verification, assemble
from cnnlab.data.download import download_missing
from cnnlab.data.folder import parse_options, read_folder
from cnnlab.data.idx import verify_idx_dir
from cnnlab.data.npz import verify_npz
from cnnlab.data.registry import DataFile, DatasetInfo, get_dataset_info
from cnnlab.data.svhn import read_svhn
from cnnlab.errors import DataError

FOLDER_CACHE = "folder-cache"  # under the data directory
LOCAL_KINDS = ("idx", "npz", "cifar", "folder")  # sources that name a path: KIND:PATH[?options]


def verify_registered(
    info: DatasetInfo, data_dir: str | Path | None, offline: bool, download: bool
) -> Verification:
    """Locate (or download) a registered dataset's files, check them, read them."""
    directory = resolve_data_dir(data_dir)
    paths = [_local_file(info, file, directory, offline, download) for file in info.files]
    if info.format == "idx":
        return _read_idx_files(info, paths)
    checks = [verify_file(path, file, info) for path, file in zip(paths, info.files, strict=True)]
    if info.format in LAYOUTS:
        return read_cifar(
            paths[0], LAYOUTS[info.format], source=info.name, remedy=info.remedy, check=checks[0]
        )
    if info.format == "svhn":
        return read_svhn(
            (paths[0], paths[1]), source=info.name, remedy=info.remedy, check=checks[0]
        )
    raise DataError(f"{info.name}: unknown format {info.format!r} in the registry entry")


def _local_file(
    info: DatasetInfo, file: DataFile, directory: Path, offline: bool, download: bool
) -> Path:
    path = locate_file(info, file, directory)
    if path is None and download:
        path, _ = download_missing(info, file, directory, offline)
    elif path is None:
        name = f"{file.name}[.gz]" if file.gzipped else file.name
        places = (directory, directory / info.directory)
        note = python_version_note(*places) if info.format in LAYOUTS else ""
        raise DataError(
            f"{info.name}: {name} not found in {directory} or "
            f"{directory / info.directory}{note}; run "
            f"`cnnlab data fetch {info.name}`, or pass --data-dir DIR with local copies"
        )
    return path


def _read_idx_files(info: DatasetInfo, paths: list[Path]) -> Verification:
    arrays, checked = [], []
    for role, file, path in zip(ROLES, info.files, paths, strict=True):
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
    if kind in LOCAL_KINDS and rest:
        location, _, query = rest.partition("?")
        path = Path(location).expanduser()
        if kind == "folder":
            cache = resolve_data_dir(data_dir) / FOLDER_CACHE
            return read_folder(source, path, parse_options(source, query), cache)
        if kind == "cifar":
            return verify_cifar_source(source, path, _cifar_labels(source, query))
        if query:
            raise DataError(f"{source}: {kind}: sources take no options (the part after '?')")
        return verify_idx_dir(source, path) if kind == "idx" else verify_npz(source, path)
    return verify_registered(get_dataset_info(source), data_dir, offline, download)


def absolute_source(source: str) -> str:
    """`source` with a relative path made absolute against the current directory, where it was
    given (`npz:data/x.npz` -> `npz:/home/me/data/x.npz`); registry names as they are."""
    kind, _, rest = source.partition(":")
    if kind not in LOCAL_KINDS or not rest:
        return source
    location, question, query = rest.partition("?")
    return f"{kind}:{Path(location).expanduser().absolute()}{question}{query}"


def _cifar_labels(source: str, query: str) -> str:
    if query in ("", "labels=fine"):
        return "fine"
    if query == "labels=coarse":
        return "coarse"
    raise DataError(f"{source}: unknown option {query!r}; cifar:DIR takes labels=fine|coarse")


def load_dataset(
    source: str | Path | DatasetInfo = "mnist",
    *,
    data_dir: str | Path | None = None,
    offline: bool = False,
) -> Dataset:
    """Load a dataset: a registry name (downloaded if missing) or a local source.

    Local sources: `idx:DIR`, `npz:FILE`, `cifar:DIR` (or the release's .tar.gz) and
    `folder:DIR` (options after `?`, see the module docstring). Registry files are looked for
    flat in the data directory, then in DATA_DIR/<name>/, and verified by checksum on every
    load. A Path is read as `idx:DIR` (a directory) or `npz:FILE`. Arrays are read-only; copy
    to modify.
    """
    if isinstance(source, Path):
        source = f"{'idx' if source.is_dir() else 'npz'}:{source}"
    return verify_source(source, data_dir, offline, download=True).dataset


def verify_dataset(
    source: str | DatasetInfo = "mnist", *, data_dir: str | Path | None = None
) -> Verification:
    """Check a dataset's files where they lie, never downloading; per-file evidence included."""
    return verify_source(source, data_dir, offline=True, download=False)
