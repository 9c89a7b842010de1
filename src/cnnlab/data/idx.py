"""The IDX format of MNIST and its relatives: parsing, reading, writing, and `idx:DIR`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ROLES, CheckedFile, Verification, assemble
from cnnlab.data.files import candidates, read_content
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
    """Check an IDX file's magic number, dimensions and size, and view its data as an array."""
    if len(data) < 4 or int.from_bytes(data[:4], "big") != expected_magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else "no header"
        what = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
        raise DataError(
            f"{where}: IDX magic number is {found}, expected 0x{expected_magic:08x} "
            f"(unsigned-byte {what}); is this the right file? {remedy}"
        )
    ndim = expected_magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{where}: file ends inside the IDX header ({len(data)} of {header} bytes); {remedy}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    declared, found = math.prod(dims), len(data) - header
    if declared != found:
        problem = "truncated" if found < declared else "longer than its header says"
        raise DataError(
            f"{where}: header declares {'x'.join(map(str, dims))} = {declared} data bytes, "
            f"found {found}: the file is {problem}; {remedy}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | Path, *, labels: bool = False) -> np.ndarray:
    """Read one IDX image or label file, gzipped or raw, with every structural check."""
    path, remedy = Path(path), "replace it with a good copy"
    content, _ = read_content(path, str(path), remedy)
    magic = IDX_LABELS_MAGIC if labels else IDX_IMAGES_MAGIC
    return parse_idx(content, expected_magic=magic, where=str(path), remedy=remedy)


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
