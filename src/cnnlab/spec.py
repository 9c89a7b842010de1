"""Typed, frozen specs of models and studies: the only form in which code past the edge sees them.

Layer classes carry Keras's class names and Keras's defaults, so a Keras user reads them as-is and
`import-keras` maps one to one. Files (TOML) are parsed into these objects once, in
`load_model` / `load_study`; every error there is a `SpecError` naming file, line, layer and rule,
e.g. `mymodel.toml:7: layer 3 (conv): kernel must be >= 1, got 0`. Layers count from 1.

A model file (the full format is in docs/spec-format.md):

    name = "seed/reference"
    optimizer = "adadelta"            # or { name = "adam", learning_rate = 1e-3 }
    layers = [
      { conv = 32, kernel = 3, activation = "relu" },   # kernel 3 means (3, 3); [3, 5] allowed
      { maxpool = 2 },                                  # pool size; strides/padding optional
      { dropout = 0.25 },
      "flatten",                                        # no-argument layers as bare strings
      { dense = "classes", activation = "softmax" },
    ]
    [reported]                        # optional figures reported elsewhere
    test_accuracy = 0.9949

Type keys: conv, maxpool, avgpool, dropout, batchnorm, flatten, globalavgpool, dense, activation
(Keras class names such as Conv2D or MaxPooling2D are accepted, in any case). Options: kernel
(or kernel_size), strides, padding, activation, use_bias, momentum, epsilon. A study names models
(presets or files), seeds, a dataset and training settings, and may generate models from grids
(`cnnlab.grid`).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import math
import numbers
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import tomli_w

from cnnlab import presets
from cnnlab.errors import SpecError
from cnnlab.grid import GridProblem, Scalar, did_you_mean, expand_grid, show

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

Padding = Literal["valid", "same"]
Pair = tuple[int, int]

ACTIVATIONS = (
    "relu",
    "sigmoid",
    "tanh",
    "elu",
    "selu",
    "leaky_relu",
    "gelu",
    "softmax",
    "linear",
)

# Dense(units=CLASSES) means "as many units as the dataset has classes" (the notebook's
# `num_classes`), so one spec serves MNIST and any other dataset.
CLASSES = "classes"


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: Pair
    strides: Pair = (1, 1)
    padding: Padding = "valid"  # Keras default
    activation: str = "linear"  # Keras default: activation=None
    use_bias: bool = True


@dataclass(frozen=True)
class MaxPooling2D:
    pool_size: Pair = (2, 2)
    strides: Pair | None = None  # Keras: None means strides = pool_size
    padding: Padding = "valid"


@dataclass(frozen=True)
class AveragePooling2D:
    pool_size: Pair = (2, 2)
    strides: Pair | None = None
    padding: Padding = "valid"


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class BatchNormalization:
    momentum: float = 0.99  # Keras default; torch's momentum is 1 - this
    epsilon: float = 1e-3  # Keras default; torch's is 1e-5


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class GlobalAveragePooling2D:
    pass


@dataclass(frozen=True)
class Dense:
    units: int | Literal["classes"]
    activation: str = "linear"
    use_bias: bool = True


@dataclass(frozen=True)
class Activation:
    activation: str


Layer = Union[  # noqa: UP007 (a runtime alias, kept readable on 3.10)
    Conv2D,
    MaxPooling2D,
    AveragePooling2D,
    Dropout,
    BatchNormalization,
    Flatten,
    GlobalAveragePooling2D,
    Dense,
    Activation,
]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer by name plus overrides of its Keras defaults, e.g. ("learning_rate", 0.1)."""

    name: str = "adadelta"
    params: tuple[tuple[str, float | bool], ...] = ()

    def kwargs(self) -> dict[str, float | bool]:
        return dict(self.params)


@dataclass(frozen=True)
class ModelSpec:
    """A Sequential model: an ordered list of layers and the optimizer it is compiled with."""

    name: str
    layers: tuple[Layer, ...]
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    description: str = ""
    # Figures reported elsewhere for this model (e.g. the seed notebook's "Test loss:"), by key.
    reported: tuple[tuple[str, float], ...] = ()
    # The grid axis values this model was generated with, in axis order (for per-factor effects).
    factors: tuple[tuple[str, Scalar], ...] = ()
    # Where each layer was written ("model.toml:7"; "" where unknown), for errors found later
    # (shapes need the dataset). Not part of the model: left out of equality and run keys.
    layer_places: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 12
    batch_size: int = 128
    # A fraction of the training set held out (Keras's validation_split: the last part), or
    # "test" to validate on the test set as the seed notebook did.
    validation: float | Literal["test"] = 0.1
    # "bf16": autocast to bfloat16 (the fast mode on CPUs and GPUs that have it); fp32 otherwise.
    precision: Literal["fp32", "bf16"] = "fp32"


@dataclass(frozen=True)
class StudySpec:
    """Models x seeds on one dataset with one training recipe."""

    name: str
    models: tuple[ModelSpec, ...]
    seeds: tuple[int, ...] = (0,)
    dataset: str = "mnist"
    training: TrainingSpec = field(default_factory=TrainingSpec)
    description: str = ""


# --- Vocabulary of the file format ------------------------------------------------------------

