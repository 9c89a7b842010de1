"""Keras-style `.npz` files (`x_train`, `y_train`, `x_test`, `y_test`): `npz:FILE`."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ROLES, CheckedFile, Verification, assemble
from cnnlab.errors import DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")  # keras/src/datasets/mnist.py load_data


def verify_npz(source: str, path: Path) -> Verification:
    arrays = read_npz(source, path)
    checked = [
        CheckedFile(role, path, "structure only", array.shape)
        for role, array in zip(ROLES, arrays, strict=True)
    ]
    where = tuple(f"{path}[{key}]" for key in NPZ_KEYS)
    return assemble(source, arrays, checked, where=where)


def read_npz(source: str, path: Path) -> list[np.ndarray]:
    """The four arrays of a Keras-style .npz; pickled objects are refused, never executed."""
    if not path.is_file():
        raise DataError(
            f"{source}: {path} not found; expected a .npz file with arrays "
            f"{', '.join(NPZ_KEYS)} (Keras's mnist.npz)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"{source}: {path} has arrays {sorted(archive.files)}, missing "
                    f"{', '.join(missing)}; expected {', '.join(NPZ_KEYS)} (Keras's mnist.npz)"
                )
            return [archive[key] for key in NPZ_KEYS]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as error:
        raise DataError(
            f"{source}: {path} is not a readable .npz ({type(error).__name__}: {error}); "
            "replace it with a good copy of Keras's mnist.npz"
        ) from error
