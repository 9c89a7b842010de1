"""Model and study files: what a user writes by hand becomes typed specs, or one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.errors import SpecError
from cnnlab.optim import resolve_optimizer
from cnnlab.spec import (
    CLASSES,
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    TrainingSpec,
    load_model,
    load_study,
    model_from_dict,
    model_from_toml,
    model_to_toml,
    study_from_dict,
    study_to_toml,
    toml_positions,
)

REFERENCE_TEXT = """\
name = "mine/reference"
description = "Keras mnist_cnn.py"
optimizer = "adadelta"
layers = [
  { conv = 32, kernel = 3, activation = "relu" },
  { conv = 64, kernel = 3, activation = "relu", padding = "same", strides = 1 },
  { maxpool = 2 },
  { dropout = 0.25 },
  "flatten",
  { dense = 128, activation = "relu" },
  "batchnorm",
  { dense = "classes", activation = "softmax" },
]
[reported]
test_loss = 0.0185
test_accuracy = 0.9949
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def model_with(*layers: object, **top: object) -> dict:
    return {"name": "m", "layers": list(layers), **top}


# --- Parsing ----------------------------------------------------------------------------------


def test_model_file_parses_into_frozen_keras_layers(tmp_path):
    spec = load_model(write(tmp_path, "ref.toml", REFERENCE_TEXT))
    assert spec == ModelSpec(
        name="mine/reference",
        description="Keras mnist_cnn.py",
        optimizer=OptimizerSpec("adadelta"),
        layers=(
            Conv2D(32, (3, 3), activation="relu"),
            Conv2D(64, (3, 3), padding="same", activation="relu"),
            MaxPooling2D((2, 2)),
            Dropout(0.25),
            Flatten(),
            Dense(128, activation="relu"),
            BatchNormalization(),
            Dense(CLASSES, activation="softmax"),
        ),
        reported=(("test_loss", 0.0185), ("test_accuracy", 0.9949)),
    )


def test_keras_class_names_and_spellings_are_accepted_in_any_case():
    spec = model_from_dict(
        model_with(
            {"Conv2D": 8, "kernel_size": [3, 5], "Padding": "SAME"},
            {"MaxPooling2D": [2, 1], "strides": 1},
            {"MaxPool2D": 2},
            {"AveragePooling2D": 3, "padding": "same"},
            {"BatchNormalization": True, "momentum": 0.9, "epsilon": 1e-5},
            "GlobalAveragePooling2D",
            {"max_pooling2d": 2},
            {"Dense": 10, "use_bias": False},
            {"Activation": "GELU"},
            "relu",
        )
    )
    assert spec.layers == (
        Conv2D(8, (3, 5), padding="same"),
        MaxPooling2D((2, 1), strides=(1, 1)),
        MaxPooling2D((2, 2)),
        AveragePooling2D((3, 3), padding="same"),
        BatchNormalization(momentum=0.9, epsilon=1e-5),
        GlobalAveragePooling2D(),
        MaxPooling2D((2, 2)),
        Dense(10, use_bias=False),
        Activation("gelu"),
        Activation("relu"),
    )


def test_optimizer_table_records_only_overrides_in_a_fixed_order():
    spec = model_from_dict(
        model_with("flatten", optimizer={"name": "SGD", "nesterov": True, "lr": 0.1})
    )
    assert spec.optimizer == OptimizerSpec("sgd", (("learning_rate", 0.1), ("nesterov", True)))


def test_a_stored_adam_spec_written_as_toml_loads_back_with_its_amsgrad():
    """The store holds the resolved optimiser (Keras's defaults spelled out, amsgrad = false);
    a safetensors export writes that spec beside the weights, so it must parse."""
    spec = model_from_dict(model_with("flatten", optimizer={"name": "adam", "amsgrad": True}))
    assert spec.optimizer == OptimizerSpec("adam", (("amsgrad", True),))
    resolved = OptimizerSpec("adam", tuple(resolve_optimizer(spec.optimizer).kwargs().items()))
    written = model_to_toml(ModelSpec("m", spec.layers, resolved))
    assert "amsgrad = true" in written
    assert model_from_toml(written).optimizer.kwargs() == resolved.kwargs()


