"""A study's trained networks come back: the best epoch kept while training, load_run, predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

from cnnlab import study
from cnnlab.checkpoint import BEST_MONITOR, best_epoch, load_best
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.export import export_run
from cnnlab.store import open_store
from cnnlab.trained import RunError, load_run, read_images
from conftest import TRAINED_STUDY_LIMIT

VALIDATION = 0.25  # TRAINED_STUDY's [training] validation


def stored_runs(directory):
    return study.study_runs(directory)


def validation_split(mnist_dir):
    """The images the study validated on: the last quarter of its first 1200 training images."""
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    split = int(TRAINED_STUDY_LIMIT * (1 - VALIDATION))
    images = mnist.train_images[split:TRAINED_STUDY_LIMIT]
    return images, mnist.train_labels[split:TRAINED_STUDY_LIMIT]


def test_best_epoch_is_the_first_highest_validation_accuracy():
    history = [
        {"epoch": 1, BEST_MONITOR: 0.5},
        {"epoch": 2, BEST_MONITOR: 0.7},
        {"epoch": 3, BEST_MONITOR: 0.7},
        {"epoch": 4, BEST_MONITOR: 0.6},
    ]
    assert best_epoch(history) == 2
    assert best_epoch([{"epoch": 1, BEST_MONITOR: None}]) is None


def test_every_run_keeps_its_best_epochs_weights_beside_the_last_checkpoints(trained_study):
    for run in stored_runs(trained_study):
        run_dir = trained_study / "runs" / run.key
        checkpoint = load_best(run_dir)
        accuracies = [e.val_accuracy for e in run.epochs]
        assert checkpoint.epoch == 1 + accuracies.index(max(accuracies))
        assert (run_dir / "epoch-0004.json").is_file()  # the rotation leaves "best" alone


def test_load_run_best_reevaluated_gives_the_best_epochs_validation_accuracy(
    trained_study, mnist_dir
):
    images, labels = validation_split(mnist_dir)
    checked = set()
    for run in stored_runs(trained_study):
        loaded = load_run(trained_study, model=run.model, seed=run.seed, epoch="best")
        predicted, probabilities = loaded.predict(images)
        recorded = run.epochs[loaded.epoch - 1].val_accuracy
        assert (predicted == labels).mean() == pytest.approx(recorded, abs=1e-12)
        assert probabilities.shape == (len(labels), 10)
        assert not loaded.model.training and loaded.val_metric == recorded
        checked.add(loaded.epoch)
    assert checked  # at least one run's best epoch was re-evaluated


def test_load_run_last_gives_the_stored_test_predictions(trained_study, mnist_dir):
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    run = stored_runs(trained_study)[0]
    loaded = load_run(trained_study, model=run.model, seed=run.seed, epoch="last")
    predicted, _ = loaded.predict(mnist.test_images)
    with open_store(trained_study) as store:
        stored = store.get_predictions(run.key).predicted
    assert loaded.epoch == 4 and np.array_equal(predicted, stored)
    assert (predicted == mnist.test_labels).mean() == pytest.approx(run.test.accuracy)


def test_load_run_by_epoch_number_of_the_last_or_the_best_epoch(trained_study):
    run = next(r for r in stored_runs(trained_study) if r.model == "conv" and r.seed == 1)
    best = load_best(trained_study / "runs" / run.key).epoch
    assert load_run(trained_study, model="conv", seed=1, epoch=4).epoch == 4
    assert load_run(trained_study, model="conv", seed=1, epoch=best).epoch == best
    gone = min({1, 2, 3} - {best})
    with pytest.raises(
        RunError, match=rf"no checkpoint of epoch {gone} .*\(kept: .*epoch {best} \(best\)"
    ):
        load_run(trained_study, model="conv", seed=1, epoch=gone)
    with pytest.raises(RunError, match=r"has epochs 1\.\.4, not 9"):
        load_run(trained_study, model="conv", seed=1, epoch=9)


@pytest.mark.parametrize(
    ("model", "seed", "message"),
    [
        ("cnov", 0, r"no model 'cnov' in the study; did you mean 'conv'\? \(models: conv, dense\)"),
        ("conv", 7, r"conv has no run with seed 7 \(seeds: 0, 1\)"),
        ("conv", None, r"conv has runs with seeds 0, 1; say which"),
    ],
)
def test_a_model_or_seed_not_in_the_study_is_one_line_naming_what_there_is(
    trained_study, model, seed, message
):
    with pytest.raises(RunError, match=message):
        load_run(trained_study, model=model, seed=seed)


def test_a_run_that_is_not_done_cannot_be_loaded(tmp_path, mnist_dir):
    spec = tmp_path / "exploding.toml"
    spec.write_text(
        '[[model]]\nname = "exploding"\n'
        'optimizer = { name = "sgd", learning_rate = 1e6 }\n'
        'layers = ["flatten", { dense = 32, activation = "relu" }, '
        '{ dense = "classes", activation = "softmax" }]\n'
        "[training]\nepochs = 1\n"
    )
    study.run_study(
        spec, directory=tmp_path / "s", data_dir=mnist_dir, train_limit=300, progress="quiet"
    )
    with pytest.raises(RunError, match=r"exploding seed 0 is diverged \(0 of 1 epochs; .*loaded"):
        load_run(tmp_path / "s", model="exploding")


def test_a_run_without_validation_has_no_best_epoch_but_loads_its_last(tmp_path, mnist_dir):
    spec = tmp_path / "plain.toml"
    spec.write_text(
        '[[model]]\nname = "plain"\noptimizer = "adam"\n'
        'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
        "[training]\nepochs = 1\nvalidation = 0\n"
    )
    study.run_study(
        spec, directory=tmp_path / "s", data_dir=mnist_dir, train_limit=300, progress="quiet"
    )
    with pytest.raises(RunError, match=r"trained without validation.*--epoch last"):
        load_run(tmp_path / "s", model="plain")
    assert load_run(tmp_path / "s", model="plain", epoch="last").epoch == 1


@pytest.mark.slow
def test_stacked_seeds_keep_each_seeds_best_epoch_too(tmp_path, mnist_dir):
    from conftest import TRAINED_STUDY

    spec = tmp_path / "trained.toml"
    spec.write_text(TRAINED_STUDY.replace("epochs = 4", "epochs = 3"))
    directory = tmp_path / "s"
    study.run_study(
        spec,
        directory=directory,
        data_dir=mnist_dir,
        train_limit=600,
        models="conv",
        stack_seeds=True,
        progress="quiet",
    )
    for run in stored_runs(directory):
        best = json.loads((directory / "runs" / run.key / "best.json").read_text())["body"]
        accuracies = [e.val_accuracy for e in run.epochs]
        assert best["epoch"] == 1 + accuracies.index(max(accuracies))
        assert load_run(directory, model="conv", seed=run.seed).epoch == best["epoch"]


# -- predict ----------------------------------------------------------------------------------


def write_png(path, array, mode):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_predict_prints_class_and_probability_per_image(trained_study, mnist_dir, tmp_path, capsys):
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    paths = [write_png(tmp_path / f"{i}.png", mnist.test_images[i, :, :, 0], "L") for i in (0, 1)]
    loaded = load_run(trained_study, model="conv", seed=0, epoch="last")
    classes, probabilities = loaded.predict(read_images(paths, loaded.image_shape))
    code = main(
        ["predict", str(trained_study), "--model", "conv", "--seed", "0", "--epoch", "last"]
        + [str(p) for p in paths]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    for line, path, cls, probability in zip(lines, paths, classes, probabilities, strict=True):
        assert line.startswith(f"{path}: {cls} ")
        assert f"{probability[cls]:.4f}" in line


@pytest.mark.parametrize(
    ("size", "mode", "message"),
    [
        ((32, 32), "L", r"a 32x32 image in mode L; the network takes 28x28 in mode L"),
        ((28, 28), "RGB", r"a 28x28 image in mode RGB; the network takes 28x28 in mode L"),
        # Pillow's size is (width, height); the line says height x width, as image shapes do
        ((28, 32), "L", r"a 32x28 image in mode L; the network takes 28x28 in mode L"),
    ],
)
def test_an_image_of_another_size_or_mode_is_one_line_with_the_expected_size(
    trained_study, tmp_path, capsys, size, mode, message
):
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    path = write_png(tmp_path / "x.png", np.zeros(shape, dtype=np.uint8), mode)
    code = main(["predict", str(trained_study), "--model", "conv", "--seed", "0", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "x.png: " + message.replace("\\", "") in err


def test_a_file_that_is_no_image_is_one_line(trained_study, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(RunError, match=r"notes\.png: not an image file"):
        read_images([text], (28, 28, 1))
    with pytest.raises(RunError, match=r"missing\.png: no such file"):
        read_images([tmp_path / "missing.png"], (28, 28, 1))


def test_a_damaged_best_checkpoint_is_one_line_and_last_still_loads(trained_study, tmp_path):
    import shutil

    copy = tmp_path / "study"
    shutil.copytree(trained_study, copy)
    run = stored_runs(copy)[0]
    blob = copy / "runs" / run.key / "best.safetensors"
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RunError, match=r"is damaged \(best\.safetensors does not match its sha256"):
        load_run(copy, model=run.model, seed=run.seed)
    assert load_run(copy, model=run.model, seed=run.seed, epoch="last").epoch == 4


def test_a_folder_runs_class_names_come_back_for_predict_and_export(tmp_path, capsys):
    # The names live in the folder, not in a registry: the study records them when it runs.
    rng = np.random.default_rng(3)
    for split, count in (("train", 6), ("test", 2)):
        for name, level in (("cat", 40), ("dog", 220)):
            (tmp_path / "photos" / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(rng.normal(level, 10, (6, 6)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "L").save(tmp_path / "photos" / split / name / f"{i}.png")
    spec = tmp_path / "pets.toml"
    spec.write_text(
        f'name = "pets"\ndataset = "folder:{tmp_path / "photos"}"\n[[model]]\nname = "tiny"\n'
        'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
        "[training]\nepochs = 1\nvalidation = 0\n"
    )
    directory = tmp_path / "study"
    study.run_study(spec, directory=directory, data_dir=tmp_path / "cache", progress="quiet")
    run = load_run(directory, model="tiny", epoch="last")
    assert run.class_names == ("cat", "dog")
    image = tmp_path / "photos" / "test" / "dog" / "0.png"
    assert main(["predict", str(directory), "--model", "tiny", "--epoch", "last", str(image)]) == 0
    line = capsys.readouterr().out.strip()  # "...0.png: 1 (dog) 0.9876"
    assert line.split(" ")[2] in ("(cat)", "(dog)")
    weights = tmp_path / "tiny.safetensors"
    export_run(directory, model="tiny", epoch="last", format="safetensors", output=weights)
    with safe_open(str(weights), "pt") as exported:
        assert json.loads(exported.metadata()["class_names"]) == ["cat", "dog"]


def test_load_run_best_of_an_early_stopped_run_is_the_weights_it_kept_and_tested(
    tmp_path, mnist_dir
):
    # mode = "max" on val_loss keeps epoch 1 (the loss only falls), so EarlyStopping's kept
    # weights are not those of the highest validation accuracy: best must still be the weights
    # the run's test figures came from, as Keras's restore_best_weights leaves the model.
    spec = tmp_path / "stopped.toml"
    spec.write_text(
        '[[model]]\nname = "stopped"\noptimizer = "adam"\n'
        'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
        "[training]\nepochs = 5\nvalidation = 0.25\nbatch_size = 32\n"
        'early_stopping = { monitor = "val_loss", mode = "max", patience = 3, '
        "restore_best_weights = true }\n"
    )
    study.run_study(
        spec, directory=tmp_path / "s", data_dir=mnist_dir, train_limit=400, progress="quiet"
    )
    (run,) = stored_runs(tmp_path / "s")
    assert (run.best_epoch, run.stopped_epoch) == (1, 4)
    assert load_best(tmp_path / "s" / "runs" / run.key).epoch == 3  # the highest val_accuracy
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    with open_store(tmp_path / "s") as store:
        stored = store.get_predictions(run.key).predicted
    for epoch in ("best", 1):
        loaded = load_run(tmp_path / "s", model="stopped", epoch=epoch)
        predicted, _ = loaded.predict(mnist.test_images)
        assert loaded.epoch == 1 and np.array_equal(predicted, stored)
        assert (predicted == mnist.test_labels).mean() == pytest.approx(loaded.test_accuracy)
    with pytest.raises(RunError, match=r"epoch 2 .*\(kept: epoch 1 \(best\), epoch 3, epoch 4\)"):
        load_run(tmp_path / "s", model="stopped", epoch=2)
