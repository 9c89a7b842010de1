"""Damaged, archived and hostile study directories: read where possible, never drawn as truth,
never written through a link."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cnnlab import report, study
from cnnlab.cli import main
from cnnlab.errors import CnnlabError

# Three one-layer models whose names make one file name ('a-b'), trained for one epoch.
CLASHING = """
name = "clashing"
seeds = 1
[[model]]
name = "a/b"
layers = ["flatten", { dense = "classes", activation = "softmax" }]
[[model]]
name = "a-b"
layers = ["flatten", { dense = 4 }, { dense = "classes", activation = "softmax" }]
[[model]]
name = "a?b"
layers = ["flatten", "batchnorm", { dense = "classes", activation = "softmax" }]
[training]
epochs = 1
batch_size = 64
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir) -> Path:
    root = tmp_path_factory.mktemp("damaged")
    (root / "clashing.toml").write_text(CLASHING)
    directory = root / "study"
    study.run_study(
        root / "clashing.toml",
        directory=directory,
        train_limit=300,
        data_dir=mnist_dir,
        progress="quiet",
    )
    return directory


@pytest.fixture
def shared_copy(trained) -> Iterator[Path]:
    """A copy of the study in a directory an unprivileged user can enter."""
    top = Path(tempfile.mkdtemp())
    top.chmod(0o755)
    copy = top / "study"
    shutil.copytree(trained, copy)
    yield copy
    for path in [top, *top.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(top)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Act as a plain user: root writes through any permission bits, users do not."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(65534)  # nobody
    except PermissionError:
        pytest.skip("running as root without the right to drop privileges")
    try:
        yield
    finally:
        os.seteuid(0)


def make_read_only(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    directory.chmod(0o555)


def test_weights_plots_of_models_whose_names_clash_are_three_files(trained):
    report.build_report(trained)
    pngs = sorted(p.name for p in (trained / "report" / "plots").glob("weights-*.png"))
    assert len(pngs) == 3, pngs


def test_status_and_runs_read_a_read_only_study(shared_copy, capsys):
    make_read_only(shared_copy)
    before = sorted(p.name for p in shared_copy.iterdir())
    with unprivileged():
        assert main(["status", str(shared_copy)]) == 0
        assert main(["runs", str(shared_copy), "--json"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 done" in out and '"a?b"' in out
    assert sorted(p.name for p in shared_copy.iterdir()) == before


def test_report_of_a_read_only_study_goes_to_another_directory(shared_copy, mnist_dir):
    make_read_only(shared_copy)
    out = shared_copy.parent / "elsewhere"
    out.mkdir()
    out.chmod(0o777)
    with unprivileged():
        page = report.build_report(shared_copy, out=out, data_dir=mnist_dir)
        with pytest.raises(CnnlabError, match="cannot write the report .* elsewhere with --out"):
            report.build_report(shared_copy, data_dir=mnist_dir)
    assert page == out / "report.html" and "a?b" in page.read_text()


def test_report_refuses_to_write_through_a_symlinked_report_directory(shared_copy, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.rmtree(shared_copy / "report")
    (shared_copy / "report").symlink_to(victim)
    with pytest.raises(CnnlabError, match=r"report is a symbolic link \(to .*victim\)"):
        report.build_report(shared_copy)
    assert list(victim.iterdir()) == []


def checkpoint_of(directory: Path, model: str) -> Path:
    (run,) = [run for run in study.study_runs(directory) if run.model == model]
    return directory / run.checkpoint


def test_a_checkpoint_with_the_right_names_and_wrong_shapes_is_not_drawn(shared_copy):
    path = checkpoint_of(shared_copy, "a/b")
    tensors = load_file(str(path))
    tensors["model/dense.weight"] = np.zeros((16, 10), dtype=np.float32)  # was (10, 784)
    save_file(tensors, str(path))
    shutil.rmtree(shared_copy / "report", ignore_errors=True)
    page = report.build_report(shared_copy)
    assert "No finished run with a readable checkpoint: a/b." in page.read_text()
    assert len(list((shared_copy / "report" / "plots").glob("weights-*.png"))) == 2


def test_a_missing_runs_directory_is_said_in_the_report(shared_copy):
    shutil.rmtree(shared_copy / "runs")
    text = report.build_report(shared_copy).read_text()
    assert "No finished run with a readable checkpoint: a/b, a-b, a?b." in text, re.findall(
        r"No finished run[^<]*", text
    )
    assert "runs/ directory is missing" in text


def overwrite_predictions(directory: Path, model: str, byte: bytes) -> None:
    """Garbage in the page that holds a run's predictions, written into the file itself."""
    store = directory / "store.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (blob,) = db.execute(
            "SELECT data FROM predictions JOIN runs ON key = run_key WHERE model = ?", (model,)
        ).fetchone()
    content = bytearray(store.read_bytes())
    at = content.find(blob[:200])
    assert at > 0
    content[at + 50 : at + 150] = byte * 100
    store.write_bytes(bytes(content))


def test_garbage_in_a_predictions_page_is_said_to_be_damage_with_how_to_check(shared_copy, capsys):
    overwrite_predictions(shared_copy, "a-b", b"\xff")  # -1 as int8: no class
    assert main(["report", str(shared_copy), "--table", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "store.sqlite is damaged (the predictions of run" in err
    assert f"`cnnlab status {shared_copy} --check`" in err


def test_predictions_that_disagree_with_the_stored_accuracy_are_left_out_and_said(
    shared_copy, mnist_dir
):
    overwrite_predictions(shared_copy, "a-b", b"\x07")  # valid classes, not the run's answers
    text = report.build_report(shared_copy, data_dir=mnist_dir).read_text()
    assert "disagree with their stored test accuracy: the store is damaged" in text


def test_status_check_runs_sqlites_integrity_check(shared_copy, capsys):
    assert main(["status", str(shared_copy), "--check"]) == 0
    assert "store ok" in capsys.readouterr().out
    store = shared_copy / "store.sqlite"
    with contextlib.closing(sqlite3.connect(store)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        index_page = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'runs_by_status'"
        ).fetchone()[0]
    content = bytearray(store.read_bytes())
    start = (index_page - 1) * page_size
    content[start + 8 : start + page_size] = bytes(page_size - 8)  # the index's cells, zeroed
    store.write_bytes(bytes(content))
    assert main(["status", str(shared_copy), "--check"]) == 1
    assert "store damaged:" in capsys.readouterr().err


def test_status_check_with_json_prints_json_alone_on_stdout(shared_copy, capsys):
    import json

    assert main(["status", str(shared_copy), "--check", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["runs"] == 3
    assert "store ok" in err
