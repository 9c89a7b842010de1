"""SVHN's cropped digits (`train_32x32.mat`, `test_32x32.mat`), read with SciPy.

Each file holds `X`, uint8 of shape (32, 32, 3, N), and `y`, (N, 1) labels 1..10 where 10 means
the digit 0 (http://ufldl.stanford.edu/housenumbers/, "Format 2"). The variables' shapes are
read from the file's headers (`scipy.io.whosmat`) before anything is loaded, so a file claiming
more than memory holds is refused in one line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import CheckedFile, Verification, assemble
from cnnlab.data.memory import check_allocation
from cnnlab.errors import DataError

CLASS_NAMES = tuple(str(digit) for digit in range(10))
_EXPECTED = "expected SVHN's X (32x32x3xN uint8 images) and y (N labels 1..10)"


def read_svhn(paths: tuple[Path, Path], *, source: str, remedy: str, check: str) -> Verification:
    """The train and test .mat files into a Dataset; label 10 becomes class 0."""
    arrays, checked = [], []
    for role, path in zip(("train", "test"), paths, strict=True):
        images, labels = read_mat(path, remedy)
        arrays += [images, labels]
        checked += [
            CheckedFile(f"{role} images", path, check, images.shape),
            CheckedFile(f"{role} labels", path, check, labels.shape),
        ]
    return assemble(source, arrays, checked, classes=10, class_names=CLASS_NAMES)


def read_mat(path: Path, remedy: str) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file: (N, 32, 32, 3) uint8 images and int64 labels 0..9."""
    import scipy.io  # only SVHN needs SciPy's MATLAB reader

    where = str(path)
    try:
        shapes = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(path)}
    except (OSError, ValueError, TypeError, NotImplementedError) as error:
        raise DataError(
            f"{where}: not a readable MATLAB file ({error}); {_EXPECTED}; {remedy}"
        ) from error
    if "X" not in shapes or "y" not in shapes:
        raise DataError(
            f"{where}: holds {', '.join(sorted(shapes)) or 'no variables'}, not X and y; "
            f"{_EXPECTED}; {remedy}"
        )
    x_shape, y_shape = shapes["X"][0], shapes["y"][0]
    if len(x_shape) != 4 or x_shape[2] not in (1, 3) or math.prod(y_shape) != x_shape[-1]:
        raise DataError(f"{where}: X is {x_shape} and y is {y_shape}; {_EXPECTED}; {remedy}")
    # The loaded X and its channels_last copy exist together for a moment.
    check_allocation(2 * math.prod(x_shape) + 16 * x_shape[-1], f"X of {x_shape}", where)
    try:
        variables = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError, NotImplementedError, MemoryError) as error:
        raise DataError(f"{where}: cannot be read ({error}); {_EXPECTED}; {remedy}") from error
    return _images(variables["X"], where, remedy), _labels(variables["y"], where, remedy)


def _images(x: np.ndarray, where: str, remedy: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(f"{where}: X has dtype {x.dtype}; {_EXPECTED}; {remedy}")
    return np.ascontiguousarray(np.moveaxis(x, -1, 0))  # (H, W, C, N) -> (N, H, W, C)


def _labels(y: np.ndarray, where: str, remedy: str) -> np.ndarray:
    labels = np.asarray(y).reshape(-1)
    if not (np.issubdtype(labels.dtype, np.number) and np.all(np.isfinite(labels))):
        raise DataError(f"{where}: y has dtype {labels.dtype}; {_EXPECTED}; {remedy}")
    bad = np.flatnonzero((labels < 1) | (labels > 10) | (labels != np.round(labels)))
    if bad.size:
        raise DataError(
            f"{where}: y[{bad[0]}] is {labels[bad[0]]}, outside SVHN's labels 1..10 "
            f"(10 is the digit 0); {remedy}"
        )
    return labels.astype(np.int64) % 10
