"""`cnnlab run --prune halving`: rung decisions, pruned runs, resuming, and what readers show."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from cnnlab import halving, report, rungs, study, table
from cnnlab.cli import main
from cnnlab.cli.study import model_table
from cnnlab.data import load_dataset
from cnnlab.errors import SpecError
from cnnlab.rungs import HalvingSettings
from cnnlab.spec import (
    CLASSES,
    Dense,
    Flatten,
    ModelSpec,
    OptimizerSpec,
    Pruning,
    TrainingSpec,
    load_study,
    study_from_dict,
    study_to_toml,
)
from cnnlab.store import EpochMetrics, RunRecord
from cnnlab.train import train_runs

# -- the rung decision (pure) ---------------------------------------------------------------

THIRD = HalvingSettings(factor=3, min_epochs=1)  # rungs at 1 and 3 of 9


def decide(values, settings=THIRD, epoch=1):
    return rungs.decide_rung(values, number=1, epoch=epoch, settings=settings)


def test_a_rung_keeps_the_top_third_of_the_models_ranked_by_their_seeds_mean():
    values = {
        "a": [0.80, 0.90],  # 0.85
        "b": [0.95, 0.97],  # 0.96
        "c": [0.50],
        "d": [0.86, 0.86],  # 0.86
        "e": [0.10, 0.20],
        "f": [0.60, 0.62],
    }
    rung = decide(values)
    assert rung.kept == ("b", "d")  # floor(6 / 3) = 2
    assert rung.pruned == ("a", "f", "c", "e")  # in rank order
    assert [(m.model, m.rank, m.seeds) for m in rung.ranked][:3] == [
        ("b", 1, 2),
        ("d", 2, 2),
        ("a", 3, 2),
    ]
    assert rung.place("a").value == pytest.approx(0.85)
    assert rung.reason("a").startswith(
        "ranked 3 of 6 models at rung 1 (epoch 1) by mean validation accuracy (0.8500 over 2 "
        "seeds); the top 2 went on (successive halving, factor 3)"
    )


def test_a_rung_never_prunes_the_last_model():
    assert decide({"a": [0.5], "b": [0.6]}).kept == ("b",)  # floor(2 / 3) = 0 -> 1
    alone = decide({"a": [0.5]})
    assert (alone.kept, alone.pruned) == (("a",), ())


def test_validation_loss_ranks_the_lowest_first():
    settings = HalvingSettings(factor=2, metric="val_loss")
    assert decide({"a": [0.9], "b": [0.3], "c": [0.5], "d": [2.0]}, settings).kept == ("b", "c")


def test_seeds_that_did_not_reach_the_rung_are_left_out_and_a_model_with_none_is_out():
    rung = decide({"a": [0.9, None, float("nan")], "b": [0.5, 0.5], "gone": [None, None]})
    assert rung.place("a").seeds == 1 and rung.place("a").value == 0.9
    assert (rung.kept, rung.pruned, rung.out) == (("a",), ("b",), ("gone",))


def test_models_tied_with_the_last_one_kept_go_on_too_listed_in_the_studys_order():
    all_tied = decide({"x": [1.0, 1.0], "y": [1.0, 1.0], "z": [1.0, 1.0]})
    assert (all_tied.kept, all_tied.pruned) == (("x", "y", "z"), ())
    rung = decide({"z": [0.7], "a": [0.9], "y": [0.7], "b": [0.7], "c": [0.1], "d": [0.2]})
    assert rung.kept == ("a", "z", "y", "b") and rung.pruned == ("d", "c")  # 6 / 3 = 2, + ties
    assert decide({"a": [0.9], "b": [0.8], "c": [0.8]}).kept == ("a",)  # a tie below the cut


@pytest.mark.parametrize(
    ("settings", "epochs", "expected"),
    [
        (HalvingSettings(), 9, (3,)),  # by default a factor before the end: epochs // factor
        (HalvingSettings(), 12, (4,)),
        (HalvingSettings(), 2, (1,)),
        (HalvingSettings(factor=2), 12, (6,)),
        (HalvingSettings(min_epochs=1), 9, (1, 3)),
        (HalvingSettings(min_epochs=1), 12, (1, 3, 9)),
        (HalvingSettings(factor=2, min_epochs=1), 8, (1, 2, 4)),
        (HalvingSettings(factor=3, min_epochs=2), 12, (2, 6)),
        (HalvingSettings(min_epochs=4), 5, (4,)),
    ],
)
def test_rungs_lie_at_min_epochs_times_powers_of_the_factor_below_the_last_epoch(
    settings, epochs, expected
):
    assert settings.rungs(epochs) == expected


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HalvingSettings(factor=1), "--prune-factor must be a whole number >= 2"),
        (lambda: HalvingSettings(min_epochs=0), "--prune-min-epochs must be at least 1, got 0"),
        (lambda: HalvingSettings(metric="val_acc"), "did you mean 'val_accuracy'"),
        (lambda: HalvingSettings().rungs(1), "needs at least 2 epochs .*got 1"),
        (lambda: HalvingSettings(min_epochs=3).rungs(3), "--prune-min-epochs 3 leaves no rung"),
    ],
)
def test_bad_halving_settings_are_refused_naming_the_rule_and_value(make, message):
    with pytest.raises(SpecError, match=message):
        make()


def stored_run(model, seed, accuracies, status="pending"):
    epochs = tuple(
        EpochMetrics(e, 1.0, 0.5, 1.0, acc, 1.0, 100.0) for e, acc in enumerate(accuracies, 1)
    )
    return RunRecord(
        key=f"{model}-{seed}",
        model=model,
        seed=seed,
        dataset="d",
        spec={},
        training={"epochs": 9},
        status=status,
        attempts=1,
        created_at=0.0,
        epochs=epochs,
    )


def test_a_time_estimate_expects_a_model_to_pass_each_rung_ahead_with_chance_1_over_factor():
    runs = [stored_run("a", 0, [0.9, 0.9]), stored_run("b", 0, [0.1], status="pruned")]
    runs += [stored_run(m, 0, [0.5]) for m in "cdef"] + [stored_run("g", 0, [])]
    halving = rungs.Halving(
        THIRD, 9, tuple("abcdefg"), rungs.replay(runs, list("abcdefg"), THIRD, 9)
    )
    # rungs at 1 and 3 of 9; rung 1 waits for g. g: 1 epoch surely, 1 -> 3 with 1/3, 3 -> 9 with 1/9
    assert rungs.expected_epochs(halving, runs[-1]) == pytest.approx(1 + 2 / 3 + 6 / 9)
    decided = rungs.replay(runs[:-1], list("abcdef"), THIRD, 9)  # a and one more kept at 1
    halving = rungs.Halving(THIRD, 9, tuple("abcdef"), decided)
    assert "a" in decided[0].kept
    assert rungs.expected_epochs(halving, runs[0]) == pytest.approx(2 + 1 + 6 / 3)  # passed 1


def test_a_run_stopped_early_by_early_stopping_keeps_its_last_figure_and_a_diverged_one_none():
    early = stored_run("a", 0, [0.5, 0.6], status="done")
    diverged = stored_run("a", 1, [0.9], status="diverged")
    assert rungs.value_at(early, 3, "val_accuracy") == 0.6
    assert rungs.value_at(diverged, 3, "val_accuracy") is None
    assert rungs.value_at(diverged, 1, "val_accuracy") == 0.9


def test_replay_decides_each_rung_every_run_reached_and_stops_at_the_first_one_not():
    runs = [
        stored_run("a", 0, [0.9, 0.9, 0.95]),
        stored_run("b", 0, [0.8, 0.85]),
        stored_run("c", 0, [0.1], status="pruned"),
        stored_run("d", 0, [0.2], status="pruned"),
        stored_run("e", 0, [0.7, 0.9]),
        stored_run("f", 0, [0.3], status="pruned"),
    ]
    decided = rungs.replay(runs, list("abcdef"), THIRD, 9)
    assert [(r.epoch, r.kept) for r in decided] == [(1, ("a", "b"))]  # b has not reached 3
    runs[1] = stored_run("b", 0, [0.8, 0.85, 0.99])
    decided = rungs.replay(runs, list("abcdef"), THIRD, 9)
    assert [(r.epoch, r.kept, r.pruned) for r in decided] == [
        (1, ("a", "b"), ("e", "f", "d", "c")),
        (3, ("b",), ("a",)),
    ]


# -- the study file and the options ----------------------------------------------------------


def test_a_study_files_prune_table_round_trips_and_its_bad_values_name_the_key():
    models = [{"name": "a", "layers": ["flatten", {"dense": "classes", "activation": "softmax"}]}]
    found = study_from_dict({"model": models, "prune": {"method": "halving", "factor": 2}})
    assert found.prune == Pruning("halving", 2, None, None)
    text = study_to_toml(found)
    assert 'prune = { method = "halving", factor = 2 }' in text
    for bad, message in (
        ({"method": "halvng"}, "prune.method must be one of halving, got 'halvng'; did you"),
        ({"factor": 1}, "prune.factor must be >= 2, got 1"),
        ({"eta": 3}, "unknown prune key 'eta'"),
        ({"metric": "accuracy"}, "prune.metric must be one of val_accuracy, val_loss"),
    ):
        with pytest.raises(SpecError, match=message):
            study_from_dict({"model": models, "prune": bad})


def test_options_override_the_study_files_prune_and_none_turns_it_off():
    filed = Pruning("halving", factor=2, min_epochs=3)
    assert halving.resolve_settings(filed) == HalvingSettings(2, 3, "val_accuracy")
    assert halving.resolve_settings(filed, factor=4).factor == 4
    assert halving.resolve_settings(filed, method="none") is None
    assert halving.resolve_settings(None) is None
    assert halving.resolve_settings(None, method="halving") == HalvingSettings()
    with pytest.raises(SpecError, match="--prune must be one of halving, none, got 'halve'"):
        halving.resolve_settings(None, method="halve")
    with pytest.raises(SpecError, match="--prune-min-epochs belongs to --prune halving"):
        halving.resolve_settings(None, min_epochs=2)


# -- the engine: training to a rung ----------------------------------------------------------

TINY = ModelSpec(
    name="tiny",
    layers=(Flatten(), Dense(16, activation="relu"), Dense(CLASSES, activation="softmax")),
    optimizer=OptimizerSpec("adam"),
)


@pytest.mark.slow
def test_a_run_trained_to_a_rung_is_paused_untested_and_resumes_to_the_unbroken_run(
    mnist_dir, tmp_path
):
    spec = TINY
    data = load_dataset("mnist", data_dir=mnist_dir)
    training = TrainingSpec(epochs=2, batch_size=64, validation=0.1, train_limit=600)

    def train(run_dir: Path, until: int | None = None):
        (result,) = train_runs(
            spec,
            data,
            seeds=[3],
            training=training,
            device="cpu",
            run_dirs=[run_dir],
            on_epoch=None,
            progress="quiet",
            threads=1,
            stack=False,
            until_epoch=until,
        )
        return result

    paused = train(tmp_path / "halved", until=1)
    assert (paused.status, paused.epoch, len(paused.history)) == ("paused", 1, 1)
    assert paused.test_accuracy is None and paused.test_predictions is None
    resumed, straight = train(tmp_path / "halved"), train(tmp_path / "straight")
    assert (resumed.status, resumed.resumed_from) == ("done", 1)

    def figures(result):
        return [dataclasses.replace(r, seconds=0, images_per_second=0) for r in result.history]

    assert figures(resumed) == figures(straight)
    assert resumed.test_accuracy == straight.test_accuracy


# -- a real study ----------------------------------------------------------------------------

# Three dense models that learn at different speeds and one that cannot (sigmoid units, SGD at
# 1e-6: chance level), 3 epochs: with factor 2 the rungs lie at epochs 1 and 2.
FOUR = """
name = "four"
[[model]]
name = "dense32"
optimizer = "adam"
layers = [
  "flatten", { dense = 32, activation = "relu" },
  { dense = "classes", activation = "softmax" },
]
[[model]]
name = "dense16"
optimizer = "adam"
layers = [
  "flatten", { dense = 16, activation = "relu" },
  { dense = "classes", activation = "softmax" },
]
[[model]]
name = "dense8"
optimizer = "adam"
layers = [
  "flatten", { dense = 8, activation = "relu" },
  { dense = "classes", activation = "softmax" },
]
[[model]]
name = "stuck"
optimizer = { name = "sgd", learning_rate = 1e-6 }
layers = [
  "flatten", { dense = 8, activation = "sigmoid" },
  { dense = "classes", activation = "softmax" },
]
[training]
epochs = 3
batch_size = 64
validation = 0.1
"""
HALF = HalvingSettings(factor=2)
OPTIONS = {"seeds": 2, "train_limit": 600, "progress": "quiet"}


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("halving") / "four.toml"
    path.write_text(FOUR)
    return path


@pytest.fixture(scope="module")
def halved(study_file, tmp_path_factory, mnist_dir):
    directory = tmp_path_factory.mktemp("halved")
    return halving.run_halving(
        study_file, settings=HALF, directory=directory, data_dir=mnist_dir, **OPTIONS
    )


def outcome_of(found) -> dict:
    """What a halving study ended with: each run's status, epochs and test accuracy."""
    return {
        (run.model, run.seed): (
            run.status,
            len(run.epochs),
            run.stopped_epoch,
            run.test.accuracy if run.test else None,
        )
        for run in found.study.runs
    }


