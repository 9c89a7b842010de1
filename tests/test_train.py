"""Training behaves as Keras's fit() does, and is deterministic, resumable and failure-tolerant."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cnnlab.data import load_dataset
from cnnlab.errors import SpecError
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
    load_model,
)
from cnnlab.train import as_inputs, prepare_data, seed_streams, train_model

# Measured: seed/reference after one epoch on the first 10,000 MNIST images (9,000 trained, 1,000
# validating), seeds 0-3: test accuracy 0.915-0.928. A model that does not learn stays near 0.10.
REFERENCE_10K_FLOOR = 0.88


def tiny_model(optimizer: str = "adam", **params: float) -> ModelSpec:
    """A small CNN with dropout: trains on 2,000 images in about a second."""
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


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist", data_dir=mnist_dir)


def quick(spec, dataset, **kwargs):
    options = {"epochs": 1, "train_limit": 2000, "progress": "quiet", **kwargs}
    return train_model(spec, dataset, **options)


def numbers(result) -> list[tuple]:
    """The history without wall times, which never repeat."""
    return [(r.loss, r.accuracy, r.val_loss, r.val_accuracy) for r in result.history]


@pytest.mark.slow
def test_reference_model_learns_mnist_in_one_epoch_on_10k_images(mnist):
    result = train_model(
        load_model("seed/reference"), mnist, epochs=1, train_limit=10_000, progress="quiet"
    )
    assert result.status == "done"
    assert result.test_accuracy >= REFERENCE_10K_FLOOR
    assert result.test_predictions.shape == (10_000,)
    assert result.test_predictions.dtype == np.int64
    assert (result.test_predictions == mnist.test_labels).mean() == result.test_accuracy


def test_same_seed_gives_bit_identical_history_and_predictions(mnist):
    first = quick(tiny_model(), mnist, epochs=2, seed=3)
    second = quick(tiny_model(), mnist, epochs=2, seed=3)
    assert numbers(first) == numbers(second)
    assert first.test_loss == second.test_loss
    np.testing.assert_array_equal(first.test_predictions, second.test_predictions)


def test_different_seeds_give_different_runs(mnist):
    assert numbers(quick(tiny_model(), mnist, seed=0)) != numbers(
        quick(tiny_model(), mnist, seed=1)
    )


def test_seed_streams_are_unrelated_for_neighbouring_seeds():
    zero, one = seed_streams(0), seed_streams(1)
    assert len({zero.init, zero.shuffle, zero.dropout, one.init, one.shuffle, one.dropout}) == 6


def test_history_is_keras_like_and_test_metrics_are_reported(mnist):
    result = quick(tiny_model(), mnist, epochs=2)
    assert [r.epoch for r in result.history] == [1, 2]
    for record in result.history:
        assert 0 < record.loss < 3 and 0 <= record.accuracy <= 1
        assert record.val_loss is not None and record.images_per_second > 0
    assert result.history[1].loss < result.history[0].loss
    assert result.status == "done" and result.test_accuracy > 0.5
    assert result.parameters == 8 * 9 + 8 + 13 * 13 * 8 * 10 + 10


def test_training_leaves_the_callers_random_state_alone(mnist):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    quick(tiny_model(), mnist)
    assert torch.equal(torch.rand(3), expected)


def test_validation_split_holds_out_the_last_fraction_like_keras(mnist):
    data = prepare_data(mnist, 1000, 0.1, torch.device("cpu"))
    assert len(data.train_y) == 900 and len(data.val_y) == 100
    np.testing.assert_array_equal(data.val_y.numpy(), mnist.train_labels[900:1000])
    # Bytes on the device; each batch becomes x / 255 in float32, as the notebook computes it.
    np.testing.assert_array_equal(data.val_x.numpy(), mnist.train_images[900:1000])
    assert data.train_x.dtype == torch.uint8
    expected = mnist.train_images[900:1000].astype("float32") / 255
    np.testing.assert_array_equal(as_inputs(data.val_x).numpy(), expected)


def test_validation_on_the_test_set_reuses_the_last_pass_as_the_test(mnist):
    result = quick(tiny_model(), mnist, validation="test")
    assert result.history[-1].val_accuracy == result.test_accuracy
    assert result.history[-1].val_loss == result.test_loss


def test_no_validation_leaves_val_metrics_empty(mnist):
    result = quick(tiny_model(), mnist, validation=0.0)
    assert result.history[0].val_loss is None and result.status == "done"


@pytest.mark.parametrize("optimizer", ["sgd", "adadelta", "adam"])
def test_huge_learning_rate_ends_as_diverged_not_as_a_crash(mnist, optimizer):
    result = quick(tiny_model(optimizer, learning_rate=1e6), mnist, epochs=3)
    assert result.status == "diverged"
    assert result.epoch == 1 and result.history == ()
    assert "training loss reached" in result.reason and result.test_accuracy is None


def test_nan_loss_ends_as_diverged(mnist):
    spec = dataclasses.replace(
        load_model("seed/reference"), optimizer=OptimizerSpec("sgd", (("learning_rate", 1e6),))
    )
    result = quick(spec, mnist)
    assert result.status == "diverged" and "training loss reached nan" in result.reason


def test_exception_during_training_ends_as_failed_keeping_finished_epochs(
    mnist, tmp_path, monkeypatch
):
    import cnnlab.train

    real_save = cnnlab.train.save_checkpoint

    def disk_full_at_epoch_2(directory, *, epoch, **kwargs):
        if epoch == 2:
            raise OSError("disk full")
        real_save(directory, epoch=epoch, **kwargs)

    monkeypatch.setattr(cnnlab.train, "save_checkpoint", disk_full_at_epoch_2)
    result = quick(tiny_model(), mnist, epochs=3, run_dir=tmp_path)
    assert result.status == "failed" and result.epoch == 2
    assert result.reason == "OSError: disk full"
    assert [r.epoch for r in result.history] == [1, 2]


def test_interrupted_run_resumes_to_the_same_numbers(mnist, tmp_path):
    class CtrlC:
        """Presses Ctrl-C in the middle of the second epoch."""

        def start_epoch(self, epoch, epochs, steps):
            self.epoch = epoch

        def update(self, step, running):
            if self.epoch == 2 and step == 5:
                raise KeyboardInterrupt

        def end_epoch(self, record):
            pass

        def close(self):
            pass

    spec = tiny_model("adadelta")
    with pytest.raises(KeyboardInterrupt):
        quick(spec, mnist, epochs=3, run_dir=tmp_path, progress=CtrlC())
    resumed = quick(spec, mnist, epochs=3, run_dir=tmp_path)
    straight = quick(spec, mnist, epochs=3)
    assert resumed.resumed_from == 1
    assert numbers(resumed) == numbers(straight)
    np.testing.assert_array_equal(resumed.test_predictions, straight.test_predictions)


def test_finished_run_directory_is_not_trained_again(mnist, tmp_path):
    first = quick(tiny_model(), mnist, epochs=2, run_dir=tmp_path)
    again = quick(tiny_model(), mnist, epochs=2, run_dir=tmp_path)
    assert again.resumed_from == 2 and again.timings.train_seconds < first.timings.train_seconds
    assert numbers(again) == numbers(first) and again.test_loss == first.test_loss


def test_run_directory_of_other_settings_is_refused(mnist, tmp_path):
    quick(tiny_model(), mnist, run_dir=tmp_path, seed=0)
    with pytest.raises(SpecError, match="holds a run with other settings"):
        quick(tiny_model(), mnist, run_dir=tmp_path, seed=1)


def test_bf16_precision_trains(mnist):
    result = quick(tiny_model(), mnist, precision="bf16")
    assert result.status == "done" and result.precision == "bf16"
    assert result.test_accuracy > 0.5


def test_bf16_on_a_cpu_without_native_bf16_says_it_runs_emulated(mnist, monkeypatch):
    monkeypatch.setattr("cnnlab.devices.cpu_has_native_bf16", lambda: False)
    slow = quick(tiny_model(), mnist, precision="bf16", train_limit=200, device="cpu")
    assert any("emulated" in note and "fp32" in note for note in slow.notes), slow.notes
    assert not quick(tiny_model(), mnist, train_limit=200, device="cpu").notes
    monkeypatch.setattr("cnnlab.devices.cpu_has_native_bf16", lambda: True)
    assert not quick(tiny_model(), mnist, precision="bf16", train_limit=200, device="cpu").notes


def test_result_serialises_to_json(mnist, tmp_path):
    result = quick(tiny_model(), mnist, run_dir=tmp_path)
    data = json.loads(json.dumps(result.to_dict(predictions=True)))
    assert data["status"] == "done" and len(data["test_predictions"]) == 10_000
    assert data["checkpoint"].endswith("epoch-0001.safetensors")
    assert data["history"][0]["epoch"] == 1 and math.isfinite(data["timings"]["total_seconds"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": OptimizerSpec("adam", (("beta1", 0.5),))}, "did you mean 'beta_1'"),
        ({"optimizer": OptimizerSpec("adagrad")}, "unknown optimizer 'adagrad'"),
        ({"layers": (Conv2D(4, (30, 30)), Flatten(), Dense(CLASSES))}, "30"),
        ({"layers": (Flatten(), Dense(12, activation="softmax"))}, "12"),
    ],
)
def test_bad_model_for_the_data_is_a_spec_error_before_training(mnist, change, message):
    spec = dataclasses.replace(tiny_model(), **change)
    with pytest.raises(SpecError, match=message):
        quick(spec, mnist)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"validation": 1.0}, r"validation must be a fraction in \[0, 1\)"),
        ({"validation": "val"}, "or \"test\", got 'val'"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16, got 'fp16'"),
        ({"train_limit": 1, "validation": 0.5}, "leaves 0 of 1 images for training"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_training_options_are_spec_errors(mnist, options, message):
    with pytest.raises(SpecError, match=message):
        quick(tiny_model(), mnist, **options)


def test_a_model_too_big_for_the_machine_is_refused_before_torch_allocates_it(mnist):
    huge = ModelSpec(name="huge", layers=(Flatten(), Dense(10**11), Dense(CLASSES)))
    with pytest.raises(
        SpecError, match=r"model 'huge' has 79,500,000,000,010 parameters: .* more than this"
    ):
        train_model(huge, mnist, epochs=1, train_limit=100, progress="quiet")


def test_a_notebook_keeps_its_thread_count_and_numpy_seeds_work(mnist):
    before = torch.get_num_threads()
    result = train_model(
        tiny_model(),
        mnist,
        seed=np.int64(1),
        epochs=1,
        train_limit=300,
        threads=1,
        progress="quiet",
    )
    assert result.status == "done" and result.seed == 1
    assert torch.get_num_threads() == before


def test_a_training_spec_and_its_fields_by_name_train_the_same_run(mnist):
    training = TrainingSpec(epochs=1, batch_size=64, train_limit=300)
    given = train_model(tiny_model(), mnist, training=training, progress="quiet")
    by_name = train_model(
        tiny_model(), mnist, epochs=1, batch_size=64, train_limit=300, progress="quiet"
    )
    assert numbers(given) == numbers(by_name)
    assert given.test_accuracy == by_name.test_accuracy


def test_whole_number_options_are_checked_before_anything_trains(mnist):
    with pytest.raises(SpecError, match=r"epochs must be an integer, got 1.0"):
        train_model(tiny_model(), mnist, epochs=1.0, train_limit=300, progress="quiet")
    with pytest.raises(SpecError, match=r"unknown progress mode 'off'"):
        train_model(tiny_model(), mnist, epochs=1, train_limit=300, progress="off")


def test_an_exception_of_the_callers_on_epoch_reaches_the_caller(mnist, tmp_path):
    def on_epoch(record):
        raise ZeroDivisionError("my plotting bug")

    with pytest.raises(ZeroDivisionError, match="my plotting bug"):
        train_model(
            tiny_model(),
            mnist,
            epochs=2,
            train_limit=300,
            run_dir=tmp_path,
            on_epoch=on_epoch,
            progress="quiet",
        )
    assert (tmp_path / "epoch-0001.safetensors").is_file()  # the epoch was saved first


def test_the_result_holds_the_trained_network_and_a_keras_history(mnist):
    result = train_model(tiny_model(), mnist, epochs=2, train_limit=500, progress="quiet")
    assert not result.model.training
    images = torch.tensor(mnist.test_images[:1000]).float().div(255).permute(0, 3, 1, 2)
    with torch.no_grad():
        predicted = result.model(images.contiguous()).argmax(1).numpy()
    assert (predicted == result.test_predictions[:1000]).mean() > 0.99
    history = result.keras_history
    assert list(history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["loss"] == [record.loss for record in result.history]
    assert "model" not in result.to_dict()
