"""Grid templates: one model template times the product of named axes gives many named models.

This is how a study varies architectures the way the seed notebook did by hand (depth x kernel
size x activation x batch norm) without writing every model out. A `[[grid]]` table in a study:

    [[grid]]
    name = "d{depth}-k{kernel}-{activation}{batchnorm:-bn}"
    axes = { depth = [3, 5, 7], kernel = [3, 5], activation = ["relu", "sigmoid"],
             batchnorm = [false, true] }
    optimizer = "adadelta"                 # optional, may use placeholders too
    stem = [ { conv = 32, kernel = "{kernel}", activation = "{activation}", padding = "same" },
             { maxpool = 2 } ]             # layers before the repeated block (optional)
    block = [ { conv = 64, kernel = "{kernel}", activation = "{activation}", padding = "same" },
              { batchnorm = "{batchnorm}" } ]   # repeated `repeat` times
    repeat = "{depth}"
    head = [ "flatten", { dense = 128, activation = "{activation}" }, { dropout = 0.5 },
             { dense = "classes", activation = "softmax" } ]

Rules, kept few on purpose:
- A string that is exactly `"{axis}"` becomes the axis value with its own type (3, true, "relu");
  placeholders inside longer text are rendered as text; `{axis:TEXT}` (boolean axes only)
  renders TEXT when true and nothing when false, for names like `...-bn`.
- A layer whose type key ends up `false` (`{ batchnorm = "{batchnorm}" }` with batchnorm = false)
  is left out; the spec parser does that, since it knows which key is the type.
- `layers = [...]` may replace stem/block/repeat/head when nothing repeats.
- `design = "full"` (default) | `"one-at-a-time"` | `"fractional"` | `"random:K"` picks which
  combinations become models (`cnnlab.design`).
- Every axis with more than one value must appear in the name, so each model has its own name;
  each generated model records its axis values (`ModelSpec.factors`).

This module works on plain dicts (it never imports `cnnlab.spec`); problems are raised as
`GridProblem(rule, path)` and `cnnlab.spec` turns them into a located `SpecError`.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Union

from cnnlab import design

Scalar = Union[str, int, float, bool]  # noqa: UP007 (a runtime alias, kept readable on 3.10)
Path_ = tuple[Union[str, int], ...]  # noqa: UP007

GRID_KEYS = (
    "name",
    "description",
    "axes",
    "optimizer",
    "layers",
    "stem",
    "block",
    "repeat",
    "head",
    "design",
)
# A study of more models than this is a typo (an axis of 1000 values), not a plan.
MAX_MODELS = 10_000
MAX_LAYERS = 1_000_000

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([^{}]*))?\}")
_AXIS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class GridProblem(Exception):
    """A rule broken inside a grid table; `path` is relative to that table (for line numbers)."""

    def __init__(self, rule: str, path: Path_ = ()) -> None:
        super().__init__(rule)
        self.rule = rule
        self.path = path


@dataclass(frozen=True)
class Variant:
    """One generated model: a plain model dict plus where each of its layers came from."""

    name: str
    factors: tuple[tuple[str, Scalar], ...]
    model: dict[str, Any]
    layer_paths: tuple[Path_, ...]


def expand_grid(table: Any, *, seed: int = 0) -> list[Variant]:
    """The combinations of the axes that the grid's `design` keeps (default "full": every
    one), in axis order (the last axis varies fastest); `random:K` draws with `seed`."""
    if not isinstance(table, dict):
        raise GridProblem(f"a grid must be a table, got {show(table)}")
    _check_grid_keys(table)
    axes = parse_axes(table.get("axes"))
    _check_name_template(table.get("name"), axes)
    count = math.prod(len(values) for _, values in axes)
    if count > MAX_MODELS:
        raise GridProblem(f"grid makes {count} models, at most {MAX_MODELS} allowed", ("axes",))
    names = [name for name, _ in axes]
    try:
        combos = design.choose(axes, table.get("design", "full"), seed)
    except design.DesignProblem as problem:
        raise GridProblem(str(problem), ("design",)) from None
    variants, layers = [], 0
    for combo in combos:
        variants.append(_variant(table, dict(zip(names, combo, strict=True))))
        layers += len(variants[-1].layer_paths)
        if layers > MAX_LAYERS:
            raise GridProblem(f"grid makes more than {MAX_LAYERS} layers in all", ("axes",))
    return variants


def parse_axes(axes: Any) -> list[tuple[str, list[Scalar]]]:
    """Axes as (name, values): a non-empty table of non-empty lists of distinct scalars."""
    if not isinstance(axes, dict) or not axes:
        raise GridProblem(
            f"axes must be a table of lists, e.g. {{ kernel = [3, 5] }}, got {show(axes)}",
            ("axes",),
        )
    parsed = []
    for name, values in axes.items():
        if not isinstance(name, str) or not _AXIS_NAME.fullmatch(name):
            raise GridProblem(f"axis names must be identifiers, got {show(name)}", ("axes",))
        parsed.append((name, _axis_values(name, values)))
    return parsed


def _axis_values(name: str, values: Any) -> list[Scalar]:
    where = ("axes", name)
    if not isinstance(values, list) or not values:
        raise GridProblem(f"axis {name!r} must be a non-empty list, got {show(values)}", where)
    seen: list[Scalar] = []
    for value in values:
        if not isinstance(value, (str, int, float, bool)):
            raise GridProblem(f"axis {name!r} values must be scalars, got {show(value)}", where)
        if isinstance(value, float) and not math.isfinite(value):
            raise GridProblem(f"axis {name!r} values must be finite, got {value}", where)
        # 1, 1.0 and true are one level to the report's statistics (equal dictionary keys)
        same = next((earlier for earlier in seen if earlier == value), None)
        if same is not None:
            twice = (
                f"{show(value)} twice"
                if type(same) is type(value)
                else (f"{show(same)} and {show(value)}, which are the same level")
            )
            raise GridProblem(f"axis {name!r} lists {twice}", where)
        seen.append(value)
    return list(values)


def _check_grid_keys(table: dict) -> None:
    for key in table:
        if key not in GRID_KEYS:
            raise GridProblem(f"unknown grid key {show(key)}{did_you_mean(key, GRID_KEYS)}", (key,))
    if "layers" in table and any(key in table for key in ("stem", "block", "head", "repeat")):
        raise GridProblem("give either layers or stem/block/repeat/head, not both", ("layers",))
    if "repeat" in table and "block" not in table:
        raise GridProblem(
            "repeat needs a block = [...] to repeat (without one it would change nothing)",
            ("repeat",),
        )
    if not any(key in table for key in ("layers", "stem", "block", "head")):
        raise GridProblem("a grid needs layers (or stem/block/repeat/head)")


def _check_name_template(template: Any, axes: list[tuple[str, list[Scalar]]]) -> None:
    if not isinstance(template, str) or not template.strip():
        raise GridProblem(
            f'a grid needs a name template such as "d{{depth}}-k{{kernel}}", got {show(template)}',
            ("name",),
        )
    used = {match.group(1) for match in _PLACEHOLDER.finditer(template)}
    for name, values in axes:
        if len(values) > 1 and name not in used:
            raise GridProblem(
                f"name template {template!r} leaves out axis {name!r}; every axis with more "
                "than one value must appear in it so that each model gets its own name",
                ("name",),
            )


def _variant(table: dict, values: dict[str, Scalar]) -> Variant:
    model: dict[str, Any] = {"name": render_text(table["name"], values, ("name",))}
    for key in ("description", "optimizer"):
        if key in table:
            model[key] = substitute(table[key], values, (key,))
    layers, paths = _assemble_layers(table, values)
    model["layers"] = layers
    model["factors"] = dict(values)
    return Variant(model["name"], tuple(values.items()), model, tuple(paths))


def _assemble_layers(table: dict, values: dict[str, Scalar]) -> tuple[list[Any], list[Path_]]:
    """stem + block * repeat + head (or layers), placeholders filled, with each layer's origin."""
    repeat = _repeat_count(table, values) if "block" in table else 0
    parts = [("layers", 1), ("stem", 1), ("block", repeat), ("head", 1)]
    layers: list[Any] = []
    paths: list[Path_] = []
    for key, times in parts:
        items = table.get(key, [])
        if not isinstance(items, list):
            raise GridProblem(f"{key} must be a list of layers, got {show(items)}", (key,))
        for _ in range(times):
            for index, item in enumerate(items):
                layers.append(substitute(item, values, (key, index)))
                paths.append((key, index))
    return layers, paths


