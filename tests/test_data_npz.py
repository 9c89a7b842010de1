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


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_first_images_are_refused_naming_the_transpose(tmp_path, channels):
    # PyTorch's layout (N, C, H, W) read as Keras's (N, H, W, C) would be C x H images of W
    # channels: a model would train on nonsense without a word.
    x = RNG.integers(0, 256, size=(4, channels, 32, 32), dtype=np.uint8)
    y = np.arange(4) % 2
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(
        DataError,
        match=rf"c\.npz\[x_train\]: images have shape \(4, {channels}, 32, 32\).*"
        r"channels first.*transpose\(0, 2, 3, 1\)",
    ):
        load_dataset(f"npz:{tmp_path / 'c.npz'}")


def test_images_with_many_channels_last_still_load(tmp_path):
    x = RNG.integers(0, 256, size=(4, 8, 8, 5), dtype=np.uint8)
    y = np.arange(4) % 2
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    assert load_dataset(f"npz:{tmp_path / 'c.npz'}").image_shape == (8, 8, 5)
