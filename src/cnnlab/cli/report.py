"""`cnnlab report DIR`: (re)build a study's HTML report from its store, without training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from cnnlab.errors import SpecError

if TYPE_CHECKING:
    from cnnlab import table

TABLE_FORMATS = ("rich", "md", "csv", "json", "none")


def register(app: typer.Typer) -> None:
    """Add `report` to the root app."""
    app.command("report")(report_command)


def report_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where the dataset's files are (for the test images)."
    ),
    table_format: str = typer.Option(
        "rich", "--table", help="Also print the results table: rich, md, csv, json or none."
    ),
    out: Path = typer.Option(
        None, "--out", help="Write the report here instead of DIR/report (a read-only study)."
    ),
) -> None:
    """Build DIR/report/report.html (table, statistics, conclusions, plots); also unfinished."""
    from cnnlab import report  # here, not at the top: `cnnlab --help` loads no matplotlib
    from cnnlab.devices import usable_cores

    if table_format not in TABLE_FORMATS:
        raise SpecError(f"--table must be one of {', '.join(TABLE_FORMATS)}; got {table_format!r}")
    path = report.build_report(directory, data_dir=data_dir, processes=usable_cores(), out=out)
    print_table(report.study_table(directory), table_format)
    typer.echo(f"report: {path}", err=table_format in ("md", "csv", "json"))


def print_table(results: table.ResultsTable, table_format: str) -> None:
    """The table on stdout in the chosen format (machine formats alone, for pipes)."""
    from cnnlab import table

    if table_format == "rich":
        console = Console()
        (console if console.is_terminal else Console(width=200)).print(table.to_rich(results))
    elif table_format != "none":
        render = {"md": table.to_markdown, "csv": table.to_csv, "json": table.to_json}
        typer.echo(render[table_format](results), nl=False)
