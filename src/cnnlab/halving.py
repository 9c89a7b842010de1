"""`cnnlab run STUDY --prune halving`: stop the models that rank low early, successive halving.

The driver alternates between `cnnlab.study.run_study` with `until_epoch` (every run of the
models still in, trained to the rung's epoch and left resumable) and `cnnlab.rungs.next_rung`
(pure, on the stored epoch figures); the losers' runs end as `pruned` with the epoch they
stopped at, the others go on from their checkpoints. After the last rung the models left train
to the end. Every decision is replayed from the store, so a stopped study resumes to the same
decisions with the same command (docs/sequential.md, "Stopping hopeless runs early").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import rungs
from cnnlab.errors import SpecError, StudyError
from cnnlab.executors import prune_checkpoints
from cnnlab.grid import did_you_mean
from cnnlab.rungs import HalvingSettings, Rung
from cnnlab.spec import Pruning, StudySpec, TrainingSpec
from cnnlab.spec.vocabulary import PRUNE_METHODS
from cnnlab.store import FINAL_STATUSES, STORE_FILENAME, RunRecord, Worker, open_store
from cnnlab.study import (
    RUNS_DIRNAME,
    StudyOutcome,
    driven_study,
    drivers_outcome,
    open_existing_store,
    run_study,
)

NO_PRUNING = "none"  # --prune none: a study file's prune = { ... } left off for this run


def resolve_settings(
    pruning: Pruning | None = None,
    *,
    method: str | None = None,
    factor: int | None = None,
    min_epochs: int | None = None,
    metric: str | None = None,
) -> HalvingSettings | None:
    """Halving's settings: the options given, else the study file's `prune = { ... }`, else
    the defaults (factor 3, min epochs 1, validation accuracy); None when nothing asks for
    pruning (or `--prune none`)."""
    options = {"factor": factor, "min_epochs": min_epochs, "metric": metric}
    named = [name for name, value in options.items() if value is not None]
    if method is not None and method not in (*PRUNE_METHODS, NO_PRUNING):
        known = (*PRUNE_METHODS, NO_PRUNING)
        raise SpecError(
            f"--prune must be one of {', '.join(known)}, got {method!r}"
            + did_you_mean(method, known)
        )
    if method == NO_PRUNING or (method is None and pruning is None):
        if named:
            option = "--prune-" + named[0].replace("_", "-")
            raise SpecError(f"{option} belongs to --prune halving; add --prune halving")
        return None
    return halving_settings(pruning, factor=factor, min_epochs=min_epochs, metric=metric)


def halving_settings(
    pruning: Pruning | None,
    *,
    factor: int | None = None,
    min_epochs: int | None = None,
    metric: str | None = None,
) -> HalvingSettings:
    """The options given over the study file's `prune = { ... }` over the defaults."""
    found = pruning or Pruning()
    return HalvingSettings(
        factor=_first(factor, found.factor, rungs.DEFAULT_FACTOR),
        min_epochs=min_epochs if min_epochs is not None else found.min_epochs,  # None: auto
        metric=_first(metric, found.metric, rungs.DEFAULT_METRIC),
    )


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


@dataclass(frozen=True)
class HalvingOutcome:
    """The study's runs after this call, and the rungs decided so far (all, when complete)."""

    study: StudyOutcome
    halving: rungs.Halving


def run_halving(
    study: StudySpec | str | Path,
    *,
    settings: HalvingSettings | None = None,
    directory: str | Path | None = None,
    models: str | Sequence[str] | None = None,
    **run_options: Any,
) -> HalvingOutcome:
    """Train every model's runs to the first rung, prune all but the top 1/factor of the
    models, go on to the next rung with the others, and train the last ones to the end.

    settings: default `halving_settings(study.prune)`, the study file's `prune = { ... }` or
    the defaults. run_options go to `cnnlab.run_study` (seeds, epochs, dataset, train_limit,
    jobs, ...). Bad settings (no rung before the last epoch, no validation figure to rank by)
    raise SpecError before anything trains.
    """
    if run_options.get("until_epoch") is not None:
        raise SpecError("--prune halving chooses the epochs each rung trains to itself")
    spec, names, root = driven_study(study, models, directory)
    settings = settings or halving_settings(spec.prune)
    training = _training(spec, run_options)
    schedule = settings.rungs(training.epochs)
    _check_ranked_figure(training, settings)
    run_options |= {
        "directory": root,
        "annotations": {rungs.SETTINGS_KEY: {**settings.to_dict(), "models": names}},
    }
    started, finished, decided = time.perf_counter(), [], []
    alive, chosen, held = names, models, False
    for number, epoch in enumerate(schedule, start=1):
        if len(alive) <= 1:  # no rung prunes the last model
            break
        outcome = run_study(spec, models=chosen, until_epoch=epoch, **run_options)
        finished += outcome.finished
        rung = _decide(outcome.runs, alive, number, epoch, settings)
        if rung is None:  # runs held by another process: it carries on from here
            held = True
            break
        finished += prune_models(root, outcome.runs, rung)
        decided.append(rung)
        alive = chosen = list(rung.kept)
    if not held:
        outcome = run_study(spec, models=chosen, **run_options)
        finished += outcome.finished
        _refuse_pruned(outcome.runs, alive, None, "trains to the last epoch")
    found = rungs.Halving(settings, training.epochs, tuple(names), tuple(decided))
    whole = drivers_outcome(spec, root, names, finished, time.perf_counter() - started)
    return HalvingOutcome(whole, found)


