"""`cnnlab import-keras FILE.py`: Keras Sequential code in, a model spec (TOML) out."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab import limits
from cnnlab.errors import CnnlabError
from cnnlab.keras_import import import_keras_file


def import_keras(
    file: Path = typer.Argument(
        ...,
        help="A .py file of Keras code (Sequential or functional), or a model's JSON config "
        "(a .json file from model.to_json(), or a .keras file).",
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the spec here instead of printing it."
    ),
    name: str | None = typer.Option(None, "--name", help="The model's name in the spec."),
    index: int | None = typer.Option(
        None,
        "--index",
        **limits.flag("index"),
        help="Which model of the file, from 1 (default: the last).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file."),
) -> None:
    """Read Keras code or a model config (never running it) and print the equivalent spec."""
    if output is not None:
        check_output(file, output, force=force)
    imported = import_keras_file(file, name=name, index=index)
    text = imported.to_toml()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CnnlabError(f"cannot write {output}: {error.strerror or error}") from None
    count = len(imported.model_lines)
    typer.echo(
        f"wrote {output}: {imported.spec.name!r}, {len(imported.spec.layers)} layers "
        f"({imported.kind} model {imported.index} of {count}, line {imported.line} of {file})"
    )


def check_output(source: Path, output: Path, *, force: bool) -> None:
    """Never write over the Python file being read; another existing file only with --force."""
    if output.exists() and source.exists() and output.samefile(source):
        raise CnnlabError(f"-o {output} is the input file itself; write the spec to a new file")
    if output.exists() and not force:
        raise CnnlabError(f"{output} already exists; use --force to overwrite it")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("import-keras")(import_keras)
