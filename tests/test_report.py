"""The HTML report of a small real study: self-contained, complete, escaped, and whole in a
real browser (headless Chromium), also for an unfinished study with odd names."""

from __future__ import annotations

import base64
import errno
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnlab import plots, study
from cnnlab.cli import main
from cnnlab.report import (
    CONTENT_SECURITY_POLICY,
    CURVE_PAGE,
    build_report,
    rate_figures,
    read_study,
    read_weights,
    study_table,
)
from cnnlab.table import stored_spec
from test_table import epoch, record

# Three cheap seed models (the notebook's 3-, 5- and 8-conv 3x3 designs), two seeds, one epoch
# on 2000 images: a real study in a few seconds.
SEED_MODELS = "model-1,model-4,model-7"
PNG_DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

ODD_STUDY = """
name = "odd <b>names</b>"
description = "<img src=x onerror=alert(2)> & friends"
seeds = 1
[[model]]
name = "<script>alert(1)</script>"
optimizer = "adam"
layers = [
  "flatten", { dense = 16, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[[model]]
name = 'exploding $\\frac{$'
optimizer = { name = "sgd", learning_rate = 1e6 }
layers = [
  "flatten", { dense = 32, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[[model]]
name = "never trained"
layers = ["flatten", { dense = "classes", activation = "softmax" }]
[training]
epochs = 1
batch_size = 64
validation = 0.1
"""
XSS_NAME = "<script>alert(1)</script>"

# EarlyStopping that must stop after epoch 2 (no later epoch beats the first by 10) and keep
# epoch 1's weights, under a schedule that halves the rate every epoch (8 steps of 64 images).
RECIPE_STUDY = """
name = "recipe"
seeds = 2
[[model]]
name = "dense"
optimizer = "adam"
layers = [
  "flatten", { dense = 16, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[training]
epochs = 3
batch_size = 64
validation = 0.1
early_stopping = { patience = 0, min_delta = 10, restore_best_weights = true }
[training.learning_rate_schedule]
name = "ExponentialDecay"
initial_learning_rate = 0.01
decay_steps = 8
decay_rate = 0.5
staircase = true
"""


@pytest.fixture(scope="module")
def seed_study(tmp_path_factory, mnist_dir) -> Path:
    directory = tmp_path_factory.mktemp("report") / "seed"
    study.run_study(
        "seed",
        directory=directory,
        seeds=2,
        epochs=1,
        models=SEED_MODELS,
        train_limit=2000,
        data_dir=mnist_dir,
        progress="quiet",
    )
    return directory


@pytest.fixture(scope="module")
def seed_report(seed_study, mnist_dir) -> Path:
    return build_report(seed_study, data_dir=mnist_dir)


@pytest.fixture(scope="module")
def odd_study(tmp_path_factory, mnist_dir) -> Path:
    """An unfinished study: one model trained, one diverged, one never started."""
    root = tmp_path_factory.mktemp("odd")
    spec_file = root / "odd.toml"
    spec_file.write_text(ODD_STUDY)
    directory = root / "study"
    options = {"directory": directory, "train_limit": 500, "data_dir": mnist_dir}
    study.run_study(
        spec_file, models=[XSS_NAME, "exploding $\\frac{$"], progress="quiet", **options
    )
    plan = study.plan_study(spec_file, **options)
    with study.open_study_store(plan.directory) as store:
        study.register_runs(store, plan)  # the third model's run stays pending
    return directory


@pytest.fixture(scope="module")
def odd_report(odd_study, mnist_dir) -> Path:
    return build_report(odd_study, data_dir=mnist_dir)


@pytest.fixture(scope="module")
def recipe_study(tmp_path_factory, mnist_dir) -> Path:
    root = tmp_path_factory.mktemp("recipe")
    (root / "recipe.toml").write_text(RECIPE_STUDY)
    directory = root / "study"
    study.run_study(
        root / "recipe.toml",
        directory=directory,
        train_limit=560,
        data_dir=mnist_dir,
        progress="quiet",
    )
    return directory


def page_images(page: Path) -> list[bytes]:
    return [base64.b64decode(data) for data in PNG_DATA_URI.findall(page.read_text())]


# -- the page ------------------------------------------------------------------------------------


def test_the_report_is_one_page_that_fetches_nothing(seed_report):
    text = seed_report.read_text()
    assert seed_report == seed_report.parent.parent / "report" / "report.html"
    assert f'content="{html.escape(CONTENT_SECURITY_POLICY)}"' in text
    # One script, the table's sorting, inline and allowed by its hash alone; nothing linked.
    (script,) = re.findall(r"<script>(.*?)</script>", text, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert text.count("<script") == 1 and "<link" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    # learning curves (4), Pareto (1), weights of each model (3), confusion and digits (2)
    images = page_images(seed_report)
    assert len(images) == 10
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)


