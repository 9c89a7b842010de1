"""`cnnlab run`, `cnnlab status` and `cnnlab runs` as a user sees them (thin over `study`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab import study
from cnnlab.cli import main
from test_study import TINY

pytestmark = pytest.mark.slow

QUICK = ["--seeds", "1", "--epochs", "1", "--train-limit", "500", "--no-report"]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def half_done(study_file, tmp_path_factory, mnist_dir) -> Path:
    """Seed 0 trained, seed 1 waiting: what an interrupted study leaves."""
    directory = tmp_path_factory.mktemp("half")
    options = {"train_limit": 500, "epochs": 1, "data_dir": mnist_dir}
    study.run_study(study_file, directory=directory, seeds=[0], progress="quiet", **options)
    plan = study.plan_study(study_file, directory=directory, seeds=2, **options)
    with study.open_study_store(directory) as store:
        study.register_runs(store, plan)
    return directory


def test_cnnlab_run_trains_then_a_second_call_says_in_one_line_it_has_nothing_to_do(
    study_file, tmp_path, mnist_dir, capsys
):
    command = ["run", str(study_file), "--dir", str(tmp_path), "--data-dir", str(mnist_dir)]
    assert main([*command, *QUICK]) == 0
    first = capsys.readouterr()
    assert "study tiny: 2 runs in" in first.err and "[2/2] dense seed 0: done" in first.err
    assert "2 runs done in" in first.out and "conv" in first.out
    assert main([*command, *QUICK]) == 0
    assert capsys.readouterr().out == f"nothing to do: 2 runs done (in {tmp_path})\n"


def test_cnnlab_status_counts_runs_and_says_how_to_go_on(half_done, capsys):
    assert main(["status", str(half_done)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"study tiny ({half_done})"
    assert lines[1] == "runs: 2 of 4 done, 2 pending"
    assert lines[2].startswith("epochs: 2/4 (50%), about ") and lines[2].endswith(" left")
    assert lines[3] == "nothing trains now: run the same `cnnlab run` command to go on"


def test_cnnlab_status_json_holds_counts_epochs_and_eta(half_done, capsys):
    assert main(["status", str(half_done), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    counts = {"pending": 2, "running": 0, "done": 2, "failed": 0, "diverged": 0, "pruned": 0}
    assert status["counts"] == counts
    assert (status["epochs_done"], status["epochs_total"]) == (2, 4)
    assert status["eta_seconds"] > 0 and status["running"] == []


def test_cnnlab_runs_shows_a_row_per_run_and_json_the_same_rows(half_done, capsys):
    assert main(["runs", str(half_done)]) == 0
    table = capsys.readouterr().out
    assert table.count(" done ") == 2 and table.count(" pending ") == 2
    assert main(["runs", str(half_done), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["model"], row["seed"], row["status"]) for row in rows] == [
        ("conv", 0, "done"),
        ("dense", 0, "done"),
        ("conv", 1, "pending"),
        ("dense", 1, "pending"),
    ]
    assert rows[0]["test_accuracy"] > 0.2 and rows[2]["test_accuracy"] is None  # chance: 0.1


def test_a_mistyped_model_is_one_error_line_with_the_close_match(
    study_file, tmp_path, mnist_dir, capsys
):
    command = ["run", str(study_file), "--dir", str(tmp_path / "s"), "--models", "dnese"]
    assert main([*command, "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --models: the study has no model 'dnese'; did you mean")
    assert err.count("\n") == 1 and not (tmp_path / "s").exists()


def test_cnnlab_run_precision_bf16_trains_in_the_fast_mode(study_file, tmp_path, mnist_dir):
    command = ["run", str(study_file), "--dir", str(tmp_path), "--data-dir", str(mnist_dir)]
    assert main([*command, *QUICK, "--models", "dense", "--precision", "bf16", "--quiet"]) == 0
    with study.open_study_store(tmp_path) as store:
        (run,) = store.list_runs()
    assert run.status == "done" and run.training["precision"] == "bf16"


def test_cnnlab_run_stack_seeds_trains_a_models_seeds_together(study_file, tmp_path, mnist_dir):
    command = ["run", str(study_file), "--dir", str(tmp_path), "--data-dir", str(mnist_dir)]
    options = ["--seeds", "3", "--epochs", "1", "--train-limit", "500", "--no-report", "--quiet"]
    assert main([*command, *options, "--models", "conv", "--stack-seeds"]) == 0
    with study.open_study_store(tmp_path) as store:
        runs = store.list_runs()
    assert [(r.seed, r.status) for r in runs] == [(0, "done"), (1, "done"), (2, "done")]
    assert len({r.test.accuracy for r in runs}) == 3  # each seed its own run
