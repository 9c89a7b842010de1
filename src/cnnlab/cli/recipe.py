"""The training-recipe flags `cnnlab train` and `cnnlab run` share: one parser, one set of rules.

`--augment random_crop=28,pad=4`, `--early-stopping patience=3` and the rest are the study
file's `[training]` keys written as key=value pairs, checked by the same `TrainingSpec` rules:
a flag changes a run's identity exactly as the same key in the file would. "on" turns a
callback on with Keras's defaults, "off" removes what the study file set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tomllib
import typer

from cnnlab.errors import SpecError
from cnnlab.spec import TrainingSpec
from cnnlab.spec.recipes import FieldError

OFF = "off"  # a flag's value that removes the study file's setting
# The TrainingSpec field each flag sets, in the order --help lists them.
FLAGS = {
    "augment": "--augment",
    "learning_rate_schedule": "--learning-rate-schedule",
    "early_stopping": "--early-stopping",
    "reduce_lr_on_plateau": "--reduce-lr-on-plateau",
    "label_smoothing": "--label-smoothing",
    "normalize": "--normalize",
}


def augment_option() -> Any:
    return typer.Option(
        None,
        "--augment",
        help="A Keras random layer for training batches, repeatable: "
        '"random_crop=28,pad=4", "random_flip=horizontal", "random_rotation=0.05"; "off": none.',
    )


def schedule_option() -> Any:
    return typer.Option(
        None,
        "--learning-rate-schedule",
        help='A Keras schedule: "CosineDecay,initial_learning_rate=0.1,decay_steps=5000"; "off".',
    )


def early_stopping_option() -> Any:
    return typer.Option(
        None,
        "--early-stopping",
        help='Keras\'s EarlyStopping: "patience=3,restore_best_weights=true" ("on": its '
        'defaults, "off": none).',
    )


def plateau_option() -> Any:
    return typer.Option(
        None,
        "--reduce-lr-on-plateau",
        help='Keras\'s ReduceLROnPlateau: "factor=0.5,patience=2" ("on", "off").',
    )


def label_smoothing_option() -> Any:
    return typer.Option(None, "--label-smoothing", help="The loss's label_smoothing (0 to 1).")


def normalize_option(default: str | None = None) -> Any:
    return typer.Option(
        default,
        "--normalize",
        help="scale (x / 255), or per-channel (then standardise with the training part's "
        "mean and std).",
    )


@dataclass(frozen=True)
class RecipeFlags:
    """The recipe flags as typed; None (or no --augment) leaves the field as it is."""

    augment: tuple[str, ...] = ()
    learning_rate_schedule: str | None = None
    early_stopping: str | None = None
    reduce_lr_on_plateau: str | None = None
    label_smoothing: float | None = None
    normalize: str | None = None

    def changes(self) -> dict[str, Any]:
        """The TrainingSpec fields these flags set, as a study file's [training] writes them."""
        changes: dict[str, Any] = {}
        if self.augment:
            changes["augment"] = (
                []
                if list(self.augment) == [OFF]
                else [keras_arguments(text, "--augment") for text in self.augment]
            )
        for field, named in (
            ("learning_rate_schedule", True),
            ("early_stopping", False),
            ("reduce_lr_on_plateau", False),
        ):
            text = getattr(self, field)
            if text is not None:
                changes[field] = (
                    None if text == OFF else keras_arguments(text, FLAGS[field], named=named)
                )
        if self.label_smoothing is not None:
            changes["label_smoothing"] = self.label_smoothing
        if self.normalize is not None:
            changes["normalize"] = self.normalize
        return changes


def apply_recipe_flags(training: TrainingSpec, flags: RecipeFlags) -> TrainingSpec:
    """`training` with the flags' fields replaced, checked as a study file's [training] is;
    a refusal names the flag (or, for a rule between fields, the flags given)."""
    changes = flags.changes()
    try:
        return training.replace(**changes)
    except FieldError as error:
        field = error.path[0] if error.path else None
        if field in changes:
            raise SpecError(f"{FLAGS[str(field)]}: {error.rule}") from None
        given = ", ".join(FLAGS[name] for name in changes)
        raise SpecError(f"{given}: {error.rule}") from None


def keras_arguments(text: str, option: str, *, named: bool = False) -> dict[str, object]:
    """ "key=value,key=value" as a table (values read as TOML: 0.1, true, [1, 2], words as
    text); `named`: the first item is a bare name ("CosineDecay,decay_steps=10"). "on": {}."""
    items = _split_top_level(text)
    table: dict[str, object] = {}
    if named and items and "=" not in items[0]:
        table["name"] = items.pop(0).strip()
    if items == ["on"]:
        return table
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise SpecError(f"{option} takes key=value pairs separated by commas, got {item!r}")
        table[key.strip()] = _toml_value(value.strip())
    return table


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets: "boundaries=[1,2],values=[3,2,1]" is two items."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [item for item in [*items, current] if item.strip()]


def _toml_value(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: horizontal, val_loss
