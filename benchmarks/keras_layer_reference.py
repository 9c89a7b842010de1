"""Keras 3's figures for every layer kind of cnnlab's layer table, and for the new presets.

Run with the separate Keras venv (never a cnnlab dependency; see docs/performance.md):

    /work/kerasenv/bin/python benchmarks/keras_layer_reference.py

Writes `tests/fixtures/keras/layer_table.json` (per case: each layer's Keras name, class, output
shape and parameter counts, the totals), `tests/fixtures/keras/layer_table.npz` (per small
case: an input, Keras's weights by layer name, Keras's inference output), and the JSON configs
(`model.to_json()`) of tests/keras_snippets/small_resnet_functional.py and of a Sequential model
of the new kinds, as `tests/fixtures/keras/<name>.json`, for the config importer.
The models are written here with Keras's own API, independently of cnnlab's presets and specs,
so the tests compare two separate readings. Layers are created in the order cnnlab names them
(a residual block: its body, then the shortcut's 1x1 Conv2D and BatchNormalization, then Add,
then the block's activation), so Keras's automatic names (conv2d, conv2d_1, ...) are cnnlab's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras"
CLASSES = 4  # the small cases' class count
SMALL = (9, 9, 3)  # odd sizes: 'same' padding with strides 2 is asymmetric there

# Keras 3's activation names that cnnlab takes (keras/src/activations/__init__.py).
ACTIVATIONS = (
    "relu",
    "relu6",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "hard_tanh",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "swish",
    "hard_silu",
    "hard_swish",
    "leaky_relu",
    "mish",
    "softplus",
    "softsign",
    "log_sigmoid",
    "tanh_shrink",
    "exponential",
    "softmax",
    "linear",
)

Body = Callable[[keras.KerasTensor], keras.KerasTensor]


def head(x):
    """Every small case ends so: a vector of CLASSES softmax scores."""
    if len(x.shape) == 4:
        x = layers.Flatten()(x)
    return layers.Dense(CLASSES, activation="softmax")(x)


def residual(x, body: list, *, filters: int | None = None, strides: int = 1, activation="relu"):
    """Keras ResNet v1's block: body(x) + shortcut(x), then the activation.

    The shortcut is x itself when the body keeps the shape, else Conv2D(filters, 1, strides)
    then BatchNormalization (keras/src/applications/resnet.py, `residual_block_v1`).
    """
    y = x
    for layer in body:
        y = layer(y)
    shortcut = x
    if filters is not None:
        shortcut = layers.Conv2D(filters, 1, strides=strides)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    y = layers.Add()([y, shortcut])
    return layers.Activation(activation)(y) if activation != "linear" else y


def small_cases() -> dict[str, Body]:
    """One or more cases per layer kind, each a small functional model's body."""
    cases: dict[str, Body] = {
        "conv": lambda x: layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x),
        "conv_dilated": lambda x: layers.Conv2D(4, (3, 2), dilation_rate=2, activation="elu")(x),
        "conv_even_same": lambda x: layers.Conv2D(5, 4, padding="same", use_bias=False)(x),
        "separableconv": lambda x: layers.SeparableConv2D(
            6, 3, padding="same", depth_multiplier=2, activation="relu"
        )(x),
        "separableconv_strided": lambda x: layers.SeparableConv2D(
            4, (3, 3), strides=2, padding="same", use_bias=False
        )(x),
        "separableconv_dilated": lambda x: layers.SeparableConv2D(4, 3, dilation_rate=2)(x),
        "depthwiseconv": lambda x: layers.DepthwiseConv2D(
            3, strides=2, padding="same", depth_multiplier=2
        )(x),
        "depthwiseconv_plain": lambda x: layers.DepthwiseConv2D((2, 3), activation="gelu")(x),
        "maxpool": lambda x: layers.MaxPooling2D(3, strides=2, padding="same")(x),
        "avgpool": lambda x: layers.AveragePooling2D(2)(x),
        "globalavgpool": lambda x: layers.GlobalAveragePooling2D()(x),
        "globalmaxpool": lambda x: layers.GlobalMaxPooling2D()(layers.Conv2D(4, 3)(x)),
        "dropout": lambda x: layers.Dropout(0.3)(x),
        "batchnorm": lambda x: layers.BatchNormalization()(x),
        "layernorm": lambda x: layers.LayerNormalization()(layers.Conv2D(5, 3)(x)),
        "layernorm_vector": lambda x: layers.LayerNormalization(epsilon=1e-5)(
            layers.Dense(7)(layers.Flatten()(x))
        ),
        "flatten": lambda x: layers.Flatten()(x),
        "dense": lambda x: layers.Dense(6, activation="tanh")(layers.Flatten()(x)),
        "residual_identity": lambda x: residual(
            layers.Conv2D(8, 3, padding="same")(x),
            [
                layers.Conv2D(8, 3, padding="same"),
                layers.BatchNormalization(),
                layers.Activation("relu"),
                layers.Conv2D(8, 3, padding="same"),
                layers.BatchNormalization(),
            ],
        ),
        "residual_projection": lambda x: residual(
            x,
            [
                layers.Conv2D(8, 3, strides=2, padding="same"),
                layers.BatchNormalization(),
                layers.Activation("relu"),
                layers.Conv2D(8, 3, padding="same"),
                layers.BatchNormalization(),
            ],
            filters=8,
            strides=2,
        ),
    }
    for name in ACTIVATIONS:
        if name == "softmax":
            # A softmax inside the network acts on the channels, so it sits on a vector here.
            cases["activation_softmax"] = lambda x: layers.Activation("softmax")(
                layers.Dense(6)(layers.Flatten()(x))
            )
        else:
            cases[f"activation_{name}"] = lambda x, name=name: layers.Activation(name)(
                layers.Conv2D(3, 3, activation=name)(x)
            )
    return cases


