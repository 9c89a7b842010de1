"""Parsing the `layers = [...]` list of a model file into layer specs."""

from __future__ import annotations

from typing import Any

from cnnlab.grid import did_you_mean, show
from cnnlab.spec.places import At
from cnnlab.spec.types import (
    ACTIVATIONS,
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
from cnnlab.spec.values import as_bool, as_choice, as_fraction, as_int, as_number, as_pair
from cnnlab.spec.vocabulary import (
    BARE_LAYERS,
    LAYER_OPTIONS,
    LAYER_TYPES,
    NEEDS_VALUE,
    OPTION_ALIASES,
    PADDINGS,
    TYPE_ALIASES,
)


def key_text(key: Any) -> str:
    text = str(key)
    return text if text.isprintable() else show(key)


def normal_key(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def _layer_type(item: Any, at: At) -> tuple[str, dict]:
    """(type key, options) of one layer entry: a bare string or a table with one type key."""
    if isinstance(item, str):
        kind = TYPE_ALIASES.get(normal_key(item))
        if item.lower() in ACTIVATIONS:
            return "activation", {"activation": item}
        if kind in BARE_LAYERS:
            return kind, {kind: True}
        if kind in NEEDS_VALUE:
            raise at.error(
                f"layer {show(item)} needs a value, written as a table: {NEEDS_VALUE[kind]}"
            )
        raise at.error(
            f"unknown layer {show(item)}{did_you_mean(normal_key(item), LAYER_TYPES)}"
            f" (bare strings: {', '.join(BARE_LAYERS)})"
        )
    if not isinstance(item, dict):
        raise at.error(f"a layer must be a table or a string, got {show(item)}")
    return _type_of_table(item, at)


def _type_of_table(item: dict, at: At) -> tuple[str, dict]:
    keys = [key for key in item if isinstance(key, str) and normal_key(key) in TYPE_ALIASES]
    if len(keys) > 1:  # `activation` is then an option of the other type
        keys = [key for key in keys if normal_key(key) != "activation"]
    if len(keys) != 1:
        # A key with a newline or other control character is quoted: the error stays one line.
        named = ", ".join(key_text(key) for key in item) or "none"
        # A misspelt type gets a suggestion; with several valid ones it would only confuse.
        hint = (
            "" if keys else next((did_you_mean(normal_key(str(k)), LAYER_TYPES) for k in item), "")
        )
        rule = "has several type keys" if keys else "needs one type key"
        raise at.error(f"layer {rule} (one of {', '.join(LAYER_TYPES)}), got keys: {named}{hint}")
    kind = TYPE_ALIASES[normal_key(keys[0])]
    options = {kind: item[keys[0]]}
    for key, value in item.items():
        if key != keys[0]:
            options[_option_key(key, kind, options, at)] = value
    return kind, options


def _option_key(key: Any, kind: str, seen: dict, at: At) -> str:
    allowed = LAYER_OPTIONS[kind]
    word = key.lower() if isinstance(key, str) else key
    word = OPTION_ALIASES.get(word, word)
    if word not in allowed:
        listed = ", ".join(allowed) or "none"
        raise at.key(key).error(
            f"unknown option {show(key)} for {kind}{did_you_mean(word, allowed)}"
            f" (options: {listed})"
        )
    if word in seen:
        raise at.key(key).error(f"option {word} given twice")
    return word


def _parse_layer(kind: str, options: dict, at: At) -> Layer:
    value = options[kind]
    if kind == "conv":
        return _parse_conv(value, options, at)
    if kind in ("maxpool", "avgpool"):
        return _parse_pool(kind, value, options, at)
    if kind == "dropout":
        return Dropout(as_fraction(value, at.key("dropout"), "dropout rate"))
    if kind == "batchnorm":
        return _parse_batchnorm(value, options, at)
    if kind in ("flatten", "globalavgpool"):
        if value is not True:
            raise at.error(f'write "{kind}" or {{ {kind} = true }}, got {show(value)}')
        return Flatten() if kind == "flatten" else GlobalAveragePooling2D()
    if kind == "dense":
        return _parse_dense(value, options, at)
    return Activation(as_choice(value, at, "activation", ACTIVATIONS))


def _parse_conv(filters: Any, options: dict, at: At) -> Conv2D:
    if "kernel" not in options:
        raise at.error("conv needs a kernel size, e.g. { conv = 32, kernel = 3 }")
    return Conv2D(
        filters=as_int(filters, at.key("conv"), "filters"),
        kernel_size=as_pair(options["kernel"], at.key("kernel"), "kernel"),
        strides=as_pair(options.get("strides", 1), at.key("strides"), "strides"),
        padding=as_choice(options.get("padding", "valid"), at.key("padding"), "padding", PADDINGS),
        activation=as_choice(
            options.get("activation", "linear"), at.key("activation"), "activation", ACTIVATIONS
        ),
        use_bias=as_bool(options.get("use_bias", True), at.key("use_bias"), "use_bias"),
    )


def _parse_pool(kind: str, size: Any, options: dict, at: At) -> Layer:
    pool_size = (2, 2) if size is True else as_pair(size, at.key(kind), "pool size")
    strides = options.get("strides")
    padding = options.get("padding", "valid")
    cls = MaxPooling2D if kind == "maxpool" else AveragePooling2D
    return cls(
        pool_size=pool_size,
        strides=None if strides is None else as_pair(strides, at.key("strides"), "strides"),
        padding=as_choice(padding, at.key("padding"), "padding", PADDINGS),
    )


def _parse_batchnorm(value: Any, options: dict, at: At) -> BatchNormalization:
    if value is not True:
        raise at.error(
            f'write "batchnorm" or {{ batchnorm = true, momentum = 0.99 }}, got {show(value)}'
            " (false leaves a layer out only in grid templates)"
        )
    epsilon = as_number(options.get("epsilon", 1e-3), at.key("epsilon"), "epsilon")
    if epsilon <= 0:
        raise at.key("epsilon").error(f"epsilon must be > 0, got {show(options['epsilon'])}")
    momentum = as_fraction(options.get("momentum", 0.99), at.key("momentum"), "momentum")
    return BatchNormalization(momentum=momentum, epsilon=epsilon)


def _parse_dense(units: Any, options: dict, at: At) -> Dense:
    if not (isinstance(units, str) and units == CLASSES):
        units = as_int(units, at.key("dense"), 'units (an integer >= 1 or "classes")')
    activation = options.get("activation", "linear")
    return Dense(
        units=units,
        activation=as_choice(activation, at.key("activation"), "activation", ACTIVATIONS),
        use_bias=as_bool(options.get("use_bias", True), at.key("use_bias"), "use_bias"),
    )


def is_dropped(item: Any) -> bool:
    """A grid layer whose type key came out false (e.g. `{ batchnorm = false }`) is left out."""
    if not isinstance(item, dict):
        return False
    types = [k for k in item if isinstance(k, str) and normal_key(k) in TYPE_ALIASES]
    return bool(types) and all(item[k] is False for k in types)


def parse_layers(
    items: Any, at: At, paths: tuple[tuple[str | int, ...], ...] | None = None
) -> tuple[tuple[Layer, ...], tuple[str, ...]]:
    """Every layer, labelled by its position (from 1) and type, and where each was written;
    grid layers keep their origin."""
    if not isinstance(items, (list, tuple)) or not items:
        raise at.key("layers").error(f"layers must be a non-empty list, got {show(items)}")
    layers: list[Layer] = []
    places: list[str] = []
    for index, item in enumerate(items):
        if paths is not None and is_dropped(item):
            continue
        where = paths[index] if paths is not None else ("layers", index)
        place, label = At(at.source, at.path + where, at.label), f"layer {len(layers) + 1}"
        kind, options = _layer_type(item, place.key(label=label))
        layers.append(_parse_layer(kind, options, place.key(label=f"{label} ({kind})")))
        places.append(place.where() if at.source.text is not None else "")
    if not layers:
        raise at.key("layers").error("every layer was left out; a model needs at least one")
    return tuple(layers), tuple(places)
