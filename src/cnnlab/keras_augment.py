"""Keras's random image layers at a model's input, as the study's `[training] augment` list.

Keras tutorials put `RandomFlip`, `RandomRotation`, ... first in the model (often as a nested
`data_augmentation = keras.Sequential([...])`); they are the identity at inference. cnnlab
applies augmentation from `[training] augment` (`cnnlab.augment`), not inside the model, so both
Keras importers leave these layers out of the model spec and say, in a note, which `augment`
line and `--augment` flags give the same training. The arguments go through the augment keys'
own rules (`cnnlab.spec.recipes`); what those cannot express is refused, naming the layer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cnnlab.errors import SpecError
from cnnlab.spec.recipes import AUGMENTATIONS, FieldError, KerasObject, resolve, snake

# Keras 3's parameters, in order (keras/src/layers/preprocessing/image_preprocessing/*.py).
POSITIONAL = {
    "RandomCrop": ("height", "width", "seed", "data_format"),
    "RandomFlip": ("mode", "seed", "data_format"),
    "RandomTranslation": ("height_factor", "width_factor", "fill_mode", "interpolation", "seed"),
    "RandomRotation": ("factor", "fill_mode", "interpolation", "seed", "fill_value"),
    "RandomZoom": ("height_factor", "width_factor", "fill_mode", "interpolation", "seed"),
    "RandomContrast": ("factor", "value_range", "seed"),
}
# Arguments cnnlab has no key for, accepted at these values only: `seed` is dropped because each
# cnnlab run seeds its own augmentation stream; images are channels_last; RandomContrast's
# (0, 255) range is the pixels before Rescaling(1/255), the [0, 1] that cnnlab clips to.
_ACCEPTED = {
    "data_format": (None, "channels_last"),
    "value_range": ((0, 255), [0, 255]),
}


def is_random_layer(keras_name: str | None) -> bool:
    """Whether a Keras class name is one of Keras's random preprocessing layers."""
    return bool(keras_name) and keras_name.startswith("Random")  # type: ignore[union-attr]


def check_supported(keras_name: str) -> None:
    """SpecError unless cnnlab's augment has a key for this Keras random layer."""
    if keras_name not in AUGMENTATIONS:
        raise SpecError(
            f"{keras_name} is not supported as augmentation (supported: "
            f"{', '.join(AUGMENTATIONS)}, applied from [training] augment)"
        )


def misplaced(keras_name: str) -> str:
    """Why a random layer that is not at the model's input is refused (the caller adds where)."""
    return (
        f"{keras_name} is not at the model's input: cnnlab reads random layers only as the "
        "model's first layers, before any other (a Rescaling included), and writes them as the "
        "study's [training] augment; it does not augment inside a model"
    )


def in_a_branch(keras_name: str) -> str:
    """Why a random layer on one branch of a residual block is refused."""
    return (
        f"{keras_name} is in one branch of a residual block: cnnlab augments the whole input "
        "(from [training] augment), so it reads random layers only as the model's first layers"
    )


def augmentation(
    keras_name: str, arguments: dict[str, object], input_shape: Sequence[object] | None = None
) -> KerasObject:
    """A Keras random layer's call arguments (literal values) as one `augment` item; SpecError
    (without a place: the caller adds it) for a layer or argument cnnlab cannot express, or
    a RandomCrop that changes the model's input (`input_shape`, when the model gives one)."""
    check_supported(keras_name)
    if keras_name == "RandomCrop" and input_shape is not None:
        _check_crop(arguments.get("height"), arguments.get("width"), tuple(input_shape))
    given = {}
    for argument, value in arguments.items():
        if argument in ("seed", "name", "trainable", "dtype"):
            continue
        if argument in _ACCEPTED and argument not in AUGMENTATIONS[keras_name]:
            if value not in _ACCEPTED[argument]:
                raise SpecError(
                    f"{keras_name} argument {argument!r} with value {value!r} is not supported; "
                    f"only Keras's default {_ACCEPTED[argument][0]!r} is"
                )
            continue
        given[argument] = list(value) if isinstance(value, tuple) else value
    factor = given.get("factor")
    if keras_name == "RandomContrast" and isinstance(factor, (int, float)):
        # Keras 3's code (BaseImagePreprocessingLayer._set_factor with RandomContrast's bounds
        # (0, 1)) makes a number x the pair (0, x), contrast factors in [1, 1 + x], not the
        # [1 - x, 1 + x] its docstring and cnnlab's `random_contrast = x` give: write the pair.
        given["factor"] = [0.0, abs(factor)]
    try:
        return resolve({"name": keras_name, **given}, AUGMENTATIONS, (), "augmentation")
    except FieldError as error:
        raise SpecError(f"{keras_name}: {error.rule}") from None


def _check_crop(height: object, width: object, input_shape: tuple[object, ...]) -> None:
    # Keras's RandomCrop outputs height x width in training and (its docs say: resized and
    # cropped) at inference, so the layers after it are built for that size: leaving it out is
    # the identity only when it keeps the input's size, the rule of cnnlab's random_crop.
    size = input_shape[:2]
    if len(size) < 2 or not all(isinstance(n, int) for n in size) or (height, width) == size:
        return
    shape = "x".join(str(n) for n in input_shape)
    raise SpecError(
        f"RandomCrop to {height}x{width} changes the model's {shape} input (the layers after it "
        f"take {height}x{width} images, at inference too), so it cannot be left out; cnnlab's "
        f"random_crop keeps the image's size: crop to {size[0]}x{size[1]} (with pad = N for "
        f"random shifts), or train on {height}x{width} images"
    )


def note(layers: Sequence[KerasObject]) -> str:
    """The note a model file's header carries: the augment line and the equivalent flags."""
    items = [_short_form(layer) for layer in layers]
    line = "augment = [" + ", ".join("{ " + _toml_pairs(i) + " }" for i in items) + "]"
    flags = " ".join("--augment " + ",".join(f"{k}={_flag(v)}" for k, v in i) for i in items)
    names = ", ".join(layer.name for layer in layers)
    return (
        f"the model's random augmentation ({names}) is left out of the model (Keras applies it "
        f"in training only); cnnlab augments from the study: write `{line}` in [training], or "
        f"pass `{flags}` to cnnlab train / run"
    )


def _short_form(layer: KerasObject) -> list[tuple[str, object]]:
    """`{ random_rotation = 0.1 }`: the first argument under the layer's key, then the
    arguments that differ from Keras's defaults; a symmetric range [-x, x] written as x."""
    args = {key: _compact(value) for key, value in layer.args}
    factor = args.get("factor")
    if layer.name == "RandomContrast" and isinstance(factor, list) and factor[0] == factor[1]:
        args["factor"] = factor[0]  # factors in [1 - x, 1 + x], written x
    row = AUGMENTATIONS[layer.name]
    if layer.name == "RandomCrop":
        first: object = [args.pop("height"), args.pop("width")]
    else:
        first = args.pop(next(iter(row)))
    if layer.name == "RandomTranslation" and args.get("width_factor") == first:
        del args["width_factor"]
    rest = [(k, v) for k, v in args.items() if v != row[k][0] and v is not None]
    return [(snake(layer.name), first), *rest]


def _compact(value: object) -> object:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == -value[1]:
        return value[1]
    return list(value) if isinstance(value, tuple) else value


def _toml_pairs(items: list[tuple[str, object]]) -> str:
    return ", ".join(f"{key} = {json.dumps(value)}" for key, value in items)


def _flag(value: object) -> str:
    if isinstance(value, list):
        return "[" + ",".join(json.dumps(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value)