@pytest.mark.slow
def test_losers_end_pruned_at_their_rungs_epoch_and_the_survivor_trains_to_the_end(halved):
    first, second = halved.halving.rungs
    assert (first.epoch, len(first.kept), len(first.pruned)) == (1, 2, 2)
    assert "stuck" in first.pruned  # at chance level after an epoch
    assert (second.epoch, len(second.kept), second.pruned) == (2, 1, (second.ranked[1].model,))
    (winner,) = second.kept
    for run in halved.study.runs:
        if run.model == winner:
            assert (run.status, len(run.epochs), run.attempts) == ("done", 3, 3)
            continue
        epoch = 1 if run.model in first.pruned else 2
        assert (run.status, run.stopped_epoch, len(run.epochs), run.test) == (
            "pruned",
            epoch,
            epoch,
            None,
        )
        assert run.reason == (first if epoch == 1 else second).reason(run.model)
        assert run.attempts == epoch + 1  # trained once per rung it reached, then pruned
        kept = sorted(p.name for p in (halved.study.directory / "runs" / run.key).iterdir())
        assert f"epoch-{epoch:04d}.safetensors" in kept and len(kept) == 4  # the last only
    assert halved.study.counts == {
        "pending": 0,
        "running": 0,
        "done": 2,
        "failed": 0,
        "diverged": 0,
        "pruned": 6,
    }