def test_model_without_name_is_named_after_its_file(tmp_path):
    spec = load_model(write(tmp_path, "tiny.toml", 'layers = ["flatten"]\n'))
    assert spec.name == "tiny"
    assert spec.optimizer == OptimizerSpec()


# --- Errors: file, line, layer, rule, value ---------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("{ conv = 64, kernel = 0 }", r"m\.toml:5: layer 3 \(conv\): kernel must be >= 1, got 0"),
        ("{ conv = -3, kernel = 3 }", r":5: layer 3 \(conv\): filters must be >= 1, got -3"),
        ("{ conv = 3.5, kernel = 3 }", r"filters must be an integer, got 3\.5"),
        ("{ conv = 8 }", r"layer 3 \(conv\): conv needs a kernel size"),
        ("{ conv = 8, kernel = [1, 2, 3] }", r"kernel must be an integer or a list of two"),
        (
            "{ conv = 8, kernel = 3, kernal = 3 }",
            r"unknown option 'kernal' for conv; did you mean 'kernel'\?",
        ),
        ("{ conv = 8, kernel = 3, kernel_size = 3 }", r"option kernel given twice"),
        (
            '{ conv = 8, kernel = 3, activation = "rleu" }',
            r"activation must be one of .*got 'rleu'; did you mean 'relu'",
        ),
        (
            '{ conv = 8, kernel = 3, padding = "full" }',
            r"padding must be one of valid, same, got 'full'",
        ),
        ("{ conv = 8, kernel = 3, use_bias = 1 }", r"use_bias must be true or false, got 1"),
        ("{ dropout = 1.0 }", r"layer 3 \(dropout\): dropout rate must be in \[0, 1\), got 1\.0"),
        ("{ dropout = -0.1 }", r"dropout rate must be in \[0, 1\), got -0\.1"),
        ("{ dropout = nan }", r"dropout rate must be finite, got nan"),
        ("{ maxpool = 0 }", r"layer 3 \(maxpool\): pool size must be >= 1, got 0"),
        (
            '{ dense = "clases" }',
            r"units \(an integer >= 1 or \"classes\"\) must be an integer, got 'clases'",
        ),
        ("{ batchnorm = true, momentum = 1.5 }", r"momentum must be in \[0, 1\), got 1\.5"),
        ("{ batchnorm = true, epsilon = 0 }", r"epsilon must be > 0, got 0"),
        ("{ batchnorm = false }", r"false leaves a layer out only in grid templates"),
        ("{ convv = 8, kernel = 3 }", r"layer 3: layer needs one type key .*did you mean 'conv'\?"),
        ("{ conv = 8, dense = 3, kernel = 3 }", r"layer has several type keys"),
        ('"flaten"', r"layer 3: unknown layer 'flaten'; did you mean 'flatten'\?"),
        ('"Conv3D"', r"unknown layer 'Conv3D'"),
        ("42", r"layer 3: a layer must be a table or a string, got 42"),
        ('"dropout"', r"layer 3: layer 'dropout' needs a value, .*\{ dropout = 0\.25 \}"),
        ('"Dense"', r"layer 3: layer 'Dense' needs a value, .*\{ dense = 128 \}"),
    ],
)
def test_bad_layer_names_file_line_layer_rule_and_value(tmp_path, layer, message):
    text = f'name = "m"\nlayers = [\n  "flatten",\n  "flatten",\n  {layer},\n]\n'
    with pytest.raises(SpecError, match=message):
        load_model(write(tmp_path, "m.toml", text))


def test_several_valid_type_keys_get_no_spelling_suggestion():
    bad = model_with({"conv": 8, "dense": 4})
    with pytest.raises(SpecError) as raised:
        model_from_dict(bad, source="net.py")
    assert str(raised.value).endswith("got keys: conv, dense")


