"""Colour end to end: a reader's channels reach the model, and presets build for 32x32x3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load_dataset
from cnnlab.spec import CLASSES, Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, load_model
from cnnlab.summary import summarize
from cnnlab.train import train_model

# keras.Sequential([keras.Input((32, 32, 3)), ...the preset's layers...]).count_params() with
# Keras 3.x (torch backend) for 10 classes, measured from the preset TOML files.
KERAS_PARAMS_32x32x3 = {
    "seed/reference": 1626442,
    "seed/model-1": 112286,
    "seed/model-2": 286366,
    "seed/model-3": 542110,
    "seed/model-4": 112702,
    "seed/model-5": 293694,
    "seed/model-6": 592830,
    "seed/model-7": 158708,
    "seed/model-8": 184868,
    "seed/model-9": 350663,
    "seed/model-10": 368271,
    "seed/model-11": 368271,
    "seed/model-12": 655994,
}


@pytest.mark.parametrize("name", sorted(KERAS_PARAMS_32x32x3))
def test_seed_presets_on_colour_images_have_keras_parameter_counts(name):
    assert summarize(load_model(name), (32, 32, 3), 10).total_params == KERAS_PARAMS_32x32x3[name]


def colour_only_images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """3 classes told apart only by which channel is brightest; every grey level is the same.

    Each pixel has a random brightness b; the class's channel gets b + 40, the other two b - 20,
    so the mean over channels (what a grey conversion sees) is b in every class, and any single
    channel tells at most one class from the other two.
    """
    labels = np.arange(count) % 3
    brightness = rng.integers(60, 190, size=(count, 32, 32, 1))
    images = np.repeat(brightness - 20, 3, axis=3)
    images[np.arange(count), :, :, labels] += 60
    return images.astype(np.uint8), labels


def write_cifar_batches(directory: Path, train, test) -> None:
    """CIFAR-10's binary layout (label byte, then R, G, B planes) for the generated images."""
    directory.mkdir()
    for name, (images, labels) in (("data_batch_1.bin", train), ("test_batch.bin", test)):
        planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        records = np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1)
        (directory / name).write_bytes(records.tobytes())


@pytest.mark.slow
def test_training_on_data_told_apart_only_by_colour_reaches_high_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    train, test = colour_only_images(600, rng), colour_only_images(150, rng)
    grey = train[0].mean(axis=3)
    assert abs(grey[train[1] == 0].mean() - grey[train[1] == 1].mean()) < 2  # no grey signal
    write_cifar_batches(tmp_path / "colour", train, test)
    dataset = load_dataset(f"cifar:{tmp_path / 'colour'}")
    model = ModelSpec(
        name="colour",
        layers=(
            Conv2D(4, (3, 3), activation="relu"),
            MaxPooling2D((4, 4)),
            Flatten(),
            Dense(CLASSES, activation="softmax"),
        ),
    )
    result = train_model(model, dataset, epochs=4, batch_size=32, validation=0, progress="quiet")
    assert result.test_accuracy >= 0.9  # one channel alone allows at most 2/3


def test_misclassified_and_confusion_plots_use_class_names():
    from cnnlab import plots

    labels = np.array([0, 1, 1, 0])
    predicted = [np.array([1, 1, 0, 0])]
    names = ("cat", "dog")
    grid = plots.misclassified_digits("m", labels, predicted, class_names=names)
    figure = plots.draw_misclassified(grid, np.zeros((4, 8, 8, 3), np.uint8))
    titles = {ax.get_title() for ax in figure.axes if ax.get_title()}
    assert titles == {"true cat, pred dog", "true dog, pred cat"}
    confusion = plots.confusion_counts("m", labels, predicted, 2, class_names=names)
    axis = plots.draw_confusion(confusion).axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["cat", "dog"]
    unnamed = plots.misclassified_digits("m", labels, predicted)
    assert unnamed.name(1) == "1"


@pytest.mark.slow
def test_a_study_on_an_image_folder_reports_its_class_names(tmp_path):
    from PIL import Image

    from cnnlab.report import read_study
    from cnnlab.study import run_study

    rng = np.random.default_rng(1)
    for split, count in (("train", 12), ("test", 4)):
        for name, channel in (("red", 0), ("green", 1)):
            folder = tmp_path / "photos" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, size=(8, 8, 3), dtype=np.uint8)
                pixels[..., channel] += 180
                Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")
    study = tmp_path / "study.toml"
    study.write_text(
        f'name = "photos"\ndataset = "folder:{tmp_path / "photos"}"\nseeds = 1\n'
        'models = ["small.toml"]\n[training]\nepochs = 1\nbatch_size = 8\nvalidation = 0\n'
    )
    (tmp_path / "small.toml").write_text(
        'name = "small"\nlayers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
    )
    run_study(study, directory=tmp_path / "out", progress="quiet", data_dir=tmp_path)
    results = read_study(tmp_path / "out", data_dir=tmp_path)
    assert results.class_names == ("green", "red")
    assert results.test_images.shape[1:] == (8, 8, 3)
