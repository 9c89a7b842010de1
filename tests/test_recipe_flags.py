"""The recipe flags `cnnlab train` and `cnnlab run` share: parsed once, checked by TrainingSpec,
and an override is the same run as the same key written in the study file."""

from __future__ import annotations

import json

import pytest

from cnnlab import study
from cnnlab.cli import main
from cnnlab.cli.recipe import RecipeFlags, apply_recipe_flags, keras_arguments
from cnnlab.errors import SpecError
from cnnlab.spec import TrainingSpec, load_study
from test_study import TINY

RECIPE = """
augment = [{ random_crop = 28, pad = 2 }, { random_flip = "horizontal" }]
learning_rate_schedule = { name = "PiecewiseConstantDecay", boundaries = [5, 10], values = [
  0.01, 0.005, 0.001] }
early_stopping = { patience = 0, restore_best_weights = true }
label_smoothing = 0.1
"""
FLAGS = RecipeFlags(
    augment=("random_crop=28,pad=2", "random_flip=horizontal"),
    learning_rate_schedule="PiecewiseConstantDecay,boundaries=[5,10],values=[0.01,0.005,0.001]",
    early_stopping="patience=0,restore_best_weights=true",
    label_smoothing=0.1,
)


@pytest.fixture
def files(tmp_path):
    """The tiny study as written, and with the recipe's keys in its [training]."""
    plain, keyed = tmp_path / "tiny.toml", tmp_path / "keyed.toml"
    plain.write_text(TINY)
    keyed.write_text(TINY + RECIPE)
    return plain, keyed


def test_key_value_text_reads_as_toml_values_with_brackets_kept_whole():
    assert keras_arguments("boundaries=[1,2],values=[3,2,1]", "--x") == {
        "boundaries": [1, 2],
        "values": [3, 2, 1],
    }
    assert keras_arguments("CosineDecay,decay_steps=10,alpha=0.1", "--x", named=True) == {
        "name": "CosineDecay",
        "decay_steps": 10,
        "alpha": 0.1,
    }
    assert keras_arguments("monitor=val_accuracy,restore_best_weights=true", "--x") == {
        "monitor": "val_accuracy",
        "restore_best_weights": True,
    }
    assert keras_arguments("on", "--x") == {}
    with pytest.raises(SpecError, match=r"^--x takes key=value pairs .*, got 'patience'$"):
        keras_arguments("patience", "--x")


def test_flags_give_the_training_of_a_study_file_with_the_same_keys(files):
    plain, keyed = files
    overridden = apply_recipe_flags(load_study(plain).training, FLAGS)
    assert overridden == load_study(keyed).training
    assert overridden.identity() == load_study(keyed).training.identity()
    assert overridden.identity() != load_study(plain).training.identity()


def test_an_override_gives_the_same_run_keys_as_the_key_in_the_file(files, mnist_dir):
    plain, keyed = files
    training = apply_recipe_flags(load_study(plain).training, FLAGS)
    flagged = study.plan_study(plain, training=training, data_dir=mnist_dir)
    written = study.plan_study(keyed, data_dir=mnist_dir)
    assert flagged.keys == written.keys
    assert flagged.keys != study.plan_study(plain, data_dir=mnist_dir).keys