def _decide(
    runs: Sequence[RunRecord], alive: list[str], number: int, epoch: int, settings: HalvingSettings
) -> Rung | None:
    """The rung's decision once its runs reached it (None: some are held elsewhere), refused
    where it would send on a model an earlier call pruned."""
    rung = rungs.next_rung(runs, alive, number, epoch, settings)
    if rung is not None:
        _refuse_pruned(runs, rung.kept, epoch, f"goes on at rung {number}")
    return rung


def _training(spec: StudySpec, run_options: dict[str, Any]) -> TrainingSpec:
    """The recipe the runs will train with: --epochs (and a replaced [training]) applied."""
    training = run_options.get("training") or spec.training
    epochs = run_options.get("epochs")
    return training if epochs is None else training.replace(epochs=epochs)


def _check_ranked_figure(training: TrainingSpec, settings: HalvingSettings) -> None:
    if training.validation != "test" and float(training.validation) == 0:
        raise SpecError(
            f"--prune halving ranks models by {settings.metric}, but validation = 0 holds no "
            "images out to compute it; set validation (e.g. 0.1) in [training]"
        )


def _refuse_pruned(
    runs: Sequence[RunRecord], models: Sequence[str], epoch: int | None, going: str
) -> None:
    """A model that goes on past `epoch` (None: to the last) must not hold runs an earlier
    call with other settings or seeds pruned there or sooner: they cannot go on, and its
    final statistics would miss them. (Runs pruned at a later rung are that rung's to check.)"""
    for run in runs:
        if run.model not in models or run.status != "pruned":
            continue
        if epoch is None or (run.stopped_epoch or 0) <= epoch:
            raise StudyError(
                f"{run.model} seed {run.seed} was pruned at epoch {run.stopped_epoch} by an "
                f"earlier --prune run, but with these settings and seeds {run.model} "
                f"{going}: run with the settings it was pruned with, or in another --dir"
            )


def prune_models(root: Path, runs: Sequence[RunRecord], rung: Rung) -> list[str]:
    """End the unfinished runs of the rung's pruned models as `pruned` (reason and epoch
    recorded; only the last checkpoint kept); returns their keys. A run another worker holds
    is left to it (the next call with the same command prunes it)."""
    losers = [r for r in runs if r.model in rung.pruned and r.status not in FINAL_STATUSES]
    if not losers:
        return []
    worker, ended = Worker.current("halving"), []
    with open_store(root / STORE_FILENAME) as store:
        for run in losers:
            claimed = store.claim_next(worker, keys=[run.key])
            if claimed is None:
                continue
            stopped = len(claimed.epochs)
            store.finish_run(
                run.key,
                worker,
                status="pruned",
                reason=rung.reason(run.model),
                stopped_epoch=stopped,
                seconds=sum(epoch.seconds for epoch in claimed.epochs),
            )
            run_dir = root / RUNS_DIRNAME / run.key
            prune_checkpoints(run_dir, keep=run_dir / f"epoch-{stopped:04d}.safetensors")
            ended.append(run.key)
    return ended


def study_halving(directory: str | Path) -> rungs.Halving | None:
    """The `--prune halving` rungs of the study in `directory` (None: it prunes nothing)."""
    with open_existing_store(directory) as store:
        info = store.get_study()
        runs = store.list_runs()
    return rungs.halving_of(info.settings if info else {}, runs)
