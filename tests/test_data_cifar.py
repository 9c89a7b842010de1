"""The CIFAR binary reader on batches written here in the release's real layout."""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import DataFile, DatasetInfo, fetch, get_dataset_info, load_dataset, verify_dataset
from cnnlab.errors import DataError

RNG = np.random.default_rng(7)
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship")


def cifar_records(images: np.ndarray, *label_columns: np.ndarray) -> bytes:
    """The binary release's records: label byte(s), then the R, G and B planes row by row."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, 3072)
    labels = np.stack(label_columns, axis=1).astype(np.uint8)
    return np.concatenate([labels, planes], axis=1).tobytes()


def random_images(count: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def write_cifar10(directory: Path, *, batches: int = 2, per_batch: int = 5, test: int = 4):
    """A CIFAR-10 layout: data_batch_1..k.bin, test_batch.bin, batches.meta.txt; returns arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = random_images(batches * per_batch), np.arange(batches * per_batch) % 10
    for k in range(batches):
        part = slice(k * per_batch, (k + 1) * per_batch)
        (directory / f"data_batch_{k + 1}.bin").write_bytes(
            cifar_records(train_x[part], train_y[part])
        )
    test_x, test_y = random_images(test), (np.arange(test) * 3) % 10
    (directory / "test_batch.bin").write_bytes(cifar_records(test_x, test_y))
    # The release's meta file: one name per line, then blank lines.
    (directory / "batches.meta.txt").write_text("\n".join((*CIFAR10_NAMES, "truck")) + "\n\n")
    return train_x, train_y, test_x, test_y


def write_cifar100(directory: Path, *, train: int = 6, test: int = 3):
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, count in (("train", train), ("test", test)):
        images, fine = random_images(count), RNG.integers(0, 100, size=count)
        coarse = fine // 5
        (directory / f"{name}.bin").write_bytes(cifar_records(images, coarse, fine))
        arrays[name] = (images, fine, coarse)
    (directory / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    (directory / "coarse_label_names.txt").write_text("\n".join(f"c{i}" for i in range(20)))
    return arrays


def tar_gz(directory: Path, target: Path) -> Path:
    """Pack `directory` as the release does: one top folder inside a .tar.gz."""
    with tarfile.open(target, "w:gz") as archive:
        archive.add(directory, arcname=directory.name)
    return target


def test_cifar10_directory_reads_every_batch_in_order_with_channels_last(tmp_path):
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path / "cifar-10-batches-bin")
    dataset = load_dataset(f"cifar:{tmp_path}")
    np.testing.assert_array_equal(dataset.train_images, train_x)
    np.testing.assert_array_equal(dataset.train_labels, train_y)
    np.testing.assert_array_equal(dataset.test_images, test_x)
    np.testing.assert_array_equal(dataset.test_labels, test_y)
    assert dataset.image_shape == (32, 32, 3)
    assert dataset.classes == 10
    assert dataset.class_names == (*CIFAR10_NAMES, "truck")


def test_cifar10_subset_keeps_ten_classes_when_labels_miss_some(tmp_path):
    write_cifar10(tmp_path, batches=1, per_batch=3, test=2)  # labels 0..2 only
    dataset = load_dataset(f"cifar:{tmp_path}")
    assert dataset.classes == 10
    assert len(dataset.train_labels) == 3


def test_cifar100_reads_fine_labels_and_coarse_on_request(tmp_path):
    arrays = write_cifar100(tmp_path / "cifar-100-binary")
    fine = load_dataset(f"cifar:{tmp_path}")
    coarse = load_dataset(f"cifar:{tmp_path}?labels=coarse")
    np.testing.assert_array_equal(fine.train_images, arrays["train"][0])
    np.testing.assert_array_equal(fine.train_labels, arrays["train"][1])
    np.testing.assert_array_equal(coarse.test_labels, arrays["test"][2])
    assert (fine.classes, coarse.classes) == (100, 20)
    assert coarse.class_names[:2] == ("c0", "c1")


