"""`cnnlab data list|fetch|verify` on the real MNIST copy: what a user and a script see."""

from __future__ import annotations

import json

from cnnlab.cli import main
from cnnlab.data import IDX_NAMES


def test_verify_reports_four_valid_files_and_what_they_hold(mnist_dir, capsys):
    assert main(["data", "verify", "mnist", "--data-dir", str(mnist_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    for line, name in zip(lines[:4], IDX_NAMES, strict=True):
        assert line.startswith("valid  ")
        assert f"{mnist_dir}/{name}" in line
        assert line.endswith("(content SHA-256 matches)")
    assert lines[-1] == "mnist: 60000 train and 10000 test images of 28x28x1, 10 classes"


def test_verify_json_is_machine_readable(mnist_dir, capsys):
    assert main(["data", "verify", f"idx:{mnist_dir}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train"], report["test"], report["classes"]) == (60000, 10000, 10)
    assert report["image_shape"] == [28, 28, 1]
    assert [f["check"] for f in report["files"]] == ["structure only"] * 4


def test_verify_of_missing_files_is_one_red_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("error: mnist: train-images-idx3-ubyte[.gz] not found in")
    assert "run `cnnlab data fetch mnist`" in err


def test_list_shows_each_dataset_with_mirrors_and_whether_present(mnist_dir, capsys):
    assert main(["data", "list", "--data-dir", str(mnist_dir), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["datasets"]}
    assert set(rows) == {
        *("mnist", "fashion-mnist", "kmnist"),
        *("cifar10", "cifar100", "cifar100-coarse", "svhn"),
    }
    assert rows["cifar10"]["files"] == [None]
    assert rows["mnist"]["files"][0] == str(mnist_dir / "train-images-idx3-ubyte.gz")
    assert rows["mnist"]["problem"] is None
    assert "this is mnist's" in rows["kmnist"]["problem"]
    assert main(["data", "list", "--data-dir", str(mnist_dir)]) == 0
    table = capsys.readouterr().out
    assert f"yes ({mnist_dir})" in table
    assert "no: files found fail their check" in table
    assert "folder:DIR (DIR/train/<class>/*" in table  # the local sources are listed too


def test_list_points_at_the_verify_command_for_the_directory_it_listed(
    mnist_dir, tmp_path, capsys, monkeypatch
):
    # Without --data-dir the suggested verify would check $CNNLAB_DATA_DIR or the cache instead.
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    assert main(["data", "list", "--data-dir", str(mnist_dir)]) == 0
    table = capsys.readouterr().out
    assert f"see `cnnlab data verify kmnist --data-dir {mnist_dir}`" in table


def test_fetch_with_files_present_verifies_without_downloading(mnist_dir, capsys):
    assert main(["data", "fetch", "mnist", "--data-dir", str(mnist_dir), "--offline"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum("(already present)" in line for line in out) == 4
    assert out[-1] == "mnist: all 4 files present and verified"


def test_fetch_offline_without_files_says_what_to_do(tmp_path, capsys):
    assert main(["data", "fetch", "kmnist", "--data-dir", str(tmp_path), "--offline"]) == 2
    assert "pass --data-dir DIR with local copies, or allow downloads" in capsys.readouterr().err
