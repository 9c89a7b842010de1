"""The results table: one row per model, its cost and its test figures as mean +- std with a CI.

`build_results_table` turns stored runs into a frozen `ResultsTable` (pure); the renderers
below turn that into a rich table for the terminal, Markdown, CSV and JSON. A model's figures
come from its finished runs only; failed, diverged, pruned and unfinished runs are counted
beside them, never averaged in.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from cnnlab import markdown
from cnnlab import spec as specs
from cnnlab.stats import MeanCI, mean_ci
from cnnlab.store import RunRecord
from cnnlab.timing import EpochTiming, epoch_timing

CONFIDENCE = 0.95
DISTURBED_MARK = "*"  # after s/epoch: some epochs were slowed by other processes


@dataclass(frozen=True)
class ModelRow:
    """One model's line of the results table."""

    model: str
    conv_layers: int
    kernels: tuple[tuple[int, int], ...]  # distinct Conv2D kernel sizes, in layer order
    params: int | None
    flops: int | None
    seconds_per_epoch: float | None  # the steady estimate over the finished runs' epochs
    accuracy: MeanCI | None  # over finished runs (None when none finished)
    loss: MeanCI | None
    runs: int  # all runs of the model in the study
    done: int
    failed: int
    diverged: int
    unfinished: int  # pending or running
    pruned: int  # stopped at a rung by --prune halving (cnnlab.halving): no test figures
    reported: tuple[tuple[str, float], ...] = ()  # figures reported elsewhere (the notebook's)
    timing: EpochTiming | None = None  # how seconds_per_epoch was estimated, what disturbed it
    factors: tuple[tuple[str, Any], ...] = ()  # a grid model's axis values

    @property
    def reported_accuracy(self) -> float | None:
        """The printed "Test accuracy" where there is one, else the summary table's figure."""
        figures = dict(self.reported)
        return figures.get("test_accuracy", figures.get("table_test_accuracy"))

    @property
    def reported_loss(self) -> float | None:
        figures = dict(self.reported)
        return figures.get("test_loss", figures.get("table_test_loss"))


@dataclass(frozen=True)
class ResultsTable:
    rows: tuple[ModelRow, ...]
    confidence: float

    @property
    def has_reported(self) -> bool:
        return any(row.reported for row in self.rows)

    @property
    def factor_names(self) -> tuple[str, ...]:
        """The grid factors of the models, in order of first appearance."""
        return tuple(dict.fromkeys(name for row in self.rows for name, _ in row.factors))

    @property
    def disturbed(self) -> tuple[ModelRow, ...]:
        """The models whose epoch timings were disturbed (see cnnlab.timing)."""
        return tuple(row for row in self.rows if row.timing and row.timing.is_disturbed)


def stored_spec(spec: dict[str, Any]) -> specs.ModelSpec:
    """The ModelSpec a store holds as JSON ({"type": class name, fields...}, tuples as lists).

    The store writes specs with `canonical_json`; this is its inverse, so the report shows
    (and names the layers of) exactly what was trained.
    """
    return specs.ModelSpec(
        name=str(spec["name"]),
        layers=tuple(_stored_layer(layer) for layer in spec.get("layers", [])),
        optimizer=specs.OptimizerSpec(
            spec.get("optimizer", {}).get("name", "adadelta"),
            _pairs(spec.get("optimizer", {}).get("params", [])),
        ),
        description=str(spec.get("description", "")),
        reported=_pairs(spec.get("reported", [])),
        factors=_pairs(spec.get("factors", [])),
    )


def _stored_layer(layer: dict[str, Any]) -> specs.Layer:
    cls = getattr(specs, str(layer["type"]))
    fields = {k: _stored_value(v) for k, v in layer.items() if k != "type"}
    return cls(**fields)


def _stored_value(value: Any) -> Any:
    """A field back from JSON: lists as tuples, a block's layers (JSON objects) as layers."""
    if isinstance(value, list):
        return tuple(_stored_value(item) for item in value)
    return _stored_layer(value) if isinstance(value, dict) else value


def _pairs(values: list[Any]) -> tuple[tuple[str, Any], ...]:
    return tuple((str(key), value) for key, value in values)


def conv_kernels(spec: specs.ModelSpec) -> tuple[int, tuple[tuple[int, int], ...]]:
    """The number of convolutions of a spec (separable, depthwise and those inside residual
    blocks included) and its distinct kernel sizes, in layer order."""
    overview = specs.describe_model(spec)
    return overview.conv_layers, overview.kernel_sizes


