"""Checks of single values at the edge, each raising a SpecError at its place."""

from __future__ import annotations

import math
import numbers
from typing import Any

from cnnlab import limits
from cnnlab.grid import did_you_mean, show
from cnnlab.spec.places import At
from cnnlab.spec.types import Pair


def as_int(value: Any, at: At, what: str, minimum: int = 1, maximum: int = limits.SIZE_MAX) -> int:
    """An integer in [minimum, maximum]; every integer of a spec has a bound (cnnlab.limits)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy ints too
        raise at.error(f"{what} must be an integer, got {show(value)}")
    if value < minimum:
        raise at.error(f"{what} must be >= {minimum}, got {value}")
    if value > maximum:
        raise at.error(f"{what} must be <= {maximum:,}, got {value:,}")
    return int(value)


def as_limited(value: Any, at: At, what: str, name: str) -> int:
    """An integer within its row of cnnlab.limits.LIMITS."""
    limit = limits.LIMITS[name]
    return as_int(value, at, what, minimum=int(limit.low), maximum=int(limit.high))


def as_number(value: Any, at: At, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise at.error(f"{what} must be a number, got {show(value)}")
    if not math.isfinite(value):
        raise at.error(f"{what} must be finite, got {value}")
    return float(value)


def as_fraction(value: Any, at: At, what: str, *, one: bool = False) -> float:
    """A number in [0, 1) (or [0, 1] when `one`)."""
    number = as_number(value, at, what)
    if not (0 <= number <= 1 if one else 0 <= number < 1):
        raise at.error(f"{what} must be in [0, 1{']' if one else ')'}, got {show(value)}")
    return number


def as_bool(value: Any, at: At, what: str) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"{what} must be true or false, got {show(value)}")
    return value


def as_text(value: Any, at: At, what: str) -> str:
    if not isinstance(value, str):
        raise at.error(f"{what} must be a string, got {show(value)}")
    return value


def as_choice(value: Any, at: At, what: str, choices: tuple[str, ...]) -> str:
    word = as_text(value, at, what).lower()
    if word not in choices:
        raise at.error(
            f"{what} must be one of {', '.join(choices)}, got {show(value)}"
            + did_you_mean(word, choices)
        )
    return word


def as_pair(value: Any, at: At, what: str) -> Pair:
    """3 means (3, 3); [3, 5] means (3, 5); every size >= 1."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (as_int(value[0], at, what), as_int(value[1], at, what))
    if isinstance(value, (list, tuple)):
        raise at.error(f"{what} must be an integer or a list of two, got {show(value)}")
    size = as_int(value, at, what)
    return (size, size)


def as_name(value: Any, at: At) -> str:
    name = as_text(value, at, "name")
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise at.error(f"name must be 1 to 200 printable characters, got {show(value)}")
    return name


def as_table(value: Any, at: At, what: str) -> dict:
    if not isinstance(value, dict):
        raise at.error(f"{what} must be a table, got {show(value)}")
    return value


def check_keys(table: dict, allowed: tuple[str, ...], at: At, what: str) -> None:
    for key in table:
        if key not in allowed:
            raise at.key(key).error(
                f"unknown {what} key {show(key)}{did_you_mean(key, allowed)}"
                f" (allowed: {', '.join(allowed)})"
            )
