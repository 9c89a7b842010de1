"""Importing Keras beyond Sequential: functional code read (never run) and JSON configs.

The small ResNet of tests/keras_snippets/small_resnet_functional.py was run by Keras 3 in
benchmarks/keras_layer_reference.py, which recorded its parameter count, its layers and its
`model.to_json()` (tests/fixtures/keras/small_resnet_functional.json).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from cnnlab import spec as s
from cnnlab.errors import SpecError
from cnnlab.keras_config import import_keras_config
from cnnlab.keras_import import import_keras, import_keras_file
from cnnlab.spec.kinds import KINDS
from cnnlab.summary import summarize

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "keras"
KERAS = json.loads((FIXTURES / "layer_table.json").read_text())["configs"]
SNIPPET = HERE / "keras_snippets" / "small_resnet_functional.py"


def _matches_keras(model: s.ModelSpec, record: dict) -> None:
    result = summarize(model, tuple(record["input_shape"]), record["classes"])
    assert result.total_params == record["total_params"]
    ours = sorted(
        (row.name, row.layer_type, list(row.output_shape), row.params)
        for row in result.rows
        if row.layer_type != "Residual"
    )
    keras = sorted(
        (
            r["name"],
            r["class_name"],
            r["output_shape"],
            r["trainable_params"] + r["non_trainable_params"],
        )
        for r in record["layers"]
    )
    assert ours == keras


def test_functional_code_of_a_small_resnet_gives_keras_layers_and_parameter_count():
    imported = import_keras_file(SNIPPET)
    assert imported.kind == "functional"
    blocks = [layer for layer in imported.spec.layers if isinstance(layer, s.Residual)]
    assert [(b.shortcut, b.activation) for b in blocks] == [
        ("identity", "relu"),
        ("projection", "relu"),
        ("identity", "silu"),
    ]
    assert imported.spec.optimizer.name == "adam"
    _matches_keras(imported.spec, KERAS["small_resnet_functional"])


def test_json_config_of_the_small_resnet_gives_the_same_layers_as_its_code():
    from_code = import_keras_file(SNIPPET).spec
    from_config = import_keras_config(FIXTURES / "small_resnet_functional.json").spec
    assert from_config.layers[:-1] == from_code.layers[:-1]
    assert (from_code.layers[-1].units, from_config.layers[-1].units) == (s.CLASSES, 10)
    _matches_keras(from_config, KERAS["small_resnet_functional"])


def test_a_configs_compile_config_gives_the_optimizer_the_code_compiled_with(tmp_path):
    # Keras 3 writes compile_config (optimizer, loss) into to_json() and a .keras's config.json.
    from_code = import_keras_file(SNIPPET)
    from_config = import_keras_config(FIXTURES / "small_resnet_functional.json")
    assert from_config.spec.optimizer == from_code.spec.optimizer == s.OptimizerSpec("adam")
    assert not any("holds no optimizer" in note for note in from_config.notes)
    config = json.loads((FIXTURES / "small_resnet_functional.json").read_text())
    optimizer = config["compile_config"]["optimizer"]
    optimizer.update(
        class_name="SGD",
        config={
            "learning_rate": 0.05000000074505806,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": None,
        },
    )
    (tmp_path / "sgd.json").write_text(json.dumps(config))
    assert import_keras_config(tmp_path / "sgd.json").spec.optimizer == s.OptimizerSpec(
        "sgd", (("learning_rate", 0.05), ("momentum", 0.9), ("nesterov", True))
    )
    config["compile_config"]["loss"] = "mean_squared_error"
    (tmp_path / "mse.json").write_text(json.dumps(config))
    with pytest.raises(SpecError, match=r"mse\.json: compile_config: loss 'mean_squared_error'"):
        import_keras_config(tmp_path / "mse.json")


def test_a_keras_archive_is_read_from_its_config_json(tmp_path):
    archive = tmp_path / "resnet.keras"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("config.json", (FIXTURES / "small_resnet_functional.json").read_text())
        zipped.writestr("metadata.json", '{"keras_version": "3.15.1"}')
    imported = import_keras_file(archive)
    _matches_keras(imported.spec, KERAS["small_resnet_functional"])


def test_sequential_config_of_the_new_layer_kinds_gives_keras_parameter_count():
    imported = import_keras_config(FIXTURES / "sequential_new_kinds.json")
    _matches_keras(imported.spec, KERAS["sequential_new_kinds"])
    assert imported.spec.layers[2].activation == "silu"  # "swish" as Keras writes it


def test_a_config_layer_cnnlab_cannot_build_is_refused_naming_it(tmp_path):
    config = json.loads((FIXTURES / "sequential_new_kinds.json").read_text())
    config["config"]["layers"][1]["config"]["kernel_initializer"] = {
        "class_name": "HeNormal",
        "config": {"seed": None},
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(
        SpecError, match=r"m\.json: layer 'conv2d' \(Conv2D\): .*kernel_initializer"
    ):
        import_keras_config(path)


FUNCTIONAL = """\
import keras
from keras import layers
inputs = keras.Input(shape=(28, 28, 1))
x = layers.Conv2D(8, 3, padding="same")(inputs)
{middle}
outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
model = keras.Model(inputs, outputs)
"""


@pytest.mark.parametrize(
    ("middle", "message"),
    [
        (
            "for _ in range(2):\n    x = layers.Conv2D(8, 3)(x)",
            r"<string>:\d+: tensor 'x' is made in the loop at line 5, which cnnlab does not run",
        ),
        (
            "def block(t):\n    return layers.Conv2D(8, 3)(t)\nx = block(x)",
            r"<string>:7: block\(\.\.\.\) is not a Keras layer call cnnlab can read",
        ),
        (
            "y = layers.Conv2D(8, 3, padding='same')(x)\nx = layers.Concatenate()([x, y])",
            r"<string>:6: layer 'Concatenate' is not supported",
        ),
        (
            "y = layers.Conv2D(8, 3, padding='same')(x)\nz = layers.Conv2D(8, 5, padding='same')(x)"
            "\nx = layers.Add()([y, z])",
            r"neither branch of the Add is a shortcut cnnlab expresses",
        ),
        (
            "conv = layers.Conv2D(8, 3, padding='same')\nx = conv(x)\nx = conv(x)",
            r"<string>:\d: layer 'conv' is applied twice \(lines 6 and 7\): a shared layer",
        ),
    ],
)
def test_a_graph_cnnlab_cannot_express_is_refused_with_its_line(middle, message):
    with pytest.raises(SpecError, match=message):
        import_keras(FUNCTIONAL.format(middle=middle))


def test_a_model_of_two_inputs_is_refused():
    code = FUNCTIONAL.format(middle="").replace(
        "model = keras.Model(inputs, outputs)",
        "other = keras.Input(shape=(28, 28, 1))\nmodel = keras.Model([inputs, other], outputs)",
    )
    with pytest.raises(SpecError, match="the model has 2 inputs"):
        import_keras(code)


# One line of Keras code per layer kind, and the layer cnnlab reads from it.
KERAS_CODE = {
    "conv": ("layers.Conv2D(4, 3, dilation_rate=2)", s.Conv2D(4, (3, 3), dilation_rate=(2, 2))),
    "separableconv": (
        "layers.SeparableConv2D(8, (3, 3), padding='same', depth_multiplier=2)",
        s.SeparableConv2D(8, (3, 3), padding="same", depth_multiplier=2),
    ),
    "depthwiseconv": (
        "layers.DepthwiseConv2D(3, strides=2, activation='swish')",
        s.DepthwiseConv2D((3, 3), strides=(2, 2), activation="silu"),
    ),
    "maxpool": ("layers.MaxPooling2D(3, strides=1)", s.MaxPooling2D((3, 3), (1, 1))),
    "avgpool": ("layers.AveragePooling2D()", s.AveragePooling2D()),
    "globalavgpool": ("layers.GlobalAveragePooling2D()", s.GlobalAveragePooling2D()),
    "globalmaxpool": ("layers.GlobalMaxPool2D()", s.GlobalMaxPooling2D()),
    "dropout": ("layers.Dropout(0.3)", s.Dropout(0.3)),
    "batchnorm": ("layers.BatchNormalization(momentum=0.9)", s.BatchNormalization(0.9)),
    "layernorm": ("layers.LayerNormalization(epsilon=1e-5)", s.LayerNormalization(1e-5)),
    "flatten": ("layers.Flatten()", s.Flatten()),
    "dense": ("layers.Dense(32, activation='mish')", s.Dense(32, activation="mish")),
    "activation": ("layers.Activation('hard_swish')", s.Activation("hard_silu")),
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.key)
def test_layer_kind_imports_from_keras_code(kind):
    if kind.key == "residual":  # no Keras class: functional code's Add makes it (tests above)
        assert import_keras_file(SNIPPET).spec.layers[3].shortcut == "identity"
        return
    code, expected = KERAS_CODE[kind.key]
    text = f"from keras import layers, Sequential\nmodel = Sequential([{code}])\n"
    assert import_keras(text).spec.layers == (expected,)


UNSCALED = ["Conv2D", "Flatten", "Dense"]


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_configs_rescaling_of_the_input_is_cnnlabs_own_scaling_and_left_out(kind):
    # Written by Keras 3.15.1's model.to_json(): Input((28, 28, 1)), Rescaling(1./255),
    # Conv2D(4, 3), Flatten(), Dense(10).
    imported = import_keras_config(FIXTURES / f"rescaling_{kind}.json")
    assert [type(layer).__name__ for layer in imported.spec.layers] == [
        "Conv2D",
        "Flatten",
        "Dense",
    ]
    assert any("Rescaling(1/255) is left out" in note for note in imported.notes)


def test_a_configs_rescaling_by_another_scale_is_refused_naming_it(tmp_path):
    config = json.loads((FIXTURES / "rescaling_sequential.json").read_text())
    config["config"]["layers"][1]["config"]["scale"] = 1 / 127.5
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    with pytest.raises(SpecError, match=r"m\.json: layer 'rescaling' \(Rescaling\): .*x / 255"):
        import_keras_config(path)


def test_a_configs_random_layers_at_the_input_are_left_out_with_the_augment_line():
    # Written by tests/fixtures/keras/make_augment_configs.py (Keras 3.15.1's model.to_json()):
    # a nested data_augmentation Sequential applied to the Input, then Rescaling(1./255).
    imported = import_keras_config(FIXTURES / "augment_functional.json")
    assert [type(layer).__name__ for layer in imported.spec.layers] == UNSCALED
    line = (
        'augment = [{ random_flip = "horizontal" }, { random_rotation = 0.1 }, '
        "{ random_zoom = 0.1 }]"
    )
    assert any(line in note for note in imported.notes)
    assert any("Rescaling(1/255) is left out" in note for note in imported.notes)


def test_a_sequential_configs_random_layers_nested_or_not_are_the_augment_line():
    imported = import_keras_config(FIXTURES / "augment_sequential.json")
    assert [type(layer).__name__ for layer in imported.spec.layers] == UNSCALED
    line = (  # Keras 3 writes RandomContrast(0.2)'s factor as [0, 0.2]
        'augment = [{ random_flip = "horizontal" }, { random_crop = [32, 32] }, '
        "{ random_contrast = [0.0, 0.2] }]"
    )
    assert any(line in note for note in imported.notes)


def _edited(tmp_path, fixture: str, edit) -> Path:
    config = json.loads((FIXTURES / fixture).read_text())
    edit(config["config"]["layers"])
    path = tmp_path / "m.json"
    path.write_text(json.dumps(config))
    return path


def test_a_configs_random_crop_smaller_than_its_input_is_refused(tmp_path):
    def crop_24(layers):
        layers[1]["config"]["layers"][2]["config"].update(height=24, width=24)

    path = _edited(tmp_path, "augment_sequential.json", crop_24)
    with pytest.raises(
        SpecError,
        match=r"m\.json: layer 'random_crop' \(RandomCrop\): RandomCrop "
        r"to 24x24 changes the model's 32x32x3 input",
    ):
        import_keras_config(path)


def test_a_configs_random_layer_after_other_layers_is_refused(tmp_path):
    def contrast_last(layers):
        layers.insert(5, layers.pop(2))  # RandomContrast after Flatten

    path = _edited(tmp_path, "augment_sequential.json", contrast_last)
    with pytest.raises(
        SpecError,
        match=r"m\.json: layer 'random_contrast' \(RandomContrast\): "
        r"RandomContrast is not at the model's input",
    ):
        import_keras_config(path)