def test_the_report_has_the_table_conclusions_settings_and_environment(seed_report):
    text = seed_report.read_text()
    for anchor in ("results", "conclusions", "settings", "environment"):
        assert f'<section id="{anchor}">' in text
    assert "<td>seed/model-7</td>" in text
    assert "<td>97.91</td>" in text  # Model-1's "Test accuracy: 0.9791" in the notebook
    assert "Validation used the test set" in text  # the seed study validates on it
    assert "Against the notebook" in text
    assert "epochs 1 instead of 12" in text  # so no verdict on the notebook's claims
    assert "torch" in text and "Models as trained" in text
    assert "What is missing" not in text and "Failed and diverged" not in text


def test_the_report_writes_plots_as_png_and_svg_and_the_table_as_files(seed_report):
    out = seed_report.parent
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert pngs == sorted(p.stem for p in (out / "plots").glob("*.svg"))
    assert "weights-seed-model-7" in pngs and "confusion" in pngs and "misclassified" in pngs
    rows = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in rows] == ["seed/model-1", "seed/model-4", "seed/model-7"]
    assert all(row["done"] == 2 for row in rows)
    assert (out / "results.csv").read_text().count("\n") == 4
    assert (out / "conclusions.md").read_text().startswith("## Conclusions")


def test_a_rebuilt_report_drops_the_figures_of_models_it_no_longer_shows(
    seed_study, mnist_dir, tmp_path
):
    plots_dir = tmp_path / "report" / "plots"
    plots_dir.mkdir(parents=True)
    for name in ("weights-seed-model-9.png", "weights-seed-model-9.svg", "notes.txt"):
        (plots_dir / name).write_text("from an earlier report, or the user's")
    build_report(seed_study, data_dir=mnist_dir, out=tmp_path / "report")
    left = {p.name for p in plots_dir.iterdir()}
    assert "weights-seed-model-9.png" not in left and "weights-seed-model-9.svg" not in left
    assert "notes.txt" in left  # not a figure: not the report's to delete
    assert {"confusion.png", "confusion.svg", "weights-seed-model-7.png"} <= left


def test_plots_drawn_in_worker_processes_are_the_ones_drawn_in_process(
    seed_study, seed_report, mnist_dir, tmp_path
):
    copy = tmp_path / "seed"
    shutil.copytree(seed_study, copy, ignore=shutil.ignore_patterns("report"))
    build_report(copy, data_dir=mnist_dir, processes=2)
    here = sorted((seed_report.parent / "plots").iterdir())
    there = copy / "report" / "plots"
    assert sorted(p.name for p in here) == sorted(p.name for p in there.iterdir())
    for drawn in here:
        assert (there / drawn.name).read_bytes() == drawn.read_bytes(), drawn.name


def test_a_script_without_a_main_guard_still_gets_its_report_and_is_told_why(
    seed_study, seed_report, mnist_dir, tmp_path
):
    copy = tmp_path / "seed"
    shutil.copytree(seed_study, copy, ignore=shutil.ignore_patterns("report"))
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import cnnlab\n"
        f"cnnlab.build_report({str(copy)!r}, data_dir={str(mnist_dir)!r}, processes=2)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "needs `if __name__ == '__main__':`" in done.stderr
    drawn = sorted(p.name for p in (copy / "report" / "plots").glob("*.png"))
    assert drawn == sorted(p.name for p in (seed_report.parent / "plots").glob("*.png"))


def test_a_constant_learning_rate_is_one_sentence_and_no_plot(seed_report):
    text = seed_report.read_text()
    assert "The learning rate stayed at 1 in every run." in text  # Adadelta's, in Keras 2
    assert not list((seed_report.parent / "plots").glob("learning-rate*"))
    assert "EarlyStopping" not in text  # no marks to explain


def test_rates_are_a_sentence_when_constant_and_a_paged_figure_when_they_move():
    def run(model: str, *rates: float):
        epochs = tuple(epoch(i + 1, learning_rate=r) for i, r in enumerate(rates))
        return record(model, 0, spec="seed/model-1", epochs=epochs)

    steady = [run("a", 1.0, 1.0), run("b", 0.001), run("c", 1.0)]
    jobs, folded, text = rate_figures(steady, [["a", "b", "c"]], 3)
    assert (jobs, folded) == ([], set())
    assert text == " The learning rate stayed constant in every run: 1 (2 models), 0.001 (1 model)."
    names = [f"m{i}" for i in range(CURVE_PAGE + 1)]
    moving = [run(name, 0.1, 0.05) for name in names]
    pages = [names[:CURVE_PAGE], names[CURVE_PAGE:]]
    jobs, folded, text = rate_figures(moving, pages, len(names))
    assert [job.stem for job in jobs] == ["learning-rate", "learning-rate-2"]
    assert folded == {"learning-rate-2"} and "changed during training" in text
    assert [r.model for r in jobs[1].data[0]] == [names[-1]]


