"""Image folders, `folder:DIR`: one sub-folder per class, decoded with Pillow and cached.

`DIR/train/<class>/*` and `DIR/test/<class>/*`, or one tree `DIR/<class>/*` with a held-out
`test_fraction`. Class names are the train folders' names in sorted order, as Keras's
`image_dataset_from_directory` takes them. Images are listed in sorted path order and shuffled
once with a fixed seed (Keras shuffles too), so `--train-limit N` and a validation fraction draw
from every class, and the same folder always gives the same order. Grey or colour is decided
from the files (any colour file makes the dataset RGB) unless `channels` says. Sizes must agree
unless `image_size` is given; then each image is resized once, bilinearly (Keras's default
interpolation), at load time.

Decoded arrays are cached as an uncompressed .npz under DATA_DIR/folder-cache/, keyed by the
folder's file list (paths, sizes, modification times) and the options, so a second load reads
one file instead of decoding every image; any change to the folder makes a new key.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.dataset import CheckedFile, Verification, assemble
from cnnlab.data.memory import check_allocation
from cnnlab.errors import DataError

SHUFFLE_SEED = 1337  # fixed, so a folder's order is the same on every load and machine
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
CACHE_VERSION = 2  # bump when the decoding changes, so old caches are not reused


@dataclass(frozen=True)
class FolderOptions:
    """How to read a folder: a target size, forced channels, a held-out test fraction."""

    image_size: tuple[int, int] | None = None  # (height, width)
    channels: int | None = None  # 1 (grey) or 3 (RGB); None: decided from the files
    test_fraction: float | None = None  # for a single tree without train/ and test/

    def __post_init__(self) -> None:
        if self.image_size is not None and not all(1 <= side <= 4096 for side in self.image_size):
            raise DataError(f"image_size={self.image_size}: both sides must lie in 1..4096 pixels")
        if self.channels not in (None, 1, 3):
            raise DataError(f"channels={self.channels}: expected 1 (grey) or 3 (RGB)")
        if self.test_fraction is not None and not 0 < self.test_fraction < 1:
            raise DataError(f"test_fraction={self.test_fraction}: expected a number in (0, 1)")


@dataclass(frozen=True)
class _Listing:
    """The image files of one split, in dataset order, with their class indices."""

    paths: tuple[Path, ...]
    labels: np.ndarray


def read_folder(
    source: str, directory: Path, options: FolderOptions, cache_dir: Path | None
) -> Verification:
    """Read an image folder into a Dataset, from the cache when the folder is unchanged."""
    if not directory.is_dir():
        raise DataError(f"{source}: {directory} is not a directory; expected class folders")
    classes, train, test = _list_splits(source, directory, options)
    cache = _cache_path(cache_dir, directory, options, train, test)
    arrays = _load_cached(cache, len(train.paths), len(test.paths))
    check = f"cached in {cache}" if arrays is not None else "decoded"
    if arrays is None:
        channels = options.channels or _channels_of(train.paths + test.paths)
        size = options.image_size or _common_size(source, train.paths + test.paths)
        arrays = [
            _decode_all(train.paths, size, channels),
            train.labels,
            _decode_all(test.paths, size, channels),
            test.labels,
        ]
        _save_cache(cache, arrays)
    checked = [
        CheckedFile(role, directory, check, array.shape)
        for role, array in zip(
            ("train images", "train labels", "test images", "test labels"), arrays, strict=True
        )
    ]
    where = (str(directory),) * 4
    return assemble(source, arrays, checked, classes=len(classes), class_names=classes, where=where)


def _list_splits(
    source: str, directory: Path, options: FolderOptions
) -> tuple[tuple[str, ...], _Listing, _Listing]:
    train_dir, test_dir = directory / "train", directory / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        if options.test_fraction is not None:
            raise DataError(
                f"{source}: {directory} has train/ and test/ folders, so test_fraction="
                f"{options.test_fraction} has no tree to split; drop one or the other"
            )
        classes = _class_folders(source, train_dir)
        test_classes = _class_folders(source, test_dir)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(
                f"{source}: {test_dir / unknown[0]} is a class the train folder lacks; train/ "
                f"and test/ must have the same class folders"
            )
        return classes, _listing(train_dir, classes), _listing(test_dir, classes)
    if options.test_fraction is None:
        raise DataError(
            f"{source}: {directory} has no train/ and test/ folders and no test_fraction; "
            f"expected DIR/train/<class>/* and DIR/test/<class>/*, or class folders in DIR "
            f"with a held-out fraction (folder:{directory}?test_fraction=0.2)"
        )
    classes = _class_folders(source, directory)
    everything = _listing(directory, classes)
    # Keras's validation_split: the last int(fraction * n) of the shuffled files are held out.
    held = int(options.test_fraction * len(everything.paths))
    if held == 0 or held == len(everything.paths):
        raise DataError(
            f"{source}: test_fraction={options.test_fraction} of {len(everything.paths)} images "
            "leaves an empty split; use a fraction that keeps both parts non-empty"
        )
    cut = len(everything.paths) - held
    return (
        classes,
        _Listing(everything.paths[:cut], everything.labels[:cut]),
        _Listing(everything.paths[cut:], everything.labels[cut:]),
    )


def _class_folders(source: str, tree: Path) -> tuple[str, ...]:
    classes = tuple(
        sorted(p.name for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))
    )
    if not classes:
        raise DataError(f"{source}: {tree} holds no class folders; expected {tree}/<class>/*")
    return classes


def _listing(tree: Path, classes: tuple[str, ...]) -> _Listing:
    """Every image of `tree`'s class folders: sorted paths, then one fixed shuffle."""
    extensions = _image_extensions()
    paths, labels = [], []
    for index, name in enumerate(classes):
        folder = tree / name
        if not folder.is_dir():
            continue  # a test split may lack a class
        found = sorted(
            Path(root) / file
            for root, _, files in os.walk(folder)
            for file in files
            if not file.startswith(".") and Path(file).suffix.lower() in extensions
        )
        if not found:
            raise DataError(
                f"{folder}: an empty class folder (no image files: "
                f"{', '.join(sorted(_COMMON & extensions))}, ...); add images or remove it"
            )
        paths += found
        labels += [index] * len(found)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(paths))
    return _Listing(tuple(paths[i] for i in order), np.asarray(labels, dtype=np.int64)[order])


