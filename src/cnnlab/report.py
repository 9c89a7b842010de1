"""The study report: one self-contained HTML page with the table, conclusions and every plot.

`build_report(directory)` reads a study's store (finished or not; it never trains), computes
the results table and the statistics, draws the plots and writes `DIR/report/report.html`.
The page needs nothing else: images are inline data URIs, styles inline, no script, and a
Content-Security-Policy forbids every fetch, so it opens offline in any browser and a model
named `<script>` stays text. Beside it: the plots as PNG and SVG, the table as Markdown, CSV
and JSON, and the conclusions as Markdown.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

import cnnlab
from cnnlab import conclusions as concl
from cnnlab import plots, rungs, sequential, slugs, table
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.spec import model_to_toml
from cnnlab.store import (
    FINAL_STATUSES,
    RunRecord,
    Store,
    StudyInfo,
    count_statuses,
    labels_hash,
    sqlite_path,
)
from cnnlab.studydir import open_existing_store
from cnnlab.timing import DISTURBED_RATIO

REPORT_DIRNAME = "report"
REPORT_FILENAME = "report.html"
SOURCE_FILENAME = "built-from.sha256"  # the runs the report shows (report_is_current)
PLOTS_DIRNAME = "plots"
CHECKPOINT_MODEL_PREFIX = "model/"  # cnnlab.checkpoint stores the model's tensors under it
CURVE_PAGE = 16  # models per page of learning-curve panels (4 x 4, readable at page width)
WEIGHT_MODELS = 16  # weight violins for at most this many models, the most accurate
OPEN_FIGURES = 4  # a section's figures after these start collapsed (a click opens each)
# The table's sorting and filtering: the page's only script, allowed by its hash alone, so a
# script that reached the page any other way (an unescaped name) would still not run.
TABLE_SCRIPT = (files("cnnlab") / "assets" / "sortable-table.js").read_text(encoding="utf-8")
SCRIPT_HASH = base64.b64encode(hashlib.sha256(TABLE_SCRIPT.encode()).digest()).decode("ascii")

__all__ = [
    "StudyResults",
    "build_report",
    "gather_evidence",
    "read_study",
    "render_html",
    "report_path",
    "study_table",
]


# The page may show inline styles, data: images and its own script, and fetch nothing else
# (no CDN, no fonts).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{SCRIPT_HASH}'"
)

# -- reading a study ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StudyResults:
    """What the report reads from a study directory, gathered once."""

    name: str
    directory: Path
    settings: dict[str, Any]  # as `cnnlab run` recorded them: models, seeds, dataset, training
    runs: tuple[RunRecord, ...]  # the latest expansion's, in plan order
    other_runs: int  # stored runs of earlier specs or settings, not reported
    test_labels: np.ndarray | None  # None when the dataset could not be loaded
    test_images: np.ndarray | None
    predictions: dict[str, np.ndarray]  # run key -> predicted classes (only pairable ones)
    n_images: int | None  # test images each accuracy is measured on (None: unknown)
    notes: tuple[str, ...]  # what could not be read, in words
    class_names: tuple[str, ...] | None = None  # the dataset's (CIFAR's, a folder's), if any

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.settings.get("models", ()))

    @property
    def dataset_name(self) -> str:
        return dataset_source(self.settings, self.runs)

    @property
    def complete(self) -> bool:
        return all(run.status in FINAL_STATUSES for run in self.runs)


def read_study(directory: str | Path, *, data_dir: str | Path | None = None) -> StudyResults:
    """The study in `directory` (or studies/<name>) with its test set, for the report."""
    with open_existing_store(directory) as store:
        info, runs, stored = latest_runs(store)
        predicted = {run.key: store.get_predictions(run.key) for run in runs}
        where = sqlite_path(store.url).absolute().parent
    settings = dict(info.settings) if info else {}
    labels, images, notes, names = study_test_set(settings, runs, data_dir)
    pairable, dropped = pairable_predictions(predicted, labels)
    pairable, damaged = consistent_predictions(pairable, labels, runs, where)
    dropped += damaged
    return StudyResults(
        name=info.name if info else where.name,
        directory=where,
        settings=settings,
        runs=runs,
        other_runs=stored - len(runs),
        test_labels=labels,
        test_images=images,
        predictions=pairable,
        n_images=len(labels) if labels is not None else stored_test_size(predicted),
        notes=notes + dropped,
        class_names=names,
    )


def study_table(directory: str | Path) -> table.ResultsTable:
    """The results table of the study in `directory`, straight from its store."""
    with open_existing_store(directory) as store:
        info, runs, _ = latest_runs(store)
    return table.build_results_table(runs, order=info.settings.get("models", ()) if info else ())


def latest_runs(store: Store) -> tuple[StudyInfo | None, tuple[RunRecord, ...], int]:
    """The study's info, the runs of its latest expansion in plan order, and how many runs
    the store holds in all (earlier specs and settings included)."""
    info = store.get_study()
    stored = store.list_runs()
    keys = (info.settings.get("keys") if info else None) or [run.key for run in stored]
    by_key = {run.key: run for run in stored}
    return info, tuple(by_key[key] for key in keys if key in by_key), len(stored)


def dataset_source(settings: dict[str, Any], runs: Sequence[RunRecord]) -> str:
    """The dataset as the study named it ("mnist"): its identity without the content hash."""
    identity = settings.get("dataset") or (runs[0].dataset if runs else "")
    return str(identity).split("@", 1)[0]


def study_test_set(
    settings: dict[str, Any], runs: Sequence[RunRecord], data_dir: str | Path | None
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[str, ...], tuple[str, ...] | None]:
    """`load_test_set` of the study's dataset: a local source at the absolute path recorded
    when the study ran (so the report works from any directory), else as it was written."""
    written = dataset_source(settings, runs)
    recorded = settings.get("dataset_source") or written
    found = load_test_set(recorded, data_dir)
    if found[0] is None and recorded != written:  # moved with the study since: try as written
        again = load_test_set(written, data_dir)
        return again if again[0] is not None else found
    return found


def load_test_set(
    source: str, data_dir: str | Path | None
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[str, ...], tuple[str, ...] | None]:
    """The test labels, images, notes and class names; None and a note where it cannot load.

    Offline: a report is built from what is on disk and never downloads a dataset.
    """
    if not source:
        return None, None, ("the study names no dataset: no confusion matrix or digits",), None
    try:
        data = load_dataset(source, data_dir=data_dir, offline=True)
    except CnnlabError as error:
        note = f"the test set could not be loaded ({error}); pass --data-dir to draw the "
        note += "confusion matrix and misclassified digits and to pair the models' predictions"
        return None, None, (note,), None
    return data.test_labels, data.test_images, (), data.class_names


def pairable_predictions(
    predicted: dict[str, Any], labels: np.ndarray | None
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """The predictions that answer these test labels (same hash); notes for the others."""
    if labels is None:
        return {}, ()
    expected = labels_hash(labels)
    kept = {k: p.predicted for k, p in predicted.items() if p and p.test_labels_hash == expected}
    other = sum(1 for p in predicted.values() if p and p.test_labels_hash != expected)
    note = f"{other} runs' predictions answer another test set than the one loaded; left out"
    return kept, ((note,) if other else ())


def consistent_predictions(
    pairable: dict[str, np.ndarray],
    labels: np.ndarray | None,
    runs: Sequence[RunRecord],
    directory: Path,
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Leave out predictions that cannot be the run's own: another length than the test set,
    or an accuracy other than the one stored with the run (a damaged page of the store)."""
    accuracy = {run.key: run.test.accuracy for run in runs if run.test is not None}
    kept, bad = {}, []
    for key, predicted in pairable.items():
        fits = labels is not None and len(predicted) == len(labels)
        if fits and key in accuracy and np.isfinite(accuracy[key]):
            fits = abs(float(np.mean(predicted == labels)) - accuracy[key]) <= 0.5 / len(labels)
        if fits:
            kept[key] = predicted
        else:
            bad.append(key)
    if not bad:
        return kept, ()
    note = (
        f"the stored predictions of {len(bad)} run(s) ({', '.join(bad[:3])}) disagree with their "
        f"stored test accuracy: the store is damaged; left out. `cnnlab status {directory} "
        "--check` checks it"
    )
    return kept, (note,)