def test_an_early_stopped_study_marks_stopped_and_kept_epochs_and_plots_its_rates(
    recipe_study, mnist_dir
):
    results = read_study(recipe_study, data_dir=mnist_dir)
    assert [(r.status, len(r.epochs), r.stopped_epoch, r.best_epoch) for r in results.runs] == [
        ("done", 2, 2, 1),
        ("done", 2, 2, 1),
    ]
    curves = plots.model_curves("dense", results.runs, "loss")
    assert [(m.seed, m.epoch) for m in curves.stopped] == [(0, 2), (1, 2)]
    assert [(m.seed, m.epoch) for m in curves.kept] == [(0, 1), (1, 1)]
    (rates,) = plots.rates_by_model(results.runs, ["dense"])
    assert rates.rates == ((0.005, 0.0025), (0.005, 0.0025))  # after 8 and 16 steps
    page = build_report(recipe_study, data_dir=mnist_dir)
    text = html.unescape(page.read_text())
    results_section = text[text.index('<section id="results">') :].split("</section>")[0]
    assert "Test accuracy and loss come from the weights each run kept" in results_section
    assert "the statistics compare the runs as trained" in results_section
    assert "a cross marks the epoch a run stopped after" in text
    assert "Learning rate as each epoch ended, one line per seed" in text
    assert (page.parent / "plots" / "learning-rate.png").is_file()


def test_violins_name_every_weighted_layer_of_the_trained_checkpoint(seed_study, mnist_dir):
    results = read_study(seed_study, data_dir=mnist_dir)
    run = next(r for r in results.runs if r.model == "seed/model-7" and r.seed == 0)
    state = read_weights(seed_study / run.checkpoint)
    violins = plots.weight_violins(run.model, 0, stored_spec(run.spec).layers, state)
    names = [layer.layer for layer in violins.layers]
    # Model-7 has 8 convolutions (docs/seed-preset.md) and two Dense layers.
    assert names == [f"conv2d{'' if i == 0 else f'_{i}'}" for i in range(8)] + ["dense", "dense_1"]


def test_a_study_without_its_dataset_or_checkpoints_still_reports_and_says_so(seed_study, tmp_path):
    copy = tmp_path / "seed"
    shutil.copytree(seed_study, copy, ignore=shutil.ignore_patterns("report"))
    for run in read_study(copy).runs:
        if run.model == "seed/model-4":  # its checkpoints damaged: no violins, no failure
            (copy / run.checkpoint).write_bytes(b"not a safetensors file")
    page = build_report(copy, data_dir=tmp_path / "no-data")
    text = page.read_text()
    assert "the test set could not be loaded" in text and "--data-dir" in text
    assert "No finished run with a readable checkpoint: seed/model-4." in text
    assert len(page_images(page)) == 7  # no confusion matrix, no digits, no model-4 weights
    assert "Welch t-test across seeds" in text  # no labels: nothing to pair
    assert "on 10,000 test images" in text  # the size the stored predictions tell


# -- odd names, unfinished studies -----------------------------------------------------------------


def test_names_and_spec_text_are_shown_as_text_never_as_markup(odd_report):
    text = odd_report.read_text()
    assert XSS_NAME not in text and "<img src=x" not in text and "<b>names" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(2)&gt; &amp; friends" in text


def test_an_unfinished_study_lists_missing_and_diverged_runs(odd_report):
    text = odd_report.read_text()
    assert "This study is unfinished" in text
    missing = text[text.index('<section id="missing">') :].split("</section>")[0]
    assert "<td>never trained</td><td>0</td><td>pending</td><td>0/1</td>" in missing
    failed = text[text.index('<section id="failed">') :].split("</section>")[0]
    assert "exploding $\\frac{$" in failed and "diverged" in failed and "loss" in failed


# -- in a browser ----------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: install Debian's chromium package (apt-get install chromium)",
)

# Injected into a copy of the page: dialogs are recorded instead of shown, and once the page has
# loaded a marker element says how many images there are, which did not decode, and any dialogs.
PROBE = """<script>
window.__dialogs = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (message) => { window.__dialogs.push(name + ":" + String(message)); };
}
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt);
  const mark = document.createElement("pre");
  mark.id = "cnnlab-probe";
  mark.textContent = JSON.stringify({images: images.length, broken, dialogs: window.__dialogs});
  document.body.appendChild(mark);
});
</script>"""


