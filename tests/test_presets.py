"""The seed presets are the notebook's 13 models exactly, with the notebook's own figures."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main
from cnnlab.errors import SpecError
from cnnlab.presets import list_presets
from cnnlab.spec import (
    CLASSES,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPooling2D,
    ModelSpec,
    load_model,
    load_study,
    model_from_toml,
    model_to_toml,
)

SEED = ["seed/reference"] + [f"seed/model-{n}" for n in range(1, 13)]


def code(layer: Layer) -> str:
    """A layer in a short notation for comparing with the notebook: conv32-3v-relu, pool2 ..."""
    if isinstance(layer, Conv2D):
        assert layer.kernel_size[0] == layer.kernel_size[1] and layer.strides == (1, 1)
        return f"conv{layer.filters}-{layer.kernel_size[0]}{layer.padding[0]}-{layer.activation}"
    if isinstance(layer, MaxPooling2D):
        assert layer.strides is None and layer.padding == "valid"
        return f"pool{layer.pool_size[0]}" if layer.pool_size[0] == layer.pool_size[1] else "?"
    if isinstance(layer, Dropout):
        return f"drop{layer.rate:g}"
    if isinstance(layer, BatchNormalization):
        return "bn" if layer == BatchNormalization() else "bn?"
    if isinstance(layer, Flatten):
        return "flat"
    if isinstance(layer, Dense):
        units = "C" if layer.units == CLASSES else layer.units
        return f"dense{units}-{layer.activation}"
    return repr(layer)


HEAD = "flat dense128-relu drop0.5 denseC-softmax"
SIGMOID_HEAD = "flat dense128-sigmoid drop0.5 denseC-softmax"
# Typed from the notebook's code cells (v = 'valid', the Keras default; s = 'same').
NOTEBOOK = {
    "seed/reference": "conv32-3v-relu conv64-3v-relu pool2 drop0.25 " + HEAD,
    "seed/model-1": "conv32-3v-relu pool2 drop0.25 conv64-3v-relu pool2 drop0.25 "
    "conv84-3v-relu pool2 drop0.75 " + HEAD,
    "seed/model-2": "conv32-5v-relu pool2 drop0.25 conv64-5v-relu drop0.25 "
    "conv84-5v-relu pool2 drop0.75 " + HEAD,
    "seed/model-3": "conv32-7s-relu pool2 drop0.25 conv64-7s-relu pool2 drop0.25 "
    "conv84-7s-relu pool2 drop0.75 " + HEAD,
    "seed/model-4": "conv32-3v-relu pool2 drop0.25 conv42-3s-relu pool2 drop0.25 "
    "conv52-3s-relu pool2 conv62-3s-relu pool2 conv72-3s-relu drop0.75 " + HEAD,
    "seed/model-5": "conv32-5v-relu pool2 drop0.25 conv42-5s-relu pool2 drop0.25 "
    "conv52-5s-relu pool2 drop0.25 conv62-5s-relu drop0.25 conv72-5s-relu pool2 drop0.75 " + HEAD,
    "seed/model-6": "conv32-7s-relu pool2 drop0.25 conv42-7s-relu pool2 drop0.25 "
    "conv52-7s-relu pool2 drop0.25 conv62-7s-relu pool2 drop0.25 conv72-7s-relu drop0.75 " + HEAD,
    "seed/model-7": "conv32-3v-relu pool2 drop0.25 conv42-3s-relu pool2 drop0.25 "
    "conv52-3s-relu pool2 conv62-3s-relu pool2 conv72-3s-relu conv50-3s-relu "
    "conv32-3s-relu conv20-3s-relu drop0.75 " + HEAD,
    "seed/model-8": "conv32-5v-relu pool2 drop0.25 conv42-5s-relu pool2 drop0.2 "
    "conv54-5s-relu drop0.25 conv30-5s-relu conv22-5s-relu pool2 conv10-5s-relu drop0.13 "
    "conv20-5s-relu " + HEAD,
    "seed/model-9": "conv32-7s-relu pool2 drop0.25 conv42-7s-relu pool2 conv32-7s-relu "
    "conv70-7s-relu conv23-7s-relu drop0.2 conv11-7s-relu pool2 drop0.5 conv11-7s-relu pool2 "
    "drop0.001 drop0.5 " + HEAD,
    "seed/model-10": "conv32-7s-relu pool2 drop0.25 conv42-7s-relu bn pool2 conv32-7s-relu bn "
    "conv70-7s-relu bn conv23-7s-relu bn drop0.2 conv11-7s-relu bn pool2 drop0.5 "
    "conv11-7s-relu " + HEAD,
    "seed/model-11": "conv32-7s-sigmoid pool2 drop0.25 conv42-7s-sigmoid bn pool2 "
    "conv32-7s-sigmoid bn conv70-7s-sigmoid bn conv23-7s-sigmoid bn drop0.2 "
    "conv11-7s-sigmoid bn pool2 drop0.5 conv11-7s-sigmoid " + SIGMOID_HEAD,
    "seed/model-12": "conv32-4s-sigmoid pool2 drop0.25 conv42-4s-sigmoid bn pool2 "
    "conv32-4s-sigmoid bn conv70-4s-sigmoid bn " + SIGMOID_HEAD,
}
CONV_LAYERS = dict(zip(SEED, [2, 3, 3, 3, 5, 5, 5, 8, 7, 7, 7, 7, 4], strict=True))


def test_seed_presets_are_listed_in_natural_order():
    assert list_presets("seed/*") == SEED[1:] + ["seed/reference"]
    assert list_presets("model-1") == [
        "seed/model-1",
        "seed/model-10",
        "seed/model-11",
        "seed/model-12",
    ]
    assert list_presets(kind="study") == ["seed"]


@pytest.mark.parametrize("name", SEED)
def test_seed_preset_is_the_notebook_model_layer_by_layer(name):
    spec = load_model(name)
    assert spec.name == name
    assert " ".join(code(layer) for layer in spec.layers) == NOTEBOOK[name]
    assert sum(isinstance(layer, Conv2D) for layer in spec.layers) == CONV_LAYERS[name]


@pytest.mark.parametrize("name", SEED)
def test_seed_preset_uses_the_notebooks_optimizer(name):
    optimizer = load_model(name).optimizer
    if name == "seed/model-3":
        assert (optimizer.name, optimizer.params) == ("adam", ())
    else:  # keras.optimizers.Adadelta() of Keras 2: lr=1.0 (Keras 3's default is 0.001)
        assert (optimizer.name, optimizer.params) == ("adadelta", (("learning_rate", 1.0),))


@pytest.mark.parametrize("name", SEED)
def test_seed_preset_round_trips_through_toml(name):
    spec = load_model(name)
    assert model_from_toml(model_to_toml(spec)) == spec


# (test loss, test accuracy) as the notebook logged them, and its final PrettyTable's row where
# that differs by 0.001 or more.
LOGGED = {
    "seed/model-1": (0.07088609065115452, 0.9791, 0.070, 0.978),
    "seed/model-2": (0.018479915870346305, 0.9949, 0.021, 0.994),
    "seed/model-3": (0.020393834800141484, 0.9939),
    "seed/model-4": (0.04341736109344106, 0.9919, 0.038, 0.990),
    "seed/model-5": (0.028561681090549428, 0.9936),
    "seed/model-6": (0.041424628414865584, 0.9904, 0.041, 0.992),
    "seed/model-7": (0.4869926846504211, 0.8385, 0.304, 0.889),
    "seed/model-8": (0.031318415241015876, 0.9923, 0.024, 0.993),
    "seed/model-9": (0.03348360838291346, 0.9936, 0.043, 0.992),
    "seed/model-10": (0.04018195565084179, 0.9914),
    "seed/model-11": (0.10474583289409056, 0.9764),
    "seed/model-12": (0.02927502671419061, 0.9898),
}


@pytest.mark.parametrize("name", SEED)
def test_seed_preset_carries_the_notebooks_reported_figures(name):
    reported = dict(load_model(name).reported)
    keys = ("test_loss", "test_accuracy", "table_test_loss", "table_test_accuracy")
    expected = dict(zip(keys, LOGGED.get(name, ()), strict=False))
    assert reported == expected  # the reference model's result is not in the notebook


def test_reading_notes_are_documented_with_the_affected_presets():
    notes = {name: load_model(name).description for name in SEED}
    assert "padding='sa" in notes["seed/model-3"] and "padding='sa" in notes["seed/model-10"]
    assert "repeat" in notes["seed/model-6"] and "repeat" in notes["seed/model-11"]
    assert "8 Conv2D" in notes["seed/model-7"]


def test_seed_study_runs_all_13_models_as_the_notebook_did():
    study = load_study("seed")
    assert [model.name for model in study.models] == SEED
    assert study.dataset == "mnist"
    assert study.seeds == (0,)
    assert (study.training.epochs, study.training.batch_size) == (12, 128)
    assert study.training.validation == "test"
    assert all(isinstance(model, ModelSpec) for model in study.models)


def test_unknown_study_preset_suggests_a_close_one():
    with pytest.raises(SpecError, match=r"unknown study 'sed'.*did you mean 'seed'"):
        load_study("sed")


def test_cli_lists_presets_with_conv_counts_and_kernels(capsys):
    assert main(["models", "seed/model-7"]) == 0
    out = capsys.readouterr().out
    assert "seed/model-7" in out and "3x3" in out and "adadelta" in out
    assert " 8 " in out


def test_cli_lists_presets_as_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in rows]
    assert names == ["resnet/resnet20", *SEED[1:], "seed/reference", "separable/small"]
    by_name = {row["name"]: row for row in rows}
    assert by_name["seed/model-12"]["kernel_sizes"] == [[4, 4]]
    assert by_name["seed/model-3"]["optimizer"] == "adam"
    seed_rows = [row for row in rows if row["name"].startswith("seed/")]
    assert [row["conv_layers"] for row in seed_rows] == [CONV_LAYERS[r["name"]] for r in seed_rows]
    assert by_name["resnet/resnet20"]["conv_layers"] == 19  # the blocks' convolutions counted


def test_cli_pattern_without_match_is_an_error(capsys):
    assert main(["models", "nothing-like-this"]) == 2
    assert "no model preset matches 'nothing-like-this'" in capsys.readouterr().err
