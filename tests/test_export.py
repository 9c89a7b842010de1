"""Exported runs give the stored predictions: ONNX, TorchScript (without cnnlab), safetensors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open

from cnnlab import build_model, load_model, study
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.export import ONNX_OPSET, ExportError, check_format, export_run
from cnnlab.store import open_store
from cnnlab.trained import load_run


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    mnist = load_dataset("mnist", data_dir=mnist_dir)
    images = (mnist.test_images.astype(np.float32) / 255).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), mnist.test_labels


def stored(directory, model, seed):
    run = next(r for r in study.study_runs(directory) if r.model == model and r.seed == seed)
    with open_store(directory) as store:
        return run, store.get_predictions(run.key).predicted


@pytest.mark.slow
def test_onnx_export_run_by_onnxruntime_gives_the_stored_test_accuracy(
    trained_study, mnist_test, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "conv.onnx"
    assert (
        main(
            ["export", str(trained_study), "--model", "conv", "--seed", "0", "--epoch", "last"]
            + ["--format", "onnx", "-o", str(path)]
        )
        == 0
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "images" and model_input.shape[1:] == [1, 28, 28]
    images, labels = mnist_test
    predicted = session.run(None, {"images": images})[0].argmax(axis=1)
    run, stored_predictions = stored(trained_study, "conv", 0)
    assert np.array_equal(predicted, stored_predictions)  # to the image
    assert (predicted == labels).mean() == run.test.accuracy
    one = session.run(None, {"images": images[:1]})[0]  # the batch dimension is dynamic
    assert one.shape == (1, 10) and one.argmax() == predicted[0]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["opset"] == str(ONNX_OPSET) and meta["model"] == "conv" and meta["epoch"] == "4"
    assert "/ 255" in meta["input_doc"] and "[[model]]" not in meta["spec_toml"]
    assert 'name = "conv"' in meta["spec_toml"]


@pytest.mark.slow
def test_torchscript_export_gives_the_stored_predictions_in_a_process_without_cnnlab(
    trained_study, mnist_test, tmp_path
):
    path = tmp_path / "conv.pt"
    export_run(trained_study, model="conv", seed=1, epoch="last", format="torchscript", output=path)
    images, _ = mnist_test
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy, torch\n"
        f"extra = {{'cnnlab.json': ''}}\n"
        f"net = torch.jit.load({str(path)!r}, _extra_files=extra)\n"
        f"x = torch.from_numpy(numpy.load({str(tmp_path / 'images.npy')!r}))\n"
        "with torch.inference_mode():\n"
        "    predicted = net(x).argmax(1).tolist()\n"
        "assert not any(name.startswith('cnnlab') for name in sys.modules)\n"
        "print(json.dumps({'meta': json.loads(extra['cnnlab.json']), 'predicted': predicted}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    answer = json.loads(out)
    _, stored_predictions = stored(trained_study, "conv", 1)
    assert np.array_equal(np.array(answer["predicted"]), stored_predictions)
    assert answer["meta"]["seed"] == "1" and answer["meta"]["input_shape"] == '["N", 1, 28, 28]'


def test_safetensors_export_loads_without_load_run_from_the_spec_beside_it(
    trained_study, mnist_test, tmp_path
):
    import torch

    path = tmp_path / "best.safetensors"
    written = export_run(trained_study, model="dense", seed=0, format="safetensors", output=path)
    assert written == [path, tmp_path / "best.toml"]
    with safe_open(str(path), framework="pt") as tensors:
        meta = tensors.metadata()
        state = {name: tensors.get_tensor(name) for name in tensors.keys()}  # noqa: SIM118
    net = build_model(load_model(tmp_path / "best.toml"), (28, 28, 1), int(meta["classes"]))
    net.load_state_dict(state)
    images, _ = mnist_test
    with torch.inference_mode():
        predicted = net.eval()(torch.from_numpy(images[:2000])).argmax(1).numpy()
    loaded = load_run(trained_study, model="dense", seed=0, epoch="best")
    assert meta["epoch"] == str(loaded.epoch) and meta["epoch_chosen"] == "best"
    expected, _ = loaded.predict(
        (images[:2000] * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    )
    assert np.array_equal(predicted, expected)


def test_an_unknown_format_or_a_missing_package_is_one_line_with_the_fix(monkeypatch):
    with pytest.raises(ExportError, match=r"unknown export format 'tflite'; use one of onnx, "):
        check_format("tflite")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a)
    )
    with pytest.raises(
        ExportError, match=r"needs the package\(s\) onnx: pip install 'cnnlab\[onnx\]'"
    ):
        check_format("onnx")


def test_export_to_a_directory_is_refused(trained_study, tmp_path, capsys):
    code = main(
        ["export", str(trained_study), "--model", "dense", "--seed", "0"]
        + ["--format", "safetensors", "-o", str(tmp_path)]
    )
    assert code == 2 and "is a directory; give the file to write" in capsys.readouterr().err


def test_export_over_an_existing_file_or_spec_toml_needs_force(trained_study, tmp_path, capsys):
    # safetensors writes NAME.toml beside the weights: a study file of that name was lost.
    study_file = tmp_path / "mine.toml"
    study_file.write_text("# my study\n")
    command = ["export", str(trained_study), "--model", "dense", "--seed", "0"]
    command += ["--format", "safetensors", "-o", str(tmp_path / "mine.safetensors")]
    assert main(command) == 2
    assert f"{study_file} already exists; use --force" in capsys.readouterr().err
    assert study_file.read_text() == "# my study\n"
    assert not (tmp_path / "mine.safetensors").exists()
    assert main([*command, "--force"]) == 0
    assert study_file.read_text().startswith("name = ")


def test_safetensors_weights_named_like_their_spec_toml_are_refused(trained_study, tmp_path):
    with pytest.raises(ExportError, match=r"m\.toml: the spec TOML is written beside"):
        export_run(
            trained_study, model="dense", seed=0, format="safetensors", output=tmp_path / "m.toml"
        )


def test_every_format_writes_its_files_readable_by_others_as_the_umask_allows(
    trained_study, tmp_path
):
    # safetensors' own save_file creates 0600 files; an export is there to be handed on.
    import os

    old = os.umask(0o022)
    try:
        written = []
        for format, name in (("torchscript", "m.pt"), ("safetensors", "m.safetensors")):
            written += export_run(
                trained_study, model="dense", seed=0, format=format, output=tmp_path / name
            )
    finally:
        os.umask(old)
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in written} == {
        "m.pt": "0o644",
        "m.safetensors": "0o644",
        "m.toml": "0o644",
    }