def _repeat_count(table: dict, values: dict[str, Scalar]) -> int:
    repeat = substitute(table.get("repeat", 1), values, ("repeat",))
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 100:
        raise GridProblem(
            f"repeat must be an integer from 1 to 100 (or an axis placeholder such as "
            f'"{{depth}}"), got {show(repeat)}',
            ("repeat",),
        )
    return repeat


def substitute(value: Any, values: dict[str, Scalar], path: Path_) -> Any:
    """Fill placeholders in every string of a (nested) TOML value."""
    if isinstance(value, str):
        return _substitute_text(value, values, path)
    if isinstance(value, list):
        return [substitute(item, values, path) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, values, path) for key, item in value.items()}
    return value


def render_text(template: str, values: dict[str, Scalar], path: Path_) -> str:
    """Every placeholder rendered as text (for names): {depth} -> "3", {bn:-bn} -> "-bn"."""
    return _PLACEHOLDER.sub(lambda match: _render(match, values, path), template)


def _substitute_text(text: str, values: dict[str, Scalar], path: Path_) -> Scalar:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole and whole.group(2) is None:
        return _lookup(whole.group(1), values, path)
    return render_text(text, values, path)


def _render(match: re.Match[str], values: dict[str, Scalar], path: Path_) -> str:
    value = _lookup(match.group(1), values, path)
    if match.group(2) is not None:
        if not isinstance(value, bool):
            raise GridProblem(
                f"{{{match.group(1)}:...}} needs a boolean axis, got {show(value)}", path
            )
        return match.group(2) if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lookup(name: str, values: dict[str, Scalar], path: Path_) -> Scalar:
    if name not in values:
        axes = ", ".join(values)
        raise GridProblem(
            f"unknown placeholder {{{name}}}{did_you_mean(name, list(values))} (axes: {axes})",
            path,
        )
    return values[name]


def did_you_mean(word: Any, choices: list[str] | tuple[str, ...]) -> str:
    """'; did you mean 'x'?' for the closest choices, or nothing."""
    unique = list(dict.fromkeys(choices))  # a name listed twice is suggested once
    close = difflib.get_close_matches(str(word).lower(), unique, n=2, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(choice) for choice in close) + "?"


def show(value: Any) -> str:
    """A value as the error message shows it: TOML-like, one line, never huge."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
