"""`cnnlab summary MODEL`: the Keras-like table, --json, and one-line errors."""

from __future__ import annotations

import json

from cnnlab.cli import main

SHAPE = ["--input-shape", "28,28,1", "--classes", "10"]


def test_summary_of_a_preset_reads_like_keras(capsys):
    assert main(["summary", "seed/reference", *SHAPE]) == 0
    out = capsys.readouterr().out
    assert "conv2d_1 (Conv2D)" in out and "(None, 24, 24, 64)" in out
    assert "Total params: 1,199,882 (4.58 MB)" in out
    assert "Non-trainable params: 0 (0.00 B)" in out
    assert "Forward FLOPs per image:" in out


def test_summary_json_is_for_scripts(capsys):
    assert main(["summary", "seed/model-10", *SHAPE, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["total_params"], doc["non_trainable_params"]) == (355_279, 356)
    assert doc["rows"][4] == {
        "name": "batch_normalization",
        "layer_type": "BatchNormalization",
        "output_shape": [14, 14, 42],
        "params": 168,
        "trainable_params": 84,
        "non_trainable_params": 84,
        "flops": 2 * 14 * 14 * 42,
        "depth": 0,
    }


def test_summary_of_a_spec_file_on_another_input(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\nlayers = [{ conv = 8, kernel = 4, padding = "same" }, "flatten", '
        '{ dense = "classes", activation = "softmax" }]\n'
    )
    assert main(["summary", str(path), "--input-shape", "32,32,3", "--classes", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [row["output_shape"] for row in doc["rows"]] == [[32, 32, 8], [8192], [5]]
    assert doc["total_params"] == 4 * 4 * 3 * 8 + 8 + 8192 * 5 + 5


def test_summary_takes_the_input_from_the_dataset(mnist_dir, capsys):
    args = ["summary", "seed/model-1", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["input_shape"], doc["classes"], doc["total_params"]) == ([28, 28, 1], 10, 79_454)


def test_a_model_that_does_not_fit_the_input_is_one_line_error(capsys):
    assert main(["summary", "seed/model-2", "--input-shape", "12,12,1", "--classes", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cnnlab/presets/models/seed/model-2.toml:9: layer 4 (Conv2D)")
    assert "below 1x1" in err and "\n" not in err


def test_the_registry_gives_shape_and_classes_without_reading_data(tmp_path, capsys):
    args = ["summary", "seed/model-1", "--data-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == 10
    assert result["input_shape"] == [28, 28, 1]


def test_missing_data_says_how_to_give_the_input_instead(tmp_path, capsys):
    assert main(["summary", "seed/model-1", "--dataset", f"idx:{tmp_path}"]) == 2
    assert "--input-shape HEIGHT,WIDTH,CHANNELS --classes N" in capsys.readouterr().err