def model_order(runs: Iterable[RunRecord], preferred: Sequence[str] = ()) -> list[str]:
    """Models in the study's own order (`preferred`), then any others as first stored."""
    seen = list(dict.fromkeys(run.model for run in runs))
    return [m for m in preferred if m in seen] + [m for m in seen if m not in preferred]


def build_results_table(
    runs: Sequence[RunRecord], *, order: Sequence[str] = (), confidence: float = CONFIDENCE
) -> ResultsTable:
    """One row per model, in the study's order; figures over each model's finished runs."""
    rows = tuple(
        model_row(model, [run for run in runs if run.model == model], confidence)
        for model in model_order(runs, order)
    )
    return ResultsTable(rows, confidence)


def model_row(model: str, runs: Sequence[RunRecord], confidence: float) -> ModelRow:
    done = [run for run in runs if run.status == "done" and run.test is not None]
    spec = stored_spec(runs[0].spec)
    count, kernels = conv_kernels(spec)
    timing = epoch_timing([[epoch.seconds for epoch in run.epochs] for run in done])
    return ModelRow(
        model=model,
        conv_layers=count,
        kernels=kernels,
        params=_first(run.params for run in runs),
        flops=_first(run.flops for run in runs),
        seconds_per_epoch=timing.steady if timing else None,
        accuracy=_mean_ci_of([run.test.accuracy for run in done if run.test], confidence, 1.0),
        loss=_mean_ci_of([run.test.loss for run in done if run.test], confidence, math.inf),
        runs=len(runs),
        done=len(done),
        failed=sum(run.status == "failed" for run in runs),
        diverged=sum(run.status == "diverged" for run in runs),
        unfinished=sum(run.status in ("pending", "running") for run in runs),
        pruned=sum(run.status == "pruned" for run in runs),
        reported=spec.reported,
        timing=timing,
        factors=spec.factors,
    )


def _mean_ci_of(values: list[float], confidence: float, upper: float) -> MeanCI | None:
    finite = [v for v in values if math.isfinite(v)]
    return clip_interval(mean_ci(finite, confidence), 0.0, upper) if finite else None


def clip_interval(ci: MeanCI, low: float, high: float) -> MeanCI:
    """The t-interval cut to the values the metric can take (two seeds of an unsettled model
    give a t-interval of accuracy like [-20 %, 111 %]; the mean of accuracies lies in [0, 1])."""
    if ci.low is None or ci.high is None:
        return ci
    return dataclasses.replace(ci, low=max(ci.low, low), high=min(ci.high, high))


def _first(values: Iterable[int | None]) -> int | None:
    return next((v for v in values if v is not None), None)


# -- formatting --------------------------------------------------------------------------------