@pytest.mark.slow
def test_an_interrupted_halving_study_resumes_with_two_jobs_to_the_same_decisions(
    study_file, halved, tmp_path, mnist_dir
):
    # What a kill during rung 2 leaves: every run trained to epoch 1, nothing pruned yet.
    study.run_study(study_file, directory=tmp_path, until_epoch=1, data_dir=mnist_dir, **OPTIONS)
    resumed = halving.run_halving(
        study_file, settings=HALF, directory=tmp_path, data_dir=mnist_dir, jobs=2, **OPTIONS
    )
    assert resumed.halving.rungs == halved.halving.rungs
    assert outcome_of(resumed) == outcome_of(halved)  # exact: resuming is bit-identical on CPU
    again = halving.run_halving(
        study_file, settings=HALF, directory=tmp_path, data_dir=mnist_dir, **OPTIONS
    )
    assert again.study.nothing_to_do and again.halving.rungs == halved.halving.rungs


@pytest.mark.slow
def test_a_plain_run_of_a_finished_halving_study_keeps_its_rungs(
    study_file, halved, tmp_path, mnist_dir
):
    copy = tmp_path / "copy"
    shutil.copytree(halved.study.directory, copy)
    again = study.run_study(study_file, directory=copy, data_dir=mnist_dir, **OPTIONS)
    assert again.nothing_to_do  # nothing trained: the runs are still halving's
    assert halving.study_halving(copy) == halved.halving


