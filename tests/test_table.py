"""The results table: figures over finished runs only, the notebook's figures beside, exports."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import math
import re
from typing import Any

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from cnnlab import table
from cnnlab.presets import list_presets
from cnnlab.spec import ModelSpec, load_model, model_to_toml
from cnnlab.store import EpochMetrics, RunRecord, TestMetrics, canonical_json

# -- stored runs as a store returns them (shared by the plot and report tests) -------------------


def stored(spec: ModelSpec) -> dict[str, Any]:
    """A spec as the store keeps it: its canonical JSON read back."""
    return json.loads(canonical_json(spec))


def epoch(number: int, seconds: float = 2.0, **values: float | None) -> EpochMetrics:
    figures = {"loss": 0.1, "accuracy": 0.97, "val_loss": 0.08, "val_accuracy": 0.98, **values}
    return EpochMetrics(number, seconds=seconds, images_per_second=1000.0, **figures)


def record(
    model: str,
    seed: int,
    *,
    spec: str | None = None,
    status: str = "done",
    accuracy: float = 0.99,
    loss: float = 0.03,
    epochs: tuple[EpochMetrics, ...] = (),
    **fields: Any,
) -> RunRecord:
    """A stored run of a preset's spec (`spec`, else the preset named `model`) under `model`."""
    model_spec = load_model(spec or model)
    return RunRecord(
        key=hashlib.sha256(f"{model}/{seed}".encode()).hexdigest()[:16],
        model=model,
        seed=seed,
        dataset="mnist@0123456789abcdef",
        spec={**stored(model_spec), "name": model},
        training={"epochs": 12, "batch_size": 128, "validation": "test", "train_limit": None},
        status=status,  # type: ignore[arg-type]
        attempts=1,
        created_at=0.0,
        test=TestMetrics(loss, accuracy) if status == "done" else None,
        epochs=epochs or (epoch(1),),
        **fields,
    )


# -- the table ----------------------------------------------------------------------------------


def test_each_model_gets_mean_std_and_t_interval_over_its_finished_runs():
    runs = [
        record("seed/model-1", 0, accuracy=0.98, loss=0.06),
        record("seed/model-1", 1, accuracy=0.99, loss=0.05),
        record("seed/model-1", 2, accuracy=1.00, loss=0.04),
    ]
    (row,) = table.build_results_table(runs).rows
    assert row.accuracy.mean == pytest.approx(0.99)
    assert row.accuracy.std == pytest.approx(0.01)
    # t_{0.975,2} = 4.302653: half-width 4.302653 * 0.01 / sqrt(3) = 0.024841
    assert row.accuracy.low == pytest.approx(0.99 - 0.024841, abs=1e-6)
    assert row.accuracy.high == 1.0  # 1.01484 cut to the largest accuracy there is
    assert row.loss.mean == pytest.approx(0.05)
    assert (row.runs, row.done, row.failed, row.diverged, row.unfinished) == (3, 3, 0, 0, 0)


def test_failed_diverged_and_unfinished_runs_are_counted_not_averaged():
    runs = [
        record("seed/model-2", 0, accuracy=0.99),
        record("seed/model-2", 1, status="diverged", reason="loss is nan"),
        record("seed/model-2", 2, status="failed", reason="out of memory"),
        record("seed/model-2", 3, status="pending"),
    ]
    (row,) = table.build_results_table(runs).rows
    assert row.accuracy.mean == pytest.approx(0.99) and row.accuracy.n == 1
    assert row.accuracy.low is None  # one finished run: no interval over seeds
    assert (row.done, row.failed, row.diverged, row.unfinished) == (1, 1, 1, 1)
    assert table.format_runs(row) == "1 of 4 (1 failed, 1 diverged, 1 unfinished)"


def test_rows_follow_the_study_order_then_models_outside_it():
    runs = [record(m, 0) for m in ("seed/model-3", "seed/model-1", "seed/model-2")]
    rows = table.build_results_table(runs, order=("seed/model-2", "seed/model-1")).rows
    assert [r.model for r in rows] == ["seed/model-2", "seed/model-1", "seed/model-3"]


def test_seed_models_carry_the_notebooks_logged_figures_beside_ours():
    rows = table.build_results_table([record("seed/model-2", 0), record("seed/reference", 0)]).rows
    model_2, reference = rows
    # docs/seed-preset.md: Model-2 logged "Test accuracy: 0.9949", its table says 0.994.
    assert model_2.reported_accuracy == pytest.approx(0.9949)
    assert model_2.reported_loss == pytest.approx(0.01848, abs=1e-5)
    assert reference.reported_accuracy is None  # the notebook printed nothing for it
    headers, cells = table.display_rows(table.build_results_table([record("seed/model-2", 0)]))
    assert headers[-2:] == ["reported acc %", "reported loss"]
    assert cells[0][-2:] == ["99.49", "0.0185"]