def format_kernels(kernels: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{h}x{w}" for h, w in kernels) or "-"


def format_mean_std(ci: MeanCI | None, *, percent: bool, digits: int) -> str:
    """'99.12 ± 0.05' (percent) or '0.0312 ± 0.0010'; a single run has no spread."""
    if ci is None:
        return "-"
    scale = 100.0 if percent else 1.0
    text = f"{ci.mean * scale:.{digits}f}"
    return text if ci.std is None else f"{text} ± {ci.std * scale:.{digits}f}"


def format_interval(ci: MeanCI | None, *, percent: bool, digits: int) -> str:
    """'[99.01, 99.23]', or '-' where no interval exists (one run)."""
    if ci is None or ci.low is None or ci.high is None:
        return "-"
    scale = 100.0 if percent else 1.0
    return f"[{ci.low * scale:.{digits}f}, {ci.high * scale:.{digits}f}]"


def format_count(value: int | float | None, *, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def format_runs(row: ModelRow) -> str:
    """'3' when every run finished, else '2 of 3 (1 failed)' and the like."""
    if row.done == row.runs:
        return str(row.runs)
    others = [
        f"{count} {word}"
        for count, word in (
            (row.failed, "failed"),
            (row.diverged, "diverged"),
            (row.pruned, "pruned"),
            (row.unfinished, "unfinished"),
        )
        if count
    ]
    return f"{row.done} of {row.runs} ({', '.join(others)})"


def display_rows(table: ResultsTable) -> tuple[list[str], list[list[str]]]:
    """Headers and cells as people read them (percent accuracy), shared by rich and Markdown."""
    level = f"{round(table.confidence * 100)} % CI"
    factors = table.factor_names
    headers = [
        "model",
        *factors,
        "conv",
        "kernels",
        "params",
        "MFLOPs",
        "s/epoch",
        "test acc %",
        level,
        "test loss",
        "runs",
    ]
    if table.has_reported:
        headers += ["reported acc %", "reported loss"]
    return headers, [_display_row(row, table.has_reported, factors) for row in table.rows]


def _display_row(row: ModelRow, with_reported: bool, factors: Sequence[str] = ()) -> list[str]:
    levels = dict(row.factors)
    cells = [
        row.model,
        *(format_level(levels[name]) if name in levels else "-" for name in factors),
        str(row.conv_layers),
        format_kernels(row.kernels),
        format_count(row.params),
        format_count(None if row.flops is None else row.flops / 1e6, digits=1),
        format_count(row.seconds_per_epoch, digits=2) + DISTURBED_MARK * _disturbed(row),
        format_mean_std(row.accuracy, percent=True, digits=2),
        format_interval(row.accuracy, percent=True, digits=2),
        format_mean_std(row.loss, percent=False, digits=4),
        format_runs(row),
    ]
    if with_reported:
        acc, loss = row.reported_accuracy, row.reported_loss
        cells += [
            "-" if acc is None else f"{100 * acc:.2f}",
            "-" if loss is None else f"{loss:.4f}",
        ]
    return cells


def _disturbed(row: ModelRow) -> bool:
    return row.timing is not None and row.timing.is_disturbed


def format_level(value: Any) -> str:
    """A factor's level as the grid spec writes it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def to_rich(table: ResultsTable, *, title: str | None = None) -> Table:
    """The table for a terminal; model names are shown as text, never as rich markup."""
    headers, rows = display_rows(table)
    out = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        out.add_column(header, justify="left" if i in (0, 2) else "right", no_wrap=i == 0)
    for cells in rows:
        out.add_row(*(Text(cell) for cell in cells))  # a Text is never parsed as markup
    return out


def to_markdown(table: ResultsTable) -> str:
    headers, rows = display_rows(table)
    lines = [_md_line(headers), _md_line(["---"] * len(headers))]
    lines += [_md_line(cells) for cells in rows]
    return "\n".join(lines) + "\n"


def _md_line(cells: Sequence[str]) -> str:
    # A "|" inside a model name would split the cell, a "*" start emphasis: each is escaped.
    return "| " + " | ".join(markdown.escape(cell) for cell in cells) + " |"


def to_records(table: ResultsTable) -> list[dict[str, Any]]:
    """Machine-readable rows: fractions (not percent), full precision, None where unknown."""
    return [_record(row, table.confidence, table.factor_names) for row in table.rows]


def _record(row: ModelRow, confidence: float, factors: Sequence[str] = ()) -> dict[str, Any]:
    levels = dict(row.factors)
    record: dict[str, Any] = {
        "model": row.model,
        "conv_layers": row.conv_layers,
        "kernels": format_kernels(row.kernels),
        "params": row.params,
        "flops": row.flops,
        "seconds_per_epoch": row.seconds_per_epoch,
        "seconds_per_epoch_mean": row.timing.mean if row.timing else None,
        "disturbed_epochs": row.timing.disturbed if row.timing else None,
        **{f"factor_{name}": levels.get(name) for name in factors},  # every row: same columns
    }
    for name, ci in (("test_accuracy", row.accuracy), ("test_loss", row.loss)):
        record[f"{name}_mean"] = None if ci is None else ci.mean
        record[f"{name}_std"] = None if ci is None else ci.std
        record[f"{name}_ci_low"] = None if ci is None else ci.low
        record[f"{name}_ci_high"] = None if ci is None else ci.high
    record.update(
        confidence=confidence,
        runs=row.runs,
        done=row.done,
        failed=row.failed,
        diverged=row.diverged,
        pruned=row.pruned,
        unfinished=row.unfinished,
        reported_test_accuracy=row.reported_accuracy,
        reported_test_loss=row.reported_loss,
    )
    return record


def to_json(table: ResultsTable) -> str:
    return json.dumps(to_records(table), indent=2) + "\n"


def to_csv(table: ResultsTable) -> str:
    records = to_records(table)
    if not records:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    return buffer.getvalue()