@pytest.mark.slow
def test_a_call_that_would_train_a_pruned_model_on_is_refused(
    study_file, halved, tmp_path, mnist_dir
):
    copy = tmp_path / "copy"
    shutil.copytree(halved.study.directory, copy)
    with pytest.raises(study.StudyError, match="stuck seed 0 was pruned at epoch 1 by an earl"):
        halving.run_halving(  # stuck alone: no rung to prune it, so it would go on
            study_file, settings=HALF, directory=copy, data_dir=mnist_dir, models="stuck", **OPTIONS
        )


@pytest.mark.slow
def test_pruned_runs_stay_out_of_the_statistics_and_the_conclusions_say_what_was_pruned(
    halved, mnist_dir
):
    results = report.read_study(halved.study.directory, data_dir=mnist_dir)
    results_table = table.build_results_table(results.runs, order=results.order)
    evidence = report.gather_evidence(results, results_table)
    (winner,) = halved.halving.rungs[-1].kept
    for m in evidence.models:
        assert (len(m.accuracies), m.pruned) == ((2, 0) if m.name == winner else (0, 2))
    rows = {row.model: row for row in results_table.rows}
    assert (
        table.format_runs(rows["stuck"]) == "0 of 2 (2 pruned)" and rows["stuck"].accuracy is None
    )
    found = report.concl.write_conclusions(evidence)
    texts = [f.text for f in found.findings]
    first = halved.halving.rungs[0]
    assert any(
        t.startswith("Successive halving stopped the models that ranked low early (factor 2")
        and f"rung 1 at epoch 1 kept 2 of 4 models and pruned 2 (4 runs: {', '.join(first.pruned)})"
        in t
        for t in texts
    )
    assert "It is the only model trained to the end (the others were pruned)" in " ".join(texts)
    assert found.best.best == winner and found.best.comparisons == ()