# -- the statistics' input ----------------------------------------------------------------------


def gather_evidence(results: StudyResults, results_table: table.ResultsTable) -> concl.Evidence:
    """Each model's finished runs as the statistics take them (a pure function)."""
    models = tuple(
        model_evidence(row, [run for run in results.runs if run.model == row.model], results)
        for row in results_table.rows
    )
    return concl.Evidence(
        models=models,
        n_images=results.n_images,
        training=results.runs[0].training if results.runs else {},
        dataset=results.dataset_name,
        notes=results.notes,
        decisions=sequential.decisions_of(results.settings, results.runs),
        halving=rungs.halving_of(results.settings, results.runs),
    )


def model_evidence(
    row: table.ModelRow, runs: Sequence[RunRecord], results: StudyResults
) -> concl.ModelEvidence:
    done = [run for run in runs if run.status == "done" and run.test is not None]
    done = [run for run in done if np.isfinite(run.test.accuracy)]  # type: ignore[union-attr]
    return concl.ModelEvidence(
        name=row.model,
        accuracies=tuple(run.test.accuracy for run in done),  # type: ignore[union-attr]
        correct=correctness(done, results),
        params=row.params,
        seconds_per_epoch=row.seconds_per_epoch,
        factors=table.stored_spec(runs[0].spec).factors,
        failed=row.failed,
        diverged=row.diverged,
        unfinished=row.unfinished,
        pruned=row.pruned,
        reported_accuracy=row.reported_accuracy,
        disturbed_timing=row.timing.describe() if row.timing and row.timing.is_disturbed else "",
    )


def correctness(done: Sequence[RunRecord], results: StudyResults) -> np.ndarray | None:
    """(runs, images) bool: which test images each finished run got right; None unless every
    run has predictions on the loaded test set (paired tests need them all)."""
    labels = results.test_labels
    if not done or labels is None or any(run.key not in results.predictions for run in done):
        return None
    return np.stack([results.predictions[run.key] == labels for run in done])