def test_studies_without_reported_figures_have_no_reported_columns():
    headers, _ = table.display_rows(table.build_results_table([record("seed/reference", 0)]))
    assert "reported acc %" not in headers


def test_conv_count_kernels_params_flops_and_epoch_time_come_from_the_runs():
    timed = (epoch(1, 9.0), epoch(2, 4.0), epoch(3, 4.0))  # the first epoch is warm-up
    run = record("seed/model-12", 0, params=520_570, flops=15_830_972, epochs=timed)
    (row,) = table.build_results_table([run]).rows
    assert (row.conv_layers, row.kernels) == (4, ((4, 4),))
    assert (row.params, row.flops, row.seconds_per_epoch) == (520_570, 15_830_972, 4.0)
    headers, (cells,) = table.display_rows(table.build_results_table([run]))
    shown = dict(zip(headers, cells, strict=True))
    assert (shown["params"], shown["MFLOPs"], shown["s/epoch"]) == ("520,570", "15.8", "4.00")


def test_epochs_slowed_by_another_process_neither_set_the_time_nor_go_unmarked():
    timed = tuple(epoch(e, s) for e, s in enumerate([9.0, 8.6, 8.7, 43.0, 43.0], start=1))
    runs = [record("seed/model-1", 0, epochs=timed), record("seed/model-1", 1, epochs=timed[:3])]
    results = table.build_results_table(runs)
    (row,) = results.rows
    assert row.seconds_per_epoch == pytest.approx(8.6) and results.disturbed == (row,)
    headers, (cells,) = table.display_rows(results)
    assert dict(zip(headers, cells, strict=True))["s/epoch"] == "8.60*"
    (obj,) = json.loads(table.to_json(results))
    assert obj["disturbed_epochs"] == 2 and obj["seconds_per_epoch_mean"] > 20


def test_grid_factors_become_columns_in_every_format_also_for_models_outside_the_grid():
    grid = dataclasses.replace(
        record("d3", 0, spec="seed/model-1"),
        spec={
            **stored(load_model("seed/model-1")),
            "name": "d3",
            "factors": [["depth", 3], ["bn", True]],
        },
    )
    results = table.build_results_table([record("plain", 0, spec="seed/model-1"), grid])
    headers, cells = table.display_rows(results)
    assert headers[:3] == ["model", "depth", "bn"]
    assert [row[:3] for row in cells] == [["plain", "-", "-"], ["d3", "3", "true"]]
    rows = list(csv.DictReader(io.StringIO(table.to_csv(results))))
    assert [(r["factor_depth"], r["factor_bn"]) for r in rows] == [("", ""), ("3", "True")]


@pytest.mark.parametrize("name", list_presets())
def test_a_stored_spec_reads_back_as_the_spec_that_was_trained(name):
    spec = load_model(name)  # resnet/resnet20's blocks hold layers of their own
    assert table.stored_spec(stored(spec)) == spec
    assert model_to_toml(table.stored_spec(stored(spec))) == model_to_toml(spec)


def test_markdown_escapes_pipes_and_keeps_one_line_per_model():
    text = table.to_markdown(table.build_results_table([record("a|b", 0, spec="seed/model-1")]))
    lines = text.splitlines()
    assert len(lines) == 3 and "a\\|b" in lines[2]
    assert lines[2].count(" | ") == lines[0].count(" | ")


def test_csv_and_json_hold_fractions_at_full_precision():
    runs = [record("seed/model-1", 0, accuracy=0.98765), record("seed/model-1", 1, accuracy=0.99)]
    results = table.build_results_table(runs)
    (row,) = list(csv.DictReader(io.StringIO(table.to_csv(results))))
    (obj,) = json.loads(table.to_json(results))
    assert float(row["test_accuracy_mean"]) == pytest.approx(0.988825)
    assert obj["test_accuracy_mean"] == pytest.approx(0.988825)
    assert obj["reported_test_accuracy"] == pytest.approx(0.9791)
    assert obj["test_accuracy_ci_low"] < obj["test_accuracy_mean"] < obj["test_accuracy_ci_high"]
    assert math.isclose(obj["confidence"], 0.95)


def test_rich_table_shows_markup_in_model_names_as_text():
    results = table.build_results_table([record("[bold red]x[/]", 0, spec="seed/model-1")])
    console = Console(width=200, record=True, color_system=None)
    console.print(table.to_rich(results))
    assert "[bold red]x[/]" in console.export_text()


def test_markdown_shows_model_names_with_markup_as_plain_text():
    names = ["**bold**", "<img src=x onerror=alert(1)>", "a_b_c|d", "[x](y)"]
    runs = [record(name, 0, spec="seed/model-1") for name in names]
    text = table.to_markdown(table.build_results_table(runs))
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    assert rendered.count("<tr>") == 1 + len(names)
    assert "<strong>" not in rendered and "<img" not in rendered and "<a " not in rendered
    cells = [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", rendered)]
    assert all(name in cells for name in names)
