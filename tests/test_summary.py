"""summarize: Keras's per-layer shapes and parameter counts, FLOPs by a stated convention."""

from __future__ import annotations

import json

import pytest

from cnnlab import spec as s
from cnnlab.build import build_model
from cnnlab.errors import SpecError
from cnnlab.spec import load_model
from cnnlab.summary import input_for_dataset, parse_input_shape, summarize
from fixtures.keras.keras_reference import SEED_MODELS

INPUT_SHAPE = tuple(SEED_MODELS["input_shape"])
CLASSES = SEED_MODELS["classes"]


@pytest.mark.parametrize("name", sorted(SEED_MODELS["models"]))
def test_summary_of_each_seed_preset_is_what_keras_reports(name):
    record = SEED_MODELS["models"][name]
    result = summarize(load_model(f"seed/{name}"), INPUT_SHAPE, CLASSES)
    for row, keras_row in zip(result.rows, record["layers"], strict=True):
        assert (row.name, row.layer_type) == (keras_row["name"], keras_row["class_name"])
        assert row.output_shape == tuple(keras_row["output_shape"])
        assert (row.trainable_params, row.non_trainable_params) == (
            keras_row["trainable_params"],
            keras_row["non_trainable_params"],
        )
    assert (result.total_params, result.trainable_params, result.non_trainable_params) == (
        record["total_params"],
        record["trainable_params"],
        record["non_trainable_params"],
    )


def test_summary_counts_the_parameters_the_built_model_has():
    layers = (
        s.Conv2D(8, (4, 4), padding="same", use_bias=False),
        s.BatchNormalization(),
        s.GlobalAveragePooling2D(),
        s.Dense(16, activation="gelu"),
        s.BatchNormalization(),
        s.Dense(s.CLASSES, activation="softmax"),
    )
    spec = s.ModelSpec("m", layers)
    model = build_model(spec, (10, 10, 3), 7)
    result = summarize(spec, (10, 10, 3), 7)
    assert result.trainable_params == sum(p.numel() for p in model.parameters())
    moving = sum(b.numel() for n, b in model.named_buffers() if n.endswith("running_var"))
    assert result.non_trainable_params == 2 * moving


def test_flops_count_a_multiply_add_as_two_and_each_bias_add_as_one():
    layers = (
        s.Conv2D(4, (3, 3)),  # out 4x4x4 from 6x6x2
        s.MaxPooling2D((2, 2)),  # out 2x2x4
        s.BatchNormalization(),
        s.Flatten(),
        s.Dense(s.CLASSES, activation="softmax"),  # 16 -> 3
    )
    rows = summarize(s.ModelSpec("m", layers), (6, 6, 2), 3).rows
    flops = [row.flops for row in rows]
    assert flops == [
        4 * 4 * 4 * (2 * 3 * 3 * 2 + 1),
        2 * 2 * 4 * (2 * 2),
        2 * (2 * 2 * 4),
        0,
        3 * (2 * 16 + 1),
    ]


def test_summary_is_plain_json_with_its_flops_convention():
    result = summarize(load_model("seed/reference"), (28, 28, 1), 10)
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["total_params"] == 1_199_882
    assert doc["rows"][0]["output_shape"] == [26, 26, 32]
    assert "multiply-add counts 2" in doc["flops_convention"]


def test_a_summary_of_an_impossible_model_is_a_spec_error():
    spec = s.ModelSpec("m", (s.Conv2D(4, (9, 9)), s.Flatten(), s.Dense(s.CLASSES)))
    with pytest.raises(SpecError, match=r"layer 1 \(Conv2D\)"):
        summarize(spec, (8, 8, 1), 10)


def test_input_shape_text_is_parsed_or_explained():
    assert parse_input_shape("32,32,3") == (32, 32, 3)
    with pytest.raises(SpecError, match=r"HEIGHT,WIDTH,CHANNELS .* got '28,28'"):
        parse_input_shape("28,28")


def test_the_input_comes_from_the_dataset(mnist_dir):
    assert input_for_dataset("mnist", data_dir=mnist_dir) == ((28, 28, 1), 10)