def stored_test_size(predicted: dict[str, Any]) -> int | None:
    """The test set's size as the stored predictions tell it (when it cannot be loaded)."""
    return next((len(p.predicted) for p in predicted.values() if p), None)


# -- plots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotSection:
    title: str
    intro: str
    files: tuple[plots.PlotFile, ...]
    folded: frozenset[str] = frozenset()  # stems shown collapsed, opened by a click


@dataclass(frozen=True)
class PlannedSection:
    """A section whose figures are still to be drawn; `folded` ones start collapsed."""

    title: str
    intro: str
    jobs: tuple[plots.FigureJob, ...]
    folded: frozenset[str] = frozenset()
    missing: bool = False  # it says what could not be drawn: shown even without figures


def draw_plots(
    results: StudyResults,
    results_table: table.ResultsTable,
    best: str | None,
    directory: Path,
    *,
    evidence: concl.Evidence,
    processes: int = 1,
) -> tuple[PlotSection, ...]:
    """Every plot of the report, written as PNG and SVG into `directory`, drawn in up to
    `processes` worker processes (`plots.save_figures`)."""
    models = [row.model for row in results_table.rows if row.pruned < row.runs]  # not all pruned
    weighed = [model for model in ranked_models(results_table) if model in models]
    classes = study_classes(results)
    planned = [
        curve_section(results.runs, ranked_models(results_table), classes),
        cost_section(results_table, classes),
        factor_section(results_table, evidence, classes),
        weight_section(results, weighed[:WEIGHT_MODELS], len(models)),
        errors_section(results, best),
    ]
    jobs = [job for section in planned for job in section.jobs]
    files = iter(plots.save_figures(jobs, directory, processes=processes))
    sections = [
        PlotSection(s.title, s.intro, tuple(next(files) for _ in s.jobs), s.folded) for s in planned
    ]
    return tuple(s for s, plan in zip(sections, planned, strict=True) if s.files or plan.missing)


def study_classes(results: StudyResults) -> int | None:
    """How many classes the task has (for the chance level): from the test labels."""
    labels = results.test_labels
    return int(labels.max()) + 1 if labels is not None and labels.size else None


def ranked_models(results_table: table.ResultsTable) -> list[str]:
    """The models in the study's order; past one page of panels, most accurate first (the
    first page, shown open, then holds the models a reader looks for)."""
    rows = list(results_table.rows)
    if len(rows) > CURVE_PAGE:
        rows.sort(key=lambda row: -row.accuracy.mean if row.accuracy else math.inf)
    return [row.model for row in rows]


def curve_section(
    runs: Sequence[RunRecord], models: list[str], classes: int | None
) -> PlannedSection:
    """Per-model panels in pages of CURVE_PAGE (pages after the first collapsed), all on one
    y-range with the chance level; the overview puts every model on one chart."""
    jobs, folded = [], set()
    pages = [models[i : i + CURVE_PAGE] for i in range(0, len(models), CURVE_PAGE)]
    for metric in ("loss", "accuracy"):
        curves = plots.curves_by_model(runs, models, metric)
        if not any(c.train.epochs for c in curves):
            continue
        shared = plots.shared_range(curves, classes)
        by_model = {c.model: c for c in curves}
        for number, page in enumerate(pages, start=1):
            stem = f"curves-{metric}" + (f"-{number}" if number > 1 else "")
            title = f"Train and validation {metric} per epoch (band: the seeds' range)"
            if len(pages) > 1:
                first = (number - 1) * CURVE_PAGE + 1
                title += (
                    f", models {first}-{first + len(page) - 1} of {len(models)} by test "
                    f"accuracy: {', '.join(page)}"
                )
            data = (tuple(by_model[m] for m in page), shared)
            jobs.append(plots.FigureJob(stem, title, plots.draw_model_curves, data))
            if number > 1:
                folded.add(stem)
        jobs.append(
            plots.FigureJob(
                f"validation-{metric}",
                f"Validation {metric} of every model on one chart",
                plots.draw_validation_overview,
                (curves, shared),
            )
        )
    rate_jobs, rate_folded, rate_text = rate_figures(runs, pages, len(models))
    intro = (
        "The notebook's plt_dynamic, per model: mean over seeds, the band spans min to max. "
        "Every panel shares one y-axis; the dotted line is chance (accuracy 1/classes, loss "
        "ln(classes)) where it lies in range."
    )
    intro += early_stopping_text(runs)
    if len(pages) > 1:
        intro += f" {CURVE_PAGE} models per page, the most accurate first; click a page to open it."
    intro += rate_text
    return PlannedSection(
        "Learning curves", intro, (*jobs, *rate_jobs), frozenset(folded | rate_folded)
    )


def early_stopping_text(runs: Sequence[RunRecord]) -> str:
    """What the curves' marks mean, when some run trained with EarlyStopping."""
    early = [run for run in runs if run.training.get("early_stopping")]
    if not early:
        return ""
    text = (
        " EarlyStopping: a cross marks the epoch a run stopped after (its curve ends there), "
        "a star the epoch whose weights a run kept with restore_best_weights. Past the epoch "
        "where a first run stopped, the mean and band cover fewer seeds and are drawn faint."
    )
    return text + " " + TESTED_AS_KEPT


