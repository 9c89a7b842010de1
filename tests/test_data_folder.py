"""`folder:DIR` on PNG and JPEG files written here with Pillow: order, size, channels, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset, verify_dataset
from cnnlab.errors import DataError

RNG = np.random.default_rng(5)


def write_image(path: Path, pixels: np.ndarray, format: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if pixels.ndim == 2 else "RGB"
    Image.fromarray(pixels, mode).save(path, format=format)


def write_split(
    root: Path, classes: dict[str, int], size=(8, 6), colour=True
) -> dict[Path, np.ndarray]:
    """`count` random PNGs per class under root/<class>/; returns each file's pixels."""
    written = {}
    for name, count in classes.items():
        for i in range(count):
            shape = (*size, 3) if colour else size
            pixels = RNG.integers(0, 256, size=shape, dtype=np.uint8)
            path = root / name / f"{i:03d}.png"
            write_image(path, pixels)
            written[path] = pixels
    return written


def test_train_and_test_trees_load_with_sorted_class_names_and_exact_pixels(tmp_path):
    train = write_split(tmp_path / "train", {"dog": 3, "cat": 4})
    write_split(tmp_path / "test", {"cat": 2, "dog": 2})
    dataset = load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")
    assert dataset.class_names == ("cat", "dog")
    assert dataset.image_shape == (8, 6, 3)
    assert (len(dataset.train_images), len(dataset.test_images)) == (7, 4)
    by_pixels = {arr.tobytes(): path.parent.name for path, arr in train.items()}
    for image, label in zip(dataset.train_images, dataset.train_labels, strict=True):
        assert dataset.class_names[label] == by_pixels[image.tobytes()]


def test_order_is_shuffled_once_and_the_same_on_every_load(tmp_path):
    write_split(tmp_path / "train", {"a": 20, "b": 20, "c": 20}, colour=False)
    write_split(tmp_path / "test", {"a": 1, "b": 1, "c": 1}, colour=False)
    first = load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "c1")
    second = load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "c2")
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    # A --train-limit of 12 draws from every class, not only the first sorted one.
    assert set(first.train_labels[:12].tolist()) == {0, 1, 2}


def test_grey_files_give_one_channel_and_any_colour_file_gives_three(tmp_path):
    write_split(tmp_path / "g" / "train", {"a": 2}, colour=False)
    write_split(tmp_path / "g" / "test", {"a": 1}, colour=False)
    assert load_dataset(f"folder:{tmp_path / 'g'}", data_dir=tmp_path).image_shape[2] == 1
    write_image(tmp_path / "g" / "test" / "a" / "rgb.png", np.zeros((8, 6, 3), np.uint8))
    assert load_dataset(f"folder:{tmp_path / 'g'}", data_dir=tmp_path).image_shape[2] == 3
    forced = load_dataset(f"folder:{tmp_path / 'g'}?channels=1", data_dir=tmp_path)
    assert forced.image_shape[2] == 1


def test_jpeg_files_are_read_too(tmp_path):
    pixels = np.full((8, 8, 3), (200, 30, 30), dtype=np.uint8)
    write_image(tmp_path / "train" / "red" / "a.jpg", pixels, "JPEG")
    write_image(tmp_path / "test" / "red" / "b.jpeg", pixels, "JPEG")
    dataset = load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")
    assert np.abs(dataset.train_images[0].astype(int) - pixels).max() < 8  # lossy, but red


def test_sixteen_bit_grey_pngs_are_scaled_to_eight_bits_not_clipped(tmp_path):
    # Pillow's convert("L") clips 16-bit values at 255, so every pixel above 255 of 65535
    # came out white; TensorFlow's decode_png(dtype=uint8) keeps the high byte.
    wide = np.arange(48, dtype=np.uint16).reshape(8, 6) * 1365
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(wide).save(tmp_path / split / "a" / "x.png")
    dataset = load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")
    assert dataset.image_shape == (8, 6, 1)
    np.testing.assert_array_equal(dataset.train_images[0, :, :, 0], wide >> 8)
    rgb = load_dataset(f"folder:{tmp_path}?channels=3", data_dir=tmp_path / "cache")
    np.testing.assert_array_equal(rgb.train_images[0, :, :, 2], wide >> 8)


