"""Writing specs back as TOML: the compact form that loads to an equal spec."""

from __future__ import annotations

from typing import Any

import tomli_w

from cnnlab.spec.types import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Layer,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    Pair,
    StudySpec,
)


def model_to_toml(spec: ModelSpec) -> str:
    """The compact form, one layer per line; loading it gives back an equal spec."""
    return "\n".join(_model_lines(spec, "")) + "\n"


def study_to_toml(study: StudySpec) -> str:
    """A study with every model written out inline ([[model]]), so it stands alone."""
    lines = [f"name = {_scalar(study.name)}"]
    if study.description:
        lines.append(f"description = {_scalar(study.description)}")
    lines.append(f"dataset = {_scalar(study.dataset)}")
    lines.append(f"seeds = {_seeds(study)}")
    lines += ["", "[training]"]
    lines.append(f"epochs = {study.training.epochs}")
    lines.append(f"batch_size = {study.training.batch_size}")
    lines.append(f"validation = {_scalar(study.training.validation)}")
    if study.training.precision != "fp32":
        lines.append(f"precision = {_scalar(study.training.precision)}")
    for model in study.models:
        lines += ["", "[[model]]", *_model_lines(model, "model.")]
    return "\n".join(lines) + "\n"


def _seeds(study: StudySpec) -> str:
    """The seed list, or the `{ min, max, ... }` table of a study run until decided."""
    found = study.seed_range
    if found is None:
        return _array(list(study.seeds))
    parts = [f"min = {found.min}", f"max = {found.max}"]
    if found.margin is not None:
        parts.append(f"margin = {_scalar(found.margin)}")
    if found.budget is not None:
        parts.append(f"budget = {_scalar(found.budget)}")
    return "{ " + ", ".join(parts) + " }"


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
