"""Seeds trained together as one stacked computation equal their separate runs."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from cnnlab.build import build_model
from cnnlab.checkpoint import load_latest, restore_optimizer_state, save_checkpoint
from cnnlab.data import load_dataset
from cnnlab.errors import SpecError
from cnnlab.multiseed import train_seeds
from cnnlab.optim import make_optimizer
from cnnlab.spec import (
    CLASSES,
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
)
from cnnlab.train import train_model

SEEDS = (0, 1, 2)
# Every layer kind the stack rewrites: TF 'same' padding with an even, strided kernel (an
# explicit pad), batch norm and dropout on maps and on vectors, pooling, Flatten's (H, W, C).
EVERY_KIND = (
    Conv2D(8, (3, 3), activation="relu", padding="same"),
    MaxPooling2D((2, 2)),
    BatchNormalization(),
    Dropout(0.25),
    Conv2D(8, (4, 4), strides=(2, 2), activation="tanh", padding="same"),
    Flatten(),
    Dense(16, activation="relu"),
    BatchNormalization(),
    Dropout(0.5),
    Dense(CLASSES, activation="softmax"),
)
# Two epochs of 4 steps (256 images train, 64 validate). Rounding differences grow with every
# step (measured with SGD + momentum: 3e-8 after 2 steps, 1.7e-6 after 8, 1e-2 after 16), so
# the comparison is made early. Measured after these 8 steps: at most 2e-6 apart; a seed given
# another seed's dropout masks is 0.18 apart.
SMALL = {"epochs": 2, "train_limit": 320, "batch_size": 64, "validation": 0.2, "progress": "quiet"}
WEIGHT_TOLERANCE = 1e-4


def model(*layers, optimizer: str = "adam", **params: float) -> ModelSpec:
    return ModelSpec(
        name="every-kind",
        layers=layers or EVERY_KIND,
        optimizer=OptimizerSpec(optimizer, tuple(params.items())),
    )


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_dataset("mnist", data_dir=mnist_dir)


def assert_same_checkpoint(separate_dir, stacked_dir) -> None:
    separate, _ = load_latest(separate_dir)
    stacked, _ = load_latest(stacked_dir)
    assert separate.epoch == stacked.epoch
    assert separate.model_state.keys() == stacked.model_state.keys()
    for name, tensor in separate.model_state.items():
        torch.testing.assert_close(
            stacked.model_state[name].double(),
            tensor.double(),
            atol=WEIGHT_TOLERANCE,
            rtol=0,
            msg=lambda message, name=name: f"{name}: {message}",
        )
    for index, state in separate.optimizer_state["state"].items():
        for key, value in state.items():
            # Gradients themselves may differ where a near-tie (max-pool, ReLU at 0) rounded the
            # other way: momenta are compared to 2 % of their own scale.
            other, scale = stacked.optimizer_state["state"][index][key], value.abs().max()
            torch.testing.assert_close(other.double(), value.double(), atol=0.02 * scale, rtol=0)
    assert stacked.optimizer_state["param_groups"] == separate.optimizer_state["param_groups"]
    for name, state in separate.rng_states.items():
        assert torch.equal(stacked.rng_states[name], state), name


@pytest.mark.parametrize(
    "optimizer",
    [
        {"optimizer": "adam"},
        {"optimizer": "adadelta", "learning_rate": 1.0},
        {"optimizer": "sgd", "momentum": 0.9},
    ],
    ids=["adam", "adadelta", "sgd-momentum"],
)
def test_stacked_seeds_end_with_the_weights_of_separate_runs(mnist, tmp_path, optimizer):
    spec = model(**optimizer)
    separate = [
        train_model(spec, mnist, seed=seed, run_dir=tmp_path / f"alone-{seed}", **SMALL)
        for seed in SEEDS
    ]
    together = train_seeds(
        spec, mnist, seeds=SEEDS, run_dirs=[tmp_path / f"stacked-{s}" for s in SEEDS], **SMALL
    )
    for seed, alone, stacked in zip(SEEDS, separate, together, strict=True):
        assert (stacked.status, stacked.seed, stacked.parameters) == (
            "done",
            seed,
            alone.parameters,
        )
        assert_same_checkpoint(tmp_path / f"alone-{seed}", tmp_path / f"stacked-{seed}")
        for a, b in zip(alone.history, stacked.history, strict=True):
            assert b.loss == pytest.approx(a.loss, rel=1e-5)
            assert b.val_loss == pytest.approx(a.val_loss, rel=1e-5)
        assert stacked.test_loss == pytest.approx(alone.test_loss, rel=1e-5)
        differing = (stacked.test_predictions != alone.test_predictions).sum()
        assert differing <= 2  # of 10,000: a near-tie may round the other way


def test_seeds_differ_from_each_other_when_stacked(mnist):
    results = train_seeds(model(), mnist, seeds=SEEDS, **SMALL)
    losses = {round(result.history[-1].loss, 6) for result in results}
    assert len(losses) == len(SEEDS)


def test_stacked_checkpoints_resume_as_separate_runs_and_as_stacks(mnist, tmp_path):
    spec = model()
    dirs = [tmp_path / f"seed-{s}" for s in SEEDS]
    first = train_seeds(spec, mnist, seeds=SEEDS, run_dirs=dirs, **{**SMALL, "epochs": 1})
    assert [r.status for r in first] == ["done"] * 3
    alone = train_model(spec, mnist, seed=1, run_dir=dirs[1], **SMALL)
    assert alone.resumed_from == 1 and len(alone.history) == 2
    resumed = train_seeds(spec, mnist, seeds=(0, 2), run_dirs=[dirs[0], dirs[2]], **SMALL)
    assert [r.resumed_from for r in resumed] == [1, 1]
    unbroken = train_seeds(
        spec, mnist, seeds=SEEDS, run_dirs=[tmp_path / f"whole-{s}" for s in SEEDS], **SMALL
    )
    for seed in SEEDS:
        assert_same_checkpoint(tmp_path / f"whole-{seed}", dirs[seed])
    assert resumed[0].test_loss == pytest.approx(unbroken[0].test_loss, rel=1e-5)


def test_seeds_at_different_epochs_train_one_after_another(mnist, tmp_path):
    spec = model()
    dirs = [tmp_path / f"seed-{s}" for s in SEEDS]
    train_model(spec, mnist, seed=0, run_dir=dirs[0], **{**SMALL, "epochs": 1})
    results = train_seeds(spec, mnist, seeds=SEEDS, run_dirs=dirs, **SMALL)
    assert [r.resumed_from for r in results] == [1, 0, 0]
    assert [r.status for r in results] == ["done"] * 3


def poison_checkpoint(spec: ModelSpec, dataset, run_dir) -> None:
    """Rewrite a run's newest checkpoint with NaN weights, as a blown-up run would leave it."""
    checkpoint, _ = load_latest(run_dir)
    network = build_model(spec, dataset.image_shape, dataset.classes)
    network.load_state_dict(checkpoint.model_state)
    optimizer = make_optimizer(spec.optimizer, network.parameters())
    restore_optimizer_state(optimizer, checkpoint.optimizer_state)
    with torch.no_grad():
        network.get_submodule("dense").weight.fill_(float("nan"))
    save_checkpoint(
        run_dir,
        epoch=checkpoint.epoch,
        model=network,
        optimizer=optimizer,
        rng_states=checkpoint.rng_states,
        history=checkpoint.history,
        identity=checkpoint.identity,
    )


