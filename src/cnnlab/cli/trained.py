"""`cnnlab predict`, `cnnlab export`, `cnnlab export-logs`: a study's trained networks, used."""

from __future__ import annotations

import json
from pathlib import Path

import typer

EPOCH_HELP = (
    'Which weights: "best" (highest validation accuracy; the weights EarlyStopping restored '
    'where it did, which the run was tested with), "last" or an epoch number.'
)


def register(app: typer.Typer) -> None:
    """Add `predict`, `export` and `export-logs` to the root app."""
    app.command("predict")(predict_command)
    app.command("export")(export_command)
    app.command("export-logs")(export_logs_command)


def predict_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    images: list[Path] = typer.Argument(..., metavar="IMAGE...", help="Image files."),
    model: str = typer.Option(..., "--model", help="The model's name in the study."),
    seed: int = typer.Option(None, "--seed", help="The run's seed (when the model has several)."),
    epoch: str = typer.Option("best", "--epoch", help=EPOCH_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The class (with its name where known) and probability of each image, by a trained run.

    Images must have the size and colour mode the network was trained on (never resized).
    """
    from cnnlab import trained

    loaded = trained.load_run(directory, model=model, seed=seed, epoch=epoch)
    classes, probabilities = loaded.predict(trained.read_images(images, loaded.image_shape))
    rows = [
        {
            "image": str(path),
            "class": int(cls),
            "name": loaded.class_name(int(cls)),
            "probability": float(row[cls]),
        }
        for path, cls, row in zip(images, classes, probabilities, strict=True)
    ]
    if as_json:
        typer.echo(
            json.dumps(
                {"model": model, "seed": loaded.seed, "epoch": loaded.epoch, "predictions": rows},
                indent=2,
            )
        )
        return
    for row in rows:
        name = f" ({row['name']})" if row["name"] != str(row["class"]) else ""
        typer.echo(f"{row['image']}: {row['class']}{name} {row['probability']:.4f}")


def export_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    model: str = typer.Option(..., "--model", help="The model's name in the study."),
    output: Path = typer.Option(..., "-o", "--output", help="The file to write."),
    export_format: str = typer.Option(
        ..., "--format", help="onnx, torchscript or safetensors (+ the spec TOML beside it)."
    ),
    seed: int = typer.Option(None, "--seed", help="The run's seed (when the model has several)."),
    epoch: str = typer.Option("best", "--epoch", help=EPOCH_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Write a trained run as ONNX, TorchScript or safetensors, its metadata inside."""
    from cnnlab import export
    from cnnlab.errors import CnnlabError

    export.check_format(export_format)  # before loading: a missing package says so at once
    for path in export.export_paths(output, export_format):
        if path.exists() and not path.is_dir() and not force:
            raise CnnlabError(f"{path} already exists; use --force to overwrite it")
    paths = export.export_run(
        directory, model=model, seed=seed, epoch=epoch, format=export_format, output=output
    )
    for path in paths:
        typer.echo(f"wrote {path}")


def export_logs_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    tensorboard: Path = typer.Option(
        None, "--tensorboard", metavar="OUT", help="Write TensorBoard event files under OUT."
    ),
    mlflow: str = typer.Option(
        None,
        "--mlflow",
        metavar="URI",
        help="Log to this MLflow tracking URI (http://HOST:5000; MLflow 3 opens file:./mlruns "
        "only with MLFLOW_ALLOW_FILE_STORE=true).",
    ),
) -> None:
    """Export a finished or running study to TensorBoard and/or MLflow (their own writers)."""
    from cnnlab import trackers
    from cnnlab.errors import SpecError

    if tensorboard is None and mlflow is None:
        raise SpecError("say where to: --tensorboard OUT and/or --mlflow URI")
    if tensorboard is not None:
        written = trackers.export_tensorboard(directory, tensorboard)
        typer.echo(
            f"tensorboard: {len(written)} runs in {tensorboard} (see: tensorboard --logdir DIR)"
        )
    if mlflow is not None:
        ids = trackers.export_mlflow(directory, mlflow)
        typer.echo(f"mlflow: {len(ids)} runs at {mlflow}")
