"""Parsing the `layers = [...]` list of a model file into layer specs, by the layer table."""

from __future__ import annotations

from typing import Any

from cnnlab.grid import did_you_mean, show
from cnnlab.spec.kinds import BARE_LAYERS, BY_KEY, LAYER_TYPES, TYPE_ALIASES
from cnnlab.spec.places import At
from cnnlab.spec.types import ACTIVATION_ALIASES, ACTIVATIONS, Layer
from cnnlab.spec.vocabulary import OPTION_ALIASES


def key_text(key: Any) -> str:
    text = str(key)
    return text if text.isprintable() else show(key)


def normal_key(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def _layer_type(item: Any, at: At) -> tuple[str, dict]:
    """(type key, options) of one layer entry: a bare string or a table with one type key."""
    if isinstance(item, str):
        kind = TYPE_ALIASES.get(normal_key(item))
        if item.lower() in ACTIVATIONS or item.lower() in ACTIVATION_ALIASES:
            return "activation", {"activation": item}
        if kind in BARE_LAYERS:
            return kind, {kind: True}
        if kind is not None:
            raise at.error(
                f"layer {show(item)} needs a value, written as a table: {BY_KEY[kind].needs_value}"
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
    allowed = BY_KEY[kind].options
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
    return BY_KEY[kind].parse(options[kind], options, at)


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


def parse_block(items: Any, at: At) -> tuple[Layer, ...]:
    """The layers of a block (a residual block's list), labelled inside the block's label.

    A layer whose type key is false is left out, as in a grid template, since blocks are where
    grids switch layers on and off.
    """
    if not isinstance(items, (list, tuple)) or not items:
        raise at.error(f"a block's layers must be a non-empty list, got {show(items)}")
    layers: list[Layer] = []
    for index, item in enumerate(items):
        if is_dropped(item):
            continue
        place, label = at.key(index), f"layer {len(layers) + 1}"
        kind, options = _layer_type(item, place.key(label=label))
        layers.append(_parse_layer(kind, options, place.key(label=f"{label} ({kind})")))
    if not layers:
        raise at.error("every layer of the block was left out; a block needs at least one")
    return tuple(layers)