def test_a_diverging_seed_is_recorded_while_the_others_go_on(mnist, tmp_path):
    spec = model()
    dirs = [tmp_path / f"seed-{s}" for s in SEEDS]
    train_seeds(spec, mnist, seeds=SEEDS, run_dirs=dirs, **{**SMALL, "epochs": 1})
    poison_checkpoint(spec, mnist, dirs[1])
    results = train_seeds(spec, mnist, seeds=SEEDS, run_dirs=dirs, **SMALL)
    assert [r.status for r in results] == ["done", "diverged", "done"]
    assert results[1].epoch == 2 and "epoch 2" in results[1].reason
    assert len(results[1].history) == 1  # the finished epoch is kept
    alone = train_model(spec, mnist, seed=2, run_dir=tmp_path / "alone-2", **SMALL)
    assert_same_checkpoint(tmp_path / "alone-2", dirs[2])
    assert results[2].test_loss == pytest.approx(alone.test_loss, rel=1e-5)


def test_other_layer_kinds_stack_too(mnist):
    spec = model(
        Conv2D(6, (5, 5), activation="elu"),
        BatchNormalization(),
        Activation("relu"),
        Dropout(0.2),
        GlobalAveragePooling2D(),
        Dense(CLASSES, activation="softmax"),
    )
    separate = [train_model(spec, mnist, seed=s, **SMALL) for s in SEEDS]
    together = train_seeds(spec, mnist, seeds=SEEDS, **SMALL)
    for alone, stacked in zip(separate, together, strict=True):
        assert stacked.test_loss == pytest.approx(alone.test_loss, rel=1e-5)