def test_a_float_image_with_no_one_byte_reading_is_refused_naming_it(tmp_path):
    write_split(tmp_path / "train", {"a": 1}, colour=False)
    write_split(tmp_path / "test", {"a": 1}, colour=False)
    Image.fromarray(np.ones((8, 6), np.float32)).save(tmp_path / "train" / "a" / "f.tiff")
    with pytest.raises(DataError, match=r"f\.tiff: a 32-bit float image \(mode F\)"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")


def test_mixed_sizes_are_refused_naming_the_odd_file_unless_a_size_is_given(tmp_path):
    write_split(tmp_path / "train", {"a": 2})
    write_split(tmp_path / "test", {"a": 1})
    write_image(tmp_path / "train" / "a" / "zz-big.png", np.zeros((16, 12, 3), np.uint8))
    with pytest.raises(DataError, match=r"zz-big\.png is 12x16 \(WxH\) but .* is 6x8.*image_size"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")
    dataset = load_dataset(f"folder:{tmp_path}?image_size=4x5", data_dir=tmp_path / "cache")
    assert dataset.image_shape == (4, 5, 3)


def test_resizing_keeps_a_uniform_colour(tmp_path):
    write_image(tmp_path / "train" / "a" / "x.png", np.full((16, 16, 3), (10, 200, 90), np.uint8))
    write_image(tmp_path / "test" / "a" / "y.png", np.full((9, 7, 3), (10, 200, 90), np.uint8))
    dataset = load_dataset(f"folder:{tmp_path}?image_size=4x4", data_dir=tmp_path / "cache")
    assert (dataset.train_images == (10, 200, 90)).all()
    assert (dataset.test_images == (10, 200, 90)).all()


def test_one_tree_with_a_held_out_fraction_splits_the_shuffled_files(tmp_path):
    write_split(tmp_path, {"a": 10, "b": 10})
    dataset = load_dataset(f"folder:{tmp_path}?test_fraction=0.25", data_dir=tmp_path / ".c")
    assert (len(dataset.train_images), len(dataset.test_images)) == (15, 5)
    with pytest.raises(DataError, match="no train/ and test/ folders and no test_fraction"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / ".c")


def test_empty_class_folder_is_named(tmp_path):
    write_split(tmp_path / "train", {"a": 2})
    write_split(tmp_path / "test", {"a": 1})
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(DataError, match=r"train/b: an empty class folder"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_image_is_named(tmp_path, damage):
    write_split(tmp_path / "train", {"a": 2})
    write_split(tmp_path / "test", {"a": 1})
    bad = tmp_path / "train" / "a" / "001.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x89PNG junk" * 9)
    with pytest.raises(DataError, match=r"train/a/001\.png: not a readable image"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")


def test_test_class_missing_from_train_is_refused(tmp_path):
    write_split(tmp_path / "train", {"a": 2})
    write_split(tmp_path / "test", {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"test/b is a class the train folder lacks"):
        load_dataset(f"folder:{tmp_path}", data_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("image_size=0x4", "both sides must lie in 1..4096"),
        ("image_size=big", "image_size='big' is not a valid value"),
        ("channels=2", "expected 1 \\(grey\\) or 3 \\(RGB\\)"),
        ("test_fraction=1.5", "expected a number in \\(0, 1\\)"),
        ("test_fraction=nan", "not a valid value"),
        ("colour=yes", "unknown option 'colour'"),
    ],
)
def test_bad_options_are_one_error_line(tmp_path, query, message):
    write_split(tmp_path, {"a": 2})
    with pytest.raises(DataError, match=message):
        load_dataset(f"folder:{tmp_path}?{query}", data_dir=tmp_path / "cache")


def test_second_load_reads_the_cache_and_a_changed_folder_is_decoded_again(tmp_path):
    write_split(tmp_path / "d" / "train", {"a": 3, "b": 3})
    write_split(tmp_path / "d" / "test", {"a": 1})
    source, cache = f"folder:{tmp_path / 'd'}", tmp_path / "cache"
    first = verify_dataset(source, data_dir=cache)
    second = verify_dataset(source, data_dir=cache)
    assert first.files[0].check == "decoded"
    assert second.files[0].check.startswith("cached in ")
    np.testing.assert_array_equal(first.dataset.train_images, second.dataset.train_images)
    write_image(tmp_path / "d" / "train" / "a" / "new.png", np.zeros((8, 6, 3), np.uint8))
    third = verify_dataset(source, data_dir=cache)
    assert third.files[0].check == "decoded" and len(third.dataset.train_images) == 7


def test_the_folder_cache_is_readable_by_others_sharing_the_data_directory(tmp_path):
    write_split(tmp_path / "d" / "train", {"a": 2})
    write_split(tmp_path / "d" / "test", {"a": 1})
    verify_dataset(f"folder:{tmp_path / 'd'}", data_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache" / "folder-cache").iterdir()
    assert cached.stat().st_mode & 0o777 == 0o644  # as downloads; mkstemp alone gives 0600


def test_missing_folder_is_one_error_line(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
