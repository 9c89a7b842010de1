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
from cnnlab.shapes import NamedLayer, Shape, infer_shapes, named_layers
from cnnlab.spec.kinds import layer_shapes, projection

FLOPS_CONVENTION = (
    "forward FLOPs per image; a multiply-add counts 2. Conv2D: 2*kh*kw*cin*cout*Hout*Wout, "
    "Dense: 2*in*out, plus 1 per output for a bias; BatchNormalization: 2 per element "
    "(inference: one scale, one shift); pooling: kh*kw per output element, "
    "global pooling: 1 per input element; SeparableConv2D: its depthwise and pointwise parts; "
    "LayerNormalization: 8 per element; a residual block's Add: 1 per output element; "
    "activations, Dropout, Flatten: 0"
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
    # 0 for the model's own layers; 1 for the layers inside a residual block (its shortcut's
    # Conv2D and BatchNormalization and its Add included), whose totals the block's row holds.
    depth: int = 0


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

    A residual block is a row with the block's totals, followed by its layers one level deeper;
    totals count the model's own rows. Raises `SpecError` as `infer_shapes` does when a layer
    cannot take its input.
    """
    outputs = infer_shapes(spec.layers, input_shape, classes, spec.layer_places)
    rows = _rows(named_layers(spec.layers), tuple(input_shape), outputs, classes, 0)
    top = [row for row in rows if row.depth == 0]
    return Summary(
        model=spec.name,
        input_shape=tuple(input_shape),
        classes=classes,
        rows=tuple(rows),
        total_params=sum(row.params for row in top),
        trainable_params=sum(row.trainable_params for row in top),
        non_trainable_params=sum(row.non_trainable_params for row in top),
        flops=sum(row.flops for row in top),
    )


def _rows(
    named: list[NamedLayer] | tuple[NamedLayer, ...],
    shape_in: Shape,
    outputs: list[Shape],
    classes: int,
    depth: int,
) -> list[LayerRow]:
    rows = []
    for item, shape_out in zip(named, outputs, strict=True):
        rows.append(_row(item.name, item.layer, shape_in, shape_out, depth))
        if isinstance(item.layer, s.Residual):
            rows += _block_rows(item, shape_in, shape_out, classes, depth + 1)
        shape_in = shape_out
    return rows


def _block_rows(
    item: NamedLayer, shape_in: Shape, shape_out: Shape, classes: int, depth: int
) -> list[LayerRow]:
    """A residual block's layers, its shortcut's, its Add and the activation after it."""
    block = item.layer
    inner = layer_shapes(block.layers, shape_in, classes, "")
    rows = _rows(item.body, shape_in, inner, classes, depth)
    if item.shortcut:
        conv, norm = projection(block, shape_in, shape_out)
        rows.append(_row(item.shortcut[0], conv, shape_in, shape_out, depth))
        rows.append(_row(item.shortcut[1], norm, shape_out, shape_out, depth))
    if item.add:
        rows.append(LayerRow(item.add, "Add", shape_out, 0, 0, 0, math.prod(shape_out), depth))
    if item.activation:
        rows.append(
            _row(item.activation, s.Activation(block.activation), shape_out, shape_out, depth)
        )
    return rows


def _row(name: str, layer: s.Layer, shape_in: Shape, shape_out: Shape, depth: int = 0) -> LayerRow:
    trainable, non_trainable = layer_params(layer, shape_in, shape_out)
    return LayerRow(
        name=name,
        layer_type=s.kind_of(layer).keras_class,
        output_shape=shape_out,
        params=trainable + non_trainable,
        trainable_params=trainable,
        non_trainable_params=non_trainable,
        flops=layer_flops(layer, shape_in, shape_out),
        depth=depth,
    )


def layer_params(layer: s.Layer, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts of one layer, as Keras counts them."""
    return s.kind_of(layer).params(layer, shape_in, shape_out)


def layer_flops(layer: s.Layer, shape_in: Shape, shape_out: Shape) -> int:
    """Forward FLOPs per image of one layer, by `FLOPS_CONVENTION`."""
    return s.kind_of(layer).flops(layer, shape_in, shape_out)


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
