"""A Keras-like model summary, per layer: output shape, parameters, forward FLOPs per image.

Computed from the spec alone (no torch module is built), with Keras's counting rules:
BatchNormalization's moving mean and variance are non-trainable parameters, as in Keras's
`model.summary()`. `tests/test_summary.py` checks the counts against Keras's for every seed model
and against the parameters of the model `build_model` makes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from cnnlab import data
from cnnlab import spec as s
from cnnlab.errors import SpecError
from cnnlab.shapes import Shape, infer_shapes, keras_layer_names

FLOPS_CONVENTION = (
    "forward FLOPs per image; a multiply-add counts 2. Conv2D: 2*kh*kw*cin*cout*Hout*Wout, "
    "Dense: 2*in*out, plus 1 per output for a bias; BatchNormalization: 2 per element "
    "(inference: one scale, one shift); pooling: kh*kw per output element, "
    "GlobalAveragePooling2D: 1 per input element; activations, Dropout, Flatten: 0"
)


@dataclass(frozen=True)
class LayerRow:
    name: str  # Keras's layer name: conv2d, conv2d_1, ...
    layer_type: str  # Keras's class name: Conv2D, ...
    output_shape: Shape  # Keras's channels_last shape without the batch axis
    params: int
    trainable_params: int
    non_trainable_params: int
    flops: int


@dataclass(frozen=True)
class Summary:
    model: str
    input_shape: tuple[int, int, int]
    classes: int
    rows: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    flops: int

    def to_dict(self) -> dict:
        """Plain JSON-ready data, with the FLOPs convention stated."""
        return {**asdict(self), "flops_convention": FLOPS_CONVENTION}


def summarize(spec: s.ModelSpec, input_shape: tuple[int, int, int], classes: int) -> Summary:
    """The summary of `spec` on inputs of `input_shape` (H, W, C) with `classes` classes.

    Raises `SpecError` as `infer_shapes` does when a layer cannot take its input.
    """
    outputs = infer_shapes(spec.layers, input_shape, classes, spec.layer_places)
    inputs = [tuple(input_shape), *outputs[:-1]]
    rows = tuple(
        _row(name, layer, shape_in, shape_out)
        for name, layer, shape_in, shape_out in zip(
            keras_layer_names(spec.layers), spec.layers, inputs, outputs, strict=True
        )
    )
    return Summary(
        model=spec.name,
        input_shape=tuple(input_shape),
        classes=classes,
        rows=rows,
        total_params=sum(row.params for row in rows),
        trainable_params=sum(row.trainable_params for row in rows),
        non_trainable_params=sum(row.non_trainable_params for row in rows),
        flops=sum(row.flops for row in rows),
    )


def _row(name: str, layer: s.Layer, shape_in: Shape, shape_out: Shape) -> LayerRow:
    trainable, non_trainable = layer_params(layer, shape_in, shape_out)
    return LayerRow(
        name=name,
        layer_type=type(layer).__name__,
        output_shape=shape_out,
        params=trainable + non_trainable,
        trainable_params=trainable,
        non_trainable_params=non_trainable,
        flops=layer_flops(layer, shape_in, shape_out),
    )


def layer_params(layer: s.Layer, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts of one layer, as Keras counts them."""
    if isinstance(layer, s.Conv2D):
        kernel = math.prod(layer.kernel_size) * shape_in[-1] * layer.filters
        return kernel + (layer.filters if layer.use_bias else 0), 0
    if isinstance(layer, s.Dense):
        units = shape_out[0]
        return shape_in[0] * units + (units if layer.use_bias else 0), 0
    if isinstance(layer, s.BatchNormalization):
        # gamma and beta are trained; moving mean and variance are not (Keras's summary too).
        return 2 * shape_in[-1], 2 * shape_in[-1]
    return 0, 0


def layer_flops(layer: s.Layer, shape_in: Shape, shape_out: Shape) -> int:
    """Forward FLOPs per image of one layer, by `FLOPS_CONVENTION`."""
    outputs = math.prod(shape_out)
    if isinstance(layer, s.Conv2D):
        per_output = 2 * math.prod(layer.kernel_size) * shape_in[-1]
        return outputs * (per_output + (1 if layer.use_bias else 0))
    if isinstance(layer, s.Dense):
        return outputs * (2 * shape_in[0] + (1 if layer.use_bias else 0))
    if isinstance(layer, s.BatchNormalization):
        return 2 * outputs
    if isinstance(layer, (s.MaxPooling2D, s.AveragePooling2D)):
        return outputs * math.prod(layer.pool_size)
    if isinstance(layer, s.GlobalAveragePooling2D):
        return math.prod(shape_in)
    return 0


def keras_shape(shape: Shape) -> str:
    """A shape as Keras prints it, with the batch axis: (None, 26, 26, 32)."""
    return "(" + ", ".join(["None", *map(str, shape)]) + ")"


def input_for_dataset(
    source: str,
    *,
    input_shape: tuple[int, int, int] | None = None,
    classes: int | None = None,
    data_dir: str | Path | None = None,
) -> tuple[tuple[int, int, int], int]:
    """The (H, W, C) image shape and class count to summarise a model for.

    Values given win; missing ones come from the dataset registry when it records them (no data
    read), else from the dataset's local files (never downloaded: a summary should not fetch
    the data). A `DataError` then says what is missing.
    """
    info = data.REGISTRY.get(source)
    if info is not None:
        input_shape = input_shape or info.image_shape
        classes = classes or info.classes
    if input_shape is None or classes is None:
        dataset = data.load_dataset(source, data_dir=data_dir, offline=True)
        input_shape = input_shape or dataset.image_shape
        classes = classes or dataset.classes
    return tuple(input_shape), classes


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'28,28,1' -> (28, 28, 1): height, width, channels as Keras's input_shape."""
    try:
        parts = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise SpecError(
            f"input shape must be three positive integers HEIGHT,WIDTH,CHANNELS such as "
            f"28,28,1, got {text!r}"
        )
    return parts