# Layer type keys, by spelling with case, "_" and "-" removed (Keras class names included).
_TYPE_ALIASES = {
    "conv": "conv",
    "conv2d": "conv",
    "convolution2d": "conv",
    "maxpool": "maxpool",
    "maxpool2d": "maxpool",
    "maxpooling": "maxpool",
    "maxpooling2d": "maxpool",
    "avgpool": "avgpool",
    "avgpool2d": "avgpool",
    "averagepooling": "avgpool",
    "averagepooling2d": "avgpool",
    "dropout": "dropout",
    "batchnorm": "batchnorm",
    "batchnormalization": "batchnorm",
    "flatten": "flatten",
    "globalavgpool": "globalavgpool",
    "globalavgpool2d": "globalavgpool",
    "globalaveragepooling": "globalavgpool",
    "globalaveragepooling2d": "globalavgpool",
    "dense": "dense",
    "activation": "activation",
}
LAYER_TYPES = tuple(dict.fromkeys(_TYPE_ALIASES.values()))
_OPTIONS = {
    "conv": ("kernel", "strides", "padding", "activation", "use_bias"),
    "maxpool": ("strides", "padding"),
    "avgpool": ("strides", "padding"),
    "dropout": (),
    "batchnorm": ("momentum", "epsilon"),
    "flatten": (),
    "globalavgpool": (),
    "dense": ("activation", "use_bias"),
    "activation": (),
}
_OPTION_ALIASES = {"kernel_size": "kernel"}
# Layers that may be written as a bare string ("flatten"); pooling then uses Keras's (2, 2).
_BARE = ("flatten", "globalavgpool", "batchnorm", "maxpool", "avgpool")
# The layers a bare string cannot name: what to write instead.
_NEEDS_VALUE = {
    "conv": "{ conv = 32, kernel = 3 } (filters and kernel size)",
    "dense": '{ dense = 128 } or { dense = "classes" } (units)',
    "dropout": "{ dropout = 0.25 } (the rate)",
}
PADDINGS = ("valid", "same")