def test_dict_errors_name_the_source_and_layer_index_without_a_line():
    bad = model_with("flatten", {"conv": 8, "kernel": 0})
    with pytest.raises(SpecError, match=r"^net\.py: layer 2 \(conv\): kernel must be >= 1, got 0$"):
        model_from_dict(bad, source="net.py")


def test_layer_spread_over_lines_is_located_at_its_bad_option(tmp_path):
    text = 'layers = [\n  "flatten",\n  [\n    1\n  ],\n]\n'
    with pytest.raises(SpecError, match=r"m\.toml:3: layer 2: a layer must be a table"):
        load_model(write(tmp_path, "m.toml", text))


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            'optimizer = "adamm"',
            r"m\.toml:1: optimizer must be one of .*got 'adamm'; did you mean 'adam'",
        ),
        ('optimizer = { name = "adam", rho = 0.9 }', r"m\.toml:1: adam takes no parameter 'rho'"),
        ('optimizer = { name = "sgd", momentum = 2 }', r"momentum must be in \[0, 1\), got 2"),
        ('optimizer = { name = "sgd", momentum = 1.0 }', r"momentum must be in \[0, 1\), got 1"),
        ('optimizer = { name = "sgd", learning_rate = 0 }', r"learning_rate must be > 0, got 0"),
        (
            'optimizer = { name = "adam", learning_rate = -1 }',
            r"learning_rate must be > 0, got -1",
        ),
        ("optimizer = { learning_rate = 0.1 }", r"an optimizer table needs name"),
        ("optimizer = 3", r"optimizer \(a name .*\) must be a table, got 3"),
        ("layer = []", r"m\.toml:1: unknown model key 'layer'; did you mean 'layers'\?"),
        ('name = ""', r"name must be 1 to 200 printable characters"),
        ("description = 5", r"description must be a string, got 5"),
    ],
)
def test_bad_top_level_values_are_located(tmp_path, top, message):
    text = f'{top}\nlayers = ["flatten"]\n'
    if top.startswith("name"):
        text = f'{top}\nlayers = ["flatten"]\n'
    with pytest.raises(SpecError, match=message):
        load_model(write(tmp_path, "m.toml", text))


def test_reported_figures_must_be_numbers(tmp_path):
    text = 'layers = ["flatten"]\n\n[reported]\ntest_loss = "low"\n'
    with pytest.raises(SpecError, match=r"m\.toml:4: reported\.test_loss must be a number"):
        load_model(write(tmp_path, "m.toml", text))


def test_missing_or_empty_layers_is_an_error():
    with pytest.raises(SpecError, match=r"<dict>: a model needs layers"):
        model_from_dict({"name": "m"})
    with pytest.raises(SpecError, match=r"layers must be a non-empty list, got \[\]"):
        model_from_dict({"name": "m", "layers": []})


def test_toml_syntax_error_names_the_line(tmp_path):
    text = 'name = "m"\nlayers = [\n  { conv = 32 kernel = 3 },\n]\n'
    with pytest.raises(SpecError, match=r"^.*m\.toml:3: invalid TOML: .*\(column \d+\)$"):
        load_model(write(tmp_path, "m.toml", text))


