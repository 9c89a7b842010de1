"""The IDX and npz readers on small files the tests write: every kind of bad input is one line."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import (
    IDX_NAMES,
    DataFile,
    DatasetInfo,
    dataset_from_arrays,
    encode_idx,
    load_dataset,
    read_idx,
    verify_dataset,
)
from cnnlab.errors import DataError

RNG = np.random.default_rng(0)
TRAIN_IMAGES = RNG.integers(0, 256, size=(12, 5, 7), dtype=np.uint8)
TRAIN_LABELS = np.array([0, 1, 2] * 4, dtype=np.uint8)
TEST_IMAGES = RNG.integers(0, 256, size=(6, 5, 7), dtype=np.uint8)
TEST_LABELS = np.array([2, 1, 0, 0, 1, 2], dtype=np.uint8)
ARRAYS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def write_idx_dir(directory: Path, arrays=ARRAYS, *, gz: bool = True) -> Path:
    """The four IDX files of `arrays` under their standard names, gzipped or raw."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        content = encode_idx(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (directory / name).write_bytes(content)
    return directory


def tiny_info(**file_fields) -> DatasetInfo:
    """A registry entry for ARRAYS with the given per-file checksum fields (lists of 4)."""
    files = []
    for i, (name, array) in enumerate(zip(IDX_NAMES, ARRAYS, strict=True)):
        fields = {key: values[i] for key, values in file_fields.items()}
        files.append(DataFile(name, len(encode_idx(array)), **fields))
    return DatasetInfo("tiny", "test data", "", mirrors=(), files=tuple(files), classes=3)


def content_sha256s() -> list[str]:
    return [hashlib.sha256(encode_idx(array)).hexdigest() for array in ARRAYS]


def test_encode_idx_writes_lecun_header_then_data():
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    encoded = encode_idx(images)
    assert encoded[:16] == bytes.fromhex("00000803000000020000000300000004")
    assert encoded[16:] == bytes(range(24))
    assert encode_idx(np.array([7, 9], dtype=np.uint8)) == bytes.fromhex("00000801000000020709")


def test_real_mnist_labels_round_trip_byte_for_byte(mnist_dir):
    original = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", labels=True)
    assert labels.shape == (10000,)
    assert encode_idx(labels) == original


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_idx_dir_loads_gzipped_and_raw_files_alike(tmp_path, gz):
    dataset = load_dataset(f"idx:{write_idx_dir(tmp_path / 'd', gz=gz)}")
    assert dataset.train_images.shape == (12, 5, 7, 1)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64
    assert np.array_equal(dataset.train_images[..., 0], TRAIN_IMAGES)
    assert np.array_equal(dataset.test_labels, TEST_LABELS)


def test_image_shape_and_class_count_come_from_the_data(tmp_path):
    dataset = load_dataset(f"idx:{write_idx_dir(tmp_path)}")
    assert dataset.image_shape == (5, 7, 1)
    assert dataset.classes == 3
    assert dataset.describe() == "12 train and 6 test images of 5x7x1, 3 classes"


def test_dataset_arrays_are_read_only(tmp_path):
    dataset = load_dataset(f"idx:{write_idx_dir(tmp_path)}")
    with pytest.raises(ValueError, match="read-only"):
        dataset.train_images[0, 0, 0, 0] = 1


