"""Grids: a study varies depth x kernel x activation x batch norm without writing every model."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.errors import SpecError
from cnnlab.spec import (
    BatchNormalization,
    Conv2D,
    load_study,
    model_from_toml,
    model_to_toml,
    study_from_dict,
)

GRID_STUDY = """\
name = "depth-kernel"
seeds = 2

[[grid]]
name = "d{depth}-k{kernel}-{act}{batchnorm:-bn}"
description = "{depth} conv blocks of {kernel}x{kernel}"
axes = { depth = [1, 3], kernel = [3, 5], act = ["relu", "sigmoid"], batchnorm = [false, true] }
optimizer = { name = "adam", learning_rate = 0.001 }
stem = [
  { conv = 16, kernel = "{kernel}", activation = "{act}", padding = "same" },
  { maxpool = 2 },
]
block = [
  { conv = 32, kernel = "{kernel}", activation = "{act}", padding = "same" },
  { batchnorm = "{batchnorm}" },
]
repeat = "{depth}"
head = [
  "flatten",
  { dense = 128, activation = "{act}" },
  { dropout = 0.5 },
  { dense = "classes", activation = "softmax" },
]
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return load_study(path)


def test_grid_makes_every_combination_with_readable_names(tmp_path):
    study = load(tmp_path, GRID_STUDY)
    names = [model.name for model in study.models]
    assert len(names) == 16
    assert names[:4] == ["d1-k3-relu", "d1-k3-relu-bn", "d1-k3-sigmoid", "d1-k3-sigmoid-bn"]
    assert names[-1] == "d3-k5-sigmoid-bn"


def test_grid_model_repeats_the_block_and_drops_false_layers(tmp_path):
    models = {model.name: model for model in load(tmp_path, GRID_STUDY).models}
    plain, with_bn = models["d3-k5-relu"], models["d3-k5-relu-bn"]
    convs = [layer for layer in plain.layers if isinstance(layer, Conv2D)]
    assert [conv.filters for conv in convs] == [16, 32, 32, 32]
    assert {conv.kernel_size for conv in convs} == {(5, 5)}
    assert not any(isinstance(layer, BatchNormalization) for layer in plain.layers)
    assert sum(isinstance(layer, BatchNormalization) for layer in with_bn.layers) == 3
    assert len(with_bn.layers) == len(plain.layers) + 3
    assert plain.description == "3 conv blocks of 5x5"
    assert plain.optimizer.name == "adam"


def test_grid_models_record_their_axis_values(tmp_path):
    model = load(tmp_path, GRID_STUDY).models[5]
    assert model.name == "d1-k5-relu-bn"
    assert model.factors == (
        ("depth", 1),
        ("kernel", 5),
        ("act", "relu"),
        ("batchnorm", True),
    )


def test_generated_models_round_trip_through_toml(tmp_path):
    for model in load(tmp_path, GRID_STUDY).models:
        assert model_from_toml(model_to_toml(model)) == model


def test_grid_with_plain_layers_list():
    study = study_from_dict(
        {
            "grid": [
                {
                    "name": "rate{rate}",
                    "axes": {"rate": [0.0, 0.25]},
                    "layers": ["flatten", {"dropout": "{rate}"}, {"dense": "classes"}],
                }
            ]
        }
    )
    assert [model.name for model in study.models] == ["rate0.0", "rate0.25"]
    assert study.models[1].layers[1].rate == 0.25


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'name = "d{depth}-k{kernel}-',
            'name = "d{depth}-',
            r"study\.toml:5: grid 1: name template .* leaves out axis 'kernel'",
        ),
        (
            'kernel = "{kernel}", activation = "{act}", padding = "same" },\n  { maxpool',
            'kernel = "{kernal}", activation = "{act}", padding = "same" },\n  { maxpool',
            r"study\.toml:10: grid 1: unknown placeholder \{kernal\}; did you mean 'kernel'\?",
        ),
        (
            'act = ["relu", "sigmoid"]',
            'act = ["relu", "sigmoid", "relu"]',
            r"study\.toml:7: grid 1: axis 'act' lists 'relu' twice",
        ),
        (
            'act = ["relu", "sigmoid"]',
            'act = ["relu", "sigmod"]',
            r"study\.toml:10: grid 1: model 'd1-k3-sigmod': layer 1 \(conv\): activation must be "
            r"one of .*got 'sigmod'; did you mean 'sigmoid'",
        ),
        (
            '  { batchnorm = "{batchnorm}" },',
            '  { batchnorm = "{batchnorm}", momentum = 2 },',
            r"study\.toml:15: grid 1: model 'd1-k3-relu-bn': layer 4 \(batchnorm\): momentum must "
            r"be in \[0, 1\), got 2",
        ),
        (
            'repeat = "{depth}"',
            'repeat = "{act}"',
            r"study\.toml:17: grid 1: repeat must be",
        ),
        (
            'repeat = "{depth}"',
            "repeats = 2",
            r"study\.toml:17: grid 1: unknown grid key 'repeats'",
        ),
        ("{batchnorm:-bn}", "{batchnorm:-bn}{kernel:x}", r"\{kernel:\.\.\.\} needs a boolean axis"),
        (
            'axes = { depth = [1, 3], kernel = [3, 5], act = ["relu", "sigmoid"], '
            "batchnorm = [false, true] }",
            "axes = 3",
            r"study\.toml:7: grid 1: axes must be a table of lists",
        ),
        ("depth = [1, 3]", "depth = []", r"axis 'depth' must be a non-empty list"),
    ],
)
def test_grid_errors_are_located_in_the_template(tmp_path, old, new, message):
    with pytest.raises(SpecError, match=message):
        load(tmp_path, replace(GRID_STUDY, old, new))


def test_grid_that_is_too_big_is_refused():
    axes = {f"a{i}": list(range(10)) for i in range(5)}
    name = "-".join(f"{{{axis}}}" for axis in axes)
    with pytest.raises(SpecError, match=r"grid 1: grid makes 100000 models, at most 10000"):
        study_from_dict({"grid": [{"name": name, "axes": axes, "layers": ["flatten"]}]})


def test_grid_names_must_not_clash_with_other_models():
    grid = {"name": "m{k}", "axes": {"k": [1, 2]}, "layers": ["flatten"]}
    with pytest.raises(SpecError, match=r"two models are named 'm1'"):
        study_from_dict({"model": [{"name": "m1", "layers": ["flatten"]}], "grid": [grid]})


def test_repeat_without_a_block_is_refused_rather_than_ignored(tmp_path):
    text = """
[[grid]]
name = "d{depth}"
axes = { depth = [1, 2, 3] }
repeat = "{depth}"
stem = ["flatten"]
head = [{ dense = "classes", activation = "softmax" }]
"""
    with pytest.raises(SpecError, match=r":5: grid 1: repeat needs a block = \[\.\.\.\] to repeat"):
        load(tmp_path, text)


def test_axis_values_that_a_report_would_merge_are_refused(tmp_path):
    text = """
[[grid]]
name = "m{a}"
axes = { a = [1, 1.0] }
layers = ["flatten", { dense = "classes" }]
"""
    with pytest.raises(SpecError, match=r"axis 'a' lists 1 and 1\.0, which are the same level"):
        load(tmp_path, text)