def resnet20(x):
    """He et al. 2016's CIFAR ResNet-20: 3 stages x 3 blocks, 16/32/64 filters."""
    x = layers.Conv2D(16, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            body = [
                layers.Conv2D(filters, 3, strides=strides, padding="same"),
                layers.BatchNormalization(),
                layers.Activation("relu"),
                layers.Conv2D(filters, 3, padding="same"),
                layers.BatchNormalization(),
            ]
            projection = strides != 1 or x.shape[-1] != filters
            x = residual(x, body, filters=filters if projection else None, strides=strides)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(10, activation="softmax")(x)


def separable_net(x):
    """A small depthwise-separable network (MobileNet's blocks, Xception's SeparableConv2D)."""
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for filters, strides in ((64, 1), (128, 2), (128, 1), (256, 2)):
        x = layers.SeparableConv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    return layers.Dense(10, activation="softmax")(x)


def build(body: Body, input_shape, *, with_head: bool) -> keras.Model:
    keras.backend.clear_session()  # Keras's names as in a fresh session: conv2d, conv2d_1, ...
    inputs = keras.Input(shape=input_shape)
    outputs = body(inputs)
    return keras.Model(inputs, head(outputs) if with_head else outputs)


def describe(model: keras.Model) -> dict:
    rows = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        non_trainable = sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights)
        rows.append(
            {
                "name": layer.name,
                "class_name": type(layer).__name__,
                "output_shape": list(layer.output.shape[1:]),
                "trainable_params": trainable,
                "non_trainable_params": non_trainable,
            }
        )
    return {
        "layers": rows,
        "total_params": int(model.count_params()),
        "trainable_params": sum(r["trainable_params"] for r in rows),
        "non_trainable_params": sum(r["non_trainable_params"] for r in rows),
    }


def randomise(model: keras.Model, rng: np.random.Generator) -> None:
    """Non-trivial biases, gammas, betas and moving statistics, so the outputs test them too."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        fresh = []
        for w in weights:
            if w.ndim == 1:  # biases, gamma, beta, moving mean and variance: all positive-safe
                fresh.append(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
            else:
                fresh.append(w)
        layer.set_weights(fresh)


def parity(name: str, model: keras.Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    randomise(model, rng)
    x = rng.standard_normal((3, *model.inputs[0].shape[1:])).astype("float32")
    arrays = {f"{name}/input": x, f"{name}/output": np.asarray(model(x, training=False))}
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            arrays[f"{name}/weights/{layer.name}/{i}"] = w
    return arrays


SNIPPETS = OUT.parent.parent / "keras_snippets"


def functional_snippet(name: str) -> keras.Model:
    """Run a snippet of functional Keras code (here, in the Keras venv) and return its `model`."""
    keras.backend.clear_session()
    scope: dict = {}
    exec((SNIPPETS / f"{name}.py").read_text(), scope)  # noqa: S102 - our own fixture, in Keras
    return scope["model"]


def sequential_example() -> keras.Model:
    """A Sequential model of the new kinds, for the JSON config of a Sequential model."""
    keras.backend.clear_session()
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(16, 3, padding="same", dilation_rate=2, activation="gelu"),
            layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
            layers.SeparableConv2D(24, 3, padding="same", activation="swish"),
            layers.LayerNormalization(),
            layers.GlobalMaxPooling2D(),
            layers.Dropout(0.2),
            layers.Dense(10, activation="softmax"),
        ]
    )


def write_configs() -> dict:
    """Keras's JSON configs (model.to_json()) and figures of the two import examples."""
    found = {}
    for name, model in (
        ("small_resnet_functional", functional_snippet("small_resnet_functional")),
        ("sequential_new_kinds", sequential_example()),
    ):
        (OUT / f"{name}.json").write_text(json.dumps(json.loads(model.to_json()), indent=1) + "\n")
        found[name] = {
            "input_shape": list(model.inputs[0].shape[1:]),
            "classes": 10,
            **describe(model),
        }
        print(f"{name}: {found[name]['total_params']:,} parameters")
    return found


def main() -> None:
    keras.utils.set_random_seed(17)  # Keras's initial weights too, so reruns write the same
    rng = np.random.default_rng(17)
    cases, arrays = {}, {}
    for name, body in small_cases().items():
        model = build(body, SMALL, with_head=True)
        cases[name] = {"input_shape": list(SMALL), "classes": CLASSES, **describe(model)}
        arrays.update(parity(name, model, rng))
    presets = {}
    for name, body in (("resnet20", resnet20), ("separable", separable_net)):
        for shape in ((28, 28, 1), (32, 32, 3)):
            model = build(body, shape, with_head=False)
            key = f"{name}@{'x'.join(map(str, shape))}"
            presets[key] = {"input_shape": list(shape), "classes": 10, **describe(model)}
            print(f"{key}: {presets[key]['total_params']:,} parameters")
    doc = {
        "produced_by": "benchmarks/keras_layer_reference.py",
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
        "cases": cases,
        "presets": presets,
        "configs": write_configs(),
    }
    (OUT / "layer_table.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(OUT / "layer_table.npz", **arrays)
    print(f"{len(cases)} cases, {len(arrays)} arrays -> {OUT}")


if __name__ == "__main__":
    main()
