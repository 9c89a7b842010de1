"""normalize = "per-channel" end to end: the spec, the training part's statistics, training
(one seed and stacked), the run's identity, and load_run / predict / exports that reproduce it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnlab import study
from cnnlab.cli import main
from cnnlab.data import dataset_from_arrays
from cnnlab.data.normalize import ChannelStats, channel_stats
from cnnlab.errors import SpecError
from cnnlab.multiseed import train_seeds
from cnnlab.spec import (
    CLASSES,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
    ModelSpec,
    OptimizerSpec,
    TrainingSpec,
    load_study,
    study_to_toml,
)
from cnnlab.store import open_store, run_key
from cnnlab.train import prepare_data, train_model

MODEL = ModelSpec(
    name="tiny",
    layers=(
        Conv2D(4, (3, 3), activation="relu"),
        MaxPooling2D((4, 4)),
        Flatten(),
        Dense(CLASSES, activation="softmax"),
    ),
    optimizer=OptimizerSpec("adam"),
)
# 90 steps: the per-channel run has learnt the colours (0.97) while x / 255 alone is still at
# 0.67 (measured), on the data below.
QUICK = {"epochs": 3, "batch_size": 16, "validation": 0.2, "progress": "quiet"}


def colour_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 colour images of 3 classes told apart by their brightest channel, on channels
    with very different means (red bright, blue dark), where standardising matters."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    base = np.array([170, 100, 30]) + rng.integers(0, 40, size=(count, 16, 16, 3))
    base[np.arange(count), :, :, labels] += 45
    return base.astype(np.uint8), labels


@pytest.fixture(scope="module")
def colour():
    return dataset_from_arrays("colour", colour_images(600, 0), colour_images(150, 1))


# -- the spec ----------------------------------------------------------------------------------

STUDY = """name = "s"
models = ["seed/model-1"]

[training]
epochs = 2
normalize = {value}
"""


def test_a_study_file_sets_normalize_and_writes_it_back(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(STUDY.format(value='"per-channel"'))
    spec = load_study(path)
    assert spec.training.normalize == "per-channel"
    again = tmp_path / "again.toml"
    again.write_text(study_to_toml(spec))
    assert load_study(again).training == spec.training
    default = study_to_toml(load_study("seed"))
    assert "normalize" not in default  # the default is left out, as other recipe fields


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"per_channel"', r"got 'per_channel'; did you mean 'per-channel'\?"),
        ('"minmax"', r"got 'minmax'$"),
        ("1", r"got 1$"),
    ],
)
def test_a_bad_normalize_names_the_file_line_modes_and_closest_match(tmp_path, value, message):
    path = tmp_path / "s.toml"
    path.write_text(STUDY.format(value=value))
    with pytest.raises(SpecError, match=r"s\.toml:6: normalize must be one of scale, per-chan"):
        load_study(path)
    with pytest.raises(SpecError, match=message):
        load_study(path)


def test_per_channel_is_in_the_run_identity_and_the_default_keeps_the_old_one():
    spec = {"name": "m", "layers": []}
    default, scale = TrainingSpec().identity(), TrainingSpec(normalize="scale").identity()
    per_channel = TrainingSpec(normalize="per-channel").identity()
    assert "normalize" not in default and scale == default  # stored studies keep their keys
    assert per_channel == {**default, "normalize": "per-channel"}
    keys = {run_key(spec, seed=0, dataset="d", training=t) for t in (default, per_channel)}
    assert len(keys) == 2


# -- the statistics: the images trained on, nothing else ----------------------------------------


def test_stats_come_from_the_images_trained_on_not_the_validation_part_or_the_test_set():
    dark, bright = colour_images(60, 0), colour_images(20, 1)
    train = (np.concatenate([dark[0] // 4, bright[0]]), np.concatenate([dark[1], bright[1]]))
    test = (np.full((10, 16, 16, 3), 255, np.uint8), np.arange(10) % 3)
    dataset = dataset_from_arrays("split", train, test)
    cpu = torch.device("cpu")
    # 80 images, train_limit 70, validation 0.25: the first 52 train, the next 18 validate.
    data = prepare_data(dataset, 70, 0.25, cpu, normalize="per-channel")
    assert len(data.train_y) == 52
    assert data.stats == channel_stats(train[0][:52])
    assert data.stats.mean[0] < channel_stats(train[0][:70]).mean[0] - 0.02  # bright tail left out
    on_test = prepare_data(dataset, None, "test", cpu, normalize="per-channel")
    assert on_test.stats == channel_stats(train[0])  # the test set validates but never counts
    assert prepare_data(dataset, None, 0.25, cpu).stats is None  # "scale": none computed


def test_batches_are_standardised_with_the_stats_as_keras_normalization_would():
    dataset = dataset_from_arrays("c", colour_images(40, 0), colour_images(10, 1))
    data = prepare_data(dataset, None, 0.0, torch.device("cpu"), normalize="per-channel")
    x = dataset.train_images.astype(np.float64) / 255
    # keras.layers.Normalization(axis=-1).adapt(x): (x - mean) / sqrt(var), per channel
    expected = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    got = data.standardise(data.train_x.float() / 255).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert abs(got.mean()) < 1e-5 and got.std() == pytest.approx(1, abs=1e-4)


# -- training -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_per_channel_run_records_its_stats_and_its_model_takes_x_over_255(colour, tmp_path):
    first = {**QUICK, "epochs": 2}
    train_model(MODEL, colour, normalize="per-channel", run_dir=tmp_path / "r", **first)
    result = train_model(MODEL, colour, normalize="per-channel", run_dir=tmp_path / "r", **QUICK)
    scaled = train_model(MODEL, colour, **QUICK)
    assert result.resumed_from == 2  # the recorded statistics match the ones computed again
    assert result.status == "done" and result.test_accuracy >= 0.9
    assert scaled.test_accuracy < result.test_accuracy - 0.15  # the inputs differ
    assert result.channel_stats == channel_stats(colour.train_images[:480])
    assert result.to_dict()["channel_stats"]["mean"] == list(result.channel_stats.mean)
    x = torch.from_numpy(colour.test_images.astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.inference_mode():
        predicted = result.model(x).argmax(1).numpy()
    assert np.array_equal(predicted, result.test_predictions)
    manifest = json.loads((tmp_path / "r" / "epoch-0003.json").read_text())
    recorded = manifest["body"]["identity"]["channel_stats"]
    assert ChannelStats.from_dict(recorded) == result.channel_stats


@pytest.mark.slow
def test_stacked_seeds_standardise_as_their_separate_runs(colour):
    seeds = (0, 1)
    # 8 steps: rounding differences between stacked and separate runs grow with every step
    training = TrainingSpec(epochs=2, batch_size=128, validation=0.2, normalize="per-channel")
    together = train_seeds(MODEL, colour, seeds=seeds, training=training, progress="quiet")
    for seed, stacked in zip(seeds, together, strict=True):
        alone = train_model(MODEL, colour, training=training, seed=seed, progress="quiet")
        assert stacked.channel_stats == alone.channel_stats
        assert stacked.test_loss == pytest.approx(alone.test_loss, rel=1e-5)
        assert stacked.history[0].loss == pytest.approx(alone.history[0].loss, rel=1e-5)


# -- a study's runs back: load_run, predict, exports -----------------------------------------------


TINY_STUDY = """name = "s"
dataset = "npz:colour.npz"
seeds = 1

