"""The range of every number a user can give, in one table.

A study file, a model file, a command-line flag and a library call check a number against the
same row, once, at the edge, and say the range in one line when it is outside: no number can
grow a process past the machine (`--seeds 1000000000`), crash torch (`--threads 100000`
segfaulted), overflow SQLite's 64-bit integers (`seeds = [10**21]`) or plan a run that can never
end (`epochs = 10**12`). docs/spec-format.md lists the same ranges.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from cnnlab.errors import SpecError


@dataclass(frozen=True)
class Limit:
    low: float
    high: float
    why: str  # the reason for the bound, shown in docs and kept beside the number


# torch indexes a tensor's dimensions with 64-bit integers but many kernels with 32-bit ones.
SIZE_MAX = 2**31 - 1

LIMITS: dict[str, Limit] = {
    "seeds": Limit(1, 10_000, "a count: runs per model; 10,000 is far past any study's need"),
    "seed": Limit(0, 2**32 - 1, "NumPy's and most libraries' seeds are 32-bit"),
    "epochs": Limit(1, 100_000, "a run that cannot end in a lifetime is a typo"),
    "batch_size": Limit(1, 1_000_000, "beyond any dataset here; memory is checked as well"),
    "train_limit": Limit(1, SIZE_MAX, "an image count; larger means every image anyway"),
    "threads": Limit(1, 1024, "torch crashed (no message) creating 100,000 threads"),
    "jobs": Limit(1, 1024, "processes or Ray tasks at once"),
    "classes": Limit(1, 1_000_000, "a class count; its scores are one vector per image"),
    "index": Limit(1, 1_000_000, "a model's position in a file"),
    "size": Limit(1, SIZE_MAX, "filters, units, kernel, pool and stride sizes"),
    "timeout": Limit(0.001, 86_400, "seconds; a day is longer than any download should wait"),
}


def check(name: str, value: float, *, what: str | None = None) -> None:
    """Raise a one-line SpecError when `value` lies outside LIMITS[name] (NaN always does)."""
    limit = LIMITS[name]
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if real and limit.low <= value <= limit.high:
        return
    shown = f"{value:,}" if isinstance(value, numbers.Integral) and real else repr(value)
    raise SpecError(
        f"{what or name} must be from {_text(limit.low)} to {_text(limit.high)}, got {shown}"
    )


def flag(name: str) -> dict[str, float]:
    """typer.Option's `min` and `max` for a flag of this row (its --help shows the range)."""
    limit = LIMITS[name]
    return {"min": limit.low, "max": limit.high}


def _text(bound: float) -> str:
    return f"{bound:,}" if float(bound).is_integer() else f"{bound:g}"
