"""The CIFAR binary release: `cifar10`, `cifar100`, `cifar100-coarse` and `cifar:DIR`.

Read from the *binary* version (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"),
never the pickled Python version: no pickle is ever loaded. A CIFAR-10 record is 1 label byte
and 3072 pixel bytes (the 1024 red, then green, then blue values of a 32x32 image, row by row);
a CIFAR-100 record has 2 label bytes (coarse, then fine) before the pixels. Files are read in
chunks of records straight into the final (N, 32, 32, 3) array, after their sizes are checked,
so memory stays at the images' own size; an archive is read as it lies, never extracted.
"""

from __future__ import annotations

import dataclasses
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from cnnlab.data.dataset import CheckedFile, Verification, assemble
from cnnlab.data.memory import check_allocation
from cnnlab.errors import DataError

SIDE, CHANNELS = 32, 3
PIXELS = SIDE * SIDE * CHANNELS  # 3072 bytes per image
_RECORDS_PER_READ = 2048  # ~6 MB per read: large enough for speed, small beside the images


@dataclass(frozen=True)
class Layout:
    """One variant of the binary release: its file names, record size and label byte."""

    name: str
    folder: str  # the directory the release's archive unpacks into
    train: tuple[str, ...]
    test: str
    label_bytes: int  # bytes before the pixels of each record
    label_byte: int  # which of them is the label read
    classes: int
    names_file: str  # class names, one per line

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS


CIFAR10 = Layout(
    "CIFAR-10",
    "cifar-10-batches-bin",
    tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test_batch.bin",
    label_bytes=1,
    label_byte=0,
    classes=10,
    names_file="batches.meta.txt",
)
CIFAR100 = Layout(
    "CIFAR-100",
    "cifar-100-binary",
    ("train.bin",),
    "test.bin",
    label_bytes=2,
    label_byte=1,
    classes=100,
    names_file="fine_label_names.txt",
)
CIFAR100_COARSE = Layout(
    "CIFAR-100 (coarse)",
    "cifar-100-binary",
    ("train.bin",),
    "test.bin",
    label_bytes=2,
    label_byte=0,
    classes=20,
    names_file="coarse_label_names.txt",
)
LAYOUTS = {"cifar10": CIFAR10, "cifar100": CIFAR100, "cifar100-coarse": CIFAR100_COARSE}
_EXPECTED = (
    "expected the CIFAR binary layout: data_batch_1.bin ... and test_batch.bin (CIFAR-10) or "
    "train.bin and test.bin (CIFAR-100), in DIR or in DIR/cifar-10-batches-bin or "
    "DIR/cifar-100-binary, or the release's .tar.gz"
)

# The pickled "python version" of each release (what Keras's cifar10.load_data downloads): its
# archives and the folders they unpack into. Named when found, never read (it is a pickle).
_PYTHON_VERSION = (
    "cifar-10-python.tar.gz",
    "cifar-10-batches-py",
    "cifar-100-python.tar.gz",
    "cifar-100-python",
)
_BINARY_ONLY = (
    "cnnlab reads only the binary version (cifar-10-binary.tar.gz, cifar-100-binary.tar.gz "
    "from https://www.cs.toronto.edu/~kriz/cifar.html) and never loads a pickle"
)


def python_version_note(*places: Path) -> str:
    """'; X is CIFAR's pickled Python version...' if one is `places` or lies in them, else ''."""
    for place in places:
        for found in (place, *(place / name for name in _PYTHON_VERSION)):
            if found.name in _PYTHON_VERSION and found.exists():
                return f"; {found} is CIFAR's pickled Python version: {_BINARY_ONLY}"
    return ""


@dataclass(frozen=True)
class _Member:
    """One file of the release: its name, size, where to say it is, and how to open it."""

    name: str
    size: int
    where: str
    open: Callable[[], IO[bytes]]


