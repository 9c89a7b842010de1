"""`cnnlab run --until-decided`: seeds where the answer is open, resumable, in status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnnlab import study, until_decided
from cnnlab.cli import main
from cnnlab.sequential import SequentialSettings

# Two dense models that learn and one that cannot (sigmoid units, SGD at 1e-6: chance level).
THREE = """
name = "three"
[[model]]
name = "dense"
optimizer = "adam"
layers = [
  "flatten", { dense = 32, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[[model]]
name = "narrow"
optimizer = "adam"
layers = [
  "flatten", { dense = 16, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[[model]]
name = "stuck"
optimizer = { name = "sgd", learning_rate = 1e-6 }
layers = [
  "flatten", { dense = 8, activation = "sigmoid" }, { dense = "classes", activation = "softmax" },
]
[training]
epochs = 1
batch_size = 64
validation = 0.1
"""
OPTIONS = {"train_limit": 600, "progress": "quiet"}
SETTINGS = SequentialSettings(min_seeds=2, max_seeds=4)


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("until") / "three.toml"
    path.write_text(THREE)
    return path


@pytest.fixture(scope="module")
def decided(study_file, tmp_path_factory, mnist_dir):
    directory = tmp_path_factory.mktemp("decided")
    return until_decided.run_until_decided(
        study_file, settings=SETTINGS, directory=directory, data_dir=mnist_dir, **OPTIONS
    )


@pytest.mark.slow
def test_a_model_stuck_at_chance_is_stopped_as_worse_before_the_maximum(decided):
    states = {d.model: d for d in decided.decisions.models}
    assert states["stuck"].state == "worse"
    assert states["stuck"].seeds < SETTINGS.max_seeds
    assert states["stuck"].reason.startswith("worse than dense by ")
    assert decided.decisions.finished
    stuck_runs = [run for run in decided.study.runs if run.model == "stuck"]
    # no seed past its decision
    assert sorted(run.seed for run in stuck_runs) == list(range(states["stuck"].seeds))
    assert decided.decisions.runs_spent == len(decided.study.runs)


@pytest.mark.slow
def test_an_interrupted_until_decided_study_resumes_to_the_same_decisions(
    study_file, decided, tmp_path, mnist_dir
):
    # What a kill leaves: every model's seed 0 done, seed 1 registered but not trained.
    study.run_study(study_file, directory=tmp_path, seeds=[0], data_dir=mnist_dir, **OPTIONS)
    plan = study.plan_study(study_file, directory=tmp_path, seeds=2, data_dir=mnist_dir)
    with study.open_study_store(tmp_path) as store:
        study.register_runs(store, plan)
    resumed = until_decided.run_until_decided(
        study_file, settings=SETTINGS, directory=tmp_path, data_dir=mnist_dir, **OPTIONS
    )
    assert resumed.decisions == decided.decisions
    again = until_decided.run_until_decided(
        study_file, settings=SETTINGS, directory=tmp_path, data_dir=mnist_dir, **OPTIONS
    )
    assert again.rounds == 0 and again.decisions == decided.decisions


@pytest.mark.slow
def test_until_decided_with_other_training_settings_decides_on_their_own_runs(
    study_file, decided, tmp_path, mnist_dir
):
    # The directory holds a decided study at 1 epoch; 2 epochs are another recipe, whose runs
    # must be trained and decided on, not the 1-epoch runs' decisions shown as theirs.
    shutil.copytree(decided.study.directory, tmp_path / "copy")
    again = until_decided.run_until_decided(
        study_file,
        settings=SETTINGS,
        directory=tmp_path / "copy",
        models="dense,stuck",
        data_dir=mnist_dir,
        epochs=2,
        **OPTIONS,
    )
    assert again.rounds >= 1 and len(again.study.finished) >= 4
    assert {run.training["epochs"] for run in again.study.runs} == {2}
    assert again.decisions.runs_spent == len(again.study.runs)


@pytest.mark.slow
def test_status_shows_seeds_per_model_decisions_and_runs_spent(decided, capsys):
    assert main(["status", str(decided.study.directory)]) == 0
    out = capsys.readouterr().out
    assert "until decided" in out and "worse than dense by" in out
    assert f"until decided: {decided.decisions.runs_spent} runs;" in out
    assert main(["status", str(decided.study.directory), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["until_decided"]
    assert {m["model"]: m["state"] for m in shown["models"]}["stuck"] == "worse"
    assert shown["settings"]["max_seeds"] == 4 and shown["runs_spent"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--until-decided", "--seeds", "3"], "--until-decided chooses the seeds itself"),
        (["--max-seeds", "3"], "--max-seeds belongs to --until-decided"),
        (["--until-decided", "--min-seeds", "5", "--max-seeds", "3"], "min 5 > max 3"),
        (["--until-decided", "--margin", "0"], "--margin must be above 0"),
        (["--until-decided", "--margin", "-0.2"], "--margin must be above 0"),
        (["--until-decided", "--budget", "5runs"], "cannot buy the minimum: 3 models x 2"),
    ],
)
def test_bad_until_decided_options_are_one_line_before_anything_trains(
    study_file, tmp_path, options, message, capsys
):
    directory = tmp_path / "never"
    assert main(["run", str(study_file), "--dir", str(directory), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not directory.exists()


def test_a_study_file_with_a_seed_range_takes_the_options_without_the_flag(
    study_file, tmp_path, capsys
):
    # seeds = { min, max } runs until decided, so --max-seeds applies to it (it extends such a
    # study); here a maximum below the file's minimum shows it was read, before anything trains.
    ranged = tmp_path / "ranged.toml"
    ranged.write_text("seeds = { min = 2, max = 3 }\n" + study_file.read_text())
    directory = tmp_path / "never"
    assert main(["run", str(ranged), "--dir", str(directory), "--max-seeds", "1"]) == 2
    assert capsys.readouterr().err == (
        "error: --max-seeds 1 is below the minimum of 2 seeds (the study file's seeds.min); "
        "give at least 2, or --min-seeds too\n"
    )
    assert not directory.exists()


@pytest.mark.slow
def test_the_reports_conclusions_show_the_decisions_and_runs_spent(decided, mnist_dir):
    from cnnlab import conclusions, report

    results = report.read_study(decided.study.directory, data_dir=mnist_dir)
    table = report.table.build_results_table(results.runs, order=results.order)
    text = conclusions.to_markdown(
        conclusions.write_conclusions(report.gather_evidence(results, table))
    )
    assert "Seeds were added only while a model's place was open" in text
    assert f"{decided.decisions.runs_spent} runs in all" in text
    assert "stuck: worse than dense by" in text