TESTED_AS_KEPT = (
    "Test accuracy and loss come from the weights each run kept (the best epoch's with "
    "restore_best_weights, else the last epoch's), and the statistics compare the runs as "
    "trained: a run that stopped early counts as it stopped, not as it might have ended."
)


def rate_figures(
    runs: Sequence[RunRecord], pages: list[list[str]], total: int
) -> tuple[list[plots.FigureJob], set[str], str]:
    """The learning rate per epoch, one panel per model and a page per curve page, when it
    changed in some run; a constant rate is one sentence instead of a plot."""
    rates = plots.rates_by_model(runs, [model for page in pages for model in page])
    if not any(r.rates for r in rates):
        return [], set(), ""  # stored before rates were recorded
    if not any(r.changes for r in rates):
        kept = plots.constant_rates(rates)
        if len(kept) == 1:
            return [], set(), f" The learning rate stayed at {next(iter(kept)):g} in every run."
        each = ", ".join(f"{rate:g} ({n} model{'s' if n > 1 else ''})" for rate, n in kept.items())
        return [], set(), f" The learning rate stayed constant in every run: {each}."
    by_model = {r.model: r for r in rates}
    jobs, folded = [], set()
    for number, page in enumerate(pages, start=1):
        stem = "learning-rate" + (f"-{number}" if number > 1 else "")
        title = "Learning rate as each epoch ended, one line per seed"
        if len(pages) > 1:
            first = (number - 1) * CURVE_PAGE + 1
            title += f", models {first}-{first + len(page) - 1} of {total}"
        data = (tuple(by_model[m] for m in page),)
        jobs.append(plots.FigureJob(stem, title, plots.draw_learning_rates, data))
        if number > 1:
            folded.add(stem)
    text = (
        " The learning rate changed during training: its figure shows each run's rate as its "
        "epochs ended (seeds sharing a schedule draw one line; ReduceLROnPlateau follows each "
        "seed's own history)."
    )
    return jobs, folded, text


def cost_section(results_table: table.ResultsTable, classes: int | None) -> PlannedSection:
    fronts = [
        plots.pareto_front(
            cost, [(row.model, value(row), row.accuracy) for row in results_table.rows]
        )
        for cost, value in (
            ("parameters", lambda row: row.params),
            ("seconds per epoch", lambda row: row.seconds_per_epoch),
        )
    ]
    fronts = [front for front in fronts if front.points]
    if not fronts:
        return PlannedSection("Accuracy against cost", "", ())
    title = "Test accuracy against parameters and time; red: the Pareto front"
    job = plots.FigureJob("pareto", title, plots.draw_pareto, (fronts, classes))
    intro = (
        "A model is on the front when no other is both cheaper and more accurate. Seconds per "
        "epoch are steady estimates (epochs slowed by other processes left out). Labels that "
        "would overlap are left out, the front's first; models near chance sit on the bottom "
        "edge, off the scale."
    )
    return PlannedSection("Accuracy against cost", intro, (job,))


def factor_section(
    results_table: table.ResultsTable, evidence: concl.Evidence, classes: int | None
) -> PlannedSection:
    """For grids: each factor's main effect with its interval, and the parallel coordinates
    of factors against accuracy."""
    effects = concl.factor_effects_of(evidence.models)
    if not effects:
        return PlannedSection("Grid factors", "", ())
    rows = [
        (row.model, dict(row.factors), row.accuracy.mean)
        for row in results_table.rows
        if row.factors and row.accuracy
    ]
    jobs = [
        plots.FigureJob(
            "factor-effects",
            "Main effects: mean test accuracy at each level of each factor, 95 % interval",
            plots.draw_factor_effects,
            (tuple(effects),),
        ),
        plots.FigureJob(
            "parallel-coordinates",
            "Every model through its factor levels to its test accuracy (colour: accuracy)",
            plots.draw_parallel_coordinates,
            (plots.parallel_coordinates(rows, classes),),
        ),
    ]
    intro = (
        "Each level's mean over the models at that level (each model's seeds averaged first), "
        "with a t-interval over those models; the dashed line is the mean of all levels. A "
        "factor matters where its levels' intervals separate (see the conclusions)."
    )
    return PlannedSection("Grid factors", intro, tuple(jobs))


