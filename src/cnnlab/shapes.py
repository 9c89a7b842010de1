"""Per-layer output shapes of a layer list, by Keras's rules, without building anything.

Shapes are Keras's channels_last shapes without the batch axis: (H, W, C) for maps, (units,)
for vectors. Each layer kind's rule is its row's in the layer table (`cnnlab.spec.kinds`, which
cites Keras's arithmetic); this module walks a model through them and names Keras's layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnnlab.errors import SpecError
from cnnlab.spec import Layer, Residual, kind_of
from cnnlab.spec.kinds import Shape, dense_units

__all__ = ["Shape", "dense_units", "infer_shapes", "layer_output_shape", "same_padding"]


def infer_shapes(
    layers: tuple[Layer, ...] | list[Layer],
    input_shape: tuple[int, int, int],
    classes: int,
    places: tuple[str, ...] = (),
) -> list[Shape]:
    """Each layer's output shape; a `SpecError` names the first layer that cannot take its input.

    `classes` resolves `Dense(units="classes")`. `places` (a ModelSpec's `layer_places`) puts
    the file and line where that layer was written in front of the error.
    """
    shape: Shape = tuple(input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise SpecError(f"input shape must be (height, width, channels) >= 1, got {shape}")
    shapes = []
    for index, layer in enumerate(layers, start=1):
        try:
            shape = layer_output_shape(layer, shape, classes, index=index)
        except SpecError as error:
            place = places[index - 1] if index <= len(places) else ""
            if not place:
                raise
            raise SpecError(f"{place}: {error}") from None
        shapes.append(shape)
    return shapes


def layer_output_shape(layer: Layer, shape: Shape, classes: int, *, index: int) -> Shape:
    """One layer's output shape for an input of `shape`; `index` counts from 1 as in spec errors."""
    kind = kind_of(layer)
    return kind.output_shape(layer, shape, classes, f"layer {index} ({kind.keras_class})")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) along one axis: the odd pixel goes after.

    From TF's "Notes on padding" (tensorflow/python/ops/nn_ops.py): out = ceil(n / s),
    pad_total = max((out - 1) * s + k - n, 0), pad_before = pad_total // 2. With an even kernel
    or a stride > 1 the padding can be asymmetric, extra row/column at the bottom/right.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def check_classifier_output(shapes: list[Shape], classes: int) -> None:
    """A trainable classifier ends in a vector of `classes` scores (the loss needs that)."""
    last = shapes[-1] if shapes else None
    if last != (classes,):
        raise SpecError(
            f"the model's output shape is {last}, but a classifier for {classes} classes must "
            f'end in ({classes},); end with Dense(units="classes", activation="softmax")'
        )


@dataclass(frozen=True)
class NamedLayer:
    """A layer with the name Keras gives it; a residual block also names what it holds.

    Keras names layers in the order they are created; a block's are created as its layers,
    then its shortcut's Conv2D and BatchNormalization (projection), then Add, then the
    Activation after it (when not linear). `name` of a block is cnnlab's own ("residual").
    """

    name: str
    layer: Layer
    body: tuple[NamedLayer, ...] = ()
    shortcut: tuple[str, ...] = ()
    add: str = ""
    activation: str = ""


def named_layers(layers: tuple[Layer, ...] | list[Layer]) -> list[NamedLayer]:
    """Keras's names of these layers (and those inside blocks) in a fresh session."""
    seen: dict[str, int] = {}
    return [_named(layer, seen) for layer in layers]


def _named(layer: Layer, seen: dict[str, int]) -> NamedLayer:
    if not isinstance(layer, Residual):
        return NamedLayer(_next_name(kind_of(layer).keras_class, seen), layer)
    name = _next_name("Residual", seen)
    body = tuple(_named(item, seen) for item in layer.layers)
    shortcut: tuple[str, ...] = ()
    if layer.shortcut == "projection":
        shortcut = (_next_name("Conv2D", seen), _next_name("BatchNormalization", seen))
    add = _next_name("Add", seen) if layer.shortcut != "none" else ""
    activation = _next_name("Activation", seen) if layer.activation != "linear" else ""
    return NamedLayer(name, layer, body, shortcut, add, activation)


def _next_name(class_name: str, seen: dict[str, int]) -> str:
    # Keras 3 names a layer by its class in snake_case, numbered from the second of a kind
    # (`auto_name` and `uniquify` in keras/src/utils/naming.py).
    base = _snake_case(class_name)
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def module_paths(layers: tuple[Layer, ...] | list[Layer]) -> list[str]:
    """Every layer's path in the built torch model, blocks' layers included, in Keras's order:
    conv2d, residual.conv2d_1, ..., residual.conv2d_3 (a projection), dense."""
    return [path for named in named_layers(layers) for path in _paths(named, "")]


def _paths(named: NamedLayer, prefix: str) -> list[str]:
    path = prefix + named.name
    if not isinstance(named.layer, Residual):
        return [path]
    inner = [found for item in named.body for found in _paths(item, f"{path}.")]
    return [path, *inner, *(f"{path}.{name}" for name in named.shortcut)]


def keras_layer_names(layers: tuple[Layer, ...] | list[Layer]) -> list[str]:
    """The names Keras gives these layers in a fresh session: conv2d, conv2d_1, dense, ...

    Layers inside residual blocks take their numbers too (see `named_layers`).
    """
    return [named.name for named in named_layers(layers)]


def _snake_case(class_name: str) -> str:
    # Keras's `to_snake_case` (keras/src/utils/naming.py): "MaxPooling2D" -> "max_pooling2d".
    out = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", out).lower()
