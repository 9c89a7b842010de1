"""Checkpoints round-trip exactly, are never pickles, and damage is caught, never loaded."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from cnnlab.checkpoint import KEEP, load_latest, load_weights, save_checkpoint
from cnnlab.data import load_dataset
from cnnlab.optim import make_optimizer
from cnnlab.spec import CLASSES, Conv2D, Dense, Flatten, ModelSpec, OptimizerSpec
from cnnlab.train import train_model


def small_model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(OptimizerSpec("adam"), model.parameters())
    model(torch.rand(2, 1, 5, 5)).sum().backward()
    optimizer.step()
    return model, optimizer


def save(run_dir, epoch, model, optimizer):
    return save_checkpoint(
        run_dir,
        epoch=epoch,
        model=model,
        optimizer=optimizer,
        rng_states={"torch_cpu": torch.get_rng_state()},
        history=[{"epoch": e, "loss": 1.0 / e} for e in range(1, epoch + 1)],
        identity={"seed": 5},
    )


def test_checkpoint_round_trips_weights_optimizer_state_rng_and_history(tmp_path):
    model, optimizer = small_model_and_optimizer()
    path = save(tmp_path, 1, model, optimizer)
    checkpoint, damaged = load_latest(tmp_path)
    assert damaged == () and checkpoint.epoch == 1 and checkpoint.path == path
    for name, value in model.state_dict().items():
        assert torch.equal(checkpoint.model_state[name], value)
    saved_state = optimizer.state_dict()["state"][0]
    assert torch.equal(checkpoint.optimizer_state["state"][0]["exp_avg"], saved_state["exp_avg"])
    assert checkpoint.optimizer_state["param_groups"][0]["keras_epsilon"] == 1e-7
    assert torch.equal(checkpoint.rng_states["torch_cpu"], torch.get_rng_state())
    assert checkpoint.history[-1] == {"epoch": 1, "loss": 1.0} and checkpoint.identity == {
        "seed": 5
    }
    assert load_weights(path).keys() == model.state_dict().keys()


def test_checkpoint_files_are_safetensors_and_json_never_pickle(tmp_path):
    model, optimizer = small_model_and_optimizer()
    path = save(tmp_path, 1, model, optimizer)
    with safe_open(str(path), framework="pt") as tensors:
        names = list(tensors.keys())  # noqa: SIM118 (safe_open is no dict)
    assert "model/0.weight" in names
    json.loads((tmp_path / "epoch-0001.json").read_text())
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".safetensors"]


def test_only_the_last_checkpoints_are_kept_and_stale_temp_files_go(tmp_path):
    model, optimizer = small_model_and_optimizer()
    (tmp_path / ".epoch-0002.safetensors.tmp-999").write_bytes(b"half written")
    for epoch in range(1, 5):
        save(tmp_path, epoch, model, optimizer)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [
        f"epoch-{e:04d}.{ext}" for e in range(5 - KEEP, 5) for ext in ("json", "safetensors")
    ]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda d: _flip_byte(d / "epoch-0002.safetensors"), "does not match its sha256"),
        (lambda d: (d / "epoch-0002.safetensors").unlink(), "cannot read epoch-0002.safetensors"),
        (lambda d: _truncate(d / "epoch-0002.safetensors"), "does not match its sha256"),
        (lambda d: _edit_manifest(d / "epoch-0002.json"), "epoch-0002.json does not match"),
        (
            lambda d: (d / "epoch-0002.json").write_text("{not json"),
            "epoch-0002.json is unreadable",
        ),
    ],
)
def test_damaged_newest_checkpoint_is_reported_and_the_one_before_loaded(tmp_path, damage, why):
    model, optimizer = small_model_and_optimizer()
    save(tmp_path, 1, model, optimizer)
    save(tmp_path, 2, model, optimizer)
    damage(tmp_path)
    checkpoint, damaged = load_latest(tmp_path)
    assert checkpoint.epoch == 1
    assert len(damaged) == 1 and damaged[0].startswith("epoch-0002: ") and why in damaged[0]


def test_no_checkpoint_at_all_loads_nothing(tmp_path):
    assert load_latest(tmp_path / "missing") == (None, ())


def test_training_resumes_past_a_damaged_checkpoint_to_the_same_numbers(mnist_dir, tmp_path):
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    spec = ModelSpec(
        "tiny",
        (
            Conv2D(4, (5, 5), strides=(2, 2), activation="relu"),
            Flatten(),
            Dense(CLASSES, activation="softmax"),
        ),
    )
    options = {"epochs": 2, "train_limit": 1000, "progress": "quiet"}
    first = train_model(spec, mnist, run_dir=tmp_path, **options)
    _flip_byte(tmp_path / "epoch-0002.safetensors")
    again = train_model(spec, mnist, run_dir=tmp_path, **options)
    assert again.resumed_from == 1
    assert any("epoch-0002: epoch-0002.safetensors does not match" in n for n in again.notes)
    assert [r.loss for r in again.history] == [r.loss for r in first.history]
    assert load_latest(tmp_path)[1] == ()


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


def _edit_manifest(path):
    outer = json.loads(path.read_text())
    outer["body"]["epoch"] = 7
    path.write_text(json.dumps(outer))
