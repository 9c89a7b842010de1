"""The Dataset every source becomes: uint8 images (N, H, W, C), int64 labels, class count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

ROLES = ("train images", "train labels", "test images", "test labels")
# More classes than any image-classification benchmark has (ImageNet-21k: 21,841); a label
# beyond it is a damaged file, not a class.
MAX_CLASSES = 100_000


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits as read-only arrays: images uint8 (N, H, W, C), labels int64 (N,)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: int
    # One name per class (CIFAR's batches.meta.txt, a folder's class directories); None where
    # the source has none, and the class index is the name.
    class_names: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C), Keras's channels_last input_shape."""
        height, width, channels = self.train_images.shape[1:]
        return (height, width, channels)

    def __repr__(self) -> str:  # a notebook cell shows one line, not the arrays
        return f"Dataset({self.name!r}: {self.describe()})"

    def describe(self) -> str:
        """One line such as '60000 train and 10000 test images of 28x28x1, 10 classes'."""
        shape = "x".join(str(side) for side in self.image_shape)
        return (
            f"{len(self.train_images)} train and {len(self.test_images)} test images of "
            f"{shape}, {self.classes} classes"
        )


@dataclass(frozen=True)
class CheckedFile:
    """What verification found for one file: where it is and how its content was checked."""

    role: str
    path: Path
    check: str  # "content SHA-256", "archive MD5" or "structure only"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Verification:
    """A loaded dataset together with the per-file evidence that it is what it claims to be."""

    dataset: Dataset
    files: tuple[CheckedFile, ...]


def _as_images(array: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> read-only (N, H, W, C)."""
    if array.dtype != np.uint8:
        raise DataError(f"{where}: images have dtype {array.dtype}, expected uint8 pixels 0-255")
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or 0 in array.shape:
        raise DataError(
            f"{where}: images have shape {array.shape}, expected (N, H, W) or (N, H, W, C) "
            "with N, H, W, C >= 1"
        )
    if array.shape[1] in (1, 3) and array.shape[3] > 4:
        raise DataError(
            f"{where}: images have shape {array.shape}: channels first (N, C, H, W), as PyTorch "
            "keeps them? cnnlab takes Keras's channels_last (N, H, W, C); save "
            "x.transpose(0, 2, 3, 1)"
        )
    return _read_only(array)


def _as_labels(array: np.ndarray, where: str) -> np.ndarray:
    """Non-negative integers (N,) or (N, 1), of any integer dtype -> read-only int64 (N,).

    (N, 1) is how Keras's cifar10/cifar100 `load_data` returns labels.
    """
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{where}: labels have shape {array.shape} and dtype {array.dtype}, "
            "expected integer class indices of shape (N,) or (N, 1)"
        )
    if array.size and array.min() < 0:
        raise DataError(f"{where}: labels include {array.min()}, expected class indices >= 0")
    if array.size and array.max() >= MAX_CLASSES:
        raise DataError(
            f"{where}: labels include {array.max()}, beyond the {MAX_CLASSES:,} classes a "
            "dataset may have; the labels are damaged or not class indices"
        )
    return _read_only(array.astype(np.int64))


def _read_only(array: np.ndarray) -> np.ndarray:
    # Datasets are shared between callers (a session-wide MNIST, several runs); a write through
    # one would silently change the others. A view, so the caller's own array stays writable.
    view = array.view()
    view.flags.writeable = False
    return view


def dataset_from_arrays(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    expected_classes: int | None = None,
    classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
    where: tuple[str, str, str, str] = ROLES,
) -> Dataset:
    """Validate (images, labels) pairs and build a Dataset.

    The class count is `classes` when the source declares it (labels must lie below it; a
    subset may lack some classes), else the largest label + 1, which must equal
    `expected_classes` when that is given. `where` names the four arrays (train images, train
    labels, test images, test labels) in error messages, e.g. their file paths.
    """
    train_images, test_images = _as_images(train[0], where[0]), _as_images(test[0], where[2])
    train_labels, test_labels = _as_labels(train[1], where[1]), _as_labels(test[1], where[3])
    for images, labels, (img_where, lbl_where) in (
        (train_images, train_labels, where[:2]),
        (test_images, test_labels, where[2:]),
    ):
        if len(images) != len(labels):
            raise DataError(
                f"{name}: {img_where} holds {len(images)} images but {lbl_where} holds "
                f"{len(labels)} labels; they must pair one to one, so one file is truncated "
                "or from another dataset"
            )
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"{name}: train images are {train_images.shape[1:]} but test images are "
            f"{test_images.shape[1:]} (H, W, C); both splits must share one image shape"
        )
    spanned = int(max(train_labels.max(), test_labels.max())) + 1
    if classes is not None and spanned > classes:
        raise DataError(
            f"{name}: a label is {spanned - 1}, outside the {classes} classes (0..{classes - 1}) "
            "the source declares; a label file is corrupt or from another dataset"
        )
    if expected_classes is not None and spanned != expected_classes:
        raise DataError(
            f"{name}: labels span {spanned} classes (0..{spanned - 1}), expected "
            f"{expected_classes}; a label file is corrupt or from another dataset"
        )
    classes = classes or spanned
    if class_names is not None and len(class_names) != classes:
        raise DataError(f"{name}: {len(class_names)} class names for {classes} classes")
    return Dataset(name, train_images, train_labels, test_images, test_labels, classes, class_names)


def assemble(
    name: str,
    arrays: list[np.ndarray],
    checked: list[CheckedFile],
    *,
    expected_classes: int | None = None,
    classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
    where: tuple[str, ...] | None = None,
) -> Verification:
    """Four arrays in ROLES order, with their file checks, into a validated Verification."""
    where = where or tuple(str(item.path) for item in checked)
    dataset = dataset_from_arrays(
        name,
        (arrays[0], arrays[1]),
        (arrays[2], arrays[3]),
        expected_classes=expected_classes,
        classes=classes,
        class_names=class_names,
        where=where,
    )
    return Verification(dataset, tuple(checked))
