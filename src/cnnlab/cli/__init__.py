"""The `cnnlab` command: parse arguments, call one library function, print, return an exit code.

Each command group lives in its own module and adds itself with `register(app)`.
"""

from __future__ import annotations

import sys

import typer

import cnnlab
from cnnlab.cli import data, import_keras, models, report, study, summary, train, trained
from cnnlab.errors import CnnlabError

app = typer.Typer(
    name="cnnlab",
    help="Compare CNN architectures: Keras-faithful models, multi-seed studies, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cnnlab {cnnlab.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


for _module in (data, models, summary, import_keras, train, study, report, trained):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a CnnlabError becomes one red line on stderr and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except CnnlabError as error:
        if _state["debug"]:
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as click_error:  # click's usage errors carry their own exit code
        format_message = getattr(click_error, "format_message", None)
        if format_message is None:
            raise
        if not format_message().strip():  # `cnnlab` alone: the help is the answer
            click_error.show()  # type: ignore[attr-defined]
            return getattr(click_error, "exit_code", 2)
        # One line, as for a CnnlabError, instead of click's usage block (typer vendors click,
        # so its error classes are matched by what they have, not by their module).
        command = _command_of(getattr(click_error, "ctx", None))
        message = " ".join(format_message().split())
        typer.secho(f"error: {message} (`{command} --help`)", fg=typer.colors.RED, err=True)
        return getattr(click_error, "exit_code", 2)
    # With standalone_mode=False click returns typer.Exit's code, or the command's return value.
    return result if isinstance(result, int) else 0


def _command_of(context: object) -> str:
    """'cnnlab train' for a context of `train`, whatever name the program was started by."""
    names = []
    while context is not None and getattr(context, "parent", None) is not None:
        names.append(context.info_name)  # type: ignore[attr-defined]
        context = context.parent  # type: ignore[attr-defined]
    return " ".join(["cnnlab", *reversed(names)])


if __name__ == "__main__":
    sys.exit(main())