@dataclass(frozen=True)
class BrowserCheck:
    images: int
    broken: list[str]
    dialogs: list[str]
    console: list[str]  # every console message and policy violation Chromium logged


def chromium(args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={workdir / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def check_in_chromium(page: Path, workdir: Path) -> BrowserCheck:
    """Load a probed copy of the page; the copy's policy allows any inline script (the probe,
    and any script the report failed to escape) and still forbids every fetch."""
    policy = html.escape(CONTENT_SECURITY_POLICY)
    text = page.read_text()
    assert policy in text
    scripts = re.sub(r"script-src [^;]*", "script-src 'unsafe-inline'", CONTENT_SECURITY_POLICY)
    text = text.replace(policy, html.escape(scripts), 1)
    probe = workdir / "probe.html"
    probe.write_text(text.replace("<head>", "<head>\n" + PROBE, 1))
    done = chromium(["--dump-dom", probe.as_uri()], workdir)
    found = re.search(r'<pre id="cnnlab-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page never finished loading: {done.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserCheck(result["images"], result["broken"], result["dialogs"], console)


def screenshot(page: Path, workdir: Path) -> Path:
    shot = workdir / "report.png"
    chromium([f"--screenshot={shot}", "--window-size=1280,2600", page.as_uri()], workdir)
    return shot


@needs_chromium
def test_the_report_opens_in_chromium_without_errors_and_every_image_decodes(seed_report, tmp_path):
    check = check_in_chromium(seed_report, tmp_path)
    assert check.console == []
    assert (check.images, check.broken, check.dialogs) == (10, [], [])
    shot = screenshot(seed_report, tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@needs_chromium
def test_a_model_named_script_runs_nothing_in_the_browser(odd_report, tmp_path):
    check = check_in_chromium(odd_report, tmp_path)
    assert check.dialogs == [] and check.console == [] and check.broken == []


# -- the command line -----------------------------------------------------------------------------


def test_cnnlab_report_rebuilds_the_page_and_prints_the_table(
    odd_study, odd_report, mnist_dir, capsys
):
    page = odd_report
    page.unlink()
    code = main(["report", str(odd_study), "--data-dir", str(mnist_dir), "--table", "csv"])
    out, err = capsys.readouterr()
    assert code == 0 and page.is_file()
    assert f"report: {page}" in err
    assert out.splitlines()[0].startswith("model,conv_layers,kernels,params")
    assert out.splitlines()[1].startswith(f"{XSS_NAME},0,-,")
    assert len(out.splitlines()) == 4  # three models, one never trained
    assert [row.model for row in study_table(odd_study).rows][-1] == "never trained"


def test_cnnlab_report_of_a_directory_without_a_study_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no study in" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--table", "html"]) == 2
    assert "--table must be one of rich, md, csv, json, none" in capsys.readouterr().err


def test_cnnlab_run_builds_the_report_at_the_end_unless_nothing_changed(
    tmp_path, mnist_dir, capsys
):
    spec_file = tmp_path / "one.toml"
    spec_file.write_text(ODD_STUDY.replace('name = "never trained"', 'name = "dense only"'))
    directory = tmp_path / "study"
    command = ["run", str(spec_file), "--dir", str(directory), "--models", "dense only"]
    command += ["--train-limit", "500", "--data-dir", str(mnist_dir), "--quiet"]
    assert main(command) == 0
    page = directory / "report" / "report.html"
    assert f"report: {page}" in capsys.readouterr().out
    assert "<td>dense only</td>" in page.read_text()
    built = page.stat().st_mtime_ns
    assert main(command) == 0  # nothing to do, and the report is there: not built again
    assert "report:" not in capsys.readouterr().out and page.stat().st_mtime_ns == built
    # A report older than the runs it should show (cut off, or built before a run ended) is
    # built again even when there is nothing to train.
    (directory / "report" / "built-from.sha256").write_text("an older set of runs")
    assert main(command) == 0
    assert f"report: {page}" in capsys.readouterr().out and page.stat().st_mtime_ns != built


def test_a_report_the_disk_refuses_is_one_error_line_and_leaves_no_partial_file(
    odd_study, mnist_dir, monkeypatch, capsys
):
    real_replace = os.replace

    def disk_full(source, target):
        if str(target).endswith("report.html"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full)
    assert main(["report", str(odd_study), "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the report at ") and len(err.splitlines()) == 1
    assert "No space left on device; the study's results are kept" in err
    assert not list((odd_study / "report").glob(".*.partial"))
