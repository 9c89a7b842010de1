"""The training recipe's checks: every field of a TrainingSpec, its rule and the value refused.

`TrainingSpec` (spec/types.py) calls `checked_fields` when it is made, so a spec in code and one
read from a file are checked by the same lines. A refusal is a `FieldError` naming the field's
path; the study-file parser turns that path into the file and line it was written on.
"""

from __future__ import annotations

import numbers
from typing import Any

from cnnlab import limits
from cnnlab.grid import did_you_mean, show
from cnnlab.spec.recipes import (
    FieldError,
    dotted,
    number,
    resolve_augmentation,
    resolve_callback,
    resolve_schedule,
    whole,
)
from cnnlab.spec.vocabulary import NORMALIZE_MODES, PRECISIONS

__all__ = ["FieldError", "checked_fields"]


def checked_fields(training: Any) -> dict[str, Any]:
    """The fields of `training` in their canonical form (NumPy ints as ints, recipe tables as
    KerasObjects with Keras's defaults spelled out); FieldError if one is bad."""
    fields = {
        "epochs": _limited(training.epochs, "epochs"),
        "batch_size": _limited(training.batch_size, "batch_size"),
        "validation": _validation(training.validation),
        "train_limit": None
        if training.train_limit is None
        else _limited(training.train_limit, "train_limit"),
        "precision": _precision(training.precision),
        "augment": _augment(training.augment),
        "learning_rate_schedule": None
        if training.learning_rate_schedule is None
        else resolve_schedule(training.learning_rate_schedule, ("learning_rate_schedule",)),
        "early_stopping": _callback(training.early_stopping, "EarlyStopping", "early_stopping"),
        "reduce_lr_on_plateau": _callback(
            training.reduce_lr_on_plateau, "ReduceLROnPlateau", "reduce_lr_on_plateau"
        ),
        "label_smoothing": _label_smoothing(training.label_smoothing),
        "normalize": _normalize(training.normalize),
    }
    _check_together(fields)
    return fields


def _limited(value: Any, name: str) -> int:
    """An integer within its row of cnnlab.limits.LIMITS."""
    limit = limits.LIMITS[name]
    return whole(value, (name,), minimum=int(limit.low), maximum=int(limit.high))


def _validation(value: Any) -> float | str:
    if value == "test" and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise FieldError(
            ("validation",), f'validation must be a fraction in [0, 1) or "test", got {show(value)}'
        )
    return float(value)


def _precision(value: Any) -> str:
    if value not in PRECISIONS:
        raise FieldError(
            ("precision",), f"precision must be one of {', '.join(PRECISIONS)}, got {show(value)}"
        )
    return value


def _augment(value: Any) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise FieldError(("augment",), f"augment must be a list of layers, got {show(value)}")
    return tuple(resolve_augmentation(item, ("augment", i)) for i, item in enumerate(value))


def _callback(value: Any, name: str, field: str) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    return resolve_callback(value, name, (field,))


def _label_smoothing(value: Any) -> float:
    smoothing = number(value, ("label_smoothing",))
    if not 0 <= smoothing <= 1:
        raise FieldError(
            ("label_smoothing",), f"label_smoothing must be in [0, 1], got {show(value)}"
        )
    return smoothing


def _normalize(value: Any) -> str:
    if not isinstance(value, str) or value not in NORMALIZE_MODES:
        raise FieldError(
            ("normalize",),
            f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {show(value)}"
            + did_you_mean(value, NORMALIZE_MODES),
        )
    return value


def _check_together(fields: dict[str, Any]) -> None:
    """Rules between fields: monitors that are computed, one owner of the learning rate."""
    held_out = fields["validation"] == "test" or fields["validation"] > 0
    for field in ("early_stopping", "reduce_lr_on_plateau"):
        callback = fields[field]
        if callback is None:
            continue
        monitor = callback.kwargs()["monitor"]
        if monitor.startswith("val_") and not held_out:
            raise FieldError(
                (field, "monitor"),
                f"{dotted((field, 'monitor'))} = {monitor!r} is never computed: validation = 0 "
                "holds nothing out; set validation (e.g. 0.1) or monitor 'loss'",
            )
    if fields["reduce_lr_on_plateau"] is not None and fields["learning_rate_schedule"]:
        raise FieldError(
            ("reduce_lr_on_plateau",),
            "reduce_lr_on_plateau cannot change a learning rate that learning_rate_schedule "
            "sets at every step (Keras refuses it too); use one of them",
        )