def read_cifar(
    container: Path, layout: Layout, *, source: str, remedy: str, check: str
) -> Verification:
    """Read a release (a directory or its .tar.gz); `check` says how it was verified."""
    with _members(container, source) as members:
        return _read_layout(members, layout, source=source, remedy=remedy, check=check)


def verify_cifar_source(source: str, path: Path, labels: str = "fine") -> Verification:
    """`cifar:DIR` (or `cifar:FILE.tar.gz`): the layout is recognised from the file names."""
    if not path.exists():
        raise DataError(f"{source}: {path} not found; {_EXPECTED}")
    with _members(path, source) as members:
        layout = _recognise(members, labels, source, path)
        return _read_layout(
            members,
            layout,
            source=source,
            remedy="replace it with a good copy",
            check="structure only",
        )


def _recognise(members: dict[str, _Member], labels: str, source: str, path: Path) -> Layout:
    if labels not in ("fine", "coarse"):
        raise DataError(f"{source}: labels={labels!r}; expected 'fine' or 'coarse' (CIFAR-100)")
    if not any(name.endswith(".bin") for name in members) and members.keys() & {
        "test_batch",
        "meta",
    }:
        raise DataError(
            f"{source}: {path} holds {', '.join(sorted(members))}: CIFAR's pickled Python "
            f"version, not the binary version; {_BINARY_ONLY}"
        )
    if "test_batch.bin" in members or any(name.startswith("data_batch_") for name in members):
        if labels == "coarse":
            raise DataError(
                f"{source}: labels=coarse needs CIFAR-100's layout, {path} is CIFAR-10's"
            )
        batches = sorted(
            (name for name in members if re.fullmatch(r"data_batch_\d+\.bin", name)),
            key=lambda name: int(name[11:-4]),
        )
        return dataclasses.replace(CIFAR10, train=tuple(batches) or CIFAR10.train)
    if "train.bin" in members or "test.bin" in members:
        return CIFAR100_COARSE if labels == "coarse" else CIFAR100
    note = python_version_note(path)
    raise DataError(f"{source}: no CIFAR batch files in {path}{note or '; ' + _EXPECTED}")


def _read_layout(
    members: dict[str, _Member], layout: Layout, *, source: str, remedy: str, check: str
) -> Verification:
    arrays, checked = [], []
    for role, names in (("train", layout.train), ("test", (layout.test,))):
        parts = [_member(members, name, layout, source) for name in names]
        images, labels = _read_records(parts, layout, remedy)
        arrays += [images, labels]
        where = parts[0].where if len(parts) == 1 else f"{parts[0].where} (+{len(parts) - 1})"
        checked += [
            CheckedFile(f"{role} images", Path(where), check, images.shape),
            CheckedFile(f"{role} labels", Path(where), check, labels.shape),
        ]
    names = _class_names(members.get(layout.names_file), layout)
    return assemble(source, arrays, checked, classes=layout.classes, class_names=names)


def _member(members: dict[str, _Member], name: str, layout: Layout, source: str) -> _Member:
    if name not in members:
        raise DataError(
            f"{source}: {name} not found among {', '.join(sorted(members)) or 'no files'}; "
            f"{layout.name}'s binary release has {', '.join((*layout.train, layout.test))}"
        )
    return members[name]