def test_unreadable_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match=r"nothere\.toml: no such file"):
        load_model(tmp_path / "nothere.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match=r"not a UTF-8 text file"):
        load_model(tmp_path / "bin.toml")
    with pytest.raises(SpecError, match=r"cannot read"):
        load_model(tmp_path)


def test_unknown_reference_suggests_close_preset_names():
    with pytest.raises(
        SpecError, match=r"unknown model 'seed/model-13'.*did you mean 'seed/model-\d+'"
    ):
        load_model("seed/model-13")


def test_a_file_of_the_other_kind_or_python_code_says_what_to_do(tmp_path):
    model_file = write(tmp_path, "m.toml", 'layers = ["flatten", { dense = "classes" }]\n')
    study_file = write(tmp_path, "s.toml", 'models = ["seed/model-1"]\n')
    with pytest.raises(SpecError, match=r"m.toml: a model file .* `cnnlab train .*m.toml`"):
        load_study(model_file)
    with pytest.raises(SpecError, match=r"s.toml: a study file .* `cnnlab run .*s.toml`"):
        load_model(study_file)
    with pytest.raises(SpecError, match=r"k.py: a Python file.*`cnnlab import-keras k.py"):
        load_model("k.py")
    with pytest.raises(SpecError, match=r"'seed/model-2' is a model, not a study.*presets: seed"):
        load_study("seed/model-2")


def test_error_is_one_line():
    with pytest.raises(SpecError) as caught:
        model_from_dict(model_with({"conv": "\n" * 5, "kernel": 3}))
    assert "\n" not in str(caught.value)


# --- Writing and round trips ------------------------------------------------------------------


def test_dump_is_compact_one_layer_per_line(tmp_path):
    spec = load_model(write(tmp_path, "ref.toml", REFERENCE_TEXT))
    text = model_to_toml(spec)
    assert '  { conv = 64, kernel = 3, activation = "relu", padding = "same" },' in text
    assert '  "flatten",' in text and '  "batchnorm",' in text
    assert "\n[reported]\ntest_loss = 0.0185\n" in text
    assert len(text.splitlines()) <= len(spec.layers) + 10


def test_load_dump_load_gives_an_equal_spec(tmp_path):
    spec = model_from_dict(
        model_with(
            {"conv": 8, "kernel": [3, 5], "strides": [2, 1], "use_bias": False},
            {"avgpool": [3, 2], "strides": 2, "padding": "same"},
            {"batchnorm": True, "momentum": 0.5},
            {"dense": 7, "activation": "leaky_relu", "use_bias": False},
            {"activation": "selu"},
            description='quotes " and \\ and\nnewline',
            optimizer={"name": "adamw", "weight_decay": 0.01, "beta_2": 0.98},
            reported={"test accuracy": 0.5},
            factors={"depth": 3, "act": "relu", "bn": True, "rate": 0.25},
        )
    )
    assert model_from_toml(model_to_toml(spec)) == spec


def test_study_dump_stands_alone_and_loads_back_equal(tmp_path):
    study = load_study("seed")
    again = load_study(write(tmp_path, "s.toml", study_to_toml(study)))
    assert again == study


# --- Studies ----------------------------------------------------------------------------------

STUDY_TEXT = """\
name = "my-study"
dataset = "fashion-mnist"
seeds = 3
models = ["seed/reference", "mine.toml"]

[training]
epochs = 2
batch_size = 64
validation = "test"

[[model]]
name = "tiny"
layers = [ "flatten", { dense = "classes", activation = "softmax" } ]
"""


def test_study_resolves_presets_files_and_inline_models(tmp_path):
    write(tmp_path, "mine.toml", REFERENCE_TEXT)
    study = load_study(write(tmp_path, "s.toml", STUDY_TEXT))
    assert [model.name for model in study.models] == ["seed/reference", "mine/reference", "tiny"]
    assert study.seeds == (0, 1, 2)
    assert study.dataset == "fashion-mnist"
    assert study.training == TrainingSpec(epochs=2, batch_size=64, validation="test")


def test_study_defaults_are_the_notebook_recipe():
    study = study_from_dict({"models": ["seed/model-1"]})
    assert study.seeds == (0,)
    assert study.training == TrainingSpec(epochs=12, batch_size=128, validation=0.1)
    assert study.training.precision == "fp32"


def test_a_study_can_ask_for_the_bf16_fast_mode_and_dumps_it(tmp_path):
    text = STUDY_TEXT.replace('validation = "test"', 'validation = "test"\nprecision = "bf16"')
    write(tmp_path, "mine.toml", REFERENCE_TEXT)
    study = load_study(write(tmp_path, "s.toml", text))
    assert study.training.precision == "bf16"
    again = load_study(write(tmp_path, "again.toml", study_to_toml(study)))
    assert again.training == study.training


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("seeds = 3", "seeds = [1, 1]"), r"s\.toml:3: seeds must be distinct"),
        (("seeds = 3", "seeds = 0"), r"seeds \(a count or a list of seeds\) must be >= 1, got 0"),
        (("epochs = 2", "epochs = 0"), r"s\.toml:7: epochs must be >= 1, got 0"),
        (('validation = "test"', "validation = 1.5"), r"validation must be a fraction in \[0, 1\)"),
        (
            ('validation = "test"', 'validation = "train"'),
            r'validation must be a fraction in \[0, 1\) or "test"',
        ),
        (("batch_size = 64", "batch = 64"), r"s\.toml:8: unknown training key 'batch'"),
        (
            ("batch_size = 64", 'precision = "fp16"'),
            r"s\.toml:8: precision must be one of fp32, bf16, got 'fp16'",
        ),
        (('"mine.toml"', '"seed/model-99"'), r"s\.toml:4: unknown model preset 'seed/model-99'"),
        (('"mine.toml"', '"other.toml"'), r"s\.toml:4: model file 'other\.toml' not found"),
        (('"mine.toml"', '"seed/reference"'), r"two models are named 'seed/reference'"),
        (
            ("dataset =", "datset ="),
            r"s\.toml:2: unknown study key 'datset'; did you mean 'dataset'",
        ),
        (
            ('dense = "classes"', "dense = 0"),
            r"s\.toml:13: model 'tiny': layer 2 \(dense\): .* must be >= 1, got 0",
        ),
    ],
)
def test_bad_study_values_are_located(tmp_path, change, message):
    write(tmp_path, "mine.toml", REFERENCE_TEXT)
    text = STUDY_TEXT.replace(*change)
    assert text != STUDY_TEXT
    with pytest.raises(SpecError, match=message):
        load_study(write(tmp_path, "s.toml", text))