def test_missing_idx_file_is_named_with_the_expected_set(tmp_path):
    directory = write_idx_dir(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[\.gz\] not found in .*expected"):
        load_dataset(f"idx:{directory}")


def test_idx_source_that_is_not_a_directory_is_refused(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset(f"idx:{tmp_path / 'nowhere'}")


def test_truncated_idx_file_reports_declared_and_found_sizes(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(encode_idx(TRAIN_IMAGES)[:-10])
    with pytest.raises(DataError, match=r"declares 12x5x7 = 420 data bytes, found 410.*truncated"):
        read_idx(path)


def test_idx_file_longer_than_its_header_is_refused(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(encode_idx(TRAIN_LABELS) + b"\x00")
    with pytest.raises(DataError, match="found 13: the file is longer than its header says"):
        read_idx(path, labels=True)


def test_file_ending_inside_the_header_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(encode_idx(TRAIN_IMAGES)[:9])
    with pytest.raises(DataError, match=r"ends inside the IDX header \(9 of 16 bytes\)"):
        read_idx(path)


@pytest.mark.parametrize(
    ("content", "length"), [(b"", 0), (b"\x00\x08", 2), (gzip.compress(b""), 0)]
)
def test_empty_file_says_where_it_ends_not_a_magic_number(tmp_path, content, length):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"ends after {length} bytes, before the IDX magic number"):
        read_idx(path, labels=True)


def test_wrong_magic_number_says_expected_and_found(tmp_path):
    directory = write_idx_dir(tmp_path)
    labels_as_images = (directory / "train-labels-idx1-ubyte.gz").read_bytes()
    (directory / "train-images-idx3-ubyte.gz").write_bytes(labels_as_images)
    with pytest.raises(DataError, match="magic number is 0x00000801, expected 0x00000803"):
        load_dataset(f"idx:{directory}")


def test_corrupt_gzip_is_reported_with_the_file(tmp_path):
    directory = write_idx_dir(tmp_path)
    path = directory / "t10k-images-idx3-ubyte.gz"
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: corrupt gzip data"):
        load_dataset(f"idx:{directory}")


def test_truncated_gzip_is_reported_with_the_file(tmp_path):
    directory = write_idx_dir(tmp_path)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: truncated gzip stream"):
        load_dataset(f"idx:{directory}")


def test_images_and_labels_of_different_counts_name_both_files(tmp_path):
    directory = write_idx_dir(tmp_path, (TRAIN_IMAGES, TRAIN_LABELS[:-1], TEST_IMAGES, TEST_LABELS))
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte\.gz holds 12 images but .*labels.* 11 labels"
    ):
        load_dataset(f"idx:{directory}")


def test_train_and_test_images_of_different_shapes_are_refused(tmp_path):
    other = RNG.integers(0, 256, size=(6, 7, 5), dtype=np.uint8)
    directory = write_idx_dir(tmp_path, (TRAIN_IMAGES, TRAIN_LABELS, other, TEST_LABELS))
    with pytest.raises(DataError, match="must share one image shape"):
        load_dataset(f"idx:{directory}")


def test_class_count_is_checked_against_the_registry():
    with pytest.raises(DataError, match=r"labels span 3 classes \(0\.\.2\), expected 10"):
        dataset_from_arrays(
            "x", (TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS), expected_classes=10
        )


def test_unknown_dataset_name_suggests_the_close_one():
    with pytest.raises(DataError, match=r"unknown dataset 'fashion_mnist'; did you mean 'fash"):
        load_dataset("fashion_mnist")


# --- registry-style verification of the tiny files (checksums from a test-built DatasetInfo) ---


def test_registry_file_with_wrong_content_checksum_says_delete_and_fetch(tmp_path):
    info = tiny_info(sha256=content_sha256s())
    directory = write_idx_dir(tmp_path / "tiny")
    altered = TEST_IMAGES.copy()
    altered[0, 0, 0] ^= 1
    (directory / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(encode_idx(altered)))
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte\.gz: SHA-256 of the decompressed content is .*"
        r"delete it and run `cnnlab data fetch tiny`",
    ):
        load_dataset(info, data_dir=tmp_path, offline=True)


def test_another_datasets_files_lying_flat_leave_the_subfolder_copy_found(tmp_path, monkeypatch):
    # MNIST flat in the data directory and fashion-mnist/ beside it, as the docs allow.
    other = [array.copy() for array in ARRAYS]
    other[1][0] = 2  # another dataset's labels: other content, same structure
    write_idx_dir(tmp_path, other)
    write_idx_dir(tmp_path / "tiny")
    other_labels = hashlib.sha256(encode_idx(other[1])).hexdigest()
    monkeypatch.setattr(
        "cnnlab.data.cache.KNOWN_CONTENT", {other_labels: "other's train-labels-idx1-ubyte"}
    )
    checked = verify_dataset(tiny_info(sha256=content_sha256s()), data_dir=tmp_path)
    assert {item.path.parent for item in checked.files} == {tmp_path / "tiny"}


def test_recompressed_registry_file_is_accepted_by_content_checksum(tmp_path):
    info = tiny_info(sha256=content_sha256s())
    directory = write_idx_dir(tmp_path)
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    checks = {item.check for item in verify_dataset(info, data_dir=tmp_path).files}
    assert checks == {"content SHA-256"}


def test_without_content_checksum_archive_md5_is_checked_and_raw_gets_structure_only(tmp_path):
    directory = write_idx_dir(tmp_path)
    md5s = [hashlib.md5((directory / f"{n}.gz").read_bytes()).hexdigest() for n in IDX_NAMES]
    raw = directory / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((directory / f"{raw.name}.gz").read_bytes()))
    (directory / f"{raw.name}.gz").unlink()
    files = verify_dataset(tiny_info(archive_md5=md5s), data_dir=tmp_path).files
    assert [item.check for item in files] == ["archive MD5"] * 3 + ["structure only"]


def test_archive_md5_mismatch_explains_why_only_the_archive_is_checked(tmp_path):
    directory = write_idx_dir(tmp_path)
    md5s = [hashlib.md5((directory / f"{n}.gz").read_bytes()).hexdigest() for n in IDX_NAMES]
    path = directory / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    with pytest.raises(DataError, match="archive MD5 is .* no checksum of tiny's decompressed"):
        verify_dataset(tiny_info(archive_md5=md5s), data_dir=tmp_path)


# --- npz ----------------------------------------------------------------------------------------


def test_npz_without_keras_keys_lists_what_it_has(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=TRAIN_IMAGES, labels=TRAIN_LABELS)
    with pytest.raises(DataError, match=r"has arrays \['images', 'labels'\], missing x_train"):
        load_dataset(f"npz:{path}")


def test_npz_that_is_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"mnist\.npz is not a readable \.npz"):
        load_dataset(f"npz:{path}")


def test_npz_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"absent\.npz not found; expected a \.npz file"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def test_npz_with_float_images_says_uint8_expected(tmp_path):
    path = tmp_path / "f.npz"
    arrays = dict(zip(("x_train", "y_train", "x_test", "y_test"), ARRAYS, strict=True))
    np.savez(path, **{**arrays, "x_train": TRAIN_IMAGES / 255.0})
    with pytest.raises(DataError, match=r"\[x_train\]: images have dtype float64, expected uint8"):
        load_dataset(f"npz:{path}")


def test_building_a_dataset_leaves_the_callers_arrays_writable():
    images, labels = TRAIN_IMAGES[..., None].copy(), TRAIN_LABELS.astype(np.int64)
    dataset_from_arrays("x", (images, labels), (TEST_IMAGES, TEST_LABELS))
    images[0, 0, 0, 0] = 1
    labels[0] = 1
