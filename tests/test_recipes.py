"""Training recipes in real training: augmentation, schedules, EarlyStopping, optimiser extras,
and a resume that continues all of them exactly (small real MNIST slices)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.augment import augment, check_augmentation
from cnnlab.callbacks import learning_rate_at
from cnnlab.data import load_dataset
from cnnlab.errors import SpecError
from cnnlab.multiseed import train_seeds
from cnnlab.optim import before_step, make_optimizer, set_learning_rate
from cnnlab.spec import (
    CLASSES,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    TrainingSpec,
)
from cnnlab.spec.recipes import resolve_augmentation
from cnnlab.train import train_model

CROP_FLIP = ({"random_crop": 28, "pad": 4}, {"random_flip": "horizontal"})


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist", data_dir=mnist_dir)


def tiny(optimizer: str = "adam", **params) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        layers=(
            Conv2D(8, (3, 3), activation="relu"),
            MaxPooling2D((2, 2)),
            Dropout(0.25),
            Flatten(),
            Dense(CLASSES, activation="softmax"),
        ),
        optimizer=OptimizerSpec(optimizer, tuple(params.items())),
    )


def numbers(result) -> list[tuple]:
    return [
        (r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.learning_rate) for r in result.history
    ]


def layers(*items):
    return tuple(resolve_augmentation(item, ("augment", i)) for i, item in enumerate(items))


def batch(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((2, 16, 28, 28, 1), generator=generator)  # (seeds, N, H, W, C)


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


# -- augmentation as batched tensor operations ---------------------------------------------------

ALL_KINDS = (
    *CROP_FLIP,
    {"random_translation": 0.1},
    {"random_rotation": 0.05},
    {"random_zoom": 0.1, "fill_mode": "constant", "fill_value": 0.5},
    {"random_contrast": 0.3},
)


def test_the_same_seed_gives_the_same_augmented_batches_and_other_seeds_differ():
    recipe = layers(*ALL_KINDS)
    images = batch()
    first = augment(images, recipe, generators(1, 2))
    again = augment(images, recipe, generators(1, 2))
    other = augment(images, recipe, generators(3, 4))
    assert first.shape == images.shape
    assert torch.equal(first, again)
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_a_seeds_augmentation_does_not_depend_on_the_seeds_beside_it():
    recipe = layers(*ALL_KINDS)
    images = batch()
    together = augment(images, recipe, generators(1, 2))
    alone = augment(images[:1], recipe, generators(1))
    assert torch.allclose(together[0], alone[0], atol=1e-6)


def test_a_padded_crop_moves_the_image_by_whole_pixels_and_fills_zeros():
    images = batch()
    out = augment(images, layers({"random_crop": 28, "pad": 4}), generators(5, 6))
    for seed in range(2):
        for index in range(16):
            padded = F.pad(images[seed, index], (0, 0, 4, 4, 4, 4))
            windows = [
                padded[top : top + 28, left : left + 28] for top in range(9) for left in range(9)
            ]
            assert any(torch.equal(out[seed, index], w) for w in windows)


def test_a_horizontal_flip_flips_about_half_the_images_left_to_right():
    images = batch()
    out = augment(images, layers({"random_flip": "horizontal"}), generators(0, 1))
    pairs = list(zip(out.flatten(0, 1), images.flatten(0, 1), strict=True))
    flipped = [torch.equal(o, i.flip(1)) for o, i in pairs]
    kept = [torch.equal(o, i) for o, i in pairs]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 4 <= sum(flipped) <= 28


def test_a_crop_larger_than_the_padded_image_is_refused_before_training():
    with pytest.raises(SpecError, match=r"augment\[0\].*40x40 crop is larger than the padded"):
        check_augmentation(layers({"random_crop": 40, "pad": 4}), (28, 28, 1))


# -- schedules, callbacks and optimiser extras in training ---------------------------------------

SCHEDULE = {
    "name": "ExponentialDecay",
    "initial_learning_rate": 0.01,
    "decay_steps": 3,
    "decay_rate": 0.5,
}


def test_each_epochs_learning_rate_is_the_schedules_value_at_the_steps_taken(mnist):
    training = TrainingSpec(epochs=2, train_limit=600, learning_rate_schedule=SCHEDULE)
    result = train_model(tiny(), mnist, training=training, progress="quiet")
    steps = 5  # ceil(540 / 128)
    expected = [learning_rate_at(training.learning_rate_schedule, e * steps) for e in (1, 2)]
    assert [r.learning_rate for r in result.history] == pytest.approx(expected)


def test_test_metrics_come_from_the_restored_best_epochs_weights(mnist):
    """mode=min on val_accuracy keeps the worst epoch: its weights are those of a shorter run."""
    watch = {"monitor": "val_accuracy", "mode": "min", "patience": 10}
    training = TrainingSpec(
        epochs=3, train_limit=600, early_stopping={**watch, "restore_best_weights": True}
    )
    result = train_model(tiny(), mnist, training=training, progress="quiet")
    assert result.stopped_epoch is None and result.best_epoch is not None
    shorter = train_model(
        tiny(),
        mnist,
        training=TrainingSpec(epochs=result.best_epoch, train_limit=600),
        progress="quiet",
    )
    assert result.test_loss == shorter.test_loss
    assert np.array_equal(result.test_predictions, shorter.test_predictions)
    assert len(result.history) == 3  # the history stays as trained


def test_early_stopping_ends_training_and_records_the_epoch(mnist):
    # min_delta larger than any change: no epoch after the first improves, patience 1 stops it
    training = TrainingSpec(
        epochs=5,
        train_limit=600,
        early_stopping={"monitor": "loss", "min_delta": 100.0, "patience": 1},
    )
    result = train_model(tiny(), mnist, training=training, progress="quiet")
    assert result.status == "done" and result.stopped_epoch == 2 and result.best_epoch == 1
    assert len(result.history) == 2 and result.test_accuracy is not None


def test_weight_decay_and_clipping_are_keras_updates():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    spec = OptimizerSpec("sgd", (("learning_rate", 0.1), ("weight_decay", 0.01), ("clipnorm", 1.0)))
    optimizer = make_optimizer(spec, [weight])
    weight.grad = torch.tensor([3.0, 0.0, 4.0])  # norm 5: clipped to 1
    before_step(optimizer)
    optimizer.step()
    decayed = torch.tensor([1.0, -2.0, 3.0]) * (1 - 0.01 * 0.1)
    assert torch.allclose(weight.detach(), decayed - 0.1 * torch.tensor([0.6, 0.0, 0.8]))


def test_sgd_momentum_follows_kerass_velocity_when_the_rate_changes():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    spec = OptimizerSpec("sgd", (("momentum", 0.9), ("nesterov", True)))
    optimizer = make_optimizer(spec, [weight])
    keras_w, velocity = 1.0, 0.0
    for rate, grad in [(0.1, 1.0), (0.05, -2.0), (0.2, 0.5)]:
        set_learning_rate(optimizer, rate)
        weight.grad = torch.tensor([grad])
        optimizer.step()
        velocity = 0.9 * velocity - rate * grad  # keras/src/optimizers/sgd.py
        keras_w += 0.9 * velocity - rate * grad
    assert weight.item() == pytest.approx(keras_w, rel=1e-6)


def test_unknown_names_and_bad_values_are_one_line_before_training(mnist):
    cases = [
        ({"augment": [{"random_flop": "horizontal"}]}, "did you mean 'random_flip'"),
        ({"learning_rate_schedule": {"name": "CosineDecy"}}, "did you mean 'CosineDecay'"),
        ({"early_stopping": {"patience": -1}}, "early_stopping.patience must be >= 0, got -1"),
        ({"early_stopping": {"monitor": "val_acc"}}, "did you mean 'val_accuracy'"),
        (
            {"learning_rate_schedule": {**SCHEDULE, "decay_steps": 0}},
            "decay_steps must be >= 1, got 0",
        ),
        (
            {"validation": 0.0, "early_stopping": {"restore_best_weights": True}},
            "'val_loss' is never computed",
        ),
    ]
    for fields, message in cases:
        with pytest.raises(SpecError, match=message):
            train_model(tiny(), mnist, training=TrainingSpec(train_limit=600, **fields))


# -- resume and stacking with everything on -------------------------------------------------------

EVERYTHING = TrainingSpec(
    epochs=4,
    train_limit=600,
    augment=CROP_FLIP,
    learning_rate_schedule={
        "name": "CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 15,
        "warmup_target": 0.05,
        "warmup_steps": 4,
    },
    early_stopping={"patience": 3, "restore_best_weights": True},
    label_smoothing=0.1,
)
SGD = {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.004}


def test_an_interrupted_run_with_every_recipe_on_resumes_to_the_same_numbers(mnist, tmp_path):
    spec = tiny("sgd", **SGD)
    unbroken = train_model(
        spec, mnist, training=EVERYTHING, run_dir=tmp_path / "a", progress="quiet"
    )

    def stop_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(
            spec,
            mnist,
            training=EVERYTHING,
            run_dir=tmp_path / "b",
            on_epoch=stop_after_two,
            progress="quiet",
        )
    resumed = train_model(
        spec, mnist, training=EVERYTHING, run_dir=tmp_path / "b", progress="quiet"
    )
    assert resumed.resumed_from == 2
    assert numbers(resumed) == numbers(unbroken)
    assert (resumed.stopped_epoch, resumed.best_epoch) == (
        unbroken.stopped_epoch,
        unbroken.best_epoch,
    )
    assert resumed.test_loss == unbroken.test_loss
    assert np.array_equal(resumed.test_predictions, unbroken.test_predictions)


@pytest.mark.slow
def test_a_plateau_and_its_patience_resume_exactly(mnist, tmp_path):
    training = dataclasses.replace(
        EVERYTHING,
        learning_rate_schedule=None,
        reduce_lr_on_plateau={"factor": 0.5, "patience": 1, "min_delta": 10.0},
    )
    spec = tiny("sgd", **SGD)
    unbroken = train_model(spec, mnist, training=training, run_dir=tmp_path / "a", progress="quiet")
    assert [r.learning_rate for r in unbroken.history][-1] < SGD["learning_rate"]

    def stop_after_two(record):
        if record.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(
            spec,
            mnist,
            training=training,
            run_dir=tmp_path / "b",
            on_epoch=stop_after_two,
            progress="quiet",
        )
    resumed = train_model(spec, mnist, training=training, run_dir=tmp_path / "b", progress="quiet")
    assert numbers(resumed) == numbers(unbroken)


@pytest.mark.slow
def test_stacked_seeds_train_the_same_recipe_as_separate_runs(mnist):
    spec = tiny("sgd", **SGD)
    stacked = train_seeds(spec, mnist, seeds=[0, 1], training=EVERYTHING, progress="quiet")
    for seed, result in zip((0, 1), stacked, strict=True):
        alone = train_model(spec, mnist, training=EVERYTHING, seed=seed, progress="quiet")
        assert [r.learning_rate for r in result.history] == [r.learning_rate for r in alone.history]
        assert [r.loss for r in result.history] == pytest.approx(
            [r.loss for r in alone.history], rel=1e-3
        )


def test_keras_allows_one_kind_of_gradient_clipping():
    from cnnlab.optim import resolve_optimizer

    spec = OptimizerSpec("adam", (("clipnorm", 1.0), ("clipvalue", 0.5)))
    with pytest.raises(SpecError, match="set one of clipnorm, clipvalue and global_clipnorm"):
        resolve_optimizer(spec)
    assert "clipnorm" not in dict(resolve_optimizer(OptimizerSpec("adam")).params)


def test_rotation_turns_counter_clockwise_and_translation_moves_down_as_keras_says():
    nearest = {"interpolation": "nearest", "fill_mode": "constant"}
    image = torch.zeros(1, 1, 5, 5, 1)
    image[0, 0, 2, 4, 0] = 1.0  # middle of the right edge
    quarter = layers({"random_rotation": [0.25, 0.25], **nearest})
    assert augment(image, quarter, generators(0))[0, 0, 0, 2, 0] == 1.0  # now top middle
    image = torch.zeros(1, 1, 5, 5, 1)
    image[0, 0, 2, 2, 0] = 1.0
    down = layers({"random_translation": [0.2, 0.2], "width_factor": [0.0, 0.0], **nearest})
    assert augment(image, down, generators(0))[0, 0, 3, 2, 0] == 1.0  # one pixel (0.2 x 5) down