def test_errors_inside_a_named_model_file_name_that_file(tmp_path):
    write(tmp_path, "mine.toml", REFERENCE_TEXT.replace("kernel = 3,", "kernel = -1,", 1))
    with pytest.raises(SpecError, match=r"mine\.toml:5: layer 1 \(conv\): kernel must be >= 1"):
        load_study(write(tmp_path, "s.toml", STUDY_TEXT))


def test_study_without_models_is_an_error():
    with pytest.raises(SpecError, match=r"a study needs models"):
        study_from_dict({"name": "empty"})


# --- Lines in TOML text -----------------------------------------------------------------------


def test_positions_follow_tables_arrays_and_strings():
    text = (
        'a = """x\n[not a table]\n"""  # 1-3\n'
        "[[model]]\n"
        "name = 'one'\n"
        "[[model]]\n"
        'layers = [ "x",\n  { k = [1,\n 2] }, # c ]\n'
        "]\n"
        "[model.reported]\n"
        "b.c = 1\n"
    )
    positions = toml_positions(text)
    assert positions[("a",)] == 1
    assert positions[("model", 0, "name")] == 5
    assert positions[("model", 1, "layers", 0)] == 7
    assert positions[("model", 1, "layers", 1, "k", 1)] == 9
    assert positions[("model", 1, "reported", "b", "c")] == 12


def test_where_layers_were_written_is_kept_for_errors_but_is_not_part_of_the_model(tmp_path):
    from cnnlab.store import canonical_json, run_key

    text = 'name = "m"\nlayers = [\n  "flatten",\n  { dense = "classes" },\n]\n'
    from_file = load_model(write(tmp_path, "m.toml", text))
    from_dict = model_from_dict({"name": "m", "layers": ["flatten", {"dense": "classes"}]})
    assert from_file.layer_places == (f"{tmp_path / 'm.toml'}:3", f"{tmp_path / 'm.toml'}:4")
    assert from_dict.layer_places == ("", "") and from_file == from_dict
    key = {"seed": 0, "dataset": "mnist", "training": {}}
    assert run_key(from_file, **key) == run_key(from_dict, **key)
    assert "layer_places" not in canonical_json(from_file)


def test_a_file_saved_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbfname = "bom"\nlayers = ["flatten", { dense = "classes" }]\n')
    assert load_model(path).name == "bom"
