"""Damaged, archived and hostile study directories: read where possible, never drawn as truth,
never written through a link."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
        with pytest.raises(CnnlabError, match="cannot write the report"):
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
