"""`npz:FILE` as Keras writes CIFAR: labels of shape (N, 1) and any integer dtype."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.errors import DataError

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.uint64])
def test_keras_cifar_style_labels_of_shape_n_by_1_load(tmp_path, dtype):
    x_train = RNG.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    x_test = RNG.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    y_train = (np.arange(6) % 10).reshape(-1, 1).astype(dtype)
    y_test = np.array([[9], [0], [4]], dtype=dtype)
    np.savez(tmp_path / "c.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    dataset = load_dataset(f"npz:{tmp_path / 'c.npz'}")
    assert dataset.train_labels.shape == (6,) and dataset.train_labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.test_labels, [9, 0, 4])
    np.testing.assert_array_equal(dataset.train_images, x_train)
    assert dataset.image_shape == (32, 32, 3) and dataset.classes == 10


def test_labels_of_shape_n_by_2_are_refused(tmp_path):
    x = np.zeros((2, 4, 4), np.uint8)
    y = np.zeros((2, 2), np.uint8)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=y[:, 0])
    with pytest.raises(DataError, match=r"labels have shape \(2, 2\).*\(N,\) or \(N, 1\)"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")


def test_huge_label_values_are_refused_instead_of_becoming_classes(tmp_path):
    x = np.zeros((2, 4, 4), np.uint8)
    y = np.array([0, 10**15], dtype=np.int64)
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="labels include 1000000000000000, beyond the 100,000"):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")
