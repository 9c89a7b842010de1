"""The real MNIST through all three sources, and where cnnlab looks for a registry's files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from cnnlab.data import (
    IDX_NAMES,
    encode_idx,
    get_dataset_info,
    inspect_local_copy,
    load_dataset,
    resolve_data_dir,
    verify_dataset,
)
from cnnlab.errors import DataError


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    """MNIST from the registry, loaded once for this module (arrays are read-only)."""
    return load_dataset("mnist", data_dir=mnist_dir, offline=True)


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)


def link_mnist(mnist_dir: Path, directory: Path, skip: str | None = None) -> Path:
    """Symlinks to the shared MNIST files in `directory` (no 55 MB copies), except `skip`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in IDX_NAMES:
        if name != skip:
            (directory / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    return directory


def test_registry_mnist_has_keras_shapes_and_dtypes(mnist):
    assert mnist.name == "mnist"
    assert mnist.train_images.shape == (60000, 28, 28, 1)
    assert mnist.test_images.shape == (10000, 28, 28, 1)
    assert mnist.train_images.dtype == np.uint8
    assert mnist.train_labels.dtype == np.int64
    assert mnist.image_shape == (28, 28, 1)
    assert mnist.classes == 10
    assert mnist.describe() == "60000 train and 10000 test images of 28x28x1, 10 classes"


def test_mnist_content_is_the_known_digits(mnist):
    # The first training labels of MNIST (LeCun's file order) and its per-class test counts.
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(mnist.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip


def test_idx_source_on_the_shared_dir_gives_the_same_arrays(mnist, mnist_dir):
    from_idx = load_dataset(f"idx:{mnist_dir}")
    assert from_idx.name == f"idx:{mnist_dir}"
    assert from_idx.classes == 10
    assert np.array_equal(from_idx.train_images, mnist.train_images)
    assert np.array_equal(from_idx.test_labels, mnist.test_labels)


def test_npz_source_reads_keras_mnist_layout(mnist, tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(  # keras.datasets.mnist's layout: (N, 28, 28) uint8 images, uint8 labels
        path,
        x_train=mnist.train_images[..., 0],
        y_train=mnist.train_labels.astype(np.uint8),
        x_test=mnist.test_images[..., 0],
        y_test=mnist.test_labels.astype(np.uint8),
    )
    from_npz = load_dataset(f"npz:{path}")
    assert from_npz.image_shape == (28, 28, 1)
    assert from_npz.train_labels.dtype == np.int64
    assert np.array_equal(from_npz.train_images, mnist.train_images)
    assert np.array_equal(from_npz.test_labels, mnist.test_labels)


def test_every_mnist_file_is_verified_by_content_checksum(mnist_dir):
    checked = verify_dataset("mnist", data_dir=mnist_dir)
    assert [item.check for item in checked.files] == ["content SHA-256"] * 4
    assert [item.path for item in checked.files] == [mnist_dir / f"{n}.gz" for n in IDX_NAMES]
    assert [item.shape for item in checked.files] == [
        (60000, 28, 28), (60000,), (10000, 28, 28), (10000,),
    ]  # fmt: skip


def test_files_are_found_in_the_dataset_subfolder_too(mnist_dir, tmp_path, no_data_env):
    link_mnist(mnist_dir, tmp_path / "mnist")
    checked = verify_dataset("mnist", data_dir=tmp_path)
    assert {item.path.parent for item in checked.files} == {tmp_path / "mnist"}


def test_flat_files_are_preferred_over_the_subfolder(mnist_dir, tmp_path, no_data_env):
    link_mnist(mnist_dir, tmp_path)
    link_mnist(mnist_dir, tmp_path / "mnist")
    checked = verify_dataset("mnist", data_dir=tmp_path)
    assert {item.path.parent for item in checked.files} == {tmp_path}


def test_data_dir_option_wins_over_environment(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "empty"))
    assert resolve_data_dir(mnist_dir) == mnist_dir
    assert resolve_data_dir() == tmp_path / "empty"
    with pytest.raises(DataError, match=r"empty/mnist; run `cnnlab data fetch mnist`"):
        verify_dataset("mnist")


def test_environment_data_dir_is_used_without_option(mnist_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(mnist_dir))
    assert verify_dataset("mnist").files[0].path == mnist_dir / "train-images-idx3-ubyte.gz"


def test_default_data_dir_is_the_per_user_cache(no_data_env):
    assert resolve_data_dir() == Path(platformdirs.user_cache_dir("cnnlab")) / "datasets"


def test_missing_file_offline_says_pass_data_dir_or_drop_offline(mnist_dir, tmp_path):
    directory = link_mnist(mnist_dir, tmp_path, skip="t10k-images-idx3-ubyte")
    with pytest.raises(
        DataError,
        match=r"mnist: t10k-images-idx3-ubyte\[\.gz\] not found in .* offline mode forbids "
        r"downloading; pass --data-dir DIR with local copies, or allow downloads",
    ):
        load_dataset("mnist", data_dir=directory, offline=True)


def test_altered_mnist_labels_fail_the_checksum_with_fetch_advice(mnist, mnist_dir, tmp_path):
    directory = link_mnist(mnist_dir, tmp_path, skip="train-labels-idx1-ubyte")
    labels = mnist.train_labels.astype(np.uint8)
    labels[0] = (labels[0] + 1) % 10  # one wrong label, structure intact
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(encode_idx(labels)))
    with pytest.raises(
        DataError,
        match=r"train-labels-idx1-ubyte\.gz: SHA-256 of the decompressed content is [0-9a-f]{16}"
        r"\.\.\., expected 65a50cbbf4e906d7\.\.\. .* delete it and run `cnnlab data fetch mnist`",
    ):
        load_dataset("mnist", data_dir=directory, offline=True)


def test_truncated_mnist_file_is_reported_as_truncated(mnist_dir, tmp_path):
    directory = link_mnist(mnist_dir, tmp_path, skip="t10k-labels-idx1-ubyte")
    content = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (directory / "t10k-labels-idx1-ubyte").write_bytes(content[:5000])
    with pytest.raises(
        DataError, match=r"declares 10000 = 10000 data bytes, found 4992.*truncated"
    ):
        load_dataset("mnist", data_dir=directory, offline=True)


def test_another_datasets_files_are_named_as_such(mnist_dir):
    with pytest.raises(DataError, match="this is mnist's train-images-idx3-ubyte, not kmnist's"):
        load_dataset("kmnist", data_dir=mnist_dir, offline=True)
    local = inspect_local_copy(get_dataset_info("fashion-mnist"), mnist_dir)
    assert "this is mnist's" in local.problem
    assert not local.complete
    assert inspect_local_copy(get_dataset_info("mnist"), mnist_dir).complete


def test_registry_records_decompressed_checksums_and_several_mirrors():
    for name in ("mnist", "fashion-mnist", "kmnist"):
        info = get_dataset_info(name)
        assert len(info.mirrors) >= 2 and all(m.endswith("/") for m in info.mirrors)
        assert [file.name for file in info.files] == list(IDX_NAMES)
        assert info.classes == 10
    assert all(file.sha256 for file in get_dataset_info("fashion-mnist").files)
    assert all(file.archive_md5 for file in get_dataset_info("kmnist").files)


def test_a_path_loads_as_an_idx_directory_and_a_dataset_shows_one_line(mnist_dir, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in IDX_NAMES:
        (flat / f"{name}.gz").symlink_to(Path(mnist_dir) / f"{name}.gz")
    loaded = load_dataset(flat)
    assert loaded.describe() == "60000 train and 10000 test images of 28x28x1, 10 classes"
    assert repr(loaded) == f"Dataset({loaded.name!r}: {loaded.describe()})"  # not the arrays
