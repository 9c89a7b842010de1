"""`cnnlab train`: thin over train_model; a table for people, JSON for scripts, exit codes."""

from __future__ import annotations

import json

import pytest

from cnnlab.cli import main

TINY = """
name = "tiny"
optimizer = "adam"
layers = [
  { conv = 4, kernel = 5, strides = 2, activation = "relu" },
  "flatten",
  { dense = "classes", activation = "softmax" },
]
"""


@pytest.fixture
def tiny_toml(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def train(capsys, *args):
    code = main(["train", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_prints_history_table_and_keras_test_lines(capsys, tiny_toml, mnist_dir, tmp_path):
    code, out, _ = train(
        capsys,
        tiny_toml,
        "--epochs",
        2,
        "--train-limit",
        1000,
        "--data-dir",
        mnist_dir,
        "--quiet",
        "--run-dir",
        tmp_path / "run",
    )
    assert code == 0
    assert "val_accuracy" in out and "Test loss: " in out and "Test accuracy: " in out
    assert "epoch-0002.safetensors" in out


def test_train_json_has_history_test_metrics_and_timings(capsys, tiny_toml, mnist_dir):
    code, out, _ = train(
        capsys,
        tiny_toml,
        "--epochs",
        1,
        "--train-limit",
        1000,
        "--validation",
        "test",
        "--data-dir",
        mnist_dir,
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "done" and len(result["history"]) == 1
    assert result["history"][0]["val_accuracy"] == result["test_accuracy"]
    assert result["timings"]["total_seconds"] > 0


def test_progress_lines_go_to_stderr_when_not_a_terminal(capsys, tiny_toml, mnist_dir):
    _, out, err = train(
        capsys, tiny_toml, "--epochs", 1, "--train-limit", 500, "--data-dir", mnist_dir
    )
    assert err.startswith("Epoch 1/1 - ") and "loss: " in err
    assert "Epoch 1/1" not in out


def test_diverged_run_exits_1_and_says_why(capsys, tmp_path, mnist_dir):
    path = tmp_path / "wild.toml"
    path.write_text(
        TINY.replace('optimizer = "adam"', 'optimizer = { name = "sgd", learning_rate = 1e6 }')
    )
    code, out, _ = train(capsys, path, "--epochs", 1, "--train-limit", 500, "--data-dir", mnist_dir)
    assert code == 1 and "diverged at epoch 1: training loss reached" in out


def test_bad_validation_is_one_error_line(capsys, tiny_toml, mnist_dir):
    code, _, err = train(capsys, tiny_toml, "--validation", "most", "--data-dir", mnist_dir)
    assert code == 2
    assert (
        err.strip() == "error: --validation must be a fraction in [0, 1), or \"test\"; got 'most'"
    )


def test_bad_option_is_reported_before_the_dataset_is_looked_for(capsys, tiny_toml, tmp_path):
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    code, _, err = train(capsys, tiny_toml, "--precision", "fp16", "--data-dir", empty)
    assert code == 2
    assert err.strip() == "error: precision must be fp32 or bf16, got 'fp16'"


def test_a_negative_seed_is_one_error_line(capsys, tiny_toml, tmp_path):
    code, _, err = train(capsys, tiny_toml, "--seed", "-1", "--data-dir", tmp_path)
    assert code == 2
    assert err.strip().startswith("error: Invalid value for '--seed': ")
    assert err.strip().endswith("(`cnnlab train --help`)") and "\n" not in err.strip()


def test_an_interrupt_before_the_first_epoch_says_nothing_is_saved(
    capsys, tiny_toml, mnist_dir, tmp_path, monkeypatch
):
    from cnnlab import train as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_model", interrupted)
    run_dir = tmp_path / "run"
    code, _, err = train(capsys, tiny_toml, "--run-dir", run_dir, "--data-dir", mnist_dir)
    assert code == 130
    assert f"no epoch had finished, so nothing is saved in {run_dir} yet" in err
