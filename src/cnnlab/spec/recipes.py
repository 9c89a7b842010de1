"""The training recipe's Keras vocabulary: schedules, callbacks and augmentation layers.

One table row per Keras class, by Keras's name, with Keras's arguments and defaults
(keras/src/optimizers/schedules/learning_rate_schedule.py, keras/src/callbacks/early_stopping.py,
reduce_lr_on_plateau.py, keras/src/layers/preprocessing/image_preprocessing/*.py). A row's
`check` turns a written value into its canonical form or raises a FieldError naming the path,
the rule and the value. Nothing here imports torch: `cnnlab --help` stays fast.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cnnlab import limits
from cnnlab.errors import SpecError
from cnnlab.grid import did_you_mean, show

Path = tuple[str | int, ...]


class FieldError(SpecError):
    """A training field breaks a rule; `path` names it (("early_stopping", "patience"))."""

    def __init__(self, path: tuple[str | int, ...], rule: str) -> None:
        super().__init__(rule)
        self.path, self.rule = path, rule


def whole(
    value: Any, path: tuple[str | int, ...], *, minimum: int, maximum: int = limits.SIZE_MAX
) -> int:
    """A whole number in [minimum, maximum]; NumPy integers count (a loop over np.arange),
    1.0 does not. Every integer a user gives has a bound (cnnlab.limits)."""
    name = dotted(path)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FieldError(path, f"{name} must be an integer, got {show(value)}")
    if value < minimum:
        raise FieldError(path, f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise FieldError(path, f"{name} must be <= {maximum:,}, got {value:,}")
    return int(value)


def number(value: Any, path: tuple[str | int, ...]) -> float:
    name = dotted(path)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FieldError(path, f"{name} must be a number, got {show(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise FieldError(path, f"{name} must be finite, got {value}")
    return float(value)


def dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path if not isinstance(part, int))


REQUIRED = object()  # an argument Keras has no default for


@dataclass(frozen=True)
class KerasObject:
    """A Keras class by name with every argument spelled out (its defaults merged in)."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)


Check = Callable[[Any, Path], Any]


def _positive(value: Any, path: Path) -> float:
    result = number(value, path)
    if result <= 0:
        raise FieldError(path, f"{dotted(path)} must be > 0, got {show(value)}")
    return result


def _at_least_zero(value: Any, path: Path) -> float:
    result = number(value, path)
    if result < 0:
        raise FieldError(path, f"{dotted(path)} must be >= 0, got {show(value)}")
    return result


def _steps(value: Any, path: Path) -> int:
    return whole(value, path, minimum=1)


def _count(value: Any, path: Path) -> int:
    return whole(value, path, minimum=0)


def _flag(value: Any, path: Path) -> bool:
    if not isinstance(value, bool):
        raise FieldError(path, f"{dotted(path)} must be true or false, got {show(value)}")
    return value


def _optional(check: Check) -> Check:
    return lambda value, path: None if value is None else check(value, path)


def _choice(*choices: str) -> Check:
    def check(value: Any, path: Path) -> str:
        if not isinstance(value, str) or value not in choices:
            word = value if isinstance(value, str) else ""
            raise FieldError(
                path,
                f"{dotted(path)} must be one of {', '.join(choices)}, got {show(value)}"
                + did_you_mean(word, choices),
            )
        return value

    return check


def _fraction_below_one(value: Any, path: Path) -> float:
    result = number(value, path)
    if not 0 <= result < 1:
        raise FieldError(path, f"{dotted(path)} must be in [0, 1), got {show(value)}")
    return result


def _factor(low: float, high: float) -> Check:
    """Keras's factor: x means the range [-x, x]; [a, b] is the range itself."""

    def check(value: Any, path: Path) -> tuple[float, float]:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            pair = (number(value[0], path), number(value[1], path))
        elif isinstance(value, (list, tuple)):
            raise FieldError(path, f"{dotted(path)} must be a number or [low, high], got {value}")
        else:
            size = number(value, path)
            pair = (-size, size) if size >= 0 else (size, -size)
        if pair[0] > pair[1] or pair[0] < low or pair[1] > high:
            raise FieldError(
                path,
                f"{dotted(path)} must give a range inside [{low}, {high}] with low <= high, "
                f"got {show(value)}",
            )
        return pair

    return check


