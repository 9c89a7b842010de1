"""The IDX format of MNIST and its relatives: parsing, reading, writing, and `idx:DIR`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.dataset import ROLES, CheckedFile, Verification, assemble
from cnnlab.data.files import candidates, open_content
from cnnlab.data.memory import check_allocation
from cnnlab.errors import DataError

# The IDX format (LeCun's MNIST page, "FILE FORMATS FOR THE MNIST DATABASE"): a big-endian
# magic number 0x0000TTDD (TT = 0x08 unsigned byte, DD = number of dimensions), one 4-byte
# size per dimension, then the data in C order.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# The four files of an IDX dataset, in the order DatasetInfo.files lists them.
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def parse_idx(data: bytes, *, expected_magic: int, where: str, remedy: str) -> np.ndarray:
    """Check in-memory IDX bytes' magic number, dimensions and size; view the data as an array."""
    _check_magic(data[:4], expected_magic, where, remedy)
    ndim = expected_magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{where}: file ends inside the IDX header ({len(data)} of {header} bytes); {remedy}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    declared, found = math.prod(dims), len(data) - header
    if declared != found:
        _size_mismatch(where, "x".join(map(str, dims)), declared, found, remedy)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | Path, *, labels: bool = False) -> np.ndarray:
    """Read one IDX image or label file, gzipped or raw, with every structural check."""
    path = Path(path)
    return read_idx_file(
        path,
        expected_magic=IDX_LABELS_MAGIC if labels else IDX_IMAGES_MAGIC,
        where=str(path),
        remedy="replace it with a good copy",
    )


def read_idx_file(
    path: Path,
    *,
    expected_magic: int,
    where: str,
    remedy: str,
    limit: int | None = None,
    digest: Any = None,
) -> np.ndarray:
    """Read an IDX file header first, then its data straight into the final array.

    Nothing is allocated before the header's claim is checked against the file's size (raw),
    the registry's `limit` on the content's size, and the memory available; a gzip stream is
    decompressed in chunks and never past the header's claim. `digest` (a hashlib object) is
    fed the whole content on the way, for the registry's checksum.
    """
    with open_content(path, where, remedy) as stream:
        head = stream.read(4)
        _check_magic(head, expected_magic, where, remedy)
        ndim = expected_magic & 0xFF
        header = 4 + 4 * ndim
        sizes = stream.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise DataError(
                f"{where}: file ends inside the IDX header ({4 + len(sizes)} of {header} bytes); "
                f"{remedy}"
            )
        dims = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
        declared, shape = math.prod(dims), "x".join(map(str, dims))
        if limit is not None and header + declared > limit:
            raise DataError(
                f"{where}: header declares {shape} = {declared:,} data bytes, more than the "
                f"{limit:,} bytes this file has in all; not the expected file; {remedy}"
            )
        if not stream.gzipped and stream.size_on_disk - header != declared:
            _size_mismatch(where, shape, declared, stream.size_on_disk - header, remedy)
        check_allocation(declared, f"the {shape} array its header declares", where)
        array = np.empty(declared, dtype=np.uint8)
        if digest is not None:
            digest.update(head + sizes)
        filled = stream.read_into(array, None if digest is None else digest.update)
        if filled < declared:
            _size_mismatch(where, shape, declared, filled, remedy)
        if stream.gzipped and (extra := stream.count_rest(cap=_EXTRA_COUNTED)):
            _size_mismatch(
                where, shape, declared, declared + extra, remedy, more=extra > _EXTRA_COUNTED
            )
    return array.reshape(dims)


_EXTRA_COUNTED = 1 << 24  # bytes past the declared end counted before saying "longer"


def _check_magic(head: bytes, expected_magic: int, where: str, remedy: str) -> None:
    what = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    if len(head) < 4:  # an empty (or all but empty) file: there is no magic number to show
        raise DataError(
            f"{where}: ends after {len(head)} bytes, before the IDX magic number; expected "
            f"an IDX {what} file; {remedy}"
        )
    if int.from_bytes(head, "big") != expected_magic:
        found = f"0x{int.from_bytes(head, 'big'):08x}"
        raise DataError(
            f"{where}: IDX magic number is {found}, expected 0x{expected_magic:08x} "
            f"(unsigned-byte {what}); is this the right file? {remedy}"
        )


def _size_mismatch(
    where: str, shape: str, declared: int, found: int, remedy: str, more: bool = False
) -> None:
    problem = "truncated" if found < declared else "longer than its header says"
    raise DataError(
        f"{where}: header declares {shape} = {declared} data bytes, found {found}"
        f"{' or more' if more else ''}: the file is {problem}; {remedy}"
    )


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array: (N,) labels or (N, H, W) images; parse_idx's inverse."""
    magic = {1: IDX_LABELS_MAGIC, 3: IDX_IMAGES_MAGIC}.get(array.ndim)
    if array.dtype != np.uint8 or magic is None:
        raise DataError(
            f"IDX export takes uint8 arrays of shape (N,) or (N, H, W), got "
            f"{array.dtype} {array.shape}; squeeze the channel axis and convert first"
        )
    header = b"".join(value.to_bytes(4, "big") for value in (magic, *array.shape))
    return header + np.ascontiguousarray(array).tobytes()


def verify_idx_dir(source: str, directory: Path) -> Verification:
    if not directory.is_dir():
        raise DataError(
            f"{source}: {directory} is not a directory; expected one holding "
            f"the four IDX files {', '.join(IDX_NAMES)} (gzipped or raw)"
        )
    arrays, checked = [], []
    for role, name in zip(ROLES, IDX_NAMES, strict=True):
        path = next((p for p in candidates(directory, name) if p.is_file()), None)
        if path is None:
            raise DataError(
                f"{source}: {name}[.gz] not found in {directory}; expected the four IDX "
                f"files {', '.join(IDX_NAMES)} (gzipped or raw)"
            )
        array = read_idx(path, labels="labels" in name)
        arrays.append(array)
        checked.append(CheckedFile(role, path, "structure only", array.shape))
    return assemble(source, arrays, checked)
