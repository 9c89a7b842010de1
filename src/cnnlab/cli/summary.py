"""`cnnlab summary MODEL`: Keras's model.summary() for a preset or a spec file, plus FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnlab import limits, spec, summary
from cnnlab.errors import DataError

DATASET_HELP = "Dataset whose image shape and class count the model is built for."


def register(app: typer.Typer) -> None:
    """Add the `summary` command to the root app."""
    app.command("summary")(summary_command)


def summary_command(
    model: str = typer.Argument(..., help="A preset name (seed/model-3) or a .toml spec file."),
    dataset: str = typer.Option("mnist", "--dataset", help=DATASET_HELP),
    input_shape: str = typer.Option(
        None, "--input-shape", help="HEIGHT,WIDTH,CHANNELS instead of the dataset's, e.g. 32,32,3."
    ),
    classes: int = typer.Option(
        None, "--classes", **limits.flag("classes"), help="Class count instead of the dataset's."
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the dataset's files are."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Layers, output shapes, parameters and forward FLOPs per image, with totals."""
    model_spec = spec.load_model(model)
    shape, count = _input(dataset, input_shape, classes, data_dir)
    result = summary.summarize(model_spec, shape, count)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    Console(width=max(100, Console().width)).print(summary_table(result))
    for line in totals_lines(result):
        typer.echo(line)


def _input(dataset: str, input_shape: str | None, classes: int | None, data_dir: Path | None):
    shape = summary.parse_input_shape(input_shape) if input_shape is not None else None
    try:
        return summary.input_for_dataset(
            dataset, input_shape=shape, classes=classes, data_dir=data_dir
        )
    except DataError as error:
        raise DataError(
            f"{error}; or give the input directly: --input-shape HEIGHT,WIDTH,CHANNELS --classes N"
        ) from error


def summary_table(result: summary.Summary) -> Table:
    """The per-layer table, laid out like Keras's model.summary()."""
    shape = "x".join(map(str, result.input_shape))
    table = Table(title=f'Model: "{result.model}"  (input {shape}, {result.classes} classes)')
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    table.add_column("FLOPs", justify="right")
    for row in result.rows:
        table.add_row(
            "  " * row.depth + f"{row.name} ({row.layer_type})",
            summary.keras_shape(row.output_shape),
            f"{row.params:,}",
            f"{row.flops:,}",
        )
    return table


def totals_lines(result: summary.Summary) -> list[str]:
    """Keras's totals (bytes as float32 parameters, as Keras reports), then FLOPs."""
    return [
        f" Total params: {result.total_params:,} ({_megabytes(result.total_params)})",
        f" Trainable params: {result.trainable_params:,} ({_megabytes(result.trainable_params)})",
        f" Non-trainable params: {result.non_trainable_params:,} "
        f"({_megabytes(result.non_trainable_params)})",
        f" Forward FLOPs per image: {result.flops:,} (a multiply-add counts 2)",
    ]


def _megabytes(params: int) -> str:
    # Keras's readable_memory_size (keras/src/utils/summary_utils.py): float32 bytes, base 1024.
    size = params * 4.0
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TB"
