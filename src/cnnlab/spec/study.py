"""Parsing studies: models (files, presets, grids), seeds, dataset and training settings."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab import limits, presets
from cnnlab.errors import SpecError
from cnnlab.grid import GridProblem, did_you_mean, expand_grid, show
from cnnlab.spec.files import read_ref
from cnnlab.spec.model import default_name, load_model, parse_model
from cnnlab.spec.places import At, Source
from cnnlab.spec.training import FieldError
from cnnlab.spec.types import ModelSpec, Pruning, SeedRange, StudySpec, TrainingSpec
from cnnlab.spec.values import (
    as_int,
    as_limited,
    as_name,
    as_number,
    as_table,
    as_text,
    check_keys,
)
from cnnlab.spec.vocabulary import (
    PRUNE_KEYS,
    PRUNE_METHODS,
    PRUNE_METRICS,
    STUDY_KEYS,
    TRAINING_KEYS,
)


def load_study(ref: str | Path) -> StudySpec:
    """A study from a preset name (`seed`) or a .toml file, with every model resolved."""
    data, source, default_name = read_ref(ref, "study")
    if isinstance(data, dict) and "layers" in data and not {"models", "model", "grid"} & set(data):
        raise SpecError(
            f"{source.name}: a model file (it has layers), not a study: train it alone with "
            f"`cnnlab train {source.name}`, or name it in a study's models = [...]"
        )
    # Model files named in a study are found beside it; a preset study names presets only.
    base = None if presets.is_preset_source(source.name) else Path(source.name).parent
    return _parse_study(data, At(source), default_name, base)


def study_from_dict(d: dict, *, source: str = "<dict>", base_dir: Path | None = None) -> StudySpec:
    """A StudySpec from a dict shaped like a study file; model files are found in base_dir
    (the current directory when None)."""
    base = Path.cwd() if base_dir is None else Path(base_dir)
    return _parse_study(d, At(Source(source)), default_name(source), base)


def _parse_study(data: Any, at: At, default_name: str, base: Path | None) -> StudySpec:
    table = as_table(data, at, "a study")
    check_keys(table, STUDY_KEYS, at, "study")
    models = _study_models(table, at, base, _first_seed(table.get("seeds", 1)))
    if not models:
        raise at.error("a study needs models = [...], [[model]] or [[grid]] tables")
    seeds = table.get("seeds", 1)
    seed_range = _parse_seed_range(seeds, at.key("seeds")) if isinstance(seeds, dict) else None
    return StudySpec(
        name=as_name(table.get("name", default_name), at.key("name")),
        description=as_text(table.get("description", ""), at.key("description"), "description"),
        models=models,
        seeds=tuple(range(seed_range.min)) if seed_range else _parse_seeds(seeds, at.key("seeds")),
        seed_range=seed_range,
        prune=_parse_prune(table["prune"], at.key("prune")) if "prune" in table else None,
        dataset=_dataset(table.get("dataset", "mnist"), at.key("dataset")),
        training=_parse_training(table.get("training", {}), at.key("training")),
    )


def _first_seed(seeds: Any) -> int:
    """The study's first seed, which draws a grid's `random:K` models (a bad value is left to
    the seeds' own check)."""
    if isinstance(seeds, list) and seeds and isinstance(seeds[0], int):
        return max(seeds[0], 0)
    return 0


def _study_models(table: dict, at: At, base: Path | None, seed: int = 0) -> tuple[ModelSpec, ...]:
    """models = [refs], then [[model]] tables, then [[grid]] variants; names must be unique."""
    refs = table.get("models", [])
    if not isinstance(refs, list):
        raise at.key("models").error(f"models must be a list of names or files, got {show(refs)}")
    models = [_model_ref(ref, at.key("models", index), base) for index, ref in enumerate(refs)]
    inline = _array_of_tables(table.get("model", []), at.key("model"), "[[model]]")
    for index, item in enumerate(inline):
        label = f"model {item.get('name')!r}" if isinstance(item.get("name"), str) else ""
        place = at.key("model", index, label=label or f"[[model]] {index + 1}")
        models.append(parse_model(item, place, default_name=f"model-{index + 1}"))
    for index, grid in enumerate(_array_of_tables(table.get("grid", []), at.key("grid"), "grid")):
        models.extend(_grid_models(grid, at.key("grid", index, label=f"grid {index + 1}"), seed))
    _check_unique_names(models, at)
    return tuple(models)


def _array_of_tables(value: Any, at: At, what: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise at.error(f"{what} must be tables ([[{at.path[-1]}]] headers), got {show(value)}")
    return value


def _model_ref(ref: Any, at: At, base: Path | None) -> ModelSpec:
    text = as_text(ref, at, "a models entry (a preset name or a .toml path)")
    if text.endswith(".toml"):
        if base is None:
            raise at.error(f"a preset study can only name presets, got {text!r}")
        path = Path(text) if Path(text).is_absolute() else base / text
        if not path.is_file():
            raise at.error(f"model file {text!r} not found (looked in {path})")
        return load_model(path)
    if presets.preset_text(text, kind="model") is None:
        names = presets.list_presets(kind="model")
        raise at.error(
            f"unknown model preset {text!r}{did_you_mean(text, names)}"
            " (files need a .toml ending; `cnnlab models` lists presets)"
        )
    return load_model(text)


def _grid_models(grid: dict, at: At, seed: int = 0) -> list[ModelSpec]:
    try:
        variants = expand_grid(grid, seed=seed)
    except GridProblem as problem:
        raise at.key(*problem.path).error(problem.rule) from None
    models = []
    for variant in variants:
        place = at.key(label=f"model {variant.name!r}" if isinstance(variant.name, str) else "")
        try:
            models.append(
                parse_model(
                    variant.model, place, default_name="grid", layer_paths=variant.layer_paths
                )
            )
        except GridProblem as problem:  # pragma: no cover - variants are plain dicts by now
            raise place.key(*problem.path).error(problem.rule) from None
    return models


def _check_unique_names(models: list[ModelSpec], at: At) -> None:
    seen: set[str] = set()
    for model in models:
        if model.name in seen:
            raise at.error(
                f"two models are named {model.name!r}; names must be unique within a study"
            )
        seen.add(model.name)


def _parse_seeds(value: Any, at: At) -> tuple[int, ...]:
    """seeds = 3 means (0, 1, 2); a list is taken as written (distinct, >= 0)."""
    if isinstance(value, list):
        if not value:
            raise at.error("seeds must not be an empty list")
        if len(value) > limits.LIMITS["seeds"].high:
            raise at.error(f"seeds must list at most 10,000 seeds, got {len(value):,}")
        seeds = tuple(as_limited(seed, at, "each seed", "seed") for seed in value)
        if len(set(seeds)) != len(seeds):
            raise at.error(f"seeds must be distinct, got {show(value)}")
        return seeds
    return tuple(range(as_limited(value, at, "seeds (a count or a list of seeds)", "seeds")))


SEED_RANGE_KEYS = ("min", "max", "margin", "budget")


def _parse_seed_range(table: dict, at: At) -> SeedRange:
    """seeds = { min = 2, max = 10 } (margin in accuracy points, budget as --budget)."""
    check_keys(table, SEED_RANGE_KEYS, at, "seeds")
    if "max" not in table:
        raise at.error("seeds = { min = ..., max = ... } needs max, the most seeds a model gets")
    most = int(limits.LIMITS["seeds"].high)
    low = as_int(table.get("min", 2), at.key("min"), "seeds.min", minimum=2, maximum=most)
    high = as_int(table["max"], at.key("max"), "seeds.max", minimum=2, maximum=most)
    if low > high:
        raise at.error(f"seeds.min must not exceed seeds.max, got min {low} > max {high}")
    margin = None
    if "margin" in table:
        margin = as_number(table["margin"], at.key("margin"), "seeds.margin (accuracy points)")
        if not 0 < margin < 100:
            raise at.key("margin").error(
                f"seeds.margin must be above 0 and below 100 accuracy points, got {margin:g}"
            )
    budget = (
        as_text(table["budget"], at.key("budget"), "seeds.budget") if "budget" in table else None
    )
    return SeedRange(low, high, margin, budget)


def _parse_prune(value: Any, at: At) -> Pruning:
    """prune = { method = "halving", factor = 3, min_epochs = 1, metric = "val_accuracy" };
    what needs the epochs (a rung below the last) is checked where the epochs are known."""
    if isinstance(value, str):  # prune = "halving": the method at its defaults
        value = {"method": value}
    table = as_table(value, at, 'prune (a table such as { method = "halving", factor = 3 })')
    check_keys(table, PRUNE_KEYS, at, "prune")
    method = as_text(table.get("method", "halving"), at.key("method"), "prune.method")
    if method not in PRUNE_METHODS:
        raise at.key("method").error(
            f"prune.method must be one of {', '.join(PRUNE_METHODS)}, got {show(method)}"
            + did_you_mean(method, PRUNE_METHODS)
        )
    factor = table.get("factor")
    if factor is not None:
        factor = as_int(factor, at.key("factor"), "prune.factor", minimum=2, maximum=1000)
    least = table.get("min_epochs")
    if least is not None:
        least = as_limited(least, at.key("min_epochs"), "prune.min_epochs", "epochs")
    metric = table.get("metric")
    if metric is not None:
        metric = as_text(metric, at.key("metric"), "prune.metric")
        if metric not in PRUNE_METRICS:
            raise at.key("metric").error(
                f"prune.metric must be one of {', '.join(PRUNE_METRICS)}, got {show(metric)}"
                + did_you_mean(metric, PRUNE_METRICS)
            )
    return Pruning(method, factor, least, metric)


def parse_seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    """Seeds given in code or on the command line: a count N means seeds 0..N-1 (as a study
    file's `seeds = N`); a sequence (NumPy arrays too) is taken as is, distinct and >= 0."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        limits.check("seeds", seeds)
        return tuple(range(int(seeds)))
    chosen = list(seeds)
    if not chosen:
        raise SpecError("seeds must name at least one seed, got none")
    limits.check("seeds", len(chosen), what="the number of seeds")
    for seed in chosen:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise SpecError(f"seeds must be whole numbers >= 0, got {seed!r}")
        limits.check("seed", seed, what="each seed")
    if len(set(chosen)) != len(chosen):
        raise SpecError(f"seeds must differ from each other, got {[int(s) for s in chosen]}")
    return tuple(int(seed) for seed in chosen)


def _dataset(value: Any, at: At) -> str:
    name = as_text(value, at, "dataset")
    if not name.strip():
        raise at.error('dataset must name a dataset such as "mnist"')
    return name


def _parse_training(value: Any, at: At) -> TrainingSpec:
    """[training]: TrainingSpec checks every field; its refusal is placed at the key's line."""
    table = as_table(value, at, "training")
    check_keys(table, TRAINING_KEYS, at, "training")
    try:
        return TrainingSpec(**table)
    except FieldError as error:
        raise at.key(*error.path).error(error.rule) from None