def weight_section(results: StudyResults, models: list[str], total: int) -> PlannedSection:
    jobs, unread = [], []
    stems = slugs.unique_slugs(models)
    for model in models:
        violins = model_violins(results, model)
        if violins is None or not violins.layers:
            unread.append(model)
            continue
        title = f"{model}: trained weights of every weighted layer (seed {violins.seed})"
        stem = f"weights-{stems[model]}"
        jobs.append(plots.FigureJob(stem, title, plots.draw_weight_violins, (violins,)))
    intro = (
        "Each weighted layer under its name in the checkpoint (conv2d, conv2d_1, ..., dense_1; "
        "batch normalization: its scale gamma), from the first finished seed's last checkpoint."
    )
    if unread:
        intro += f" No finished run with a readable checkpoint: {', '.join(unread)}."
        if not (results.directory / "runs").is_dir():
            intro += f" The study's runs/ directory is missing from {results.directory}."
        else:
            intro += (
                " (A checkpoint whose tensors do not add up to the model's parameter count is"
                " damaged and not drawn.)"
            )
    if total > len(models):
        intro += f" The {len(models)} most accurate of {total} models."
    folded = frozenset(job.stem for job in jobs[OPEN_FIGURES:])
    return PlannedSection("Trained weights", intro, tuple(jobs), folded, missing=bool(unread))


def model_violins(results: StudyResults, model: str) -> plots.WeightViolins | None:
    """The violins of the model's first finished run whose checkpoint can be read."""
    for run in sorted(results.runs, key=lambda r: r.seed):
        if run.model != model or run.status != "done" or not run.checkpoint:
            continue
        state = read_weights(results.directory / run.checkpoint, params=run.params)
        if state is not None:
            layers = table.stored_spec(run.spec).layers
            return plots.weight_violins(model, run.seed, layers, state)
    return None


def read_weights(path: Path, *, params: int | None = None) -> dict[str, np.ndarray] | None:
    """A checkpoint's model tensors by layer parameter name; None if it cannot be read, or
    when `params` (the run's stored count, Keras's total) disagrees with its tensors' sizes:
    tensors with the right names and the wrong shapes are damage, not trained weights."""
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError):  # removed, truncated or not safetensors
        return None
    size = len(CHECKPOINT_MODEL_PREFIX)
    state = {k[size:]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_MODEL_PREFIX)}
    counted = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    return None if params is not None and counted != params else state


def errors_section(results: StudyResults, best: str | None) -> PlannedSection:
    """The best model's confusion matrix and misclassified digits, over all its runs."""
    labels, images = results.test_labels, results.test_images
    keys = [run.key for run in results.runs if run.model == best and run.status == "done"]
    predicted = [results.predictions[key] for key in keys if key in results.predictions]
    if best is None or labels is None or images is None or not predicted:
        return PlannedSection("The best model's errors", "", ())
    classes = int(max(labels.max(), max(p.max() for p in predicted))) + 1
    names = results.class_names
    classes = max(classes, len(names or ()))
    confusion = plots.confusion_counts(best, labels, predicted, classes, class_names=names)
    grid = plots.misclassified_digits(best, labels, predicted, class_names=names)
    jobs = (
        plots.FigureJob(
            "confusion", f"{best}: confusion matrix", plots.draw_confusion, (confusion,)
        ),
        plots.FigureJob(
            "misclassified",
            f"{best}: misclassified test digits, true and predicted class",
            plots.draw_misclassified,
            (grid, images),
        ),
    )
    intro = f"{best} has the highest mean test accuracy; its errors on the test set."
    return PlannedSection("The best model's errors", intro, jobs)


# -- the page -------------------------------------------------------------------------------------


def build_report(
    directory: str | Path,
    *,
    data_dir: str | Path | None = None,
    processes: int = 1,
    out: str | Path | None = None,
) -> Path:
    """Build the study's report from its store (never training); returns the HTML file's path.

    Works for an unfinished study too: it reports what has finished and lists what is
    missing. `data_dir` is where the dataset's files are (for the test images and labels).
    processes > 1 draws the plots in that many spawned worker processes (a script that asks
    for it needs `if __name__ == "__main__":`, as for any spawned process). `out`: the report's
    directory, instead of DIR/report (for a study on a read-only disk).
    """
    results = read_study(directory, data_dir=data_dir)
    target = Path(out) if out is not None else results.directory / REPORT_DIRNAME
    refuse_links(target, target / PLOTS_DIRNAME)
    try:
        return _write_report(results, processes, target)
    except OSError as error:  # the study's results are untouched: only the report is missing
        where = error.filename or target
        raise CnnlabError(
            f"cannot write the report at {where}: {error.strerror or error}; the study's "
            "results are kept: fix that (free space, permissions), then `cnnlab report "
            f"{results.directory}`, or write it elsewhere with --out DIR"
        ) from error


def refuse_links(*directories: Path) -> None:
    """A report directory that is a symbolic link would have the report written wherever it
    points (another study's report, a system directory): refused, naming the link."""
    for directory in directories:
        if directory.is_symlink():
            raise CnnlabError(
                f"{directory} is a symbolic link (to {os.readlink(directory)}); cnnlab does not "
                "write a report through it: remove the link, or choose a directory with --out"
            )


def _write_report(results: StudyResults, processes: int, out: Path) -> Path:
    results_table = table.build_results_table(results.runs, order=results.order)
    evidence = gather_evidence(results, results_table)
    found = concl.write_conclusions(evidence)
    best = found.best.best if found.best else None
    sections = draw_plots(
        results, results_table, best, out / PLOTS_DIRNAME, evidence=evidence, processes=processes
    )
    exports = write_exports(results_table, found, out)
    page = render_html(results, results_table, found, sections, exports)
    written = plots.write_atomic(out / REPORT_FILENAME, page.encode())
    plots.write_atomic(out / SOURCE_FILENAME, runs_fingerprint(results.runs).encode())
    drawn = {path for section in sections for f in section.files for path in (f.png, f.svg)}
    remove_stale_plots(out / PLOTS_DIRNAME, keep=drawn)
    return written


