"""Keras-style `.npz` files (`x_train`, `y_train`, `x_test`, `y_test`): `npz:FILE`.

Each array's .npy header (shape and dtype) is read first and checked against the size of its
member in the archive and against the memory available, so a header claiming billions of images
is refused in one line before anything is allocated. Pickled objects are refused, never loaded.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ROLES, CheckedFile, Verification, assemble
from cnnlab.data.memory import check_allocation
from cnnlab.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")  # keras/src/datasets/mnist.py load_data
_EXPECTED = f"expected a .npz file with arrays {', '.join(NPZ_KEYS)} (Keras's mnist.npz)"


def verify_npz(source: str, path: Path) -> Verification:
    arrays = read_npz(source, path)
    checked = [
        CheckedFile(role, path, "structure only", array.shape)
        for role, array in zip(ROLES, arrays, strict=True)
    ]
    where = tuple(f"{path}[{key}]" for key in NPZ_KEYS)
    return assemble(source, arrays, checked, where=where)


def read_npz(source: str, path: Path) -> list[np.ndarray]:
    """The four arrays of a Keras-style .npz, each checked by its header before it is read."""
    if not path.is_file():
        raise DataError(f"{source}: {path} not found; {_EXPECTED}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = [key for key in NPZ_KEYS if key not in members]
            if missing:
                raise DataError(
                    f"{source}: {path} has arrays {sorted(members)}, missing "
                    f"{', '.join(missing)}; {_EXPECTED}"
                )
            return [_read_member(archive, members[key], f"{path}[{key}]") for key in NPZ_KEYS]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise DataError(
            f"{source}: {path} is not a readable .npz ({type(error).__name__}: {error}); "
            "replace it with a good copy of Keras's mnist.npz"
        ) from error


_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _read_member(archive: zipfile.ZipFile, name: str, where: str) -> np.ndarray:
    """One array: its header checked against the member's size and free memory, then read."""
    info = archive.getinfo(name)
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version not in _HEADER_READERS:
            raise DataError(f"{where}: .npy format version {version} is not supported (1.0, 2.0)")
        shape, _, dtype = _HEADER_READERS[version](stream)
        header = stream.tell()
    if dtype.hasobject:
        raise DataError(f"{where}: holds Python objects (a pickle); only numeric arrays load")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != info.file_size - header:
        raise DataError(
            f"{where}: header declares {shape} {dtype} = {nbytes:,} bytes but the archive "
            f"holds {info.file_size - header:,}; the file is damaged or not what it claims"
        )
    check_allocation(nbytes, f"the {shape} {dtype} array its header declares", where)
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)
