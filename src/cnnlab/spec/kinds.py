"""The layer table: one row per layer kind, holding everything cnnlab knows about that kind.

A row gives the kind's spec type, TOML type key and aliases, options, how to parse and write it,
its Keras class name, its output shape, parameters and FLOPs by Keras's rules, the torch module
that computes it and how stacked seeds stack it. `spec`, `shapes`, `summary`, `build`,
`stacked`, the TOML writer and `keras_import` all read this table, and a layer type without a
row is an error naming it. Adding a layer kind is its spec dataclass, its torch module and one
row here.

Shapes are Keras's channels_last shapes without the batch axis: (H, W, C) for maps, (units,)
for vectors. The window arithmetic is Keras's (`keras/src/ops/operation_utils.py`,
`compute_conv_output_shape`): 'valid': out = floor((n - (k - 1) * d - 1) / s) + 1, an error
when that is < 1; 'same': out = ceil(n / s). Pooling strides default to the pool size
(`keras/src/layers/pooling/base_pooling.py`).

The torch side is named, not imported (`module` is a builder in `cnnlab.layers`, `stacking` a
rule of `cnnlab.stacked`): reading and checking specs never loads torch, so `cnnlab --help`
stays fast. A test checks that every name resolves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.grid import show
from cnnlab.spec.places import At
from cnnlab.spec.types import (
    ACTIVATION_ALIASES,
    ACTIVATIONS,
    CLASSES,
    SHORTCUTS,
    Activation,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    MaxPooling2D,
    Pair,
    Residual,
    SeparableConv2D,
)
from cnnlab.spec.values import as_bool, as_choice, as_fraction, as_int, as_number, as_pair

Shape = tuple[int, ...]
PADDINGS = ("valid", "same")
Fields = list[tuple[str, Any]]


@dataclass(frozen=True)
class LayerKind:
    """Everything about one layer kind. Shape, parameter and FLOP functions take the layer,
    its input shape and its output shape (Keras's, without the batch axis)."""

    key: str  # the TOML type key: { conv = 32, ... }
    spec_type: type
    keras_class: str  # Keras's class name; also the spec type's name
    aliases: tuple[str, ...]  # other spellings of the key, lowercase without "_" and "-"
    options: tuple[str, ...]  # option keys besides the type key
    parse: Callable[[Any, dict, At], Layer]  # (type key's value, options, place) -> layer
    fields: Callable[[Any], Fields]  # writer: the type key first, then non-default options
    output_shape: Callable[[Any, Shape, int, str], Shape]  # (layer, input, classes, where)
    params: Callable[[Any, Shape, Shape], tuple[int, int]]  # (trainable, non-trainable)
    flops: Callable[[Any, Shape, Shape], int]  # forward FLOPs per image, FLOPS_CONVENTION
    module: str  # builder in cnnlab.layers: (layer, input shape, classes) -> nn.Module
    stacking: str | None  # rule of cnnlab.stacked; None: --stack-seeds refuses the layer
    bare: bool = False  # may be written as a bare string ("flatten")
    needs_value: str = ""  # for a bare string that cannot name it: what to write instead


# --- Checks shared by the rows -----------------------------------------------------------------


def window_output(shape: Shape, window: Pair, strides: Pair, padding: str, where: str) -> Pair:
    """Output (H, W) of a convolution or pooling window (dilated size given); below 1x1 is an
    error."""
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


def require_map(shape: Shape, where: str) -> None:
    if len(shape) != 3:
        raise SpecError(
            f"{where}: needs a (height, width, channels) feature map but gets a flat vector "
            f"{shape}; move it before Flatten/GlobalAveragePooling2D"
        )


def require_vector(shape: Shape, where: str) -> None:
    # Keras's Dense on a 4-D tensor acts on the last axis only (a 1x1 convolution), giving a
    # (H, W, units) output that no classifier loss accepts; in a Sequential CNN that is always
    # a forgotten Flatten, so it is rejected here with the fix instead of silently built.
    if len(shape) != 1:
        raise SpecError(
            f"{where}: gets a feature map of shape {shape}, not a vector; "
            "put Flatten (or GlobalAveragePooling2D) before Dense"
        )


def _activation(options: dict, at: At) -> str:
    return activation_name(options.get("activation", "linear"), at.key("activation"))


def activation_name(value: Any, at: At) -> str:
    """A Keras activation name, aliases ("swish") written as Keras's get_config() writes them."""
    if isinstance(value, str) and value.lower() in ACTIVATION_ALIASES:
        return ACTIVATION_ALIASES[value.lower()]
    return as_choice(value, at, "activation", ACTIVATIONS)


def _flag(options: dict, key: str, at: At) -> bool:
    return as_bool(options.get(key, True), at.key(key), key)


def _short_pair(pair: Pair) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def _unit_layer(value: Any, key: str, at: At) -> None:
    """Layers without arguments are written "flatten" or { flatten = true }."""
    if value is not True:
        raise at.error(f'write "{key}" or {{ {key} = true }}, got {show(value)}')


def _no_params(layer: Any, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return 0, 0


def _no_flops(layer: Any, shape_in: Shape, shape_out: Shape) -> int:
    return 0


def _same_shape(layer: Any, shape: Shape, classes: int, where: str) -> Shape:
    return shape


# --- Convolutions ------------------------------------------------------------------------------


def _window_options(options: dict, at: At) -> dict:
    """kernel, strides, padding, dilation_rate and activation, shared by the convolutions."""
    strides = as_pair(options.get("strides", 1), at.key("strides"), "strides")
    dilation = as_pair(options.get("dilation_rate", 1), at.key("dilation_rate"), "dilation_rate")
    if max(strides) > 1 and max(dilation) > 1:  # keras/src/layers/convolutional/base_conv.py
        raise at.error(
            f"strides > 1 and dilation_rate > 1 cannot be combined (Keras refuses it), "
            f"got strides {list(strides)} and dilation_rate {list(dilation)}"
        )
    padding = as_choice(options.get("padding", "valid"), at.key("padding"), "padding", PADDINGS)
    return {
        "kernel_size": as_pair(options["kernel"], at.key("kernel"), "kernel"),
        "strides": strides,
        "padding": padding,
        "dilation_rate": dilation,
        "activation": _activation(options, at),
        "use_bias": _flag(options, "use_bias", at),
    }


def _need_kernel(key: str, options: dict, at: At, example: str) -> None:
    if "kernel" not in options:
        raise at.error(f"{key} needs a kernel size, e.g. {example}")


def _parse_conv(filters: Any, options: dict, at: At) -> Conv2D:
    _need_kernel("conv", options, at, "{ conv = 32, kernel = 3 }")
    return Conv2D(
        filters=as_int(filters, at.key("conv"), "filters"), **_window_options(options, at)
    )


def _parse_separable(filters: Any, options: dict, at: At) -> SeparableConv2D:
    _need_kernel("separableconv", options, at, "{ separableconv = 64, kernel = 3 }")
    multiplier = as_int(
        options.get("depth_multiplier", 1), at.key("depth_multiplier"), "depth_multiplier"
    )
    return SeparableConv2D(
        filters=as_int(filters, at.key("separableconv"), "filters"),
        depth_multiplier=multiplier,
        **_window_options(options, at),
    )


def _parse_depthwise(kernel: Any, options: dict, at: At) -> DepthwiseConv2D:
    if "kernel" in options:
        raise at.key("kernel").error("depthwiseconv's value is its kernel size; drop `kernel`")
    multiplier = as_int(
        options.get("depth_multiplier", 1), at.key("depth_multiplier"), "depth_multiplier"
    )
    window = _window_options({**options, "kernel": kernel}, at)
    return DepthwiseConv2D(depth_multiplier=multiplier, **window)


def _window_fields(layer: Any) -> Fields:
    fields: Fields = []
    if layer.activation != "linear":
        fields.append(("activation", layer.activation))
    if layer.padding != "valid":
        fields.append(("padding", layer.padding))
    if layer.strides != (1, 1):
        fields.append(("strides", _short_pair(layer.strides)))
    if layer.dilation_rate != (1, 1):
        fields.append(("dilation_rate", _short_pair(layer.dilation_rate)))
    if getattr(layer, "depth_multiplier", 1) != 1:
        fields.append(("depth_multiplier", layer.depth_multiplier))
    return fields + ([("use_bias", False)] if not layer.use_bias else [])


def _conv_fields(layer: Conv2D) -> Fields:
    return [
        ("conv", layer.filters),
        ("kernel", _short_pair(layer.kernel_size)),
        *_window_fields(layer),
    ]


def _separable_fields(layer: SeparableConv2D) -> Fields:
    kernel = ("kernel", _short_pair(layer.kernel_size))
    return [("separableconv", layer.filters), kernel, *_window_fields(layer)]


def _depthwise_fields(layer: DepthwiseConv2D) -> Fields:
    return [("depthwiseconv", _short_pair(layer.kernel_size)), *_window_fields(layer)]


def dilated_kernel(layer: Any) -> Pair:
    """The window a (dilated) kernel spans: (k - 1) * d + 1 per axis."""
    return tuple(
        (k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate, strict=True)
    )  # type: ignore[return-value]


def _conv_shape(layer: Any, shape: Shape, classes: int, where: str) -> Shape:
    require_map(shape, where)
    hw = window_output(shape, dilated_kernel(layer), layer.strides, layer.padding, where)
    if isinstance(layer, DepthwiseConv2D):
        return (*hw, shape[2] * layer.depth_multiplier)
    return (*hw, layer.filters)


def _bias(layer: Any, units: int) -> int:
    return units if layer.use_bias else 0


def _conv_params(layer: Conv2D, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return math.prod(layer.kernel_size) * shape_in[-1] * layer.filters + _bias(
        layer, layer.filters
    ), 0


def _separable_params(layer: SeparableConv2D, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    depth = shape_in[-1] * layer.depth_multiplier
    depthwise = math.prod(layer.kernel_size) * depth
    return depthwise + depth * layer.filters + _bias(layer, layer.filters), 0


def _depthwise_params(layer: DepthwiseConv2D, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return math.prod(layer.kernel_size) * shape_out[-1] + _bias(layer, shape_out[-1]), 0


def _conv_flops(layer: Conv2D, shape_in: Shape, shape_out: Shape) -> int:
    per_output = 2 * math.prod(layer.kernel_size) * shape_in[-1]
    return math.prod(shape_out) * (per_output + (1 if layer.use_bias else 0))


def _depthwise_flops(layer: DepthwiseConv2D, shape_in: Shape, shape_out: Shape) -> int:
    return math.prod(shape_out) * (2 * math.prod(layer.kernel_size) + (1 if layer.use_bias else 0))


def _separable_flops(layer: SeparableConv2D, shape_in: Shape, shape_out: Shape) -> int:
    depth = shape_in[-1] * layer.depth_multiplier
    pixels = math.prod(shape_out[:2])
    depthwise = pixels * depth * 2 * math.prod(layer.kernel_size)
    return depthwise + math.prod(shape_out) * (2 * depth + (1 if layer.use_bias else 0))


# --- Pooling -----------------------------------------------------------------------------------


def _parse_pool(key: str) -> Callable[[Any, dict, At], Layer]:
    cls = MaxPooling2D if key == "maxpool" else AveragePooling2D

    def parse(size: Any, options: dict, at: At) -> Layer:
        pool_size = (2, 2) if size is True else as_pair(size, at.key(key), "pool size")
        strides = options.get("strides")
        padding = options.get("padding", "valid")
        return cls(
            pool_size=pool_size,
            strides=None if strides is None else as_pair(strides, at.key("strides"), "strides"),
            padding=as_choice(padding, at.key("padding"), "padding", PADDINGS),
        )

    return parse


def _pool_fields(key: str) -> Callable[[Any], Fields]:
    def fields(layer: Any) -> Fields:
        written: Fields = [(key, _short_pair(layer.pool_size))]
        if layer.strides is not None:
            written.append(("strides", _short_pair(layer.strides)))
        return written + ([("padding", layer.padding)] if layer.padding != "valid" else [])

    return fields


def _pool_shape(layer: Any, shape: Shape, classes: int, where: str) -> Shape:
    require_map(shape, where)
    strides = layer.strides or layer.pool_size
    return (*window_output(shape, layer.pool_size, strides, layer.padding, where), shape[2])


def _pool_flops(layer: Any, shape_in: Shape, shape_out: Shape) -> int:
    return math.prod(shape_out) * math.prod(layer.pool_size)


def _parse_global(key: str, cls: type) -> Callable[[Any, dict, At], Layer]:
    def parse(value: Any, options: dict, at: At) -> Layer:
        _unit_layer(value, key, at)
        return cls()

    return parse


def _global_shape(layer: Any, shape: Shape, classes: int, where: str) -> Shape:
    require_map(shape, where)
    return (shape[2],)


def _global_flops(layer: Any, shape_in: Shape, shape_out: Shape) -> int:
    return math.prod(shape_in)


# --- Normalisation, regularisation, reshaping ---------------------------------------------------


def _parse_batchnorm(value: Any, options: dict, at: At) -> BatchNormalization:
    if value is not True:
        raise at.error(
            f'write "batchnorm" or {{ batchnorm = true, momentum = 0.99 }}, got {show(value)}'
            " (false leaves a layer out only in grid templates)"
        )
    momentum = as_fraction(options.get("momentum", 0.99), at.key("momentum"), "momentum")
    return BatchNormalization(momentum=momentum, epsilon=_epsilon(options, at))


def _epsilon(options: dict, at: At) -> float:
    epsilon = as_number(options.get("epsilon", 1e-3), at.key("epsilon"), "epsilon")
    if epsilon <= 0:
        raise at.key("epsilon").error(f"epsilon must be > 0, got {show(options['epsilon'])}")
    return epsilon


def _batchnorm_fields(layer: BatchNormalization) -> Fields:
    return [("batchnorm", True), ("momentum", layer.momentum), ("epsilon", layer.epsilon)]


def _batchnorm_params(layer: Any, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    # gamma and beta are trained; moving mean and variance are not (Keras's summary too).
    return 2 * shape_in[-1], 2 * shape_in[-1]


def _normalise_flops(layer: Any, shape_in: Shape, shape_out: Shape) -> int:
    return 2 * math.prod(shape_out)  # inference: one scale, one shift per element


def _parse_layernorm(value: Any, options: dict, at: At) -> LayerNormalization:
    if value is not True:
        raise at.error(
            f'write "layernorm" or {{ layernorm = true, epsilon = 1e-3 }}, got {show(value)}'
        )
    return LayerNormalization(epsilon=_epsilon(options, at))


def _layernorm_fields(layer: LayerNormalization) -> Fields:
    return [("layernorm", True), ("epsilon", layer.epsilon)]


def _layernorm_params(layer: Any, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return 2 * shape_in[-1], 0  # gamma and beta over the last axis


def _layernorm_flops(layer: Any, shape_in: Shape, shape_out: Shape) -> int:
    # mean, variance, normalise, scale and shift: about 8 per element; stated, not measured
    return 8 * math.prod(shape_out)


def _parse_dropout(rate: Any, options: dict, at: At) -> Dropout:
    return Dropout(as_fraction(rate, at.key("dropout"), "dropout rate"))


def _flatten_shape(layer: Any, shape: Shape, classes: int, where: str) -> Shape:
    # Keras flattens a vector to itself, so Flatten after Flatten is accepted as Keras does.
    return (math.prod(shape),)


# --- Dense, Activation -------------------------------------------------------------------------


def dense_units(layer: Dense, classes: int) -> int:
    """Dense's width, with `units = "classes"` meaning the dataset's class count."""
    return classes if layer.units == CLASSES else int(layer.units)


def _parse_dense(units: Any, options: dict, at: At) -> Dense:
    if not (isinstance(units, str) and units == CLASSES):
        units = as_int(units, at.key("dense"), 'units (an integer >= 1 or "classes")')
    return Dense(
        units=units, activation=_activation(options, at), use_bias=_flag(options, "use_bias", at)
    )


def _dense_fields(layer: Dense) -> Fields:
    fields: Fields = [("dense", layer.units)]
    fields += [("activation", layer.activation)] if layer.activation != "linear" else []
    return fields + ([("use_bias", False)] if not layer.use_bias else [])


def _dense_shape(layer: Dense, shape: Shape, classes: int, where: str) -> Shape:
    require_vector(shape, where)
    return (dense_units(layer, classes),)


def _dense_params(layer: Dense, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    return shape_in[0] * shape_out[0] + _bias(layer, shape_out[0]), 0


def _dense_flops(layer: Dense, shape_in: Shape, shape_out: Shape) -> int:
    return shape_out[0] * (2 * shape_in[0] + (1 if layer.use_bias else 0))


def _parse_activation(value: Any, options: dict, at: At) -> Activation:
    return Activation(activation_name(value, at))


# --- Residual blocks ---------------------------------------------------------------------------


def _parse_residual(items: Any, options: dict, at: At) -> Residual:
    from cnnlab.spec import layers  # the list parser, which reads this table in turn

    body = layers.parse_block(items, at.key("residual"))
    shortcut = as_choice(
        options.get("shortcut", "identity"), at.key("shortcut"), "shortcut", SHORTCUTS
    )
    return Residual(layers=body, shortcut=shortcut, activation=_activation(options, at))


class Block(tuple):
    """A block's layers as a field value: the writer puts them one per line."""


def _residual_fields(layer: Residual) -> Fields:
    fields: Fields = [("residual", Block(layer.layers))]
    if layer.shortcut != "identity":
        fields.append(("shortcut", layer.shortcut))
    return fields + ([("activation", layer.activation)] if layer.activation != "linear" else [])


def block_strides(layers: tuple[Layer, ...]) -> Pair:
    """How much a block's layers shrink a map: the product of their strides, per axis."""
    rows, cols = 1, 1
    for layer in layers:
        if isinstance(layer, Residual):
            strides = block_strides(layer.layers)
        elif isinstance(layer, (MaxPooling2D, AveragePooling2D)):
            strides = layer.strides or layer.pool_size
        else:
            strides = getattr(layer, "strides", (1, 1))
        rows, cols = rows * strides[0], cols * strides[1]
    return rows, cols


def projection(
    layer: Residual, shape_in: Shape, shape_out: Shape
) -> tuple[Conv2D, BatchNormalization]:
    """A projection shortcut's layers: Conv2D(1x1, the block's strides), BatchNormalization."""
    conv = Conv2D(filters=shape_out[-1], kernel_size=(1, 1), strides=block_strides(layer.layers))
    return conv, BatchNormalization()


def _residual_shape(layer: Residual, shape: Shape, classes: int, where: str) -> Shape:
    require_map(shape, where)
    out = layer_shapes(layer.layers, shape, classes, where)[-1]
    if layer.shortcut == "none":
        return out
    if len(out) != 3:
        raise SpecError(f"{where}: its layers end in a vector {out}; a block adds feature maps")
    if layer.shortcut == "identity" and out != shape:
        raise SpecError(
            f"{where}: an identity shortcut adds the input {shape} to the layers' output {out}, "
            'which differ; write shortcut = "projection" (a 1x1 Conv2D and BatchNormalization) '
            "or keep the shape"
        )
    if layer.shortcut == "projection":
        conv, _ = projection(layer, shape, out)
        projected = _conv_shape(conv, shape, classes, where)
        if projected != out:
            raise SpecError(
                f"{where}: the projection shortcut (1x1, strides {list(conv.strides)}) gives "
                f'{projected} but the layers give {out}; use padding = "same" in the block'
            )
    return out


def _inner(layer: Residual, shape_in: Shape, classes: int) -> list[tuple[Layer, Shape, Shape]]:
    """(layer, input, output) of every layer inside the block, the shortcut's included."""
    outputs = layer_shapes(layer.layers, shape_in, classes, "")
    inputs = [shape_in, *outputs[:-1]]
    inner = list(zip(layer.layers, inputs, outputs, strict=True))
    if layer.shortcut == "projection":
        conv, norm = projection(layer, shape_in, outputs[-1])
        inner += [(conv, shape_in, outputs[-1]), (norm, outputs[-1], outputs[-1])]
    return inner


def _residual_params(layer: Residual, shape_in: Shape, shape_out: Shape) -> tuple[int, int]:
    counts = [kind_of(item).params(item, i, o) for item, i, o in _inner(layer, shape_in, 0)]
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _residual_flops(layer: Residual, shape_in: Shape, shape_out: Shape) -> int:
    inner = sum(kind_of(item).flops(item, i, o) for item, i, o in _inner(layer, shape_in, 0))
    return inner + (math.prod(shape_out) if layer.shortcut != "none" else 0)  # the Add


# --- The table ---------------------------------------------------------------------------------

_WINDOW = ("kernel", "strides", "padding", "dilation_rate", "activation", "use_bias")
_POOL = ("strides", "padding")

KINDS: tuple[LayerKind, ...] = (
    LayerKind(
        "conv",
        Conv2D,
        "Conv2D",
        ("conv2d", "convolution2d"),
        _WINDOW,
        _parse_conv,
        _conv_fields,
        _conv_shape,
        _conv_params,
        _conv_flops,
        module="conv2d",
        stacking="conv",
        needs_value="{ conv = 32, kernel = 3 } (filters and kernel size)",
    ),
    LayerKind(
        "separableconv",
        SeparableConv2D,
        "SeparableConv2D",
        ("separableconv2d", "separableconvolution2d"),
        (*_WINDOW, "depth_multiplier"),
        _parse_separable,
        _separable_fields,
        _conv_shape,
        _separable_params,
        _separable_flops,
        module="separable_conv2d",
        stacking="separable",
        needs_value="{ separableconv = 64, kernel = 3 } (filters and kernel size)",
    ),
    LayerKind(
        "depthwiseconv",
        DepthwiseConv2D,
        "DepthwiseConv2D",
        ("depthwiseconv2d",),
        ("strides", "padding", "dilation_rate", "depth_multiplier", "activation", "use_bias"),
        _parse_depthwise,
        _depthwise_fields,
        _conv_shape,
        _depthwise_params,
        _depthwise_flops,
        module="depthwise_conv2d",
        stacking="depthwise",
        needs_value="{ depthwiseconv = 3 } (the kernel size)",
    ),
    LayerKind(
        "maxpool",
        MaxPooling2D,
        "MaxPooling2D",
        ("maxpool2d", "maxpooling", "maxpooling2d"),
        _POOL,
        _parse_pool("maxpool"),
        _pool_fields("maxpool"),
        _pool_shape,
        _no_params,
        _pool_flops,
        module="max_pooling2d",
        stacking="as_is",
        bare=True,
    ),
    LayerKind(
        "avgpool",
        AveragePooling2D,
        "AveragePooling2D",
        ("avgpool2d", "averagepooling", "averagepooling2d"),
        _POOL,
        _parse_pool("avgpool"),
        _pool_fields("avgpool"),
        _pool_shape,
        _no_params,
        _pool_flops,
        module="average_pooling2d",
        stacking="as_is",
        bare=True,
    ),
    LayerKind(
        "globalavgpool",
        GlobalAveragePooling2D,
        "GlobalAveragePooling2D",
        ("globalavgpool2d", "globalaveragepooling", "globalaveragepooling2d"),
        (),
        _parse_global("globalavgpool", GlobalAveragePooling2D),
        lambda layer: [("globalavgpool", True)],
        _global_shape,
        _no_params,
        _global_flops,
        module="global_average_pooling2d",
        stacking="global_average",
        bare=True,
    ),
    LayerKind(
        "globalmaxpool",
        GlobalMaxPooling2D,
        "GlobalMaxPooling2D",
        ("globalmaxpool2d", "globalmaxpooling", "globalmaxpooling2d"),
        (),
        _parse_global("globalmaxpool", GlobalMaxPooling2D),
        lambda layer: [("globalmaxpool", True)],
        _global_shape,
        _no_params,
        _global_flops,
        module="global_max_pooling2d",
        stacking="global_max",
        bare=True,
    ),
    LayerKind(
        "dropout",
        Dropout,
        "Dropout",
        (),
        (),
        _parse_dropout,
        lambda layer: [("dropout", layer.rate)],
        _same_shape,
        _no_params,
        _no_flops,
        module="dropout",
        stacking="dropout",
        needs_value="{ dropout = 0.25 } (the rate)",
    ),
    LayerKind(
        "batchnorm",
        BatchNormalization,
        "BatchNormalization",
        ("batchnormalization",),
        ("momentum", "epsilon"),
        _parse_batchnorm,
        _batchnorm_fields,
        _same_shape,
        _batchnorm_params,
        _normalise_flops,
        module="batch_normalization",
        stacking="batchnorm",
        bare=True,
    ),
    LayerKind(
        "layernorm",
        LayerNormalization,
        "LayerNormalization",
        ("layernormalization",),
        ("epsilon",),
        _parse_layernorm,
        _layernorm_fields,
        _same_shape,
        _layernorm_params,
        _layernorm_flops,
        module="layer_normalization",
        stacking="layernorm",
        bare=True,
    ),
    LayerKind(
        "flatten",
        Flatten,
        "Flatten",
        (),
        (),
        _parse_global("flatten", Flatten),
        lambda layer: [("flatten", True)],
        _flatten_shape,
        _no_params,
        _no_flops,
        module="flatten",
        stacking="flatten",
        bare=True,
    ),
    LayerKind(
        "dense",
        Dense,
        "Dense",
        (),
        ("activation", "use_bias"),
        _parse_dense,
        _dense_fields,
        _dense_shape,
        _dense_params,
        _dense_flops,
        module="dense",
        stacking="dense",
        needs_value='{ dense = 128 } or { dense = "classes" } (units)',
    ),
    LayerKind(
        "activation",
        Activation,
        "Activation",
        (),
        (),
        _parse_activation,
        lambda layer: [("activation", layer.activation)],
        _same_shape,
        _no_params,
        _no_flops,
        module="activation",
        stacking="as_is",
    ),
    LayerKind(
        "residual",
        Residual,
        "Residual",
        ("residualblock",),
        ("shortcut", "activation"),
        _parse_residual,
        _residual_fields,
        _residual_shape,
        _residual_params,
        _residual_flops,
        module="residual",
        stacking="residual",
        needs_value='{ residual = [...layers...], shortcut = "identity" } (its layers)',
    ),
)

BY_TYPE: dict[type, LayerKind] = {kind.spec_type: kind for kind in KINDS}
BY_KEY: dict[str, LayerKind] = {kind.key: kind for kind in KINDS}
# Every spelling of a type key, lowercase without "_" and "-" (Keras class names included).
TYPE_ALIASES: dict[str, str] = {
    alias: kind.key
    for kind in KINDS
    for alias in (kind.key, *kind.aliases, kind.keras_class.lower())
}
LAYER_TYPES = tuple(kind.key for kind in KINDS)
BARE_LAYERS = tuple(kind.key for kind in KINDS if kind.bare)


def kind_of(layer: Any) -> LayerKind:
    """The row of a layer's type; a type without a row is an error naming it, never a default."""
    kind = BY_TYPE.get(type(layer))
    if kind is None:
        raise SpecError(
            f"layer type {type(layer).__name__} has no row in the layer table "
            f"(cnnlab.spec.kinds.KINDS: {', '.join(k.keras_class for k in KINDS)})"
        )
    return kind


def layer_shapes(
    layers: tuple[Layer, ...] | list[Layer], shape: Shape, classes: int, where: str
) -> list[Shape]:
    """Each layer's output shape; `where` prefixes errors (a block's label)."""
    shapes = []
    for index, layer in enumerate(layers, start=1):
        kind = kind_of(layer)
        label = f"layer {index} ({kind.keras_class})"
        shape = kind.output_shape(layer, shape, classes, f"{where}: {label}" if where else label)
        shapes.append(shape)
    return shapes


def without_activation(layer: Layer) -> Layer:
    """The layer with its activation made linear (a final softmax folded into the loss)."""
    return replace(layer, activation="linear")