def remove_stale_plots(directory: Path, *, keep: set[Path]) -> None:
    """Delete the figures an earlier report drew that this one did not (a model dropped, a
    page of curves fewer), so the plots folder shows this report only. Only PNG and SVG files
    go; anything else a user put there stays."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.suffix in (".png", ".svg") and path.is_file() and path not in keep:
            path.unlink(missing_ok=True)


def report_path(directory: str | Path) -> Path:
    """Where `build_report` puts the page of the study in `directory`."""
    return Path(directory) / REPORT_DIRNAME / REPORT_FILENAME


def report_is_current(directory: str | Path) -> bool:
    """Whether the study's report was built, to the end, from the runs its store shows now.

    A report cut off (Ctrl-C while drawing) or built before other runs finished is not: the
    page alone cannot tell, since it is only replaced once a new one is complete.
    """
    stamp = Path(directory) / REPORT_DIRNAME / SOURCE_FILENAME
    if not report_path(directory).is_file() or not stamp.is_file():
        return False
    with open_existing_store(directory) as store:
        _, runs, _ = latest_runs(store)
    return stamp.read_text() == runs_fingerprint(runs)


def runs_fingerprint(runs: Sequence[RunRecord]) -> str:
    """What a report shows changes only when a shown run does: their keys, states, ends."""
    states = [(run.key, run.status, run.finished_at) for run in runs]
    return hashlib.sha256(json.dumps(states).encode()).hexdigest()


def write_exports(
    results_table: table.ResultsTable, found: concl.Conclusions, directory: Path
) -> dict[str, str]:
    """The table as Markdown, CSV and JSON, the conclusions as Markdown: name -> text."""
    exports = {
        "results.md": table.to_markdown(results_table),
        "results.csv": table.to_csv(results_table),
        "results.json": table.to_json(results_table),
        "conclusions.md": concl.to_markdown(found),
    }
    for name, text in exports.items():
        plots.write_atomic(directory / name, text.encode())
    return exports


def esc(value: object) -> str:
    """Any text from a store or spec file, made inert in HTML (quotes too, for attributes)."""
    return html.escape(str(value), quote=True)


def render_html(
    results: StudyResults,
    results_table: table.ResultsTable,
    found: concl.Conclusions,
    sections: Sequence[PlotSection],
    exports: dict[str, str],
) -> str:
    """The whole page as one string (a pure function of what the report computed)."""
    body = [
        header_html(results),
        section(
            "Results",
            results_table_html(results_table)
            + recipe_note_html(results.runs)
            + exports_html(exports),
            "results",
        ),
        section("Conclusions", conclusions_html(found), "conclusions"),
        missing_html(results),
        failed_html(results.runs),
        pruned_html(results.runs, rungs.halving_of(results.settings, results.runs)),
        *(plot_section_html(s) for s in sections),
        section("Study settings", settings_html(results), "settings"),
        section("Environment", environment_html(results.runs), "environment"),
    ]
    return PAGE.format(
        csp=esc(CONTENT_SECURITY_POLICY),
        title=esc(f"cnnlab report: {results.name}"),
        style=STYLE,
        body="\n".join(part for part in body if part),
        script=TABLE_SCRIPT,
    )


def section(title: str, content: str, anchor: str) -> str:
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n{content}\n</section>'


def header_html(results: StudyResults) -> str:
    counts = count_statuses(results.runs)
    state = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "no runs"
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        f"<h1>cnnlab report: {esc(results.name)}</h1>",
        f"<p class=lead>{esc(results.settings.get('description', ''))}</p>",
        f"<p>{len(results.runs)} runs: {esc(state)}. Built {esc(when)} by cnnlab "
        f"{esc(cnnlab.__version__)} from <code>{esc(results.directory)}</code>.</p>",
    ]
    if not results.complete:
        lines.append(
            "<p class=warn>This study is unfinished: the figures below cover the runs that "
            'have finished (see <a href="#missing">what is missing</a>).</p>'
        )
    if results.other_runs:
        lines.append(
            f"<p>{results.other_runs} stored runs of earlier specs or settings are not part "
            "of this report (<code>cnnlab runs --all</code> lists them).</p>"
        )
    return "<header>\n" + "\n".join(lines) + "\n</header>"


def results_table_html(results_table: table.ResultsTable) -> str:
    headers, rows = table.display_rows(results_table)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in cells) + "</tr>" for cells in rows
    )
    disturbed = results_table.disturbed
    notes = (
        "<p class=note>Test accuracy and loss: mean ± standard deviation over each model's "
        "finished runs (seeds); 95 % CI: Student-t interval of the mean over seeds (none for "
        "one run). MFLOPs: forward FLOPs per image in millions (a multiply-add counts 2). s/epoch: "
        "wall time of an epoch, training and validation: the steady estimate, the median of "
        "the model's fastest half of epochs (each run's first left out), so epochs slowed by "
        "other processes do not count."
        + (
            f" {table.DISTURBED_MARK} timings disturbed (epochs over "
            f"{DISTURBED_RATIO:g}x the steady time: another process shared the CPU): "
            + "; ".join(f"{row.model}: {row.timing.describe()}" for row in disturbed)  # type: ignore[union-attr]
            + "."
            if disturbed
            else ""
        )
        + " Click a column's header to sort by it (again: the other way)."
        + (
            " Reported: the figures the notebook printed for the model (its Test accuracy / "
            "Test loss lines)."
            if results_table.has_reported
            else ""
        )
        + "</p>"
    )
    return (
        f"<table class='results sortable'>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n"
        f"</tbody>\n</table>\n{notes}"
    )


def recipe_note_html(runs: Sequence[RunRecord]) -> str:
    """With EarlyStopping: which weights the test figures are of, and what the statistics
    compare."""
    if not any(run.training.get("early_stopping") for run in runs):
        return ""
    return f"<p class=note>EarlyStopping: {esc(TESTED_AS_KEPT)}</p>\n"


def exports_html(exports: dict[str, str]) -> str:
    """Download links that carry their file inline (data: URIs), so the page stays one file."""
    kinds = {".md": "text/markdown", ".csv": "text/csv", ".json": "application/json"}
    links = []
    for name, text in exports.items():
        kind = kinds[Path(name).suffix]
        data = base64.b64encode(text.encode()).decode("ascii")
        links.append(f'<a download="{esc(name)}" href="data:{kind};base64,{data}">{esc(name)}</a>')
    return "<p class=note>Download: " + " · ".join(links) + "</p>"


def conclusions_html(found: concl.Conclusions) -> str:
    parts = ["<ul>" + "".join(f"<li>{esc(f.text)}</li>" for f in found.findings) + "</ul>"]
    if found.caveats:
        items = "".join(f"<li>{esc(c)}</li>" for c in found.caveats)
        parts.append(f"<div class=caveats><h3>Caveats</h3><ul>{items}</ul></div>")
    if found.notebook:
        parts.append(notebook_html(found.notebook))
    return "\n".join(parts)


def notebook_html(points: Sequence[concl.NotebookPoint]) -> str:
    rows = "\n".join(
        f"<tr><td>{p.number}</td><td><blockquote>{esc(p.quote)}</blockquote></td>"
        f"<td class='verdict {esc(p.verdict.replace(' ', '-'))}'>{esc(p.verdict)}</td>"
        f"<td>{esc(p.text)}</td></tr>"
        for p in points
    )
    return (
        "<h3>Against the notebook's own conclusions</h3>\n<table class=notebook>"
        "<tr><th>#</th><th>the notebook said</th><th>verdict</th><th>what this study shows</th>"
        f"</tr>\n{rows}\n</table>"
    )


def missing_html(results: StudyResults) -> str:
    """For an unfinished study: which runs have not ended, and how far they got."""
    open_runs = [run for run in results.runs if run.status not in FINAL_STATUSES]
    if not open_runs:
        return ""
    rows = "\n".join(
        f"<tr><td>{esc(run.model)}</td><td>{run.seed}</td><td>{esc(run.status)}</td>"
        f"<td>{len(run.epochs)}/{esc(run.training.get('epochs', '?'))}</td></tr>"
        for run in open_runs
    )
    intro = (
        f"<p>{len(open_runs)} of {len(results.runs)} runs have not finished; "
        "<code>cnnlab run</code> with the same arguments resumes them, and "
        "<code>cnnlab report</code> rebuilds this page.</p>"
    )
    head = "<tr><th>model</th><th>seed</th><th>status</th><th>epochs</th></tr>"
    content = f"{intro}\n<table>{head}\n{rows}\n</table>"
    return section("What is missing", content, "missing")


def failed_html(runs: Iterable[RunRecord]) -> str:
    bad = [run for run in runs if run.status in ("failed", "diverged")]
    if not bad:
        return ""
    rows = "\n".join(
        f"<tr><td>{esc(run.model)}</td><td>{run.seed}</td><td>{esc(run.status)}</td>"
        f"<td>{esc(run.stopped_epoch if run.stopped_epoch is not None else '-')}</td>"
        f"<td>{esc(run.reason or '')}</td><td>{run.attempts}</td></tr>"
        for run in bad
    )
    head = "<tr><th>model</th><th>seed</th><th>status</th><th>epoch</th><th>reason</th>"
    head += "<th>attempts</th></tr>"
    note = (
        "<p>Not averaged into the table; <code>cnnlab run ... --retry-failed</code> trains "
        "them again.</p>"
    )
    return section("Failed and diverged runs", f"{note}\n<table>{head}\n{rows}\n</table>", "failed")


def pruned_html(runs: Sequence[RunRecord], halving: rungs.Halving | None) -> str:
    """The models `--prune halving` stopped: each one's runs, the epoch and why."""
    by_model: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.status == "pruned":
            by_model.setdefault(run.model, []).append(run)
    if not by_model:
        return ""
    rows = "\n".join(
        f"<tr><td>{esc(model)}</td><td>{len(group)}</td>"
        f"<td>{esc(', '.join(str(e) for e in sorted({r.stopped_epoch for r in group})))}</td>"
        f"<td>{esc(group[0].reason or '')}</td></tr>"
        for model, group in by_model.items()
    )
    how = f" ({halving.settings.describe(halving.epochs)})" if halving else ""
    note = (
        f"<p>Successive halving{esc(how)} stopped these models' runs at a rung, every seed "
        "still training together: they have no test figures, are not averaged into the table "
        "and are in no comparison; their learning curves end at the rung. A rung ranks an early "
        "epoch, so a model that starts slowly can be pruned although it would have caught "
        "up.</p>"
    )
    head = "<tr><th>model</th><th>runs</th><th>epoch</th><th>why</th></tr>"
    return section("Pruned runs", f"{note}\n<table>{head}\n{rows}\n</table>", "pruned")


