"""`cnnlab models [PATTERN]`: the model presets, one line each (or JSON for scripts)."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.errors import SpecError
from cnnlab.presets import list_presets
from cnnlab.spec import ModelOverview, describe_model, load_model


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("models")(models)


def models(
    pattern: str = typer.Argument(
        "*", help="Shell pattern (seed/*) or a part of the name (model-1)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List model presets: name, conv layers, kernel sizes, optimizer, description."""
    rows = [describe_model(load_model(name)) for name in list_presets(pattern)]
    if not rows:
        raise SpecError(f"no model preset matches {pattern!r}; `cnnlab models` lists them all")
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return
    Console(soft_wrap=False).print(_table(rows))


def _table(rows: list[ModelOverview]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("name", "conv", "kernels", "optimizer", "description"):
        table.add_column(column, no_wrap=column != "description")
    for row in rows:
        kernels = ", ".join(f"{h}x{w}" for h, w in row.kernel_sizes)
        summary = row.description.split(". ")[0]  # reading notes follow; --json has them
        table.add_row(row.name, str(row.conv_layers), kernels, row.optimizer, summary)
    return table
