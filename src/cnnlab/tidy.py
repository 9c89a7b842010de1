"""A study's results as tidy tables (`cnnlab.results`): one row per run, and per run and epoch.

`results(DIR)` gives them as pandas DataFrames when pandas is installed (`pip install
'cnnlab[pandas]'`), else as lists of dicts with the same columns; `write_table` writes either
as CSV, JSON or Parquet (Parquet needs pandas and pyarrow). Every value is a plain number,
string or None, so the tables load anywhere (a notebook, R, a spreadsheet).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.checkpoint import BEST_MONITOR
from cnnlab.errors import CnnlabError
from cnnlab.store import RunRecord

TABLE_FORMATS = ("csv", "json", "parquet")
Rows = list[dict[str, Any]]


class ResultsError(CnnlabError):
    """A table cannot be written: unknown format, missing package, unwritable path."""


@dataclass(frozen=True)
class Results:
    """`runs`: one row per run; `epochs`: one row per run and epoch (joined on `key`)."""

    runs: Any  # a pandas DataFrame, or Rows without pandas
    epochs: Any


def results(
    directory: str | Path, *, all_runs: bool = False, frames: bool | None = None
) -> Results:
    """The study's runs and epochs as tidy tables (the latest expansion's runs, or all).

    frames: True for pandas DataFrames (ResultsError with the install line when pandas is
    missing), False for lists of dicts, None for DataFrames when pandas is installed.
    """
    from cnnlab.study import study_runs

    runs = study_runs(directory, all_runs=all_runs)
    run_rows, epoch_rows = run_table(runs), epoch_table(runs)
    if frames is None:
        frames = importlib.util.find_spec("pandas") is not None
    if not frames:
        return Results(run_rows, epoch_rows)
    pandas = _pandas("DataFrames")
    return Results(
        pandas.DataFrame(run_rows, columns=_columns(run_rows)),
        pandas.DataFrame(epoch_rows, columns=_columns(epoch_rows)),
    )


def run_table(runs: Sequence[RunRecord]) -> Rows:
    """One row per run: identity, status, test figures, best epochs, cost, settings, factors."""
    return [_table_row(run) for run in runs]


def run_row(run: RunRecord) -> dict[str, Any]:
    """One run as a flat row: what `cnnlab runs --json` and `cnnlab run --json` print, and
    the core of the tidy run table."""
    last = run.epochs[-1] if run.epochs else None
    return {
        "key": run.key,
        "model": run.model,
        "seed": run.seed,
        "status": run.status,
        "epochs": len(run.epochs),
        "epochs_planned": int(run.training.get("epochs", len(run.epochs))),  # the plan
        "test_accuracy": run.test.accuracy if run.test else None,
        "test_loss": run.test.loss if run.test else None,
        "val_accuracy": last.val_accuracy if last else None,
        "params": run.params,
        "flops": run.flops,
        "seconds": run.seconds,
        "device": run.device,
        "attempts": run.attempts,
        "reason": run.reason,
        # EarlyStopping: the epoch it stopped after and its best one (None without it); for a
        # failed or diverged run, stopped_epoch is the epoch it ended in. The best-validation
        # epoch has its own name in the tidy table.
        "stopped_epoch": run.stopped_epoch,
        "best_epoch": run.best_epoch,
        "learning_rate": [epoch.learning_rate for epoch in run.epochs],
    }


def _table_row(run: RunRecord) -> dict[str, Any]:
    """`run_row` for the tidy table: the per-epoch learning rates left to the epoch table;
    the dataset, the last validation loss, the best validation figure, every [training] key
    and the grid's factors added."""
    row = run_row(run)
    del row["learning_rate"]
    last = run.epochs[-1] if run.epochs else None
    scored = [e for e in run.epochs if getattr(e, BEST_MONITOR) is not None]
    best = max(scored, key=lambda e: (getattr(e, BEST_MONITOR), -e.epoch)) if scored else None
    row["dataset"] = run.dataset
    row["val_loss"] = last.val_loss if last else None
    row[f"best_{BEST_MONITOR}"] = getattr(best, BEST_MONITOR) if best else None
    row[f"best_{BEST_MONITOR}_epoch"] = best.epoch if best else None
    for name, value in sorted(run.training.items()):
        if name != "epochs":  # epochs_planned already
            row.setdefault(name, _plain(value))
    for name, value in run.spec.get("factors", []):
        row[f"factor_{name}"] = _plain(value)
    return row


def epoch_table(runs: Sequence[RunRecord]) -> Rows:
    """One row per run and epoch: Keras's History keys, time, throughput, learning rate."""
    return [
        {
            "key": run.key,
            "model": run.model,
            "seed": run.seed,
            "epoch": e.epoch,
            "loss": e.loss,
            "accuracy": e.accuracy,
            "val_loss": e.val_loss,
            "val_accuracy": e.val_accuracy,
            "seconds": e.seconds,
            "images_per_second": e.images_per_second,
            "learning_rate": e.learning_rate,  # the optimizer's as the epoch ended
        }
        for run in runs
        for e in run.epochs
    ]


def write_table(rows: Rows, format: str, output: Path | None) -> str | None:
    """`rows` as CSV, JSON (a list of objects) or Parquet; into `output`, or returned as text
    when `output` is None (CSV and JSON only)."""
    if format not in TABLE_FORMATS:
        raise ResultsError(
            f"unknown table format {format!r}; use one of {', '.join(TABLE_FORMATS)}"
        )
    if format == "parquet":
        return _write_parquet(rows, output)
    text = _csv_text(rows) if format == "csv" else json.dumps(_json_safe(rows), indent=1) + "\n"
    if output is None:
        return text
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise ResultsError(f"cannot write {output}: {error.strerror or error}") from None
    return None


def _write_parquet(rows: Rows, output: Path | None) -> None:
    if output is None:
        raise ResultsError("--format parquet writes a binary file: give it with -o FILE")
    pandas = _pandas("Parquet")
    if importlib.util.find_spec("pyarrow") is None:
        raise ResultsError("Parquet needs pyarrow: pip install 'cnnlab[pandas]'")
    try:
        pandas.DataFrame(rows, columns=_columns(rows)).to_parquet(output, index=False)
    except OSError as error:
        raise ResultsError(f"cannot write {output}: {error.strerror or error}") from None


def _csv_text(rows: Rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _columns(rows: Rows) -> list[str]:
    """Every key of every row, in first-seen order (runs of a grid differ in their factors)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def _json_safe(rows: Rows) -> Rows:
    """NaN and infinities (a diverged run's loss) as null: JSON has no such numbers."""
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        for row in rows
    ]


def _plain(value: Any) -> Any:
    """A table cell: numbers, strings, booleans and None as they are, the rest as JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _pandas(what: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise ResultsError(f"{what} need pandas: pip install 'cnnlab[pandas]'") from None
    return pandas