def plot_section_html(plot_section: PlotSection) -> str:
    figures = "\n".join(
        figure_html(f, folded=f.stem in plot_section.folded) for f in plot_section.files
    )
    intro = f"<p class=note>{esc(plot_section.intro)}</p>" if plot_section.intro else ""
    anchor = "plots-" + slugs.slug(plot_section.title.lower())
    return section(plot_section.title, f"{intro}\n{figures}", anchor)


def figure_html(plot: plots.PlotFile, *, folded: bool = False) -> str:
    """A figure, or (folded) a one-line summary that opens to it: a 200-model report stays a
    page to scroll, and every title stays text the browser's search finds."""
    data = base64.b64encode(plot.png_bytes).decode("ascii")
    figure = (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(plot.title)}">'
        f"<figcaption>{esc(plot.title)} (also <code>{esc(plot.svg.name)}</code>)</figcaption>"
        "</figure>"
    )
    if not folded:
        return figure
    return f"<details class=figure><summary>{esc(plot.title)}</summary>{figure}</details>"


def settings_html(results: StudyResults) -> str:
    settings = results.settings
    training = results.runs[0].training if results.runs else settings.get("training", {})
    rows = [
        ("dataset", settings.get("dataset", "?")),
        ("seeds", ", ".join(str(s) for s in settings.get("seeds", ()))),
        *((key.replace("_", " "), _shown(value)) for key, value in training.items()),
    ]
    cells = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    specs = "\n".join(spec_html(run) for run in _first_run_per_model(results.runs))
    return f"<table class=settings>\n{cells}\n</table>\n<h3>Models as trained</h3>\n{specs}"