def _contrast(value: Any, path: Path) -> tuple[float, float]:
    """RandomContrast: x means factors in [1 - x, 1 + x]; x in [0, 1]."""
    pair = _factor(-1.0, math.inf)(value, path)
    if isinstance(value, (int, float)) and not 0 <= value <= 1:
        raise FieldError(path, f"{dotted(path)} must be in [0, 1], got {show(value)}")
    return (abs(pair[0]), pair[1])


def _size(value: Any, path: Path) -> int:
    return whole(value, path, minimum=1)


def _boundaries(value: Any, path: Path) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise FieldError(path, f"{dotted(path)} must be a non-empty list of steps, got {value!r}")
    steps = tuple(whole(v, (*path, i), minimum=0) for i, v in enumerate(value))
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise FieldError(path, f"{dotted(path)} must increase, got {list(steps)}")
    return steps


def _values(value: Any, path: Path) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise FieldError(path, f"{dotted(path)} must list at least two rates, got {value!r}")
    return tuple(_positive(v, (*path, i)) for i, v in enumerate(value))


FILL_MODES = ("reflect", "nearest", "constant")  # Keras's "wrap" is not offered
INTERPOLATIONS = ("bilinear", "nearest")
_FILL: dict[str, tuple[Any, Check]] = {
    "fill_mode": ("reflect", _choice(*FILL_MODES)),  # Keras's default
    "interpolation": ("bilinear", _choice(*INTERPOLATIONS)),
    "fill_value": (0.0, number),
}
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")

# name -> {argument: (default or REQUIRED, check)}
SCHEDULES: dict[str, dict[str, tuple[Any, Check]]] = {
    "ExponentialDecay": {
        "initial_learning_rate": (REQUIRED, _positive),
        "decay_steps": (REQUIRED, _steps),
        "decay_rate": (REQUIRED, _positive),
        "staircase": (False, _flag),
    },
    "PiecewiseConstantDecay": {
        "boundaries": (REQUIRED, _boundaries),
        "values": (REQUIRED, _values),
    },
    "CosineDecay": {
        "initial_learning_rate": (REQUIRED, _at_least_zero),
        "decay_steps": (REQUIRED, _steps),
        "alpha": (0.0, _at_least_zero),
        "warmup_target": (None, _optional(_positive)),
        "warmup_steps": (0, _count),
    },
    "PolynomialDecay": {
        "initial_learning_rate": (REQUIRED, _positive),
        "decay_steps": (REQUIRED, _steps),
        "end_learning_rate": (0.0001, _at_least_zero),
        "power": (1.0, _positive),
        "cycle": (False, _flag),
    },
}
CALLBACKS: dict[str, dict[str, tuple[Any, Check]]] = {
    "EarlyStopping": {
        "monitor": ("val_loss", _choice(*MONITORS)),
        "min_delta": (0.0, number),
        "patience": (0, _count),
        "mode": ("auto", _choice("auto", "min", "max")),
        "baseline": (None, _optional(number)),
        "restore_best_weights": (False, _flag),
        "start_from_epoch": (0, _count),
    },
    "ReduceLROnPlateau": {
        "monitor": ("val_loss", _choice(*MONITORS)),
        "factor": (0.1, _fraction_below_one),
        "patience": (10, _count),
        "mode": ("auto", _choice("auto", "min", "max")),
        "min_delta": (1e-4, number),
        "cooldown": (0, _count),
        "min_lr": (0.0, _at_least_zero),
    },
}
AUGMENTATIONS: dict[str, dict[str, tuple[Any, Check]]] = {
    # pad: zero padding on every side before the crop (Keras: a ZeroPadding2D layer before it)
    "RandomCrop": {"height": (REQUIRED, _size), "width": (REQUIRED, _size), "pad": (0, _count)},
    "RandomFlip": {
        "mode": (
            "horizontal_and_vertical",
            _choice("horizontal", "vertical", "horizontal_and_vertical"),
        )
    },
    "RandomTranslation": {
        "height_factor": (REQUIRED, _factor(-1.0, 1.0)),
        "width_factor": (REQUIRED, _factor(-1.0, 1.0)),
        **_FILL,
    },
    "RandomRotation": {"factor": (REQUIRED, _factor(-math.inf, math.inf)), **_FILL},
    "RandomZoom": {
        "height_factor": (REQUIRED, _factor(-1.0, math.inf)),
        "width_factor": (None, _optional(_factor(-1.0, math.inf))),
        **_FILL,
    },
    "RandomContrast": {"factor": (REQUIRED, _contrast)},
}
# The argument a short form `{ random_crop = 32 }` gives (the Keras class's first one).
_FIRST = {
    "RandomCrop": ("height", "width"),
    "RandomFlip": ("mode",),
    "RandomTranslation": ("height_factor",),
    "RandomRotation": ("factor",),
    "RandomZoom": ("height_factor",),
    "RandomContrast": ("factor",),
}


