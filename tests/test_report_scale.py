"""The report of a 36-model grid and of a 200-model study: built without torch, opened in
headless Chromium, where it loads in under 2 s, fetches nothing, and sorts its table when a
header is clicked. The studies are generated through the real store API
(benchmarks/report_scale.py): training 200 models would take days."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.report import build_report

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: install Debian's chromium package (apt-get install chromium)",
)
LOAD_SECONDS = 2.0  # the bound for opening the report
ACCURACY_HEADER = "test acc %"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("report_scale", BENCHMARKS / "report_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def grid36(generator, tmp_path_factory, mnist_dir) -> Path:
    root = tmp_path_factory.mktemp("scale")
    return generator.make_study(root / "grid36", size=36, seeds=2, epochs=4, data_dir=mnist_dir)


@pytest.fixture(scope="module")
def grid36_report(grid36, mnist_dir) -> Path:
    return build_report(grid36, data_dir=mnist_dir)


def test_the_report_builds_where_torch_cannot_be_imported(grid36, mnist_dir, tmp_path):
    copy = tmp_path / "grid36"
    shutil.copytree(grid36, copy, ignore=shutil.ignore_patterns("report"))
    script = (
        "import sys\n"
        "class NoTorch:  # any `import torch` now fails\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('the report imported torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from cnnlab.report import build_report\n"
        f"print(build_report({str(copy)!r}, data_dir={str(mnist_dir)!r}))\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (copy / "report" / "report.html").is_file()


def test_a_grid_report_has_factor_plots_paged_curves_and_factor_columns(grid36_report):
    text = grid36_report.read_text()
    assert '<section id="plots-grid-factors">' in text
    plots_dir = grid36_report.parent / "plots"
    for stem in ("factor-effects", "parallel-coordinates", "curves-accuracy-3", "curves-loss-3"):
        assert (plots_dir / f"{stem}.png").is_file(), stem
    assert not (plots_dir / "curves-accuracy-4.png").exists()  # 36 models: 3 pages of 16
    # pages after the first are collapsed; their titles (with the model names) stay text
    folded = re.findall(r"<details class=figure><summary>([^<]*)</summary>", text)
    assert any("models 17-32 of 36 by test accuracy" in title for title in folded)
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", text).group(1)
    assert re.findall(r"<th>(.*?)</th>", header)[:5] == ["model", "depth", "kernel", "width", "bn"]
    # the generator slowed one run's epochs fivefold: the table says so and keeps the steady time
    assert "timings disturbed" in text and "1 of 6 epochs slowed" in text


def sort_key(cell: str) -> float | None:
    """What the page's script sorts a numeric cell by: its leading number ("-": none)."""
    found = re.match(r"\[?([-0-9.,]+)", cell.strip())
    return float(found.group(1).replace(",", "")) if found else None


def open_and_sort(page: Path, workdir: Path, shot: Path):
    """Open the page, click the accuracy header twice (ascending, then descending) like a
    user, and return the tab, the load time, and the column read back after each click."""
    from browser import Browser

    with Browser(CHROMIUM, workdir, height=1400) as browser:
        tab = browser.open(page)
        headers = tab.evaluate(
            "Array.from(document.querySelectorAll('table.results thead th'), h => h.textContent)"
        )
        column = headers.index(ACCURACY_HEADER)
        selector = f"table.results thead th:nth-child({column + 1})"
        read = (
            "Array.from(document.querySelectorAll('table.results tbody tr'),"
            f" r => [r.cells[0].textContent, r.cells[{column}].textContent])"
        )
        before = tab.evaluate(read)
        tab.click(selector)
        ascending = tab.evaluate(read)
        tab.click(selector)
        descending = tab.evaluate(read)
        tab.type_text("input.table-filter", "bn")
        shown = tab.evaluate(
            "document.querySelectorAll('table.results tbody tr:not([hidden])').length"
        )
        tab.evaluate(
            "const box = document.querySelector('input.table-filter'); box.value = '';"
            " box.dispatchEvent(new Event('input'))"
        )
        tab.evaluate("window.scrollTo(0, 0)")
        tab.screenshot(shot)
        return tab, before, ascending, descending, shown


def check_sorted_report(page: Path, workdir: Path, models: int) -> Path:
    shot = workdir / f"report-{models}.png"
    tab, before, ascending, descending, kept = open_and_sort(page, workdir, shot)
    assert tab.load_seconds < LOAD_SECONDS, f"loaded in {tab.load_seconds:.2f} s"
    left = [url for url in tab.requests if not url.startswith("data:")]
    assert left == [page.as_uri()], f"requests beyond the page itself: {left}"
    assert tab.console == []
    assert len(before) == len(ascending) == len(descending) == models
    rows = json.loads((page.parent / "results.json").read_text())
    means = {row["model"]: row["test_accuracy_mean"] for row in rows}
    keys = [sort_key(cell) for _, cell in ascending]
    assert keys == sorted(keys) and [m for m, _ in ascending] != [m for m, _ in before]
    shown = [round(100 * means[model], 2) for model, _ in descending]  # as the table shows
    assert shown == sorted(shown, reverse=True) and set(means) == {m for m, _ in descending}
    assert kept == sum("-bn" in model for model in means)  # the filter kept the bn models
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


@needs_chromium
def test_the_36_model_report_loads_fast_fetches_nothing_and_sorts_on_a_click(
    grid36_report, tmp_path
):
    check_sorted_report(grid36_report, tmp_path, 36)


@pytest.mark.slow
@needs_chromium
def test_a_200_model_report_builds_loads_fast_and_sorts_on_a_click(generator, tmp_path, mnist_dir):
    study = generator.make_study(
        tmp_path / "study200", size=200, seeds=2, epochs=3, data_dir=mnist_dir
    )
    page = build_report(study, data_dir=mnist_dir)
    text = page.read_text()
    assert "The 16 most accurate of 200 models" in text  # weights: not 200 figures
    check_sorted_report(page, tmp_path, 200)