# Keras optimizer parameter names each optimizer accepts (keras/src/optimizers/*.py); the
# defaults live with the training code (cnnlab.optim), a spec records only overrides.
OPTIMIZERS = {
    "adadelta": ("learning_rate", "rho", "epsilon", "weight_decay"),
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"),
    "adamw": ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay"),
    "sgd": ("learning_rate", "momentum", "nesterov", "weight_decay"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon", "weight_decay"),
}
_PARAM_ORDER = tuple(dict.fromkeys(param for params in OPTIMIZERS.values() for param in params))
_PARAM_ALIASES = {"lr": "learning_rate"}  # Keras 2's spelling

MODEL_KEYS = ("name", "description", "optimizer", "layers", "reported", "factors")
STUDY_KEYS = ("name", "description", "dataset", "seeds", "models", "training", "model", "grid")
TRAINING_KEYS = ("epochs", "batch_size", "validation", "precision")
PRECISIONS = ("fp32", "bf16")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


# --- Where an error is: file, line, label -----------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A spec's origin: the name errors show and, for files, the TOML text to find lines in."""

    name: str
    text: str | None = None

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """Line of the deepest part of `path` found in the text (None for dicts)."""
        if self.text is None:
            return None
        positions = toml_positions(self.text)
        while path:
            if path in positions:
                return positions[path]
            path = path[:-1]
        return None


@dataclass(frozen=True)
class _At:
    """A place in a spec: the key path (for the line) and a label such as 'layer 3 (conv)'."""

    source: _Source
    path: tuple[str | int, ...] = ()
    label: str = ""

    def key(self, *keys: str | int, label: str = "") -> _At:
        joined = ": ".join(part for part in (self.label, label) if part)
        return _At(self.source, self.path + keys, joined)

    def error(self, rule: str) -> SpecError:
        return SpecError(": ".join(part for part in (self.where(), self.label, rule) if part))

    def where(self) -> str:
        """ "file:line" of this place, or the source's name where the line is unknown."""
        line = self.source.line_of(self.path)
        return self.source.name if line is None else f"{self.source.name}:{line}"


# --- Checking values --------------------------------------------------------------------------


def _int(value: Any, at: _At, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy ints too
        raise at.error(f"{what} must be an integer, got {show(value)}")
    if value < minimum:
        raise at.error(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _number(value: Any, at: _At, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise at.error(f"{what} must be a number, got {show(value)}")
    if not math.isfinite(value):
        raise at.error(f"{what} must be finite, got {value}")
    return float(value)


def _fraction(value: Any, at: _At, what: str, *, one: bool = False) -> float:
    """A number in [0, 1) (or [0, 1] when `one`)."""
    number = _number(value, at, what)
    if not (0 <= number <= 1 if one else 0 <= number < 1):
        raise at.error(f"{what} must be in [0, 1{']' if one else ')'}, got {show(value)}")
    return number


def _bool(value: Any, at: _At, what: str) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"{what} must be true or false, got {show(value)}")
    return value


def _text(value: Any, at: _At, what: str) -> str:
    if not isinstance(value, str):
        raise at.error(f"{what} must be a string, got {show(value)}")
    return value


def _choice(value: Any, at: _At, what: str, choices: tuple[str, ...]) -> str:
    word = _text(value, at, what).lower()
    if word not in choices:
        raise at.error(
            f"{what} must be one of {', '.join(choices)}, got {show(value)}"
            + did_you_mean(word, choices)
        )
    return word


def _pair(value: Any, at: _At, what: str) -> Pair:
    """3 means (3, 3); [3, 5] means (3, 5); every size >= 1."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (_int(value[0], at, what), _int(value[1], at, what))
    if isinstance(value, (list, tuple)):
        raise at.error(f"{what} must be an integer or a list of two, got {show(value)}")
    size = _int(value, at, what)
    return (size, size)


def _name(value: Any, at: _At) -> str:
    name = _text(value, at, "name")
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise at.error(f"name must be 1 to 200 printable characters, got {show(value)}")
    return name


def _table(value: Any, at: _At, what: str) -> dict:
    if not isinstance(value, dict):
        raise at.error(f"{what} must be a table, got {show(value)}")
    return value


def _check_keys(table: dict, allowed: tuple[str, ...], at: _At, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise at.key(key).error(
                f"unknown {what} key {show(key)}{did_you_mean(key, allowed)}"
                f" (allowed: {', '.join(allowed)})"
            )


# --- Layers -----------------------------------------------------------------------------------


def _key_text(key: Any) -> str:
    text = str(key)
    return text if text.isprintable() else show(key)


def _normal(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "")


def _layer_type(item: Any, at: _At) -> tuple[str, dict]:
    """(type key, options) of one layer entry: a bare string or a table with one type key."""
    if isinstance(item, str):
        kind = _TYPE_ALIASES.get(_normal(item))
        if item.lower() in ACTIVATIONS:
            return "activation", {"activation": item}
        if kind in _BARE:
            return kind, {kind: True}
        if kind in _NEEDS_VALUE:
            raise at.error(
                f"layer {show(item)} needs a value, written as a table: {_NEEDS_VALUE[kind]}"
            )
        raise at.error(
            f"unknown layer {show(item)}{did_you_mean(_normal(item), LAYER_TYPES)}"
            f" (bare strings: {', '.join(_BARE)})"
        )
    if not isinstance(item, dict):
        raise at.error(f"a layer must be a table or a string, got {show(item)}")
    return _type_of_table(item, at)


def _type_of_table(item: dict, at: _At) -> tuple[str, dict]:
    keys = [key for key in item if isinstance(key, str) and _normal(key) in _TYPE_ALIASES]
    if len(keys) > 1:  # `activation` is then an option of the other type
        keys = [key for key in keys if _normal(key) != "activation"]
    if len(keys) != 1:
        # A key with a newline or other control character is quoted: the error stays one line.
        named = ", ".join(_key_text(key) for key in item) or "none"
        # A misspelt type gets a suggestion; with several valid ones it would only confuse.
        hint = "" if keys else next((did_you_mean(_normal(str(k)), LAYER_TYPES) for k in item), "")
        rule = "has several type keys" if keys else "needs one type key"
        raise at.error(f"layer {rule} (one of {', '.join(LAYER_TYPES)}), got keys: {named}{hint}")
    kind = _TYPE_ALIASES[_normal(keys[0])]
    options = {kind: item[keys[0]]}
    for key, value in item.items():
        if key != keys[0]:
            options[_option_key(key, kind, options, at)] = value
    return kind, options


def _option_key(key: Any, kind: str, seen: dict, at: _At) -> str:
    allowed = _OPTIONS[kind]
    word = key.lower() if isinstance(key, str) else key
    word = _OPTION_ALIASES.get(word, word)
    if word not in allowed:
        listed = ", ".join(allowed) or "none"
        raise at.key(key).error(
            f"unknown option {show(key)} for {kind}{did_you_mean(word, allowed)}"
            f" (options: {listed})"
        )
    if word in seen:
        raise at.key(key).error(f"option {word} given twice")
    return word


def _parse_layer(kind: str, options: dict, at: _At) -> Layer:
    value = options[kind]
    if kind == "conv":
        return _parse_conv(value, options, at)
    if kind in ("maxpool", "avgpool"):
        return _parse_pool(kind, value, options, at)
    if kind == "dropout":
        return Dropout(_fraction(value, at.key("dropout"), "dropout rate"))
    if kind == "batchnorm":
        return _parse_batchnorm(value, options, at)
    if kind in ("flatten", "globalavgpool"):
        if value is not True:
            raise at.error(f'write "{kind}" or {{ {kind} = true }}, got {show(value)}')
        return Flatten() if kind == "flatten" else GlobalAveragePooling2D()
    if kind == "dense":
        return _parse_dense(value, options, at)
    return Activation(_choice(value, at, "activation", ACTIVATIONS))


def _parse_conv(filters: Any, options: dict, at: _At) -> Conv2D:
    if "kernel" not in options:
        raise at.error("conv needs a kernel size, e.g. { conv = 32, kernel = 3 }")
    return Conv2D(
        filters=_int(filters, at.key("conv"), "filters"),
        kernel_size=_pair(options["kernel"], at.key("kernel"), "kernel"),
        strides=_pair(options.get("strides", 1), at.key("strides"), "strides"),
        padding=_choice(options.get("padding", "valid"), at.key("padding"), "padding", PADDINGS),
        activation=_choice(
            options.get("activation", "linear"), at.key("activation"), "activation", ACTIVATIONS
        ),
        use_bias=_bool(options.get("use_bias", True), at.key("use_bias"), "use_bias"),
    )


def _parse_pool(kind: str, size: Any, options: dict, at: _At) -> Layer:
    pool_size = (2, 2) if size is True else _pair(size, at.key(kind), "pool size")
    strides = options.get("strides")
    padding = options.get("padding", "valid")
    cls = MaxPooling2D if kind == "maxpool" else AveragePooling2D
    return cls(
        pool_size=pool_size,
        strides=None if strides is None else _pair(strides, at.key("strides"), "strides"),
        padding=_choice(padding, at.key("padding"), "padding", PADDINGS),
    )


def _parse_batchnorm(value: Any, options: dict, at: _At) -> BatchNormalization:
    if value is not True:
        raise at.error(
            f'write "batchnorm" or {{ batchnorm = true, momentum = 0.99 }}, got {show(value)}'
            " (false leaves a layer out only in grid templates)"
        )
    epsilon = _number(options.get("epsilon", 1e-3), at.key("epsilon"), "epsilon")
    if epsilon <= 0:
        raise at.key("epsilon").error(f"epsilon must be > 0, got {show(options['epsilon'])}")
    momentum = _fraction(options.get("momentum", 0.99), at.key("momentum"), "momentum")
    return BatchNormalization(momentum=momentum, epsilon=epsilon)


def _parse_dense(units: Any, options: dict, at: _At) -> Dense:
    if not (isinstance(units, str) and units == CLASSES):
        units = _int(units, at.key("dense"), 'units (an integer >= 1 or "classes")')
    activation = options.get("activation", "linear")
    return Dense(
        units=units,
        activation=_choice(activation, at.key("activation"), "activation", ACTIVATIONS),
        use_bias=_bool(options.get("use_bias", True), at.key("use_bias"), "use_bias"),
    )


def _is_dropped(item: Any) -> bool:
    """A grid layer whose type key came out false (e.g. `{ batchnorm = false }`) is left out."""
    if not isinstance(item, dict):
        return False
    types = [k for k in item if isinstance(k, str) and _normal(k) in _TYPE_ALIASES]
    return bool(types) and all(item[k] is False for k in types)


def _parse_layers(
    items: Any, at: _At, paths: tuple[tuple[str | int, ...], ...] | None = None
) -> tuple[tuple[Layer, ...], tuple[str, ...]]:
    """Every layer, labelled by its position (from 1) and type, and where each was written;
    grid layers keep their origin."""
    if not isinstance(items, (list, tuple)) or not items:
        raise at.key("layers").error(f"layers must be a non-empty list, got {show(items)}")
    layers: list[Layer] = []
    places: list[str] = []
    for index, item in enumerate(items):
        if paths is not None and _is_dropped(item):
            continue
        where = paths[index] if paths is not None else ("layers", index)
        place, label = _At(at.source, at.path + where, at.label), f"layer {len(layers) + 1}"
        kind, options = _layer_type(item, place.key(label=label))
        layers.append(_parse_layer(kind, options, place.key(label=f"{label} ({kind})")))
        places.append(place.where() if at.source.text is not None else "")
    if not layers:
        raise at.key("layers").error("every layer was left out; a model needs at least one")
    return tuple(layers), tuple(places)


# --- Optimizer, model -------------------------------------------------------------------------


def _parse_optimizer(value: Any, at: _At) -> OptimizerSpec:
    """ "adam" or { name = "adam", learning_rate = 1e-3 }: a known name and its own params."""
    if isinstance(value, str):
        return OptimizerSpec(_choice(value, at, "optimizer", tuple(OPTIMIZERS)))
    table = _table(value, at, 'optimizer (a name such as "adam", or a table with name = ...)')
    if "name" not in table:
        raise at.error('an optimizer table needs name = ..., e.g. { name = "adam" }')
    name = _choice(table["name"], at.key("name"), "optimizer", tuple(OPTIMIZERS))
    params = {}
    for key, raw in table.items():
        if key == "name":
            continue
        param = _PARAM_ALIASES.get(key, key)
        if param not in OPTIMIZERS[name] or param in params:
            allowed = OPTIMIZERS[name]
            raise at.key(key).error(
                f"{name} takes no parameter {show(key)}{did_you_mean(param, allowed)}"
                f" (parameters: {', '.join(allowed)})"
            )
        params[param] = _optimizer_param(param, raw, at.key(key))
    ordered = tuple((key, params[key]) for key in _PARAM_ORDER if key in params)
    return OptimizerSpec(name, ordered)


def _optimizer_param(param: str, value: Any, at: _At) -> float | bool:
    """Keras's own ranges (keras/src/optimizers/*.py argument docs), as training checks them
    (cnnlab.optim): a rate of 0 or a decay of 1 would never train."""
    if param == "nesterov":
        return _bool(value, at, param)
    if param in ("rho", "momentum", "beta_1", "beta_2"):
        return _fraction(value, at, param)
    number = _number(value, at, param)
    positive = param in ("learning_rate", "epsilon")
    if number < 0 or (positive and number == 0):
        raise at.error(f"{param} must be {'> 0' if positive else '>= 0'}, got {value}")
    return number


def _parse_figures(value: Any, at: _At, what: str, *, numbers_only: bool) -> tuple:
    """[reported] (numbers) or [factors] (any scalar) as (key, value) pairs in file order."""
    table = _table(value, at, what)
    pairs = []
    for key, item in table.items():
        if not isinstance(key, str) or not key:
            raise at.error(f"{what} keys must be non-empty strings, got {show(key)}")
        if not numbers_only and isinstance(item, (str, bool, int)):
            pairs.append((key, item))
        else:
            pairs.append((key, _number(item, at.key(key), f"{what}.{key}")))
    return tuple(pairs)


def _parse_model(
    data: Any,
    at: _At,
    *,
    default_name: str,
    layer_paths: tuple[tuple[str | int, ...], ...] | None = None,
) -> ModelSpec:
    table = _table(data, at, "a model")
    _check_keys(table, MODEL_KEYS, at, "model")
    if "layers" not in table:
        raise at.error("a model needs layers = [ ... ]")
    optimizer = table.get("optimizer")
    layers, places = _parse_layers(table["layers"], at, layer_paths)
    return ModelSpec(
        name=_name(table.get("name", default_name), at.key("name")),
        description=_text(table.get("description", ""), at.key("description"), "description"),
        optimizer=OptimizerSpec()
        if optimizer is None
        else _parse_optimizer(optimizer, at.key("optimizer")),
        layers=layers,
        layer_places=places,
        reported=_parse_figures(
            table.get("reported", {}), at.key("reported"), "reported", numbers_only=True
        ),
        factors=_parse_figures(
            table.get("factors", {}), at.key("factors"), "factors", numbers_only=False
        ),
    )


def model_from_dict(d: dict, *, source: str = "<dict>") -> ModelSpec:
    """A ModelSpec from a dict shaped like a model file (what tomllib returns for one).

    `source` names the origin in error messages; a dict has no lines, so errors give the
    layer index: `<dict>: layer 3 (conv): kernel must be >= 1, got 0`.
    """
    return _parse_model(d, _At(_Source(source)), default_name=_default_name(source))


def model_from_toml(text: str, *, source: str = "<string>") -> ModelSpec:
    """A ModelSpec from the text of a model file; errors name `source` and the line."""
    data = parse_toml(text, source)
    return _parse_model(data, _At(_Source(source, text)), default_name=_default_name(source))


def _default_name(source: str) -> str:
    stem = Path(source).stem if source.endswith(".toml") else ""
    return stem or "model"


# --- Reading files and presets ----------------------------------------------------------------


def parse_toml(text: str, name: str) -> dict:
    """tomllib.loads with every failure as a SpecError at the line tomllib reports."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(_toml_error_message(error, text, name)) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise SpecError(f"{name}: invalid TOML: {str(error) or type(error).__name__}") from None


def _toml_error_message(error: tomllib.TOMLDecodeError, text: str, name: str) -> str:
    message = str(error)
    line, column = None, None
    found = _TOML_POSITION.search(message)
    if found:
        message = message[: found.start()].rstrip()
        line, column = int(found.group(1)), int(found.group(2))
    elif message.endswith("(at end of document)"):
        message = message.removesuffix("(at end of document)").rstrip()
        line = text.count("\n") + 1
    where = f"{name}:{line}" if line else name
    after = f" (column {column})" if column else ""
    return f"{where}: invalid TOML: {message}{after}"


def _read_file(path: Path) -> tuple[dict, _Source]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) too
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise SpecError(
            f"{path}: cannot read: {getattr(error, 'strerror', None) or error}"
        ) from None
    return parse_toml(text, str(path)), _Source(str(path), text)


def _read_ref(ref: str | Path, kind: str) -> tuple[dict, _Source, str]:
    """A preset name or a file path -> (TOML data, source, default name)."""
    text = str(ref)
    if text.endswith(".py"):
        raise SpecError(
            f"{text}: a Python file; cnnlab reads {kind}s written in TOML. For Keras code: "
            f"`cnnlab import-keras {text} -o model.toml`"
        )
    if isinstance(ref, Path) or text.endswith(".toml"):
        data, source = _read_file(Path(ref))
        return data, source, Path(ref).stem
    found = presets.preset_text(text, kind=kind)
    if found is not None:
        preset_text, shown = found
        return parse_toml(preset_text, shown), _Source(shown, preset_text), text
    if Path(text).is_file():
        data, source = _read_file(Path(text))
        return data, source, Path(text).stem
    names = presets.list_presets(kind=kind)
    if kind == "study" and presets.preset_text(text, kind="model") is not None:
        raise SpecError(
            f"{text!r} is a model, not a study: train it alone with `cnnlab train {text}`, or "
            f"name it in a study file's models = [...]; study presets: {', '.join(names)}"
        )
    where = (
        "`cnnlab models` lists the model presets"
        if kind == "model"
        else (f"study presets: {', '.join(names)}")
    )
    raise SpecError(
        f"unknown {kind} {text!r}: neither a preset nor a .toml file"
        f"{did_you_mean(text, names)} ({where})"
    )


def load_model(ref: str | Path) -> ModelSpec:
    """A model from a preset name (`seed/model-3`) or a .toml file, validated."""
    data, source, default_name = _read_ref(ref, "model")
    if isinstance(data, dict) and "layers" not in data and {"models", "model", "grid"} & set(data):
        raise SpecError(
            f"{source.name}: a study file (it has models), not a model: run it with "
            f"`cnnlab run {source.name}`"
        )
    return _parse_model(data, _At(source), default_name=default_name)


# --- Studies ----------------------------------------------------------------------------------


def load_study(ref: str | Path) -> StudySpec:
    """A study from a preset name (`seed`) or a .toml file, with every model resolved."""
    data, source, default_name = _read_ref(ref, "study")
    if isinstance(data, dict) and "layers" in data and not {"models", "model", "grid"} & set(data):
        raise SpecError(
            f"{source.name}: a model file (it has layers), not a study: train it alone with "
            f"`cnnlab train {source.name}`, or name it in a study's models = [...]"
        )
    # Model files named in a study are found beside it; a preset study names presets only.
    base = None if presets.is_preset_source(source.name) else Path(source.name).parent
    return _parse_study(data, _At(source), default_name, base)


def study_from_dict(d: dict, *, source: str = "<dict>", base_dir: Path | None = None) -> StudySpec:
    """A StudySpec from a dict shaped like a study file; model files are found in base_dir
    (the current directory when None)."""
    base = Path.cwd() if base_dir is None else Path(base_dir)
    return _parse_study(d, _At(_Source(source)), _default_name(source), base)


def _parse_study(data: Any, at: _At, default_name: str, base: Path | None) -> StudySpec:
    table = _table(data, at, "a study")
    _check_keys(table, STUDY_KEYS, at, "study")
    models = _study_models(table, at, base)
    if not models:
        raise at.error("a study needs models = [...], [[model]] or [[grid]] tables")
    return StudySpec(
        name=_name(table.get("name", default_name), at.key("name")),
        description=_text(table.get("description", ""), at.key("description"), "description"),
        models=models,
        seeds=_parse_seeds(table.get("seeds", 1), at.key("seeds")),
        dataset=_dataset(table.get("dataset", "mnist"), at.key("dataset")),
        training=_parse_training(table.get("training", {}), at.key("training")),
    )


def _study_models(table: dict, at: _At, base: Path | None) -> tuple[ModelSpec, ...]:
    """models = [refs], then [[model]] tables, then [[grid]] variants; names must be unique."""
    refs = table.get("models", [])
    if not isinstance(refs, list):
        raise at.key("models").error(f"models must be a list of names or files, got {show(refs)}")
    models = [_model_ref(ref, at.key("models", index), base) for index, ref in enumerate(refs)]
    inline = _array_of_tables(table.get("model", []), at.key("model"), "[[model]]")
    for index, item in enumerate(inline):
        label = f"model {item.get('name')!r}" if isinstance(item.get("name"), str) else ""
        place = at.key("model", index, label=label or f"[[model]] {index + 1}")
        models.append(_parse_model(item, place, default_name=f"model-{index + 1}"))
    for index, grid in enumerate(_array_of_tables(table.get("grid", []), at.key("grid"), "grid")):
        models.extend(_grid_models(grid, at.key("grid", index, label=f"grid {index + 1}")))
    _check_unique_names(models, at)
    return tuple(models)


def _array_of_tables(value: Any, at: _At, what: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise at.error(f"{what} must be tables ([[{at.path[-1]}]] headers), got {show(value)}")
    return value


def _model_ref(ref: Any, at: _At, base: Path | None) -> ModelSpec:
    text = _text(ref, at, "a models entry (a preset name or a .toml path)")
    if text.endswith(".toml"):
        if base is None:
            raise at.error(f"a preset study can only name presets, got {text!r}")
        path = Path(text) if Path(text).is_absolute() else base / text
        if not path.is_file():
            raise at.error(f"model file {text!r} not found (looked in {path})")
        return load_model(path)
    if presets.preset_text(text, kind="model") is None:
        names = presets.list_presets(kind="model")
        raise at.error(
            f"unknown model preset {text!r}{did_you_mean(text, names)}"
            " (files need a .toml ending; `cnnlab models` lists presets)"
        )
    return load_model(text)


def _grid_models(grid: dict, at: _At) -> list[ModelSpec]:
    try:
        variants = expand_grid(grid)
    except GridProblem as problem:
        raise at.key(*problem.path).error(problem.rule) from None
    models = []
    for variant in variants:
        place = at.key(label=f"model {variant.name!r}" if isinstance(variant.name, str) else "")
        try:
            models.append(
                _parse_model(
                    variant.model, place, default_name="grid", layer_paths=variant.layer_paths
                )
            )
        except GridProblem as problem:  # pragma: no cover - variants are plain dicts by now
            raise place.key(*problem.path).error(problem.rule) from None
    return models


def _check_unique_names(models: list[ModelSpec], at: _At) -> None:
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise at.error(
                f"two models are named {model.name!r}; names must be unique within a study"
            )
        seen.add(model.name)


def _parse_seeds(value: Any, at: _At) -> tuple[int, ...]:
    """seeds = 3 means (0, 1, 2); a list is taken as written (distinct, >= 0)."""
    if isinstance(value, list):
        if not value:
            raise at.error("seeds must not be an empty list")
        seeds = tuple(_int(seed, at, "each seed", minimum=0) for seed in value)
        if len(set(seeds)) != len(seeds):
            raise at.error(f"seeds must be distinct, got {show(value)}")
        return seeds
    count = _int(value, at, "seeds (a count or a list of seeds)")
    if count > 10_000:
        raise at.error(f"seeds must be at most 10000, got {count}")
    return tuple(range(count))


def parse_seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    """Seeds given in code or on the command line: a count N means seeds 0..N-1 (as a study
    file's `seeds = N`); a sequence (NumPy arrays too) is taken as is, distinct and >= 0."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        if seeds < 1:
            raise SpecError(f"seeds must be at least 1, got {seeds}")
        return tuple(range(int(seeds)))
    chosen = list(seeds)
    if not chosen:
        raise SpecError("seeds must name at least one seed, got none")
    for seed in chosen:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise SpecError(f"seeds must be whole numbers >= 0, got {seed!r}")
    if len(set(chosen)) != len(chosen):
        raise SpecError(f"seeds must differ from each other, got {[int(s) for s in chosen]}")
    return tuple(int(seed) for seed in chosen)


def _dataset(value: Any, at: _At) -> str:
    name = _text(value, at, "dataset")
    if not name.strip():
        raise at.error('dataset must name a dataset such as "mnist"')
    return name


def _parse_training(value: Any, at: _At) -> TrainingSpec:
    table = _table(value, at, "training")
    _check_keys(table, TRAINING_KEYS, at, "training")
    validation = table.get("validation", 0.1)
    if validation != "test":
        if isinstance(validation, str):
            raise at.key("validation").error(
                f'validation must be a fraction in [0, 1) or "test", got {show(validation)}'
            )
        validation = _fraction(validation, at.key("validation"), "validation")
    return TrainingSpec(
        epochs=_int(table.get("epochs", 12), at.key("epochs"), "epochs"),
        batch_size=_int(table.get("batch_size", 128), at.key("batch_size"), "batch_size"),
        validation=validation,
        precision=_choice(
            table.get("precision", "fp32"), at.key("precision"), "precision", PRECISIONS
        ),
    )


# --- Writing specs ----------------------------------------------------------------------------


def model_to_toml(spec: ModelSpec) -> str:
    """The compact form, one layer per line; loading it gives back an equal spec."""
    return "\n".join(_model_lines(spec, "")) + "\n"


def study_to_toml(study: StudySpec) -> str:
    """A study with every model written out inline ([[model]]), so it stands alone."""
    lines = [f"name = {_scalar(study.name)}"]
    if study.description:
        lines.append(f"description = {_scalar(study.description)}")
    lines.append(f"dataset = {_scalar(study.dataset)}")
    lines.append(f"seeds = {_array(list(study.seeds))}")
    lines += ["", "[training]"]
    lines.append(f"epochs = {study.training.epochs}")
    lines.append(f"batch_size = {study.training.batch_size}")
    lines.append(f"validation = {_scalar(study.training.validation)}")
    if study.training.precision != "fp32":
        lines.append(f"precision = {_scalar(study.training.precision)}")
    for model in study.models:
        lines += ["", "[[model]]", *_model_lines(model, "model.")]
    return "\n".join(lines) + "\n"


def _model_lines(spec: ModelSpec, table_prefix: str) -> list[str]:
    lines = [f"name = {_scalar(spec.name)}"]
    if spec.description:
        lines.append(f"description = {_scalar(spec.description)}")
    lines.append(f"optimizer = {_optimizer_toml(spec.optimizer)}")
    lines.append("layers = [")
    lines += [f"  {layer_to_toml(layer)}," for layer in spec.layers]
    lines.append("]")
    for title, pairs in (("reported", spec.reported), ("factors", spec.factors)):
        if pairs:
            lines += ["", f"[{table_prefix}{title}]"]
            lines += [f"{_key(key)} = {_scalar(value)}" for key, value in pairs]
    return lines


def _optimizer_toml(optimizer: OptimizerSpec) -> str:
    if not optimizer.params:
        return _scalar(optimizer.name)
    return _inline([("name", optimizer.name), *optimizer.params])


def layer_to_toml(layer: Layer) -> str:
    """One layer in the compact form: `{ conv = 32, kernel = 3, activation = "relu" }`."""
    if isinstance(layer, (Flatten, GlobalAveragePooling2D)):
        return '"flatten"' if isinstance(layer, Flatten) else '"globalavgpool"'
    if isinstance(layer, BatchNormalization) and layer == BatchNormalization():
        return '"batchnorm"'
    return _inline(_layer_fields(layer))


def _layer_fields(layer: Layer) -> list[tuple[str, Any]]:
    """The layer's type key first, then only the options that differ from Keras's defaults."""
    if isinstance(layer, Conv2D):
        fields = [("conv", layer.filters), ("kernel", _short_pair(layer.kernel_size))]
        if layer.activation != "linear":
            fields.append(("activation", layer.activation))
        if layer.padding != "valid":
            fields.append(("padding", layer.padding))
        if layer.strides != (1, 1):
            fields.append(("strides", _short_pair(layer.strides)))
        return fields + ([("use_bias", False)] if not layer.use_bias else [])
    if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        kind = "maxpool" if isinstance(layer, MaxPooling2D) else "avgpool"
        fields = [(kind, _short_pair(layer.pool_size))]
        if layer.strides is not None:
            fields.append(("strides", _short_pair(layer.strides)))
        return fields + ([("padding", layer.padding)] if layer.padding != "valid" else [])
    if isinstance(layer, Dropout):
        return [("dropout", layer.rate)]
    if isinstance(layer, BatchNormalization):
        return [("batchnorm", True), ("momentum", layer.momentum), ("epsilon", layer.epsilon)]
    if isinstance(layer, Dense):
        fields = [("dense", layer.units)]
        fields += [("activation", layer.activation)] if layer.activation != "linear" else []
        return fields + ([("use_bias", False)] if not layer.use_bias else [])
    return [("activation", layer.activation)]


def _short_pair(pair: Pair) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else list(pair)


def _inline(fields: list[tuple[str, Any]]) -> str:
    body = ", ".join(f"{_key(key)} = {_scalar(value)}" for key, value in fields)
    return "{ " + body + " }"


def _array(values: list[Any]) -> str:
    return "[" + ", ".join(_scalar(value) for value in values) + "]"


def _scalar(value: Any) -> str:
    """A TOML value as tomli-w writes it (strings escaped, floats exact)."""
    if isinstance(value, list):
        return _array(value)
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else _scalar(key)


# --- Summaries for listings -------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOverview:
    """What a listing of models shows: enough to tell the seed's models apart at a glance."""

    name: str
    layers: int
    conv_layers: int
    kernel_sizes: tuple[Pair, ...]  # distinct, in order of appearance
    optimizer: str
    optimizer_params: tuple[tuple[str, float | bool], ...]
    description: str


def describe_model(spec: ModelSpec) -> ModelOverview:
    """The overview of one model (layer counts, kernel sizes, optimizer)."""
    convs = [layer for layer in spec.layers if isinstance(layer, Conv2D)]
    return ModelOverview(
        name=spec.name,
        layers=len(spec.layers),
        conv_layers=len(convs),
        kernel_sizes=tuple(dict.fromkeys(layer.kernel_size for layer in convs)),
        optimizer=spec.optimizer.name,
        optimizer_params=spec.optimizer.params,
        description=spec.description,
    )


# --- Lines of keys in TOML text ---------------------------------------------------------------


@functools.lru_cache(maxsize=16)  # every layer of a file asks for its line: scan it once
def toml_positions(text: str) -> dict[tuple[str | int, ...], int]:
    """The line (from 1) of every key and array element of valid TOML text, by key path.

    tomllib gives values without positions; errors found after parsing still name a line.
    Best effort: on text it cannot follow it returns what it found so far.
    """
    scanner = _Scanner(text)
    with contextlib.suppress(IndexError, ValueError, RecursionError):
        scanner.document()
    return scanner.positions


class _Scanner:
    """A small reader of TOML structure (tables, keys, arrays, inline tables), not values."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0
        self.positions: dict[tuple[str | int, ...], int] = {}
        self.newlines = [index for index, char in enumerate(text) if char == "\n"]
        self.counters: dict[tuple[str | int, ...], int] = {}

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1

    def document(self) -> None:
        prefix: tuple[str | int, ...] = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.text):
                return
            start = self.i
            if self.text.startswith("[[", self.i):
                self.i += 2
                key = self.key()
                base = self.resolve(key[:-1]) + key[-1:]
                self.counters[base] = self.counters.get(base, -1) + 1
                prefix = (*base, self.counters[base])
                self.i = self.text.index("]]", self.i) + 2
            elif self.text[self.i] == "[":
                self.i += 1
                prefix = self.resolve(self.key())
                self.i = self.text.index("]", self.i) + 1
            else:
                self.key_value(prefix)
                self.advanced(start)
                continue
            self.positions[prefix] = self.line(start)

    def resolve(self, key: tuple[str, ...]) -> tuple[str | int, ...]:
        """[model.reported] after the 2nd [[model]] is ("model", 1, "reported")."""
        out: tuple[str | int, ...] = ()
        for part in key:
            out = (*out, part)
            if out in self.counters:
                out = (*out, self.counters[out])
        return out

    def key_value(self, prefix: tuple[str | int, ...]) -> None:
        start = self.i
        path = prefix + self.key()
        self.positions[path] = self.line(start)
        self.skip(newlines=False)
        self.i += 1  # "="
        self.skip(newlines=False)
        self.value(path)

    def key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self.skip(newlines=False)
            char = self.text[self.i]
            if char in "\"'":
                end = self.text.index(char, self.i + 1)
                parts.append(self.text[self.i + 1 : end])
                self.i = end + 1
            else:
                start = self.i
                while self.text[self.i].isalnum() or self.text[self.i] in "_-":
                    self.i += 1
                parts.append(self.text[start : self.i])
            self.skip(newlines=False)
            if self.text[self.i] != ".":
                return tuple(parts)
            self.i += 1

    def value(self, path: tuple[str | int, ...]) -> None:
        char = self.text[self.i]
        if char == "[":
            self.container(path, "]", array=True)
        elif char == "{":
            self.container(path, "}", array=False)
        elif self.text.startswith(('"""', "'''"), self.i):
            self.multiline_string(self.text[self.i])
        elif char in "\"'":
            self.string(char)
        else:
            while self.i < len(self.text) and self.text[self.i] not in ",]}\n#":
                self.i += 1

    def container(self, path: tuple[str | int, ...], close: str, *, array: bool) -> None:
        self.i += 1
        index = 0
        while True:
            self.skip(newlines=True)
            start = self.i
            if self.text[self.i] == close:
                self.i += 1
                return
            if array:
                self.positions[(*path, index)] = self.line(self.i)
                self.value((*path, index))
                index += 1
            else:
                self.key_value(path)
            self.skip(newlines=True)
            if self.text[self.i] == ",":
                self.i += 1
            self.advanced(start)

    def advanced(self, start: int) -> None:
        """Stop (as on text it cannot follow) rather than loop without moving."""
        if self.i <= start:
            raise ValueError("the scanner did not advance")

    def string(self, quote: str) -> None:
        self.i += 1
        while self.text[self.i] != quote:
            self.i += 2 if quote == '"' and self.text[self.i] == "\\" else 1
        self.i += 1

    def multiline_string(self, quote: str) -> None:
        self.i += 3
        while not self.text.startswith(quote * 3, self.i):
            self.i += 2 if quote == '"' and self.text[self.i] == "\\" else 1
        self.i += 3
        while self.i < len(self.text) and self.text[self.i] == quote:
            self.i += 1

    def skip(self, *, newlines: bool) -> None:
        while self.i < len(self.text):
            char = self.text[self.i]
            if char in " \t\r" or (newlines and char == "\n"):
                self.i += 1
            elif char == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            else:
                return
