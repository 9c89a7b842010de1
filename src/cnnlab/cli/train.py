"""`cnnlab train MODEL`: train one model with one seed and print its history and test metrics."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cnnlab import data, limits, spec
from cnnlab.cli import recipe
from cnnlab.cli.interrupts import sigterm_as_interrupt
from cnnlab.errors import SpecError

if TYPE_CHECKING:
    from cnnlab import train


DEFAULTS = spec.TrainingSpec()  # the one place training defaults live


def register(app: typer.Typer) -> None:
    """Add the `train` command to the root app."""
    app.command("train")(train_command)


def train_command(
    model: str = typer.Argument(..., help="A preset name (seed/model-3) or a .toml spec file."),
    epochs: int = typer.Option(
        DEFAULTS.epochs,
        "--epochs",
        **limits.flag("epochs"),
        help="Epochs to train (the notebook: 12).",
    ),
    seed: int = typer.Option(
        0, "--seed", **limits.flag("seed"), help="Fixes initial weights, shuffling and dropout."
    ),
    dataset: str = typer.Option(
        "mnist",
        "--dataset",
        help="Dataset name, idx:DIR, npz:FILE, cifar:DIR or folder:DIR[?options].",
    ),
    train_limit: int = typer.Option(
        None, "--train-limit", **limits.flag("train_limit"), help="Train on the first N images."
    ),
    batch_size: int = typer.Option(
        DEFAULTS.batch_size, "--batch-size", **limits.flag("batch_size"), help="Images per step."
    ),
    validation: str = typer.Option(
        str(DEFAULTS.validation),
        "--validation",
        help='Fraction of the training set held out, or "test".',
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    precision: str = typer.Option(
        DEFAULTS.precision, "--precision", help="fp32, or bf16 (autocast)."
    ),
    run_dir: Path = typer.Option(
        None, "--run-dir", help="Checkpoint every epoch here; resume from it if interrupted."
    ),
    threads: int = typer.Option(
        None, "--threads", **limits.flag("threads"), help="CPU threads (default: all)."
    ),
    augment: list[str] = recipe.augment_option(),
    schedule: str = recipe.schedule_option(),
    early_stopping: str = recipe.early_stopping_option(),
    plateau: str = recipe.plateau_option(),
    label_smoothing: float = recipe.label_smoothing_option(),
    normalize: str = recipe.normalize_option(DEFAULTS.normalize),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the dataset's files are."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Train MODEL and print its per-epoch history and test metrics."""
    from cnnlab import train  # here, not at the top: `cnnlab --help` loads no torch

    held_out = parse_validation(validation)
    model_spec = spec.load_model(model)
    # The options are checked before the dataset loads, which may mean a download: a typo in
    # --precision should not wait for (or fail on) the network first.
    training = recipe.apply_recipe_flags(
        spec.TrainingSpec(
            epochs=epochs,
            batch_size=batch_size,
            validation=held_out,
            train_limit=train_limit,
            precision=precision,
        ),
        recipe.RecipeFlags(
            augment=tuple(augment or ()),
            learning_rate_schedule=schedule,
            early_stopping=early_stopping,
            reduce_lr_on_plateau=plateau,
            label_smoothing=label_smoothing,
            normalize=normalize,
        ),
    )
    train.check_seed(seed)
    images = data.load_dataset(dataset, data_dir=data_dir)
    with sigterm_as_interrupt(), _interrupt_message(run_dir):
        result = train.train_model(
            model_spec,
            images,
            training=training,
            seed=seed,
            device=device,
            run_dir=run_dir,
            progress="quiet" if quiet or as_json else "auto",
            threads=threads,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(model_spec.name, result)
    if result.status != "done":
        raise typer.Exit(1)


def parse_validation(text: str) -> float | str:
    """ "test" or a fraction in [0, 1)."""
    if text == "test":
        return "test"
    try:
        fraction = float(text)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction < 1:  # NaN too
        raise SpecError(f'--validation must be a fraction in [0, 1), or "test"; got {text!r}')
    return fraction


def print_result(name: str, result: train.TrainResult) -> None:
    """The history as a table, then Keras's "Test loss:" / "Test accuracy:" lines."""
    console = Console()
    console.print(history_table(name, result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if result.stopped_epoch is not None:
        typer.echo(f"Early stopping: stopped after epoch {result.stopped_epoch}")
    if result.status == "done":
        typer.echo(f"Test loss: {result.test_loss:.4f}")
        typer.echo(f"Test accuracy: {result.test_accuracy:.4f}")
    else:
        console.print(f"[red]{result.status}[/] at epoch {result.epoch}: {result.reason}")
    if result.checkpoint:
        typer.echo(f"Checkpoint: {result.checkpoint}")


def history_table(name: str, result: train.TrainResult) -> Table:
    """One row per epoch: what Keras's History holds, plus time and throughput."""
    table = Table(title=f"{name}  (seed {result.seed}, {result.device}, {result.precision})")
    # The learning rate only when it moved (a schedule, a plateau): the table stays 80 wide.
    rates = {r.learning_rate for r in result.history}
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "img/s"]
    for column in columns + (["lr"] if len(rates) > 1 else []):
        table.add_column(column, justify="right")
    for r in result.history:
        table.add_row(
            str(r.epoch),
            f"{r.loss:.4f}",
            f"{r.accuracy:.4f}",
            "-" if r.val_loss is None else f"{r.val_loss:.4f}",
            "-" if r.val_accuracy is None else f"{r.val_accuracy:.4f}",
            f"{r.seconds:.1f}",
            f"{r.images_per_second:,.0f}",
            *(
                []
                if len(rates) < 2
                else ["-" if r.learning_rate is None else f"{r.learning_rate:.4g}"]
            ),
        )
    return table


@contextlib.contextmanager
def _interrupt_message(run_dir: Path | None) -> Iterator[None]:
    """Turn an interrupt into a message on how to resume, and exit code 130."""
    try:
        yield
    except KeyboardInterrupt:
        if run_dir is None:
            where = "nothing was saved (use --run-dir to make runs resumable)"
        elif not list(run_dir.glob("*.safetensors")):
            where = f"no epoch had finished, so nothing is saved in {run_dir} yet"
        else:
            where = f"finished epochs are saved in {run_dir}; run the same command to resume"
        typer.secho(f"interrupted: {where}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
