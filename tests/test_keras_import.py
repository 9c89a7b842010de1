"""Importing Keras Sequential code: what users paste from notebooks becomes the same spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab import spec
from cnnlab.cli import main
from cnnlab.errors import SpecError
from cnnlab.keras_import import import_keras, import_keras_file, import_keras_source

try:
    from tomllib import loads as toml_loads
except ImportError:  # Python 3.10
    from tomli import loads as toml_loads

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
    OptimizerSpec,
    Residual,
)

SNIPPETS = Path(__file__).parent / "keras_snippets"
# Adadelta() as the seed notebook's Keras 2 meant it; written out because Keras 3 says 0.001.
KERAS2_ADADELTA = OptimizerSpec("adadelta", (("learning_rate", 1.0),))
SEED_MODELS = ["reference", *(f"model-{n}" for n in range(1, 13))]


def _snippet(preset: str) -> Path:
    return SNIPPETS / f"seed_{preset.replace('-', '_')}.py"


def _layers(code: str) -> tuple[spec.Layer, ...]:
    return import_keras_source(code, filename="model.py").layers


def _optimizer(compile_line: str) -> OptimizerSpec:
    code = f"model = Sequential()\nmodel.add(Dense(10, activation='softmax'))\n{compile_line}\n"
    return import_keras_source(code, filename="model.py").optimizer


@pytest.mark.parametrize("preset", SEED_MODELS)
def test_each_seed_snippet_imports_to_its_preset(preset):
    imported = import_keras_file(_snippet(preset)).spec
    expected = spec.load_model(f"seed/{preset}")
    assert imported.layers == expected.layers
    assert imported.optimizer == expected.optimizer


def test_reference_snippet_reads_as_the_keras_mnist_cnn():
    # Independent of the presets: the layers as the notebook's reference cell writes them.
    assert import_keras_file(_snippet("reference")).spec.layers == (
        Conv2D(32, (3, 3), activation="relu"),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(CLASSES, activation="softmax"),
    )


def test_seed_reading_notes_hold_in_the_snippets():
    model_3 = import_keras_file(_snippet("model-3")).spec
    model_7 = import_keras_file(_snippet("model-7")).spec
    assert model_3.optimizer == OptimizerSpec("adam")
    assert model_3.layers[0] == Conv2D(32, (7, 7), padding="same", activation="relu")
    assert sum(isinstance(layer, Conv2D) for layer in model_7.layers) == 8


def test_commented_out_layers_are_not_part_of_the_model():
    code = "model = Sequential()\nmodel.add(Flatten())\n# model.add(Dropout(0.75))\n"
    assert _layers(code) == (Flatten(),)


def test_list_form_as_in_keras_mnist_convnet_example():
    code = """
import keras
from keras import layers
num_classes = 10
input_shape = (28, 28, 1)
model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
"""
    imported = import_keras_source(code)
    assert imported.layers == (
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dropout(0.5),
        Dense(CLASSES, activation="softmax"),
    )
    assert imported.optimizer == OptimizerSpec("adam")


@pytest.mark.parametrize(
    "prefix", ["", "layers.", "keras.layers.", "tf.keras.layers.", "tensorflow.keras.layers."]
)
def test_layer_names_are_read_through_module_prefixes(prefix):
    code = f"model = tf.keras.models.Sequential([{prefix}Conv2D(8, 3), {prefix}Flatten()])"
    assert _layers(code) == (Conv2D(8, (3, 3)), Flatten())


def test_import_aliases_are_followed():
    code = "from keras.layers import Dense as D\nmodel = Sequential([D(4)])"
    assert _layers(code) == (Dense(4),)


def test_arguments_follow_keras_signatures_by_position_and_keyword():
    code = """
model = Sequential()
model.add(Conv2D(filters=8, kernel_size=5, strides=2, padding='SAME', use_bias=False))
model.add(Conv2D(4, [3, 1], (1, 2), 'valid', activation='tanh'))
model.add(MaxPooling2D((3, 3), 2, 'same'))
model.add(AveragePooling2D(pool_size=2))
model.add(BatchNormalization(-1, 0.9, 1e-5))
model.add(Dropout(rate=0.3))
model.add(Activation('elu'))
model.add(GlobalAveragePooling2D())
model.add(Dense(10, 'softmax'))
"""
    assert _layers(code) == (
        Conv2D(8, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        Conv2D(4, (3, 1), strides=(1, 2), activation="tanh"),
        MaxPooling2D((3, 3), strides=(2, 2), padding="same"),
        AveragePooling2D((2, 2)),
        BatchNormalization(momentum=0.9, epsilon=1e-5),
        Dropout(0.3),
        Activation("elu"),
        GlobalAveragePooling2D(),
        Dense(10, activation="softmax"),
    )


def test_keras2_spellings_are_accepted():
    code = """
