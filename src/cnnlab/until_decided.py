"""`cnnlab run STUDY --until-decided`: train seeds only where a model's place is still open.

The driver alternates between `cnnlab.sequential.decide` (pure, on the stored accuracies) and
`cnnlab.study.run_study` (the models that need their next seed, seeds 0..n-1, so the order
is the one a fixed study trains in). Everything it decides is replayed from the store, so a
stopped study resumes to the same decisions with the same command, and `--max-seeds` raised
extends it (replaying every look at the new, lower levels: a decided model may open again).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import sequential
from cnnlab.errors import SpecError
from cnnlab.sequential import Decisions, SequentialSettings
from cnnlab.spec import SeedRange, StudySpec
from cnnlab.store import FINAL_STATUSES, STORE_FILENAME
from cnnlab.study import (
    StudyOutcome,
    driven_study,
    drivers_outcome,
    open_existing_store,
    plan_study,
    run_study,
    study_runs,
)

# The options of `run_study` that change what a run is (its key), so which stored runs count.
_RECIPE_OPTIONS = ("epochs", "dataset", "train_limit", "precision", "normalize", "training")


def resolve_settings(
    seed_range: SeedRange | None = None,
    *,
    min_seeds: int | None = None,
    max_seeds: int | None = None,
    margin_points: float | None = None,
    budget: str | None = None,
) -> SequentialSettings:
    """The procedure's settings: the options given, else the study file's
    `seeds = { min, max, margin, budget }`, else the defaults (2, 10, 0.1 points, none)."""
    found = seed_range or SeedRange(sequential.DEFAULT_MIN_SEEDS, sequential.DEFAULT_MAX_SEEDS)
    margin = margin_points if margin_points is not None else found.margin
    if min_seeds is None and max_seeds is not None and max_seeds < found.min:
        where = "the study file's seeds.min" if seed_range else "the default --min-seeds"
        raise SpecError(
            f"--max-seeds {max_seeds} is below the minimum of {found.min} seeds ({where}); "
            f"give at least {found.min}, or --min-seeds too"
        )
    return SequentialSettings(
        min_seeds=found.min if min_seeds is None else min_seeds,
        max_seeds=found.max if max_seeds is None else max_seeds,
        margin=sequential.DEFAULT_MARGIN if margin is None else margin / 100,
        budget=sequential.parse_budget(budget if budget is not None else found.budget),
    )


@dataclass(frozen=True)
class UntilDecidedOutcome:
    """The study's runs after the last round, and every model's decision."""

    study: StudyOutcome
    decisions: Decisions
    rounds: int  # rounds that trained something in this call


def run_until_decided(
    study: StudySpec | str | Path,
    *,
    settings: SequentialSettings | None = None,
    directory: str | Path | None = None,
    models: str | Sequence[str] | None = None,
    **run_options: Any,
) -> UntilDecidedOutcome:
    """Train each model's seeds 0..min-1, then one more seed at a time to the models whose
    place is open, until every model is decided, max seeds is reached or the budget spent.

    settings: default `resolve_settings(study.seed_range)`, the study file's `seeds = { min,
    max }` or the defaults. run_options go to `cnnlab.run_study` (epochs, dataset,
    train_limit, precision, jobs, ...); seeds are the procedure's to choose, so `seeds` is
    refused. (`cnnlab.run_study` on a study with `seeds = { min, max }` trains the minimum.)
    """
    if run_options.get("seeds") is not None:
        raise SpecError(
            "--until-decided chooses the seeds itself: give --min-seeds/--max-seeds, not --seeds"
        )
    spec, names, root = driven_study(study, models, directory)
    settings = settings or resolve_settings(spec.seed_range)
    settings.check_budget(len(names))
    annotations = {sequential.SETTINGS_KEY: {**settings.to_dict(), "models": names}}
    started, finished, rounds = time.perf_counter(), [], 0
    ours = _keys_of_this_recipe(spec, root, names, settings, run_options)
    decisions = _decide(root, names, settings, ours)
    outcome = None
    while not decisions.finished:
        seeds = max(decisions.needed.values())
        outcome = run_study(
            spec,
            directory=root,
            seeds=seeds,
            models=list(decisions.needed),
            annotations=annotations,
            **run_options,
        )
        finished.extend(outcome.finished)
        rounds += bool(outcome.finished)
        if not outcome.complete:  # runs held by another process: it carries on from here
            break
        after = _decide(root, names, settings, ours)
        if after == decisions:  # nothing moved (cannot happen with complete runs; a guard)
            break
        decisions = after
    whole = drivers_outcome(spec, root, names, finished, time.perf_counter() - started)
    return UntilDecidedOutcome(whole, decisions, rounds)


def _keys_of_this_recipe(
    spec: StudySpec,
    root: Path,
    names: list[str],
    settings: SequentialSettings,
    run_options: dict[str, Any],
) -> frozenset[str]:
    """The keys of the runs this call would train (seeds 0 .. max - 1): a directory may hold
    the same models' runs under other settings (--epochs, an edited [training]), which must
    neither decide nor stand in for this call's runs."""
    recipe = {name: run_options[name] for name in _RECIPE_OPTIONS if name in run_options}
    data_dir = run_options.get("data_dir")
    plan = plan_study(
        spec, directory=root, seeds=settings.max_seeds, models=names, data_dir=data_dir, **recipe
    )
    return frozenset(plan.keys)


def _decide(
    root: Path,
    names: list[str],
    settings: SequentialSettings,
    ours: frozenset[str],
) -> Decisions:
    """The decisions from the runs of this call's recipe that the study directory holds
    (nothing yet: every model open)."""
    runs = study_runs(root, all_runs=True) if (root / STORE_FILENAME).is_file() else []
    chosen = [run for run in runs if run.model in names and run.key in ours]
    seconds = sum(run.seconds or 0.0 for run in chosen if run.status in FINAL_STATUSES)
    results = {m: sequential.accuracies_by_seed(chosen, m) for m in names}
    return sequential.decide(results, settings, seconds_spent=seconds)


def study_decisions(directory: str | Path) -> Decisions | None:
    """The `--until-decided` decisions of the study in `directory` (None for a fixed study)."""
    with open_existing_store(directory) as store:
        info = store.get_study()
        runs = store.list_runs()
    return sequential.decisions_of(info.settings if info else {}, runs)