[[model]]
name = "tiny"
optimizer = "adam"
layers = [
  { conv = 4, kernel = 3, activation = "relu" }, { maxpool = 4 }, "flatten",
  { dense = "classes", activation = "softmax" },
]

[training]
epochs = 2
batch_size = 32
validation = 0.2
"""


def write_npz(directory) -> tuple[np.ndarray, np.ndarray]:
    """colour.npz as Keras's datasets write them; returns the train and test images."""
    (x_train, y_train), (x_test, y_test) = colour_images(500, 0), colour_images(120, 1)
    path = directory / "colour.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return x_train, x_test


@pytest.fixture(scope="module")
def per_channel_study(tmp_path_factory):
    """A per-channel study on a Keras-style npz named by a *relative* path, trained from the
    directory that path is relative to."""
    root = tmp_path_factory.mktemp("normalize")
    x_train, x_test = write_npz(root)
    spec = root / "s.toml"
    spec.write_text(TINY_STUDY + 'normalize = "per-channel"\n')
    before = os.getcwd()
    os.chdir(root)
    try:
        study.run_study(spec, directory=root / "study", progress="quiet")
    finally:
        os.chdir(before)
    return root / "study", x_train, x_test


def test_cnnlab_train_takes_normalize_and_a_bad_one_is_one_line(capsys, tmp_path):
    write_npz(tmp_path)
    source, model = f"npz:{tmp_path / 'colour.npz'}", tmp_path / "tiny.toml"
    model.write_text(TINY_STUDY.split("[[model]]\n")[1].split("[training]")[0])
    args = ["train", str(model), "--dataset", source, "--epochs", "1", "--json"]
    assert main([*args, "--normalize", "per_chanel"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --normalize: normalize must be one of scale, per-channel, got 'per_chanel'; "
        "did you mean 'per-channel'?"
    )
    assert main([*args, "--normalize", "per-channel"]) == 0
    stats = json.loads(capsys.readouterr().out)["channel_stats"]
    assert stats["mean"][0] > stats["mean"][1] > stats["mean"][2]  # red, green, blue as made


def test_cnnlab_run_normalize_overrides_the_study_and_is_part_of_the_run_key(capsys, tmp_path):
    write_npz(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(TINY_STUDY.replace("npz:colour.npz", f"npz:{tmp_path / 'colour.npz'}"))
    command = ["run", str(spec), "--dir", str(tmp_path / "s"), "--epochs", "1", "--quiet"]
    assert main([*command, "--normalize", "per_chanel"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --normalize: normalize must be")
    assert not (tmp_path / "s").exists()  # refused before anything was made
    assert main([*command, "--no-report"]) == 0
    assert main([*command, "--no-report", "--normalize", "per-channel"]) == 0
    runs = study.study_runs(tmp_path / "s", all_runs=True)
    assert sorted(run.training.get("normalize", "scale") for run in runs) == [
        "per-channel",
        "scale",
    ]
    assert len({run.key for run in runs}) == 2


def stored_predictions(directory):
    (run,) = study.study_runs(directory)
    with open_store(directory) as store:
        return run, store.get_predictions(run.key).predicted


@pytest.mark.slow
def test_load_run_predicts_the_stored_test_predictions_with_the_recorded_stats(per_channel_study):
    from cnnlab.trained import load_run

    directory, x_train, x_test = per_channel_study
    run, predicted = stored_predictions(directory)
    assert run.training["normalize"] == "per-channel"
    loaded = load_run(directory, model="tiny", epoch="last")
    assert loaded.channel_stats == channel_stats(x_train[:400])  # without the validation part
    classes, _ = loaded.predict(x_test)
    assert np.array_equal(classes, predicted)
    with torch.inference_mode():  # the bare network alone is fed standardised images
        bare = loaded.network(loaded.preprocess(x_test)).argmax(1).numpy()
    assert not np.array_equal(bare, predicted)


@pytest.mark.slow
def test_onnx_and_torchscript_exports_take_x_over_255_with_the_stats_baked_in(
    per_channel_study, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    from cnnlab.export import export_run
    from cnnlab.trained import load_run

    directory, _, x_test = per_channel_study
    expected, _ = load_run(directory, model="tiny", epoch="last").predict(x_test)
    assert np.array_equal(expected, stored_predictions(directory)[1])
    images = np.ascontiguousarray((x_test.astype(np.float32) / 255).transpose(0, 3, 1, 2))
    onnx_path, script_path = tmp_path / "m.onnx", tmp_path / "m.pt"
    export_run(directory, model="tiny", epoch="last", format="onnx", output=onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"images": images})[0].argmax(1), expected)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["normalize"] == "per-channel" and "inside the graph" in meta["input_doc"]
    assert len(json.loads(meta["channel_mean"])) == 3
    export_run(directory, model="tiny", epoch="last", format="torchscript", output=script_path)
    np.save(tmp_path / "x.npy", images)
    script = (
        "import sys, numpy, torch\n"
        f"net = torch.jit.load({str(script_path)!r})\n"
        f"x = torch.from_numpy(numpy.load({str(tmp_path / 'x.npy')!r}))\n"
        "assert not any(name.startswith('cnnlab') for name in sys.modules)\n"
        "print(net(x).argmax(1).tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert np.array_equal(np.array(json.loads(out)), expected)


def test_safetensors_export_records_the_stats_its_bare_network_needs(per_channel_study, tmp_path):
    from safetensors import safe_open

    from cnnlab import build_model, load_model
    from cnnlab.export import export_run
    from cnnlab.trained import load_run

    directory, _, x_test = per_channel_study
    path = tmp_path / "m.safetensors"
    export_run(directory, model="tiny", epoch="last", format="safetensors", output=path)
    with safe_open(str(path), framework="pt") as tensors:
        meta = tensors.metadata()
        state = {name: tensors.get_tensor(name) for name in tensors.keys()}  # noqa: SIM118
    assert meta["normalize"] == "per-channel" and "channel_std" in meta["input_doc"]
    net = build_model(load_model(tmp_path / "m.toml"), (16, 16, 3), 3)
    net.load_state_dict(state)
    mean = torch.tensor(json.loads(meta["channel_mean"])).view(1, 3, 1, 1)
    std = torch.tensor(json.loads(meta["channel_std"])).view(1, 3, 1, 1)
    x = torch.from_numpy(x_test.astype(np.float32) / 255).permute(0, 3, 1, 2)
    with torch.inference_mode():
        predicted = net.eval()((x - mean) / std).argmax(1).numpy()
    expected, _ = load_run(directory, model="tiny", epoch="last").predict(x_test)
    assert np.array_equal(predicted, expected)


def test_the_report_finds_a_relative_dataset_from_any_directory(per_channel_study, tmp_path):
    from cnnlab import report

    directory, *_ = per_channel_study
    before = os.getcwd()
    os.chdir(tmp_path)  # where npz:colour.npz does not resolve
    try:
        results = report.read_study(directory)
    finally:
        os.chdir(before)
    assert results.test_labels is not None and not results.notes
    assert results.dataset_name == "npz:colour.npz"  # shown as the study named it