model = Sequential([Convolution2D(8, (3, 3)), MaxPool2D(), AvgPool2D(), GlobalAvgPool2D()])
model.compile(optimizer=keras.optimizers.Adam(lr=0.01))
"""
    imported = import_keras_source(code)
    assert imported.layers == (
        Conv2D(8, (3, 3)),
        MaxPooling2D(),
        AveragePooling2D(),
        GlobalAveragePooling2D(),
    )
    assert imported.optimizer == OptimizerSpec("adam", (("learning_rate", 0.01),))


def test_arguments_at_keras_defaults_are_accepted():
    code = """model = Sequential([
    Conv2D(8, 3, dilation_rate=(1, 1), groups=1, kernel_initializer='glorot_uniform',
           kernel_regularizer=None, data_format='channels_last', name='first'),
    BatchNormalization(axis=3, center=True),
    Dense(4, bias_initializer='zeros', trainable=True),
])"""
    assert _layers(code) == (Conv2D(8, (3, 3)), BatchNormalization(), Dense(4))


def test_input_shapes_and_input_layers_are_dropped():
    code = """
model = Sequential()
model.add(InputLayer(input_shape=(28, 28, 1)))
model.add(Conv2D(8, 3, input_shape=(28, 28, 1)))
model.add(Flatten())
model.add(Dense(4, input_dim=99))
"""
    assert _layers(code) == (Conv2D(8, (3, 3)), Flatten(), Dense(4))


def test_module_level_literals_are_resolved_by_reading_them():
    code = """
k = (3, 3)
n_filters = 32
img_rows, img_cols = 28, 28
drop = rate = 0.25
act = 'relu'
size = n_filters
model = Sequential()
model.add(Conv2D(size, kernel_size=k, activation=act))
model.add(Dropout(drop))
model.add(Dense(-(-img_rows)))
"""
    assert _layers(code) == (
        Conv2D(32, (3, 3), activation="relu"),
        Dropout(0.25),
        Dense(28),
    )


def test_a_name_means_the_value_it_had_where_the_model_uses_it():
    code = "k = 3\nmodel = Sequential([Conv2D(8, k)])\nk = 5\n"
    assert _layers(code) == (Conv2D(8, (3, 3)),)


def test_names_of_functions_and_comprehensions_do_not_hide_module_names():
    code = """
kernel_size = (3, 3)
k = 5
def conv_block(filters, kernel_size):
    return Conv2D(filters, kernel_size)