def test_the_halving_finding_names_pruned_models_whose_early_stopped_runs_are_compared():
    # "b" and "c" ranked low at the rung; EarlyStopping had ended both of b's seeds before it
    # (done, tested) and one of c's: those runs are finished and compared, the rest pruned.
    rung = decide({"a": [0.9, 0.9], "b": [0.2, 0.2], "c": [0.3, 0.3]}, HALF)
    found = rungs.Halving(HALF, 3, ("a", "b", "c"), (rung,))
    models = [
        report.concl.ModelEvidence("a", (0.91, 0.92)),
        report.concl.ModelEvidence("b", (0.21, 0.22)),
        report.concl.ModelEvidence("c", (0.31,), pruned=1),
    ]
    (finding,) = report.concl.halving_findings(found, models)
    assert "pruned 2 (1 run: c, b)" in finding.text
    assert "Pruned runs have no final statistics and are in none of the comparisons" in (
        finding.text
    )
    assert "Runs of c, b had ended before their rung (EarlyStopping, or trained to" in (
        finding.text
    )


@pytest.mark.slow
def test_status_and_runs_show_pruned_runs_with_their_epoch_and_the_rungs(halved, capsys):
    directory = str(halved.study.directory)
    assert main(["status", directory]) == 0
    out = capsys.readouterr().out
    assert "runs: 2 of 8 done, 6 pruned" in out and "successive halving" in out
    assert "2 rungs decided; 1 model goes on to the last epoch" in out
    assert main(["status", directory, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"]["pruned"] == 6
    # Epochs count what was trained: pruning's saving shows, not the plan of 8 full runs.
    trained = sum(len(run.epochs) for run in halved.study.runs)
    assert shown["epochs_done"] == shown["epochs_total"] == trained
    assert trained < 8 * halved.study.runs[0].training["epochs"]
    assert [r["epoch"] for r in shown["halving"]["rungs"]] == [1, 2]
    assert main(["runs", directory]) == 0
    out = capsys.readouterr().out
    assert "stuck seed 0: pruned at epoch 1: ranked" in out
    # `cnnlab run`'s closing table counts a pruned model's runs as pruned, not as missing
    console = Console(width=200, record=True)
    console.print(model_table("halved", halved.study.runs))
    row = next(line for line in console.export_text().splitlines() if "stuck" in line)
    assert "0/2 (2 pruned)" in row


@pytest.mark.slow
def test_the_report_lists_pruned_runs_and_draws_their_curves(halved, mnist_dir):
    page = report.build_report(halved.study.directory, data_dir=mnist_dir).read_text()
    assert '<section id="pruned">' in page and "stuck" in page.split('id="pruned"')[1]
    assert "2 done, 6 pruned" in page
    curves = report.plots.curves_by_model(halved.study.runs, ["stuck"], "accuracy")
    assert curves[0].validation.epochs == (1,)  # up to the rung it stopped at


# -- bad input: one line each, before anything trains -----------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--prune", "halving", "--prune-factor", "1"], "--prune-factor must be a whole number"),
        (["--prune", "halving", "--prune-min-epochs", "3"], "--prune-min-epochs 3 leaves no rung"),
        (["--prune", "halving", "--epochs", "1"], "needs at least 2 epochs"),
        (["--prune", "halvng"], "--prune must be one of halving, none, got 'halvng'; did you"),
        (["--prune-factor", "2"], "--prune-factor belongs to --prune halving"),
        (["--prune", "halving", "--until-decided"], "do not combine"),
        (["--prune", "halving", "--prune-metric", "loss"], "--prune-metric must be one of"),
    ],
)
def test_bad_prune_options_are_one_line_before_anything_trains(
    study_file, tmp_path, options, message, capsys
):
    directory = tmp_path / "never"
    assert main(["run", str(study_file), "--dir", str(directory), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not directory.exists()


def test_halving_without_a_validation_figure_is_refused(study_file, tmp_path):
    spec = load_study(study_file)
    spec = dataclasses.replace(spec, training=spec.training.replace(validation=0.0))
    with pytest.raises(SpecError, match="validation = 0 holds no images out"):
        halving.run_halving(spec, settings=HALF, directory=tmp_path / "never")
    assert not (tmp_path / "never").exists()