def test_cifar_release_archive_is_read_without_extracting(tmp_path):
    train_x, *_ = write_cifar10(tmp_path / "src" / "cifar-10-batches-bin")
    archive = tar_gz(tmp_path / "src" / "cifar-10-batches-bin", tmp_path / "c.tar.gz")
    dataset = load_dataset(f"cifar:{archive}")
    np.testing.assert_array_equal(dataset.train_images, train_x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz", "src"]


def test_truncated_batch_is_refused_naming_the_file_and_record_size(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(
        DataError, match=r"data_batch_2\.bin: 15,265 bytes is not a whole number of 3073-byte"
    ):
        load_dataset(f"cifar:{tmp_path}")


def test_label_outside_the_classes_is_refused_with_its_record(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "test_batch.bin"
    data = bytearray(batch.read_bytes())
    data[2 * 3073] = 12  # record 2's label byte
    batch.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=r"test_batch\.bin: record 2 has label 12, outside CIFAR-10's 10"
    ):
        load_dataset(f"cifar:{tmp_path}")


def test_missing_test_batch_and_empty_directory_say_what_is_expected(tmp_path):
    write_cifar10(tmp_path / "a")
    (tmp_path / "a" / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"test_batch\.bin not found"):
        load_dataset(f"cifar:{tmp_path / 'a'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CIFAR batch files .* expected the CIFAR binary layout"):
        load_dataset(f"cifar:{tmp_path / 'empty'}")


def test_wrong_number_of_class_names_is_refused(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=r"batches\.meta\.txt: 2 class names, expected 10"):
        load_dataset(f"cifar:{tmp_path}")


def test_damaged_archive_is_one_error_line(tmp_path):
    write_cifar10(tmp_path / "src")
    archive = tar_gz(tmp_path / "src", tmp_path / "c.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"c\.tar\.gz"):
        load_dataset(f"cifar:{archive}")


def test_coarse_labels_of_a_cifar10_layout_are_refused(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="labels=coarse needs CIFAR-100's layout"):
        load_dataset(f"cifar:{tmp_path}?labels=coarse")


def test_verify_reports_cifar_files_as_structure_only(tmp_path):
    write_cifar10(tmp_path)
    verification = verify_dataset(f"cifar:{tmp_path}")
    assert {item.check for item in verification.files} == {"structure only"}
    assert verification.files[0].shape == (10, 32, 32, 3)


def test_records_builder_matches_the_documented_layout():
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    image[0, 0, 1] = (10, 20, 30)  # row 0, column 1: red 10, green 20, blue 30
    data = cifar_records(image, np.array([4]))
    assert data[0] == 4 and len(data) == 3073
    assert (data[1 + 1], data[1 + 1024 + 1], data[1 + 2048 + 1]) == (10, 20, 30)


# --- the registry path: downloads from mirrors served on 127.0.0.1 ------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        return super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(tmp_path):
    """good/ holds a release archive in the real layout, bad/ the same size with one byte off."""
    root = tmp_path / "www"
    arrays = write_cifar10(tmp_path / "release" / "cifar-10-batches-bin", batches=5, per_batch=2)
    (root / "good").mkdir(parents=True)
    (root / "bad").mkdir()
    good = tar_gz(tmp_path / "release" / "cifar-10-batches-bin", root / "good" / ARCHIVE)
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    (root / "bad" / ARCHIVE).write_bytes(bytes(data))
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, dead, handler.requests, good, arrays
    httpd.shutdown()
    httpd.server_close()


ARCHIVE = "cifar-10-binary.tar.gz"


def cifar_info(archive: Path, *urls: str) -> DatasetInfo:
    """A registry entry like cifar10's, for the test archive: its size and MD5."""
    file = DataFile(
        ARCHIVE,
        archive.stat().st_size,
        archive_md5=hashlib.md5(archive.read_bytes()).hexdigest(),
        gzipped=False,
    )
    return DatasetInfo(
        "tiny-cifar", "test", "", mirrors=urls, files=(file,), classes=10, format="cifar10"
    )


def test_registered_cifar_falls_over_from_a_dead_mirror_and_then_uses_the_cache(mirrors, tmp_path):
    base, dead, requests, good, arrays = mirrors
    info = cifar_info(good, dead, f"{base}/good/")
    lines = []
    fetched = fetch(info, data_dir=tmp_path / "data", report=lines.append)
    assert fetched[0].path == tmp_path / "data" / "tiny-cifar" / ARCHIVE
    assert any("unreachable" in line for line in lines)
    dataset = load_dataset(info, data_dir=tmp_path / "data")
    np.testing.assert_array_equal(dataset.train_images, arrays[0])
    assert dataset.class_names[-1] == "truck"
    load_dataset(info, data_dir=tmp_path / "data")
    assert requests == [f"/good/{ARCHIVE}"]  # one download; the later loads used the cache


def test_registered_cifar_with_a_wrong_checksum_is_refused_and_not_kept(mirrors, tmp_path):
    base, _, _, good, _ = mirrors
    with pytest.raises(DataError, match=r"bad content \(MD5 is [0-9a-f]{32}, expected"):
        fetch(cifar_info(good, f"{base}/bad/"), data_dir=tmp_path / "data")
    assert list((tmp_path / "data").rglob("*.tar.gz")) == []


def test_registered_cifar_offline_never_downloads(mirrors, tmp_path):
    base, _, requests, good, _ = mirrors
    with pytest.raises(DataError, match="offline mode forbids downloading"):
        load_dataset(cifar_info(good, f"{base}/good/"), data_dir=tmp_path, offline=True)
    assert requests == []


def test_registry_entries_name_the_binary_releases_and_svhn_mats():
    assert get_dataset_info("cifar10").files[0].name == "cifar-10-binary.tar.gz"
    assert get_dataset_info("cifar100-coarse").files == get_dataset_info("cifar100").files
    assert get_dataset_info("cifar100-coarse").directory == "cifar100"
    assert [f.name for f in get_dataset_info("svhn").files] == ["train_32x32.mat", "test_32x32.mat"]
    assert all(not f.gzipped and f.archive_md5 for f in get_dataset_info("svhn").files)


def test_data_verify_prints_the_class_names(tmp_path, capsys):
    from cnnlab.cli import main

    write_cifar10(tmp_path)
    assert main(["data", "verify", f"cifar:{tmp_path}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].endswith("10 train and 4 test images of 32x32x3, 10 classes")
    assert (
        out[-1] == "classes: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck"
    )


def write_cifar10_python(directory: Path) -> Path:
    """The layout of CIFAR-10's pickled Python release (what Keras downloads): no .bin names."""
    batches = directory / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"\x80\x04not read")
    return batches


@pytest.mark.parametrize("where", ["folder", "parent", "archive"])
def test_cifar_python_version_is_named_as_such_and_the_binary_one_asked_for(tmp_path, where):
    batches = write_cifar10_python(tmp_path / "keras")
    path = {
        "folder": batches,
        "parent": batches.parent,
        "archive": tar_gz(batches, tmp_path / "cifar-10-python.tar.gz"),
    }[where]
    with pytest.raises(DataError, match="CIFAR's pickled Python version.*binary version"):
        load_dataset(f"cifar:{path}")


def test_registered_cifar_names_a_python_version_lying_where_it_looked(tmp_path):
    write_cifar10_python(tmp_path)
    tar_gz(tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="not found in .*cifar-10-python.tar.gz is CIFAR's pickled"):
        verify_dataset("cifar10", data_dir=tmp_path)