squares = [k * k for k in range(3)]
scale = lambda k: 2 * k
model = Sequential([Conv2D(8, kernel_size), Conv2D(8, k)])
"""
    assert _layers(code) == (Conv2D(8, (3, 3)), Conv2D(8, (5, 5)))


def test_class_count_names_mean_classes_even_when_assigned():
    code = (
        "num_classes = 10\nNB_CLASSES = 7\n"
        "model = Sequential([Dense(num_classes), Dense(NB_CLASSES)])"
    )
    assert _layers(code) == (Dense(CLASSES), Dense(CLASSES))


def test_activation_references_and_none_are_read():
    code = (
        "model = Sequential([Dense(4, activation=tf.nn.relu),"
        " Dense(4, activation=keras.activations.gelu), Dense(4, activation=None)])"
    )
    assert _layers(code) == (
        Dense(4, activation="relu"),
        Dense(4, activation="gelu"),
        Dense(4),
    )


OPTIMIZER_CASES = [
    ("model.compile(loss='categorical_crossentropy', optimizer='adam')", OptimizerSpec("adam")),
    ("model.compile(optimizer='Adadelta')", KERAS2_ADADELTA),
    ("model.compile(optimizer=keras.optimizers.Adadelta())", KERAS2_ADADELTA),
    (
        "model.compile(optimizer=Adadelta(rho=0.9))",
        OptimizerSpec("adadelta", (("learning_rate", 1.0), ("rho", 0.9))),
    ),
    (
        "model.compile(optimizer=Adam(learning_rate=0.01))",
        OptimizerSpec("adam", (("learning_rate", 0.01),)),
    ),
    (
        "model.compile(optimizer=tf.keras.optimizers.SGD(0.1, nesterov=True, momentum=0.9))",
        OptimizerSpec("sgd", (("learning_rate", 0.1), ("momentum", 0.9), ("nesterov", True))),
    ),
    (
        "model.compile(optimizer=RMSprop(rho=0.8, epsilon=None, decay=0.0))",
        OptimizerSpec("rmsprop", (("rho", 0.8),)),
    ),
    (
        "model.compile(optimizer=AdamW(weight_decay=0.01, beta_1=0.8))",
        OptimizerSpec("adamw", (("weight_decay", 0.01), ("beta_1", 0.8))),
    ),
    (
        "opt = Adam(lr=1e-4)\nmodel.compile(optimizer=opt)",
        OptimizerSpec("adam", (("learning_rate", 1e-4),)),
    ),
    (
        "model.compile(optimizer=Adam(amsgrad=True, epsilon=1e-8, beta_2=0.99))",
        OptimizerSpec("adam", (("beta_2", 0.99), ("epsilon", 1e-8), ("amsgrad", True))),
    ),
    ("model.compile(loss='categorical_crossentropy')", OptimizerSpec("rmsprop")),
]


@pytest.mark.parametrize(("compile_line", "expected"), OPTIMIZER_CASES)
def test_optimizer_is_read_from_compile(compile_line, expected):
    assert _optimizer(compile_line) == expected


@pytest.mark.parametrize(("compile_line", "expected"), OPTIMIZER_CASES)
def test_imported_optimizers_are_ones_training_accepts(compile_line, expected):
    from cnnlab.optim import resolve_optimizer  # torch, only for this check

    resolved = resolve_optimizer(expected).kwargs()
    assert {key: resolved[key] for key, _ in expected.params} == expected.kwargs()


def test_a_model_without_compile_keeps_the_default_optimizer_with_a_note():
    imported = import_keras("model = Sequential([Dense(4)])")
    assert imported.spec.optimizer == KERAS2_ADADELTA
    assert any("no model.compile" in note for note in imported.notes)
    assert any("Keras 2's default, 1.0" in note for note in imported.notes)


def test_tf_keras_code_gets_tf_keras_adadelta_rate_and_a_dropped_input_shape_is_noted():
    code = """
from tensorflow.keras import layers, models
model = models.Sequential([layers.Conv2D(8, 3, input_shape=(32, 32, 3)), layers.Flatten(),
                           layers.Dense(10, activation="softmax")])
model.compile(optimizer="adadelta", loss="categorical_crossentropy")
"""
    imported = import_keras(code)
    assert imported.spec.optimizer.kwargs() == {"learning_rate": 0.001}
    assert any("imports tensorflow" in note for note in imported.notes)
    assert any("input shape (32, 32, 3) is not kept" in note for note in imported.notes)


def test_the_last_of_several_models_is_imported_unless_an_index_is_given():
    code = """
model = Sequential()
model.add(Dense(1))

model = Sequential()
model.add(Dense(2))
model.compile(optimizer='sgd')

model = Sequential([Dense(3)])
"""
    assert import_keras(code).spec.layers == (Dense(3),)
    second = import_keras(code, index=2)
    assert second.spec.layers == (Dense(2),)
    assert second.spec.optimizer == OptimizerSpec("sgd")
    assert (second.index, second.line, second.model_lines) == (2, 5, (2, 5, 9))
    assert "Sequential model 2 of 3, line 5" in second.header()
    assert "lines 2, 9" in second.header()
    with pytest.raises(SpecError, match=r"index 4 is out of range: the file has 3 model"):
        import_keras(code, index=4)


def test_a_model_inside_a_function_is_found():
    code = """
def build(units=8):
    model = Sequential()
    model.add(Dense(4))
    return model
"""
    assert _layers(code) == (Dense(4),)


def test_name_comes_from_argument_then_sequential_name_then_file():
    code = "model = Sequential([Dense(4)], name='tiny')"
    assert import_keras_source(code, filename="x/net.py", name="mine").name == "mine"
    assert import_keras_source(code, filename="x/net.py").name == "tiny"
    assert import_keras_source("model = Sequential([Dense(4)])", filename="x/net.py").name == "net"


def test_cross_entropy_from_logits_with_a_linear_output_is_accepted():
    code = """
