"""The SVHN reader on .mat files written here with scipy.io.savemat, in the release's layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from cnnlab.data import DataFile, DatasetInfo, load_dataset, verify_dataset
from cnnlab.errors import DataError

RNG = np.random.default_rng(3)


def write_svhn_mat(path: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """X as (32, 32, 3, N) uint8 and y as (N, 1) labels 1..10 (10 = digit 0), like the release."""
    images = RNG.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    digits = np.arange(count) % 10
    labels = np.where(digits == 0, 10, digits).reshape(-1, 1).astype(np.uint8)
    scipy.io.savemat(path, {"X": np.moveaxis(images, 0, -1), "y": labels})
    return images, digits


def svhn_info(directory: Path, name: str = "tiny-svhn") -> DatasetInfo:
    """A registry entry for the files in `directory`, checked by their real sizes and MD5s."""
    files = tuple(
        DataFile(
            file,
            (directory / file).stat().st_size,
            archive_md5=hashlib.md5((directory / file).read_bytes()).hexdigest(),
            gzipped=False,
        )
        for file in ("train_32x32.mat", "test_32x32.mat")
    )
    return DatasetInfo(
        name=name,
        description="test",
        homepage="",
        mirrors=("http://127.0.0.1:9/",),
        files=files,
        classes=10,
        format="svhn",
    )


@pytest.fixture
def svhn_dir(tmp_path):
    train = write_svhn_mat(tmp_path / "train_32x32.mat", 12)
    test = write_svhn_mat(tmp_path / "test_32x32.mat", 5)
    return tmp_path, train, test


def test_svhn_mat_files_load_channels_last_with_ten_as_digit_zero(svhn_dir):
    directory, (train_x, train_y), (test_x, test_y) = svhn_dir
    dataset = load_dataset(svhn_info(directory), data_dir=directory, offline=True)
    np.testing.assert_array_equal(dataset.train_images, train_x)
    np.testing.assert_array_equal(dataset.train_labels, train_y)
    np.testing.assert_array_equal(dataset.test_images, test_x)
    np.testing.assert_array_equal(dataset.test_labels, test_y)
    assert dataset.classes == 10 and dataset.class_names[0] == "0"


def test_svhn_files_are_checked_by_size_and_md5(svhn_dir):
    directory, *_ = svhn_dir
    info = svhn_info(directory)
    verification = verify_dataset(info, data_dir=directory)
    assert {item.check for item in verification.files} == {"archive MD5"}
    write_svhn_mat(directory / "test_32x32.mat", 5)  # same size, other pixels
    with pytest.raises(DataError, match=r"test_32x32\.mat: MD5 is [0-9a-f]{32}, expected"):
        load_dataset(info, data_dir=directory, offline=True)


def test_svhn_file_of_another_size_is_refused_before_reading(svhn_dir):
    directory, *_ = svhn_dir
    info = svhn_info(directory)
    with (directory / "train_32x32.mat").open("ab") as extra:
        extra.write(b"\0" * 10)
    with pytest.raises(
        DataError, match=r"train_32x32\.mat: .* bytes, expected .* truncated or not"
    ):
        load_dataset(info, data_dir=directory, offline=True)


def test_mat_without_the_expected_arrays_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((2, 2), np.uint8)})
    write_svhn_mat(tmp_path / "test_32x32.mat", 3)
    with pytest.raises(DataError, match=r"train_32x32\.mat: holds images, not X and y"):
        load_dataset(svhn_info(tmp_path), data_dir=tmp_path, offline=True)


def test_mat_labels_outside_one_to_ten_are_refused(tmp_path):
    write_svhn_mat(tmp_path / "train_32x32.mat", 3)
    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[3], [11]])})
    with pytest.raises(DataError, match=r"test_32x32\.mat: y\[1\] is 11, outside SVHN's labels"):
        load_dataset(svhn_info(tmp_path), data_dir=tmp_path, offline=True)


def test_a_file_that_is_not_matlab_is_one_error_line(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    write_svhn_mat(tmp_path / "test_32x32.mat", 3)
    with pytest.raises(DataError, match=r"train_32x32\.mat: not a readable MATLAB file"):
        load_dataset(svhn_info(tmp_path), data_dir=tmp_path, offline=True)