def test_off_removes_the_files_setting_and_on_takes_keras_defaults(files):
    _, keyed = files
    training = load_study(keyed).training
    off = RecipeFlags(augment=("off",), learning_rate_schedule="off", early_stopping="off")
    cleared = apply_recipe_flags(training, off)
    assert (cleared.augment, cleared.learning_rate_schedule, cleared.early_stopping) == (
        (),
        None,
        None,
    )
    assert cleared.label_smoothing == 0.1  # a flag not given keeps the file's value
    on = apply_recipe_flags(TrainingSpec(), RecipeFlags(early_stopping="on"))
    assert on.early_stopping.kwargs()["patience"] == 0  # Keras's default
    assert apply_recipe_flags(training, RecipeFlags()) == training


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (RecipeFlags(early_stopping="patience=-1"), r"--early-stopping: .*patience must be >= 0"),
        (
            RecipeFlags(early_stopping="patence=3"),
            r"--early-stopping: EarlyStopping takes no argument 'patence'; did you mean 'patience'",
        ),
        (
            RecipeFlags(augment=("random_crp=28",)),
            r"--augment: an augmentation names one layer .* did you mean 'random_crop'",
        ),
        (
            RecipeFlags(learning_rate_schedule="CosineDecy,decay_steps=5"),
            r"--learning-rate-schedule: unknown learning-rate schedule 'CosineDecy'",
        ),
        (RecipeFlags(label_smoothing=2.0), r"--label-smoothing: label_smoothing must be in"),
        (
            RecipeFlags(learning_rate_schedule="CosineDecay"),
            r"--learning-rate-schedule: CosineDecay needs initial_learning_rate",
        ),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_flag_and_the_rule(flags, message):
    with pytest.raises(SpecError, match=message):
        apply_recipe_flags(TrainingSpec(), flags)


def test_a_flag_that_clashes_with_the_files_other_key_names_the_flag(tmp_path):
    path = tmp_path / "plateau.toml"
    path.write_text(TINY + "reduce_lr_on_plateau = { factor = 0.5 }\n")
    schedule = RecipeFlags(
        learning_rate_schedule="CosineDecay,initial_learning_rate=0.1,decay_steps=9"
    )
    with pytest.raises(SpecError, match=r"^--learning-rate-schedule: reduce_lr_on_plateau cannot"):
        apply_recipe_flags(load_study(path).training, schedule)
    no_validation = load_study(path).training.replace(reduce_lr_on_plateau=None, validation=0.0)
    with pytest.raises(SpecError, match=r"^--early-stopping: .*'val_loss' is never computed"):
        apply_recipe_flags(no_validation, RecipeFlags(early_stopping="on"))


def test_cnnlab_run_refuses_a_bad_recipe_flag_in_one_line_before_loading_data(
    files, tmp_path, capsys
):
    plain, _ = files
    command = ["run", str(plain), "--dir", str(tmp_path / "s"), "--data-dir", str(tmp_path)]
    assert main([*command, "--early-stopping", "patience=-1"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --early-stopping: early_stopping.patience must be >= 0, got -1\n"
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_cnnlab_run_with_recipe_flags_is_the_same_study_as_the_keys_in_the_file(
    files, tmp_path, mnist_dir, capsys
):
    plain, keyed = files
    where = ["--dir", str(tmp_path / "s"), "--data-dir", str(mnist_dir)]
    quick = ["--seeds", "1", "--train-limit", "300", "--models", "dense", "--no-report", "--json"]
    flags = ["--augment", "random_crop=28,pad=2", "--augment", "random_flip=horizontal"]
    flags += ["--learning-rate-schedule", FLAGS.learning_rate_schedule]
    flags += ["--early-stopping", FLAGS.early_stopping, "--label-smoothing", "0.1"]
    assert main(["run", str(plain), *where, *quick, *flags]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # 270 training images in batches of 64: 5 steps an epoch, the rate as each epoch ended.
    assert row["status"] == "done" and row["learning_rate"] == [0.01, 0.005]
    with study.open_study_store(tmp_path / "s") as store:
        (run,) = store.list_runs()
    assert run.training["early_stopping"]["restore_best_weights"] is True
    assert run.training["label_smoothing"] == 0.1
    assert main(["run", str(keyed), *where, *quick[:-1]]) == 0
    assert capsys.readouterr().out.startswith("nothing to do: 1 runs done")
    assert main(["runs", str(tmp_path / "s")]) == 0  # the rate changed: the table shows the last
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "┃" in line).split("┃")
    row = next(line for line in lines if "│" in line).split("│")
    cells = {name.strip(): value.strip() for name, value in zip(header, row, strict=True)}
    assert cells["learning rate"] == "0.005"
