"""Per-layer output shapes of a layer list, by Keras's rules, without building anything.

Shapes are Keras's channels_last shapes without the batch axis: (H, W, C) for maps, (units,)
for vectors. The arithmetic is Keras's (`keras/src/ops/operation_utils.py`,
`compute_conv_output_shape` and `compute_pooling_output_shape`):
'valid': out = floor((n - k) / s) + 1, an error when that is < 1; 'same': out = ceil(n / s).
Pooling strides default to the pool size (`keras/src/layers/pooling/base_pooling.py`).
"""

from __future__ import annotations

import math
import re

from cnnlab.errors import SpecError
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
    Layer,
    MaxPooling2D,
)

Shape = tuple[int, ...]


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
    where = f"layer {index} ({type(layer).__name__})"
    if isinstance(layer, Conv2D):
        _require_map(shape, where)
        height, width = _window_output(
            shape, layer.kernel_size, layer.strides, layer.padding, where
        )
        return (height, width, layer.filters)
    if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        _require_map(shape, where)
        strides = layer.strides or layer.pool_size
        height, width = _window_output(shape, layer.pool_size, strides, layer.padding, where)
        return (height, width, shape[2])
    if isinstance(layer, GlobalAveragePooling2D):
        _require_map(shape, where)
        return (shape[2],)
    if isinstance(layer, Flatten):
        # Keras flattens a vector to itself, so Flatten after Flatten is accepted as Keras does.
        return (math.prod(shape),)
    if isinstance(layer, Dense):
        _require_vector(shape, where)
        return (dense_units(layer, classes),)
    if isinstance(layer, (Dropout, BatchNormalization, Activation)):
        return shape
    raise SpecError(f"{where}: unknown layer type {type(layer).__name__}")


def dense_units(layer: Dense, classes: int) -> int:
    """Dense's width, with `units = "classes"` meaning the dataset's class count."""
    return classes if layer.units == CLASSES else int(layer.units)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) along one axis: the odd pixel goes after.

    From TF's "Notes on padding" (tensorflow/python/ops/nn_ops.py): out = ceil(n / s),
    pad_total = max((out - 1) * s + k - n, 0), pad_before = pad_total // 2. With an even kernel
    or a stride > 1 the padding can be asymmetric, extra row/column at the bottom/right.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_output(shape: Shape, window, strides, padding: str, where: str) -> tuple[int, int]:
    """Output (H, W) of a convolution or pooling window; below 1x1 is an error."""
    if padding == "same":
        return -(-shape[0] // strides[0]), -(-shape[1] // strides[1])
    height = (shape[0] - window[0]) // strides[0] + 1
    width = (shape[1] - window[1]) // strides[1] + 1
    if height < 1 or width < 1:
        raise SpecError(
            f"{where}: a {window[0]}x{window[1]} window (strides {strides[0]}x{strides[1]}, "
            f"padding 'valid') on a {shape[0]}x{shape[1]} map shrinks it below 1x1; use "
            "padding='same', a smaller window, or fewer layers that shrink the map before it"
        )
    return height, width


def _require_map(shape: Shape, where: str) -> None:
    if len(shape) != 3:
        raise SpecError(
            f"{where}: needs a (height, width, channels) feature map but gets a flat vector "
            f"{shape}; move it before Flatten/GlobalAveragePooling2D"
        )


def _require_vector(shape: Shape, where: str) -> None:
    # Keras's Dense on a 4-D tensor acts on the last axis only (a 1x1 convolution), giving a
    # (H, W, units) output that no classifier loss accepts; in a Sequential CNN that is always
    # a forgotten Flatten, so it is rejected here with the fix instead of silently built.
    if len(shape) != 1:
        raise SpecError(
            f"{where}: gets a feature map of shape {shape}, not a vector; "
            "put Flatten (or GlobalAveragePooling2D) before Dense"
        )


def check_classifier_output(shapes: list[Shape], classes: int) -> None:
    """A trainable classifier ends in a vector of `classes` scores (the loss needs that)."""
    last = shapes[-1] if shapes else None
    if last != (classes,):
        raise SpecError(
            f"the model's output shape is {last}, but a classifier for {classes} classes must "
            f'end in ({classes},); end with Dense(units="classes", activation="softmax")'
        )


def keras_layer_names(layers: tuple[Layer, ...] | list[Layer]) -> list[str]:
    """The names Keras gives these layers in a fresh session: conv2d, conv2d_1, dense, ...

    Keras 3 names a layer by its class in snake_case, numbered from the second of a kind
    (`auto_name` and `uniquify` in keras/src/utils/naming.py).
    """
    seen: dict[str, int] = {}
    names = []
    for layer in layers:
        base = _snake_case(type(layer).__name__)
        count = seen.get(base, 0)
        names.append(base if count == 0 else f"{base}_{count}")
        seen[base] = count + 1
    return names


def _snake_case(class_name: str) -> str:
    # Keras's `to_snake_case` (keras/src/utils/naming.py): "MaxPooling2D" -> "max_pooling2d".
    out = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", out).lower()
