"""Writing specs back as TOML: the compact form that loads to an equal spec."""

from __future__ import annotations

from typing import Any

import tomli_w

from cnnlab.spec.kinds import Block, kind_of
from cnnlab.spec.recipes import KerasObject
from cnnlab.spec.types import Layer, ModelSpec, OptimizerSpec, Pruning, StudySpec, TrainingSpec


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
    if study.prune is not None:
        lines.append(f"prune = {_prune(study.prune)}")
    lines += ["", "[training]"]
    lines.append(f"epochs = {study.training.epochs}")
    lines.append(f"batch_size = {study.training.batch_size}")
    lines.append(f"validation = {_scalar(study.training.validation)}")
    if study.training.train_limit is not None:
        lines.append(f"train_limit = {study.training.train_limit}")
    lines += _recipe_lines(study.training)
    if study.training.precision != "fp32":
        lines.append(f"precision = {_scalar(study.training.precision)}")
    for model in study.models:
        lines += ["", "[[model]]", *_model_lines(model, "model.")]
    return "\n".join(lines) + "\n"


def _recipe_lines(training: TrainingSpec) -> list[str]:
    """The recipe fields that are set; Keras's None defaults left out (TOML has no null)."""
    lines = []
    if training.augment:
        items = ", ".join(_keras_object(item, named=True) for item in training.augment)
        lines.append(f"augment = [{items}]")
    if training.learning_rate_schedule is not None:
        schedule = _keras_object(training.learning_rate_schedule, named=True)
        lines.append(f"learning_rate_schedule = {schedule}")
    for field in ("early_stopping", "reduce_lr_on_plateau"):
        callback = getattr(training, field)
        if callback is not None:
            lines.append(f"{field} = {_keras_object(callback, named=False)}")
    if training.label_smoothing:
        lines.append(f"label_smoothing = {_scalar(training.label_smoothing)}")
    if training.normalize != "scale":
        lines.append(f"normalize = {_scalar(training.normalize)}")
    return lines


def _keras_object(value: KerasObject, *, named: bool) -> str:
    args = [(k, list(v) if isinstance(v, tuple) else v) for k, v in value.args if v is not None]
    return _inline([("name", value.name), *args] if named else args)


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


def _prune(found: Pruning) -> str:
    """The `{ method = "halving", ... }` table of a study that prunes (unset options left out)."""
    fields = [("method", found.method), ("factor", found.factor)]
    fields += [("min_epochs", found.min_epochs), ("metric", found.metric)]
    return _inline([(key, value) for key, value in fields if value is not None])


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


def layer_to_toml(layer: Layer, indent: str = "  ") -> str:
    """One layer in the compact form: `{ conv = 32, kernel = 3, activation = "relu" }`.

    The layer table's writer gives the fields; a layer at its defaults whose type key takes
    `true` is written as a bare string ("flatten"). A block's layers go one per line, indented
    past `indent` (TOML allows newlines inside an array, even in an inline table).
    """
    kind = kind_of(layer)
    fields = kind.fields(layer)
    if kind.bare and fields[0][1] is True and layer == kind.spec_type():
        return f'"{kind.key}"'
    return _inline(fields, indent)


def _inline(fields: list[tuple[str, Any]], indent: str = "") -> str:
    body = ", ".join(f"{_key(key)} = {_field_value(value, indent)}" for key, value in fields)
    return "{ " + body + " }"


def _field_value(value: Any, indent: str) -> str:
    if not isinstance(value, Block):
        return _scalar(value)
    inner = indent + "    "
    lines = [f"{inner}{layer_to_toml(layer, inner)}," for layer in value]
    return "[\n" + "\n".join(lines) + f"\n{indent}  ]"


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