_COMMON = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def _image_extensions() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def _open(path: Path):  # -> PIL.Image.Image
    """Open an image's header only (no pixels decoded); errors name the file."""
    from PIL import Image

    unreadable = (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its pixel limit; an image that large is refused too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (*unreadable, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image ({_reason(error)})") from error


def _reason(error: Exception) -> str:
    return str(error).split(" could be decompression bomb")[0] or type(error).__name__


def _channels_of(paths: tuple[Path, ...]) -> int:
    """3 if any image is colour, else 1 (headers only)."""
    for path in paths:
        with _open(path) as image:
            if image.mode not in _GREY_MODES:
                return 3
    return 1


def _common_size(source: str, paths: tuple[Path, ...]) -> tuple[int, int]:
    """The one (height, width) all images share; the first odd file is named otherwise."""
    first = None
    for path in sorted(paths):  # in path order, so the odd file named is the first a user sees
        with _open(path) as image:
            size = (image.height, image.width)
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise DataError(
                f"{source}: {path} is {size[1]}x{size[0]} (WxH) but {first[0]} is "
                f"{first[1][1]}x{first[1][0]}; images of one dataset must share a size, or give "
                f"one to resize to (folder:DIR?image_size=32x32)"
            )
    assert first is not None  # _listing refuses empty folders
    return first[1]


def _decode_all(paths: tuple[Path, ...], size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode every image into one uint8 (N, H, W, C) array, resizing where needed."""
    from PIL import Image

    height, width = size
    where = str(paths[0].parent.parent) if paths else ""
    check_allocation(len(paths) * height * width * channels, f"{len(paths):,} images", where)
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, path in enumerate(paths):
        with _open(path) as image:
            try:
                pixels = _eight_bit(image, path).convert(mode)
                if pixels.size != (width, height):
                    pixels = pixels.resize((width, height), Image.Resampling.BILINEAR)
                out[i] = np.asarray(pixels).reshape(height, width, channels)
            except (OSError, ValueError, SyntaxError) as error:
                raise DataError(f"{path}: not a readable image ({_reason(error)})") from error
    return out


def _eight_bit(image: Any, path: Path) -> Any:
    """The image with 8-bit samples, as Pillow's convert needs them.

    convert("L") clips 16-bit grey at 255 (nearly every pixel white); a 16-bit sample keeps its
    high byte instead, as TensorFlow's decode_png(dtype=uint8) does (png_io.cc,
    png_set_strip_16). Pillow opens 16-bit grey PNGs as I;16 (older releases: as I).
    Other 32-bit images have no one 0-255 reading.
    """
    from PIL import Image

    if image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG"):
        return Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8), "L")
    if image.mode in ("I", "F"):
        kind = "integer" if image.mode == "I" else "float"
        raise DataError(
            f"{path}: a 32-bit {kind} image (mode {image.mode}) has no one 0-255 reading; "
            "save it with 8 or 16 bits per sample (PNG, JPEG)"
        )
    return image


def _cache_path(
    cache_dir: Path | None,
    directory: Path,
    options: FolderOptions,
    train: _Listing,
    test: _Listing,
) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, str(directory.resolve()), options.__dict__]).encode())
    for split in (train, test):
        for path, label in zip(split.paths, split.labels, strict=True):
            stat = path.stat()
            digest.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return cache_dir / f"{directory.name[:40]}-{digest.hexdigest()[:20]}.npz"


_CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _load_cached(cache: Path | None, train_count: int, test_count: int) -> list[np.ndarray] | None:
    """The cached arrays, if a cache file exists and holds what the folder lists; else None."""
    if cache is None or not cache.is_file():
        return None
    from cnnlab.data.npz import read_npz

    try:
        arrays = read_npz(str(cache), cache)
    except DataError:
        return None  # a damaged cache is decoded again and rewritten
    if len(arrays[1]) != train_count or len(arrays[3]) != test_count:
        return None
    return arrays


def _save_cache(cache: Path | None, arrays: list[np.ndarray]) -> None:
    """Write the cache atomically; an unwritable cache directory only costs the speed-up."""
    if cache is None:
        return
    temp = None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=cache.parent, prefix=".folder-", suffix=".npz")
        temp = Path(name)
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **dict(zip(_CACHE_KEYS, arrays, strict=True)))
        os.chmod(temp, 0o644)  # as downloads: mkstemp's 0600 would hide it from others sharing
        os.replace(temp, cache)
    except OSError:
        if temp is not None:
            temp.unlink(missing_ok=True)


def parse_options(source: str, query: str) -> FolderOptions:
    """`image_size=32x32&channels=3&test_fraction=0.2` (the part after `?`) -> FolderOptions."""
    values: dict[str, object] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        try:
            if key == "image_size":
                height, _, width = value.lower().partition("x")
                values[key] = (int(height), int(width or height))
            elif key == "channels":
                values[key] = int(value)
            elif key == "test_fraction":
                values[key] = float(value)
                if not math.isfinite(values[key]):  # type: ignore[arg-type]
                    raise ValueError(value)
            else:
                raise DataError(
                    f"{source}: unknown option {key!r}; folder options are image_size=HxW, "
                    "channels=1|3 and test_fraction=F"
                )
        except ValueError:
            raise DataError(
                f"{source}: {key}={value!r} is not a valid value (image_size=32x32, channels=3, "
                "test_fraction=0.2)"
            ) from None
    return FolderOptions(**values)  # type: ignore[arg-type]