def _shown(value: Any) -> str:
    return "all" if value is None else str(value)


def _first_run_per_model(runs: Iterable[RunRecord]) -> list[RunRecord]:
    return list({run.model: run for run in reversed(list(runs))}.values())[::-1]


def spec_html(run: RunRecord) -> str:
    """A model's resolved spec as TOML (what was trained, Keras defaults spelled out)."""
    text = model_to_toml(table.stored_spec(run.spec))
    return f"<details><summary>{esc(run.model)}</summary><pre>{esc(text)}</pre></details>"


def environment_html(runs: Sequence[RunRecord]) -> str:
    """What trained the runs (versions, devices) and what built this report."""
    trained = _distinct(
        ", ".join(f"{k} {v}" for k, v in sorted((run.versions or {}).items())) for run in runs
    )
    devices = _distinct(run.device or "" for run in runs)
    built = f"python {platform.python_version()}, {platform.platform()}, " + ", ".join(
        f"{name} {version}" for name, version in report_versions().items()
    )
    rows = [("trained with", "; ".join(trained) or "-"), ("devices", "; ".join(devices) or "-")]
    rows.append(("report built with", built))
    cells = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class=settings>\n{cells}\n</table>"


def _distinct(values: Iterable[str]) -> list[str]:
    return [value for value in dict.fromkeys(values) if value]


def report_versions() -> dict[str, str]:
    import matplotlib
    import scipy
    import seaborn

    return {
        "cnnlab": cnnlab.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "seaborn": seaborn.__version__,
    }


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #1d1d1f; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 3px 7px; text-align: left; vertical-align: top; }
table.results td { text-align: right; white-space: nowrap; }
table.results td:first-child { text-align: left; }
th { background: #f3f3f5; }
.note { color: #555; font-size: 0.9em; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 0.8em; }
.caveats { background: #fff8e6; border-left: 4px solid #e0a800; padding: 0.2em 0.8em; }
blockquote { margin: 0; font-style: italic; color: #444; }
.verdict { font-weight: 600; white-space: nowrap; }
.agrees { color: #1a7f37; } .differs { color: #c0392b; } .partly { color: #b7791f; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f8; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.92em; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
input.table-filter { width: 28em; max-width: 100%; padding: 3px 6px; margin: 0.3em 0; }
details.figure > summary { cursor: pointer; color: #1d4f91; margin: 0.4em 0; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<script>{script}</script>
</body>
</html>
"""
