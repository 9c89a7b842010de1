"""Parsing a model (optimizer, layers, reported figures) from TOML data or text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import SpecError
from cnnlab.grid import did_you_mean, show
from cnnlab.spec.files import parse_toml, read_ref
from cnnlab.spec.layers import parse_layers
from cnnlab.spec.places import At, Source
from cnnlab.spec.types import ModelSpec, OptimizerSpec
from cnnlab.spec.values import (
    as_bool,
    as_choice,
    as_fraction,
    as_name,
    as_number,
    as_table,
    as_text,
    check_keys,
)
from cnnlab.spec.vocabulary import MODEL_KEYS, OPTIMIZERS, PARAM_ALIASES, PARAM_ORDER


def parse_optimizer(value: Any, at: At) -> OptimizerSpec:
    """ "adam" or { name = "adam", learning_rate = 1e-3 }: a known name and its own params."""
    if isinstance(value, str):
        return OptimizerSpec(as_choice(value, at, "optimizer", tuple(OPTIMIZERS)))
    table = as_table(value, at, 'optimizer (a name such as "adam", or a table with name = ...)')
    if "name" not in table:
        raise at.error('an optimizer table needs name = ..., e.g. { name = "adam" }')
    name = as_choice(table["name"], at.key("name"), "optimizer", tuple(OPTIMIZERS))
    params = {}
    for key, raw in table.items():
        if key == "name":
            continue
        param = PARAM_ALIASES.get(key, key)
        if param not in OPTIMIZERS[name] or param in params:
            allowed = OPTIMIZERS[name]
            raise at.key(key).error(
                f"{name} takes no parameter {show(key)}{did_you_mean(param, allowed)}"
                f" (parameters: {', '.join(allowed)})"
            )
        params[param] = _optimizer_param(param, raw, at.key(key))
    ordered = tuple((key, params[key]) for key in PARAM_ORDER if key in params)
    return OptimizerSpec(name, ordered)


def _optimizer_param(param: str, value: Any, at: At) -> float | bool:
    """Keras's own ranges (keras/src/optimizers/*.py argument docs), as training checks them
    (cnnlab.optim): a rate of 0 or a decay of 1 would never train."""
    if param in ("nesterov", "amsgrad"):
        return as_bool(value, at, param)
    if param in ("rho", "momentum", "beta_1", "beta_2"):
        return as_fraction(value, at, param)
    number = as_number(value, at, param)
    positive = param in ("learning_rate", "epsilon")
    if number < 0 or (positive and number == 0):
        raise at.error(f"{param} must be {'> 0' if positive else '>= 0'}, got {value}")
    return number


def parse_figures(value: Any, at: At, what: str, *, numbers_only: bool) -> tuple:
    """[reported] (numbers) or [factors] (any scalar) as (key, value) pairs in file order."""
    table = as_table(value, at, what)
    pairs = []
    for key, item in table.items():
        if not isinstance(key, str) or not key:
            raise at.error(f"{what} keys must be non-empty strings, got {show(key)}")
        if not numbers_only and isinstance(item, (str, bool, int)):
            pairs.append((key, item))
        else:
            pairs.append((key, as_number(item, at.key(key), f"{what}.{key}")))
    return tuple(pairs)


def parse_model(
    data: Any,
    at: At,
    *,
    default_name: str,
    layer_paths: tuple[tuple[str | int, ...], ...] | None = None,
) -> ModelSpec:
    table = as_table(data, at, "a model")
    check_keys(table, MODEL_KEYS, at, "model")
    if "layers" not in table:
        raise at.error("a model needs layers = [ ... ]")
    optimizer = table.get("optimizer")
    layers, places = parse_layers(table["layers"], at, layer_paths)
    return ModelSpec(
        name=as_name(table.get("name", default_name), at.key("name")),
        description=as_text(table.get("description", ""), at.key("description"), "description"),
        optimizer=OptimizerSpec()
        if optimizer is None
        else parse_optimizer(optimizer, at.key("optimizer")),
        layers=layers,
        layer_places=places,
        reported=parse_figures(
            table.get("reported", {}), at.key("reported"), "reported", numbers_only=True
        ),
        factors=parse_figures(
            table.get("factors", {}), at.key("factors"), "factors", numbers_only=False
        ),
    )


def model_from_dict(d: dict, *, source: str = "<dict>") -> ModelSpec:
    """A ModelSpec from a dict shaped like a model file (what tomllib returns for one).

    `source` names the origin in error messages; a dict has no lines, so errors give the
    layer index: `<dict>: layer 3 (conv): kernel must be >= 1, got 0`.
    """
    return parse_model(d, At(Source(source)), default_name=default_name(source))


def model_from_toml(text: str, *, source: str = "<string>") -> ModelSpec:
    """A ModelSpec from the text of a model file; errors name `source` and the line."""
    data = parse_toml(text, source)
    return parse_model(data, At(Source(source, text)), default_name=default_name(source))


def default_name(source: str) -> str:
    stem = Path(source).stem if source.endswith(".toml") else ""
    return stem or "model"


def load_model(ref: str | Path) -> ModelSpec:
    """A model from a preset name (`seed/model-3`) or a .toml file, validated."""
    data, source, default_name = read_ref(ref, "model")
    if isinstance(data, dict) and "layers" not in data and {"models", "model", "grid"} & set(data):
        raise SpecError(
            f"{source.name}: a study file (it has models), not a model: run it with "
            f"`cnnlab run {source.name}`"
        )
    return parse_model(data, At(source), default_name=default_name)