def test_a_softmax_inside_the_network_trains_seeds_one_after_another(mnist):
    layers = (
        Conv2D(4, (3, 3)),
        Activation("softmax"),  # across channels: stacking would mix the seeds
        Flatten(),
        Dense(CLASSES, activation="softmax"),
    )
    spec = model(*layers)
    together = train_seeds(spec, mnist, seeds=(0, 1), **SMALL)
    alone = train_model(spec, mnist, seed=1, **SMALL)
    assert together[1].history[-1].loss == alone.history[-1].loss  # the very same computation


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seeds": ()}, "at least one seed"),
        ({"seeds": (1, 1)}, "must differ"),
        ({"seeds": (0, 1), "run_dirs": ["only-one"]}, "one run directory per seed"),
        ({"seeds": (0, 1), "epochs": 0}, "epochs must be >= 1"),
    ],
)
def test_bad_groups_are_spec_errors(mnist, arguments, message):
    with pytest.raises(SpecError, match=message):
        train_seeds(model(), mnist, **{**SMALL, **arguments})


def test_bf16_stacks(mnist):
    results = train_seeds(model(), mnist, seeds=(0, 1), precision="bf16", **SMALL)
    assert [r.status for r in results] == ["done", "done"]
    assert all(r.precision == "bf16" for r in results)


def test_callback_hears_every_seed_and_epoch(mnist):
    heard = []
    train_seeds(
        model(), mnist, seeds=(3, 5), on_epoch=lambda s, r: heard.append((s, r.epoch)), **SMALL
    )
    assert heard == [(3, 1), (5, 1), (3, 2), (5, 2)]


def test_results_serialise_like_separate_ones(mnist):
    result = train_seeds(model(), mnist, seeds=(0,), **SMALL)[0]
    assert dataclasses.asdict(result.timings)["total_seconds"] > 0
    assert result.to_dict()["status"] == "done"


def test_each_stacked_seed_records_its_share_of_the_group_time(mnist):
    # Shares add up over runs as separate runs' times do (a study's total, a benchmark's sum);
    # reading one share as the group's time made stacking look S times faster than it was.
    started = time.perf_counter()
    results = train_seeds(model(), mnist, seeds=(0, 1, 2), **SMALL)
    wall = time.perf_counter() - started
    train = [r.timings.train_seconds for r in results]
    assert train[0] > 0 and train[0] == train[1] == train[2]
    assert sum(r.timings.total_seconds for r in results) == pytest.approx(wall, rel=0.05)


def test_seeds_may_be_a_count_or_numpy_integers_as_in_run_study(mnist):
    counted = train_seeds(model(), mnist, seeds=2, **SMALL)
    arrayed = train_seeds(model(), mnist, seeds=np.arange(2), **SMALL)
    assert [r.seed for r in counted] == [r.seed for r in arrayed] == [0, 1]
    assert [r.history[-1].loss for r in counted] == [r.history[-1].loss for r in arrayed]
    assert all(r.model is not None and not r.model.training for r in counted)


def test_an_exception_of_the_callers_on_epoch_reaches_the_caller(mnist):
    def on_epoch(seed, record):
        raise KeyError("my bookkeeping bug")

    with pytest.raises(KeyError, match="my bookkeeping bug"):
        train_seeds(model(), mnist, seeds=2, on_epoch=on_epoch, **SMALL)