model = Sequential([Flatten(), Dense(10)])
loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(optimizer='adam', loss=loss)
"""
    assert import_keras_source(code).layers == (Flatten(), Dense(10))


def test_spec_error_messages_are_one_line():
    with pytest.raises(SpecError) as caught:
        import_keras_source("model = Sequential()\nmodel.add(LSTM(\n  32))", filename="m.py")
    assert "\n" not in str(caught.value)


def test_the_library_reads_a_file_given_as_a_path(tmp_path):
    code = tmp_path / "m.py"
    code.write_text("model = Sequential([Flatten(), Dense(10, activation='softmax')])\n")
    assert import_keras(code).spec.layers == import_keras(str(code)).spec.layers
    assert import_keras(code).source == str(code)


def test_relu_layer_at_its_defaults_reads_as_the_relu_activation():
    code = (
        "model = Sequential([Conv2D(8, 3), ReLU(), Flatten(),"
        " layers.ReLU(max_value=None, negative_slope=0.0, threshold=0), Dense(10)])\n"
    )
    assert _layers(code) == (
        Conv2D(8, (3, 3)),
        Activation("relu"),
        Flatten(),
        Activation("relu"),
        Dense(10),
    )


@pytest.mark.parametrize("argument", ["max_value=6.0", "negative_slope=0.1", "threshold=1.0"])
def test_relu_layer_with_other_arguments_is_refused(argument):
    code = f"model = Sequential([Conv2D(8, 3), ReLU({argument}), Flatten(), Dense(10)])\n"
    with pytest.raises(SpecError, match=rf"model.py:1: ReLU argument '{argument.split('=')[0]}'"):
        _layers(code)


AUGMENTED = """\
from tensorflow import keras
from tensorflow.keras import layers
data_augmentation = keras.Sequential(
    [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1)]
)
model = keras.Sequential([
    data_augmentation,
    layers.Rescaling(1./255),
    layers.Conv2D(16, 3, padding="same", activation="relu"),
    layers.Flatten(),
    layers.Dense(10),
])
"""


def test_random_layers_at_the_input_are_left_out_with_the_augment_line():
    imported = import_keras(AUGMENTED, filename="model.py")
    assert imported.spec.layers == (
        Conv2D(16, (3, 3), padding="same", activation="relu"),
        Flatten(),
        Dense(10),
    )
    assert imported.model_lines == (6,)  # data_augmentation is part of the model, not one
    note = next(n for n in imported.notes if "augment" in n)
    line = (
        'augment = [{ random_flip = "horizontal" }, { random_rotation = 0.1 }, '
        "{ random_zoom = 0.1 }]"
    )
    assert line in note
    flags = "--augment random_flip=horizontal --augment random_rotation=0.1"
    assert flags in note


def test_written_augment_line_reads_back_as_the_keras_layers():
    imported = import_keras(
        "model = Sequential([RandomTranslation(0.1, 0.2, fill_mode='nearest'), RandomCrop(28, 28),"
        " RandomContrast(0.2), Flatten(), Dense(10)])\n",
        filename="model.py",
    )
    note = next(n for n in imported.notes if "augment" in n)
    line = note.split("`")[1]
    training = spec.TrainingSpec(augment=toml_loads(line)["augment"])
    assert [(a.name, a.kwargs()) for a in training.augment] == [
        (
            "RandomTranslation",
            {
                "height_factor": (-0.1, 0.1),
                "width_factor": (-0.2, 0.2),
                "fill_mode": "nearest",
                "interpolation": "bilinear",
                "fill_value": 0.0,
            },
        ),
        ("RandomCrop", {"height": 28, "width": 28, "pad": 0}),
        # Keras 3.15.1's code makes RandomContrast(0.2) the pair (0, 0.2): factors in [1, 1.2]
        ("RandomContrast", {"factor": (0.0, 0.2)}),
    ]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("RandomBrightness(0.2)", r"RandomBrightness is not supported as augmentation \(supported"),
        ("RandomRotation(0.1, fill_mode='wrap')", r"RandomRotation: fill_mode must be one of"),
        ("RandomContrast(0.2, value_range=(0, 1))", r"RandomContrast argument 'value_range'"),
    ],
)
def test_random_layer_cnnlab_cannot_express_is_refused(code, message):
    with pytest.raises(SpecError, match=rf"model.py:1: {message}"):
        _layers(f"model = Sequential([{code}, Flatten(), Dense(10)])\n")


def test_random_layer_inside_the_model_is_refused():
    code = "model = Sequential([Conv2D(8, 3), RandomFlip(), Flatten(), Dense(10)])\n"
    with pytest.raises(SpecError, match=r"model.py:1: RandomFlip is not at the model's input:"):
        _layers(code)


AUGMENTED_FUNCTIONAL = """\
import keras
from keras import layers
data_augmentation = keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomZoom(0.1)])
inputs = keras.Input(shape=(28, 28, 1))
x = data_augmentation(inputs)
x = layers.RandomRotation(0.1)(x)
x = layers.Rescaling(1./255)(x)
x = layers.Conv2D(16, 3, activation="relu")(x)
shortcut = x
x = layers.Conv2D(16, 3, padding="same")(x)
x = layers.add([x, shortcut])
x = layers.Flatten()(x)
outputs = layers.Dense(10)(x)
model = keras.Model(inputs, outputs)
"""


def test_random_layers_applied_to_a_functional_input_are_left_out_with_the_augment_line():
    imported = import_keras(AUGMENTED_FUNCTIONAL, filename="model.py")
    assert imported.spec.layers == (
        Conv2D(16, (3, 3), activation="relu"),
        Residual(layers=(Conv2D(16, (3, 3), padding="same"),)),
        Flatten(),
        Dense(10),
    )
    assert imported.model_lines == (14,)
    line = (
        'augment = [{ random_flip = "horizontal" }, { random_zoom = 0.1 }, '
        "{ random_rotation = 0.1 }]"
    )
    assert any(line in note for note in imported.notes)
    assert any("Rescaling(1/255) is left out" in note for note in imported.notes)


@pytest.mark.parametrize(
    ("change", "more", "message"),
    [
        (  # after a convolution
            ("x = layers.RandomRotation(0.1)(x)\n", ""),
            ("outputs = layers.Dense(10)(x)", "x = layers.RandomFlip()(x)\noutputs = Dense(10)(x)"),
            r"model.py:12: RandomFlip is not at the model's input: cnnlab",
        ),
        (  # after the input's Rescaling
            (
                "x = layers.RandomRotation(0.1)(x)\nx = layers.Rescaling(1./255)(x)\n",
                "x = layers.Rescaling(1./255)(x)\nx = layers.RandomRotation(0.1)(x)\n",
            ),
            ("", ""),
            r"model.py:7: RandomRotation is not at the model's input: .*Rescaling included",
        ),
        (  # in one branch of a residual block only
            ("shortcut = x\n", "shortcut = layers.RandomFlip()(x)\n"),
            ("", ""),
            r"model.py:9: RandomFlip is in one branch of a residual block",
        ),
    ],
)
def test_random_layer_elsewhere_in_functional_code_is_refused_saying_where(change, more, message):
    code = AUGMENTED_FUNCTIONAL.replace(*change).replace(*more)
    with pytest.raises(SpecError, match=message):
        import_keras(code, filename="model.py")


def test_the_cli_writes_a_functional_models_augment_note(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text(AUGMENTED_FUNCTIONAL)
    assert main(["import-keras", str(path)]) == 0
    header = " ".join(line[2:] for line in capsys.readouterr().out.splitlines() if line[:2] == "# ")
    assert "--augment random_flip=horizontal --augment random_zoom=0.1" in header


CROPPED = """\
inputs = Input(shape=(32, 32, 3))
x = RandomCrop({size})(inputs)
x = Flatten()(x)
model = Model(inputs, Dense(10)(x))
"""


@pytest.mark.parametrize(
    "code",
    [
        CROPPED.format(size="24, 24"),
        "model = Sequential([Input((32, 32, 3)), RandomCrop(32, 24), Flatten(), Dense(10)])\n",
        "model = Sequential([RandomCrop(24, 24, input_shape=(32, 32, 3)), Flatten(), Dense(10)])\n",
    ],
)
def test_a_random_crop_smaller_than_the_input_is_refused(code):
    with pytest.raises(
        SpecError,
        match=r"model.py:\d: RandomCrop to \d+x24 changes the model's "
        r"32x32x3 input",
    ):
        import_keras(code, filename="model.py")


def test_a_random_crop_of_the_inputs_size_is_the_augment_line():
    imported = import_keras(CROPPED.format(size="32, 32"), filename="model.py")
    assert imported.spec.layers == (Flatten(), Dense(10))
    assert any("augment = [{ random_crop = [32, 32] }]" in note for note in imported.notes)