def snake(name: str) -> str:
    """RandomCrop -> random_crop (Keras's class name as a study file's key)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def resolve(
    value: Any, table: dict[str, dict[str, tuple[Any, Check]]], path: Path, what: str
) -> KerasObject:
    """A KerasObject or a table ({ name = ..., args }) checked against `table`'s row."""
    if isinstance(value, KerasObject):
        name, given = value.name, dict(value.args)
    elif isinstance(value, Mapping):
        given = dict(value)
        name = given.pop("name", None)
        if name is None:
            raise FieldError(path, f"{what} needs a name (one of {', '.join(table)})")
    else:
        raise FieldError(
            path, f"{what} must be a table such as {{ name = ... }}, got {show(value)}"
        )
    if name not in table:
        raise FieldError(
            (*path, "name"),
            f"unknown {what} {show(name)}{did_you_mean(str(name), list(table))} "
            f"(known: {', '.join(table)})",
        )
    return KerasObject(name, _arguments(name, table[name], given, path))


def resolve_callback(value: Any, name: str, path: Path) -> KerasObject:
    """A callback's arguments ({ patience = 3 }); its name is the field's."""
    if isinstance(value, Mapping) and "name" not in value:
        value = {"name": name, **value}
    result = resolve(value, {name: CALLBACKS[name]}, path, name)
    return result


def resolve_augmentation(value: Any, path: Path) -> KerasObject:
    """{ random_crop = 32, pad = 4 }, { name = "RandomCrop", height = 32, ... } or a KerasObject."""
    if isinstance(value, Mapping) and "name" not in value:
        by_key = {snake(name): name for name in AUGMENTATIONS}
        kinds = [key for key in value if key in by_key]
        if len(kinds) != 1:
            keys = ", ".join(map(str, value)) or "nothing"
            hint = next((did_you_mean(str(k), list(by_key)) for k in value), "")
            raise FieldError(
                path,
                f"an augmentation names one layer (known: {', '.join(by_key)}), got {keys}{hint}",
            )
        kind = kinds[0]
        rest = {k: v for k, v in value.items() if k != kind}
        name = by_key[kind]
        first = value[kind]
        if name == "RandomCrop" and isinstance(first, (list, tuple)) and len(first) == 2:
            rest |= {"height": first[0], "width": first[1]}
        else:
            rest |= {arg: first for arg in _FIRST[name] if arg not in rest}
        if name == "RandomTranslation":  # one factor given: the same both ways
            rest.setdefault("width_factor", first)
        value = {"name": name, **rest}
    return resolve(value, AUGMENTATIONS, path, "augmentation")


def _arguments(
    name: str, row: dict[str, tuple[Any, Check]], given: dict[str, Any], path: Path
) -> tuple[tuple[str, Any], ...]:
    for key in given:
        if key not in row:
            raise FieldError(
                (*path, key),
                f"{name} takes no argument {show(key)}{did_you_mean(str(key), list(row))} "
                f"(it takes {', '.join(row)})",
            )
    args = []
    for key, (default, check) in row.items():
        if key not in given:
            if default is REQUIRED:
                raise FieldError(path, f"{name} needs {key} (Keras has no default for it)")
            args.append((key, default))
            continue
        args.append((key, check(given[key], (*path, key))))
    return tuple(args)


def _check_schedule(schedule: KerasObject, path: Path) -> None:
    args = schedule.kwargs()
    if (
        schedule.name == "PiecewiseConstantDecay"
        and len(args["values"]) != len(args["boundaries"]) + 1
    ):
        raise FieldError(
            path,
            f"PiecewiseConstantDecay needs one more value than boundaries, got "
            f"{len(args['boundaries'])} boundaries and {len(args['values'])} values",
        )
    if schedule.name == "CosineDecay" and args["warmup_steps"] and args["warmup_target"] is None:
        raise FieldError(
            (*path, "warmup_steps"),
            "CosineDecay's warmup_steps needs warmup_target (the rate warm-up climbs to); "
            "without it Keras ignores warmup_steps",
        )


def resolve_schedule(value: Any, path: Path) -> KerasObject:
    schedule = resolve(value, SCHEDULES, path, "learning-rate schedule")
    _check_schedule(schedule, path)
    return schedule
