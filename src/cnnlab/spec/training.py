"""The training recipe's checks: every field of a TrainingSpec, its rule and the value refused.

`TrainingSpec` (spec/types.py) calls `check_training` when it is made, so a spec in code and one
read from a file are checked by the same lines. A refusal is a `FieldError` naming the field's
path; the study-file parser turns that path into the file and line it was written on.
"""

from __future__ import annotations

import numbers
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.grid import show
from cnnlab.spec.vocabulary import PRECISIONS


class FieldError(SpecError):
    """A training field breaks a rule; `path` names it (("early_stopping", "patience"))."""

    def __init__(self, path: tuple[str | int, ...], rule: str) -> None:
        super().__init__(rule)
        self.path, self.rule = path, rule


def checked_fields(training: Any) -> dict[str, Any]:
    """The fields of `training` in their canonical form (NumPy ints as ints); FieldError if bad."""
    return {
        "epochs": whole(training.epochs, ("epochs",), minimum=1),
        "batch_size": whole(training.batch_size, ("batch_size",), minimum=1),
        "validation": _validation(training.validation),
        "train_limit": None
        if training.train_limit is None
        else whole(training.train_limit, ("train_limit",), minimum=1),
        "precision": _precision(training.precision),
    }


def whole(value: Any, path: tuple[str | int, ...], *, minimum: int) -> int:
    """A whole number >= minimum; NumPy integers count (a loop over np.arange), 1.0 does not."""
    name = _dotted(path)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FieldError(path, f"{name} must be an integer, got {show(value)}")
    if value < minimum:
        raise FieldError(path, f"{name} must be >= {minimum}, got {value}")
    return int(value)


def number(value: Any, path: tuple[str | int, ...]) -> float:
    name = _dotted(path)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FieldError(path, f"{name} must be a number, got {show(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise FieldError(path, f"{name} must be finite, got {value}")
    return float(value)


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


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path if not isinstance(part, int))
