"""Results as data: cnnlab.results's tidy tables and `cnnlab runs --epochs --format`."""

from __future__ import annotations

import csv
import io
import json

import pytest

import cnnlab
from cnnlab import study
from cnnlab.cli import main
from cnnlab.tidy import ResultsError, write_table


def test_results_has_one_row_per_run_and_one_per_run_and_epoch(trained_study):
    tables = cnnlab.results(trained_study, frames=False)
    runs = study.study_runs(trained_study)
    assert [(r["model"], r["seed"]) for r in tables.runs] == [(r.model, r.seed) for r in runs]
    assert len(tables.epochs) == sum(len(r.epochs) for r in runs) == 16
    first = tables.runs[0]
    assert first["test_accuracy"] == runs[0].test.accuracy and first["epochs_planned"] == 4
    accuracies = [e.val_accuracy for e in runs[0].epochs]
    assert first["best_val_accuracy_epoch"] == 1 + accuracies.index(max(accuracies))
    assert first["best_val_accuracy"] == max(accuracies)
    # best_epoch means what `cnnlab runs --json` says: EarlyStopping's, none without it
    assert first["best_epoch"] is None and first["best_epoch"] == runs[0].best_epoch
    row = tables.epochs[5]
    run = next(r for r in runs if r.key == row["key"])
    assert row["val_loss"] == run.epochs[row["epoch"] - 1].val_loss


def test_results_are_pandas_dataframes_when_pandas_is_installed(trained_study):
    pandas = pytest.importorskip("pandas")
    tables = cnnlab.results(trained_study)
    assert isinstance(tables.runs, pandas.DataFrame) and isinstance(tables.epochs, pandas.DataFrame)
    assert tables.epochs.groupby("key").size().tolist() == [4, 4, 4, 4]
    best = tables.runs.set_index("key")["best_val_accuracy_epoch"]
    by_epochs = tables.epochs.loc[tables.epochs.groupby("key")["val_accuracy"].idxmax()]
    assert by_epochs.set_index("key")["epoch"].sort_index().tolist() == best.sort_index().tolist()


def test_runs_epochs_format_csv_and_json_print_the_epoch_table(trained_study, capsys):
    assert main(["runs", str(trained_study), "--epochs", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 16 and rows[0]["epoch"] == "1" and float(rows[0]["val_accuracy"]) > 0
    rates = {(row["model"], float(row["learning_rate"])) for row in rows}
    assert rates == {("conv", 0.001), ("dense", 0.05)}  # Adam's default, the file's SGD rate
    assert main(["runs", str(trained_study), "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 4 and {"best_epoch", "test_accuracy", "batch_size"} <= set(runs[0])


def test_runs_epochs_with_json_prints_the_epoch_table_as_json(trained_study, capsys):
    # --epochs took the tidy-table path, which ignored --json and printed CSV.
    assert main(["runs", str(trained_study), "--epochs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 16 and rows[0]["epoch"] == 1
    assert main(["runs", str(trained_study), "--epochs", "--json", "--format", "csv"]) == 2
    assert "--json and --format csv ask for two formats" in capsys.readouterr().err


def test_runs_writes_parquet_to_a_file(trained_study, tmp_path):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "epochs.parquet"
    assert main(["runs", str(trained_study), "--epochs", "-o", str(path)]) == 0
    table = pandas.read_parquet(path)
    assert len(table) == 16 and list(table.columns[:4]) == ["key", "model", "seed", "epoch"]


def test_a_bad_table_format_or_parquet_to_the_terminal_is_one_line(trained_study, capsys):
    assert main(["runs", str(trained_study), "--format", "xlsx"]) == 2
    assert "unknown table format 'xlsx'; use one of csv, json, parquet" in capsys.readouterr().err
    with pytest.raises(ResultsError, match="writes a binary file: give it with -o FILE"):
        write_table([{"a": 1}], "parquet", None)


def test_json_tables_write_nan_as_null():
    text = write_table([{"loss": float("nan"), "accuracy": 0.1}], "json", None)
    assert json.loads(text) == [{"loss": None, "accuracy": 0.1}]