def _read_records(parts: list[_Member], layout: Layout, remedy: str) -> tuple[np.ndarray, ...]:
    """Every record of `parts` into one uint8 (N, 32, 32, 3) array and its int64 labels."""
    for part in parts:
        if part.size == 0 or part.size % layout.record:
            raise DataError(
                f"{part.where}: {part.size:,} bytes is not a whole number of {layout.record}-byte "
                f"{layout.name} records ({layout.label_bytes} label byte(s) + {PIXELS} pixel "
                f"bytes); the file is truncated or not a {layout.name} batch; {remedy}"
            )
    total = sum(part.size // layout.record for part in parts)
    check_allocation(total * (PIXELS + 8), f"{total:,} images", parts[0].where)
    images = np.empty((total, SIDE, SIDE, CHANNELS), dtype=np.uint8)
    labels = np.empty(total, dtype=np.int64)
    start = 0
    for part in parts:
        start = _read_part(part, layout, images, labels, start, remedy)
    return images, labels


def _read_part(
    part: _Member, layout: Layout, images: np.ndarray, labels: np.ndarray, start: int, remedy: str
) -> int:
    count = part.size // layout.record
    try:
        with part.open() as stream:
            for first in range(0, count, _RECORDS_PER_READ):
                n = min(_RECORDS_PER_READ, count - first)
                chunk = stream.read(n * layout.record)
                if len(chunk) != n * layout.record:
                    at = first + len(chunk) // layout.record
                    raise DataError(f"{part.where}: ends early, inside record {at}; {remedy}")
                records = np.frombuffer(chunk, dtype=np.uint8).reshape(n, layout.record)
                at = start + first
                # Planes (N, C, H, W) -> Keras's channels_last (N, H, W, C).
                images[at : at + n] = (
                    records[:, layout.label_bytes :]
                    .reshape(n, CHANNELS, SIDE, SIDE)
                    .transpose(0, 2, 3, 1)
                )
                labels[at : at + n] = records[:, layout.label_byte]
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        raise DataError(f"{part.where}: cannot be read ({error}); {remedy}") from error
    bad = np.flatnonzero(labels[start : start + count] >= layout.classes)
    if bad.size:
        raise DataError(
            f"{part.where}: record {bad[0]} has label {labels[start + bad[0]]}, outside "
            f"{layout.name}'s {layout.classes} classes (0..{layout.classes - 1}); the file is "
            f"corrupt or of another variant; {remedy}"
        )
    return start + count


def _class_names(member: _Member | None, layout: Layout) -> tuple[str, ...] | None:
    """The names file's non-empty lines, if it exists and names every class."""
    if member is None or member.size > 1 << 20:
        return None
    try:
        with member.open() as stream:
            text = stream.read().decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != layout.classes:
        raise DataError(
            f"{member.where}: {len(names)} class names, expected {layout.classes} "
            f"({layout.name}); the file is corrupt or of another variant"
        )
    return names


@contextmanager
def _members(path: Path, source: str) -> Iterator[dict[str, _Member]]:
    """The release's regular files by base name, from a directory or a (gzipped) tar archive."""
    if path.is_dir():
        yield _directory_members(path)
        return
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with` below
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        raise DataError(f"{path}: not a readable tar archive ({error}); {_EXPECTED}") from error
    with archive:
        try:
            found = [m for m in archive.getmembers() if m.isfile()]
        except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
            raise DataError(f"{path}: damaged tar archive ({error}); {_EXPECTED}") from error
        # In archive order, so a gzipped archive is decompressed forwards, once per pass.
        found.sort(key=lambda m: m.offset_data)
        yield {
            Path(m.name).name: _Member(
                Path(m.name).name, m.size, f"{path}:{m.name}", _opener(archive, m)
            )
            for m in found
        }


def _opener(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        stream = archive.extractfile(member)
        if stream is None:
            raise OSError(f"{member.name} is not a regular file")
        return stream

    return open_member


def _directory_members(path: Path) -> dict[str, _Member]:
    for folder in (path, path / CIFAR10.folder, path / CIFAR100.folder):
        files = {f.name: f for f in folder.glob("*.bin") if f.is_file()} if folder.is_dir() else {}
        if files:
            names = [
                folder / n
                for n in (CIFAR10.names_file, CIFAR100.names_file, CIFAR100_COARSE.names_file)
            ]
            files.update({n.name: n for n in names if n.is_file()})
            return {
                name: _Member(name, file.stat().st_size, str(file), lambda f=file: f.open("rb"))
                for name, file in files.items()
            }
    return {}
