"""`cnnlab run STUDY`, `cnnlab status DIR`, `cnnlab runs DIR`: thin over `cnnlab.study`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cnnlab import limits
from cnnlab.cli import recipe
from cnnlab.cli.interrupts import sigterm_as_interrupt
from cnnlab.errors import SpecError
from cnnlab.store import RunRecord

if TYPE_CHECKING:
    from cnnlab import study
    from cnnlab.rungs import Halving
    from cnnlab.sequential import Decisions


def register(app: typer.Typer) -> None:
    """Add `run`, `status` and `runs` to the root app."""
    app.command("run")(run_command)
    app.command("status")(status_command)
    app.command("runs")(runs_command)


def run_command(
    study_ref: str = typer.Argument(..., metavar="STUDY", help="A preset (seed) or a study file."),
    seeds: int = typer.Option(None, "--seeds", **limits.flag("seeds"), help="Train seeds 0..N-1."),
    epochs: int = typer.Option(None, "--epochs", **limits.flag("epochs"), help="Epochs per run."),
    dataset: str = typer.Option(
        None,
        "--dataset",
        help="Dataset name, idx:DIR, npz:FILE, cifar:DIR or folder:DIR[?options].",
    ),
    models: str = typer.Option(None, "--models", help="Only these models: A,B,... (by name)."),
    train_limit: int = typer.Option(
        None, "--train-limit", **limits.flag("train_limit"), help="Train on the first N images."
    ),
    precision: str = typer.Option(
        None, "--precision", help="fp32, or bf16 (autocast; the fast mode)."
    ),
    augment: list[str] = recipe.augment_option(),
    schedule: str = recipe.schedule_option(),
    early_stopping: str = recipe.early_stopping_option(),
    plateau: str = recipe.plateau_option(),
    label_smoothing: float = recipe.label_smoothing_option(),
    normalize: str = recipe.normalize_option(),
    directory: Path = typer.Option(
        None, "--dir", help="The study directory (default: studies/<study name>)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    jobs: int = typer.Option(
        None,
        "--jobs",
        **limits.flag("jobs"),
        help="Runs at once (local: processes; ray: tasks in flight).",
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        **limits.flag("threads"),
        help="CPU threads per run (default: cores / jobs).",
    ),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (--executor ray)."),
    gpus_per_run: float = typer.Option(
        None, "--gpus-per-run", help="Ray: a GPU share per run (0.25: four runs per GPU)."
    ),
    shared_dir: str = typer.Option(
        "auto",
        "--shared-dir",
        help="Ray: is --dir on a disk all nodes share? auto (detected), yes, or no (checkpoints "
        "travel through the driver).",
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the dataset's files are."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Train failed and diverged runs again."
    ),
    stack_seeds: bool = typer.Option(
        False,
        "--stack-seeds",
        help="Train each model's seeds together as one computation (pays on a GPU).",
    ),
    until_decided: bool = typer.Option(
        False,
        "--until-decided",
        help="Add seeds only to models whose place is still open (docs/sequential.md).",
    ),
    min_seeds: int = typer.Option(None, "--min-seeds", help="--until-decided: first look (2)."),
    max_seeds: int = typer.Option(None, "--max-seeds", help="--until-decided: at most (10)."),
    margin: float = typer.Option(
        None, "--margin", help="--until-decided: equal within this many accuracy points (0.1)."
    ),
    budget: str = typer.Option(None, "--budget", help="--until-decided: e.g. 500runs or 2h."),
    prune: str = typer.Option(
        None,
        "--prune",
        help="halving: stop the models that rank low at epoch rungs (docs/sequential.md); "
        "none: not this time.",
    ),
    prune_factor: int = typer.Option(
        None, "--prune-factor", help="--prune halving: the top 1/F go on at each rung (3)."
    ),
    prune_min_epochs: int = typer.Option(
        None,
        "--prune-min-epochs",
        help="--prune halving: the first rung's epoch (default: epochs // factor, at least 1).",
    ),
    prune_metric: str = typer.Option(
        None, "--prune-metric", help="--prune halving: val_accuracy (default) or val_loss."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON at the end."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip building the HTML report."),
) -> None:
    """Train every run of STUDY (models x seeds) that is not finished; resumable."""
    from cnnlab import report, rungs, study  # here, not at the top: `cnnlab --help` loads no torch
    from cnnlab.devices import usable_cores

    sequential = {"until_decided": until_decided, "min_seeds": min_seeds, "max_seeds": max_seeds}
    sequential |= {"margin_points": margin, "budget": budget}
    flags = recipe.RecipeFlags(
        augment=tuple(augment or ()),
        learning_rate_schedule=schedule,
        early_stopping=early_stopping,
        reduce_lr_on_plateau=plateau,
        label_smoothing=label_smoothing,
        normalize=normalize,
    )
    pruning = {"method": prune, "factor": prune_factor, "min_epochs": prune_min_epochs}
    pruning |= {"metric": prune_metric}
    with _notes_on_stderr(), sigterm_as_interrupt(), _interrupt_message(directory, study_ref):
        outcome, decisions = _train(
            study_ref,
            sequential,
            flags,
            pruning,
            directory=directory,
            epochs=epochs,
            dataset=dataset,
            models=models,
            train_limit=train_limit,
            precision=precision,
            device=device,
            jobs=jobs,
            threads=threads,
            executor=executor,
            address=address,
            gpus_per_run=gpus_per_run,
            shared_dir=parse_shared_dir(shared_dir),
            progress="quiet" if quiet or as_json else "auto",
            data_dir=data_dir,
            retry_failed=retry_failed,
            stack_seeds=stack_seeds,
            seeds=seeds,
        )
    if as_json:
        typer.echo(json.dumps([study.run_row(run) for run in outcome.runs], indent=2))
    else:
        print_outcome(outcome)
        if isinstance(decisions, rungs.Halving):
            print_halving(decisions)
        elif decisions is not None:
            print_decisions(decisions)
    if not no_report and not (
        outcome.nothing_to_do and report.report_is_current(outcome.directory)
    ):
        page = report.build_report(outcome.directory, data_dir=data_dir, processes=usable_cores())
        typer.echo(f"report: {page}", err=as_json)
    if any(run.status == "failed" for run in outcome.runs):
        raise typer.Exit(1)


def parse_shared_dir(text: str) -> bool | None:
    """--shared-dir: auto -> None (detected), yes -> True, no -> False."""
    from cnnlab.errors import SpecError

    choices = {"auto": None, "yes": True, "no": False}
    if text not in choices:
        raise SpecError(f"--shared-dir must be auto, yes or no, got {text!r}")
    return choices[text]


def print_outcome(outcome: study.StudyOutcome) -> None:
    """'nothing to do' when every run had ended before; else a table per model."""
    from cnnlab import study

    counts = _count_line(outcome.counts)
    if outcome.nothing_to_do:
        typer.echo(f"nothing to do: {counts} (in {outcome.directory})")
        return
    console = _console()
    console.print(model_table(outcome.name, outcome.runs))
    for run in outcome.runs:
        if run.status in ("failed", "diverged"):
            console.print(study.describe_run(run), markup=False, highlight=False)
    typer.echo(f"{counts} in {outcome.seconds:.1f} s; results in {outcome.directory}")
    if not outcome.complete:
        typer.echo("runs still pending or running elsewhere: `cnnlab status` follows them")


def _train(
    study_ref: str,
    sequential: dict[str, Any],
    flags: recipe.RecipeFlags,
    pruning: dict[str, Any],
    **options: Any,
) -> tuple[study.StudyOutcome, Decisions | Halving | None]:
    """`run_study`, the sequential driver with --until-decided or a study file's
    `seeds = { min, max }`, or the halving driver with --prune halving or a study file's
    `prune = { ... }` (every setting checked before anything trains). The recipe flags
    replace the study file's [training] keys of the same names."""
    from cnnlab import halving, study, until_decided
    from cnnlab.spec import load_study

    wanted = sequential.pop("until_decided")
    if wanted and options["seeds"] is not None:
        raise SpecError(
            "--until-decided chooses the seeds itself: give --min-seeds/--max-seeds, not --seeds"
        )
    spec = load_study(study_ref)
    # A study file's `seeds = { min, max }` runs until decided, so its options apply without
    # the flag (`--max-seeds 10` extends such a study).
    sequentially = wanted or (spec.seed_range is not None and options["seeds"] is None)
    named = [name for name, value in sequential.items() if value is not None]
    if not sequentially and named:
        option = "--" + named[0].replace("_points", "").replace("_", "-")
        raise SpecError(
            f"{option} belongs to --until-decided; add --until-decided (or give the study file "
            "seeds = { min, max })"
        )
    spec = dataclasses.replace(spec, training=recipe.apply_recipe_flags(spec.training, flags))
    pruned = halving.resolve_settings(spec.prune, **pruning)
    if pruned is not None and sequentially:
        raise SpecError(
            "--prune halving and --until-decided (or seeds = { min, max }) do not combine: "
            "halving compares models at a fixed number of seeds; give --seeds N, or leave "
            "out --prune (--prune none overrides a study file's prune)"
        )
    if pruned is not None:
        found = halving.run_halving(spec, settings=pruned, **options)
        return found.study, found.halving
    if not sequentially:
        return study.run_study(spec, **options), None
    settings = until_decided.resolve_settings(spec.seed_range, **sequential)
    options.pop("seeds")
    result = until_decided.run_until_decided(spec, settings=settings, **options)
    return result.study, result.decisions


def print_decisions(decisions: Decisions) -> None:
    """Each model's decision with its seeds and why, then the runs spent."""
    console = _console()
    console.print(decisions_table(decisions))
    budget = decisions.settings.budget
    spent = f"{decisions.runs_spent} runs" + (
        f" of a budget of {budget}" if budget.runs or budget.seconds else ""
    )
    state = "every model decided or stopped" if decisions.finished else "still open"
    typer.echo(f"until decided: {spent}; {state}")


def print_halving(found: Halving) -> None:
    """Each rung: the models ranked by the figure, which went on and which were pruned."""
    console = _console()
    console.print(halving_table(found))
    left = found.rungs[-1].kept if found.rungs else found.models
    rungs = "1 rung" if len(found.rungs) == 1 else f"{len(found.rungs)} rungs"
    models = "1 model goes" if len(left) == 1 else f"{len(left)} models go"
    typer.echo(
        f"successive halving ({found.settings.describe(found.epochs)}): {rungs} decided; "
        f"{models} on to the last epoch"
    )


def halving_table(found: Halving) -> Table:
    from cnnlab.rungs import METRIC_WORDS

    table = Table(title="successive halving")
    for column in ("rung", "epoch", "model", METRIC_WORDS[found.settings.metric], "seeds", "then"):
        table.add_column(column, justify="left" if column in ("model", "then") else "right")
    for rung in found.rungs:
        for place in rung.ranked:
            then = "goes on" if place.model in rung.kept else "pruned"
            cells = (rung.number, rung.epoch, place.model, f"{place.value:.4f}", place.seeds, then)
            table.add_row(*(str(cell) for cell in cells))
    return table


def decisions_table(decisions: Decisions) -> Table:
    table = Table(title="until decided")
    for column in ("model", "seeds", "decision", "why"):
        table.add_column(column, justify="right" if column == "seeds" else "left")
    for m in decisions.models:
        table.add_row(m.model, str(m.seeds), m.state, m.reason)
    return table


def model_table(name: str, runs: Sequence[RunRecord]) -> Table:
    """One row per model: its runs, test accuracy over seeds (mean and spread), size, time."""
    table = Table(title=f"study {name}")
    for column in ("model", "done", "test accuracy", "sd", "params", "s/run"):
        table.add_column(column, justify="left" if column == "model" else "right")
    by_model: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    for model, group in by_model.items():
        accuracies = [run.test.accuracy for run in group if run.status == "done" and run.test]
        seconds = [run.seconds for run in group if run.seconds is not None]
        pruned = sum(run.status == "pruned" for run in group)
        table.add_row(
            model,
            f"{len(accuracies)}/{len(group)}" + (f" ({pruned} pruned)" if pruned else ""),
            f"{statistics.fmean(accuracies):.4f}" if accuracies else "-",
            f"{statistics.stdev(accuracies):.4f}" if len(accuracies) > 1 else "-",
            f"{group[0].params:,}" if group[0].params else "-",
            f"{statistics.fmean(seconds):.1f}" if seconds else "-",
        )
    return table


def status_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    check: bool = typer.Option(
        False, "--check", help="Check every page of the store (PRAGMA integrity_check)."
    ),
) -> None:
    """Runs by state, epochs done of all, and the time left (from measured epochs)."""
    from cnnlab import halving, study, until_decided

    if check:
        print_check(directory, study.check_store(directory), to_stderr=as_json)
    status = study.study_status(directory)
    decisions = until_decided.study_decisions(directory)
    pruning = halving.study_halving(directory)
    if as_json:
        shown = status.to_dict()
        if decisions is not None:
            shown["until_decided"] = decisions.to_dict()
        if pruning is not None:
            shown["halving"] = pruning.to_dict()
        typer.echo(json.dumps(shown, indent=2))
        return
    typer.echo(f"study {status.name} ({status.directory})")
    typer.echo(f"runs: {_count_line(status.counts, of_all=True)}")
    share = status.epochs_done / status.epochs_total if status.epochs_total else 1.0
    left = sum(status.counts[s] for s in ("pending", "running"))
    eta = (
        "time left unknown until an epoch is timed"
        if status.eta_seconds is None
        else f"about {_duration(status.eta_seconds)} left"
    )
    typer.echo(
        f"epochs: {status.epochs_done}/{status.epochs_total} ({share:.0%})"
        + (f", {eta}" if left else "")
    )
    if left and not status.running:
        typer.echo("nothing trains now: run the same `cnnlab run` command to go on")
    for run in status.running:
        where = run.worker.id if run.worker else "?"
        planned = run.training.get("epochs", "?")
        typer.echo(
            f"training: {run.model} seed {run.seed}, epoch {len(run.epochs)}/{planned} ({where})"
        )
    if status.other_runs:
        typer.echo(
            f"{status.other_runs} older runs (other specs or settings): "
            f"`cnnlab runs {status.directory} --all`"
        )
    if decisions is not None:
        print_decisions(decisions)
    if pruning is not None:
        print_halving(pruning)


def print_check(directory: Path, problems: list[str], *, to_stderr: bool = False) -> None:
    """'store ok', or each problem SQLite found and exit code 1. to_stderr: --json owns stdout."""
    if not problems:
        typer.echo(f"store ok: {directory} passed SQLite's integrity check", err=to_stderr)
        return
    for problem in problems:
        typer.echo(f"store damaged: {problem}", err=True)
    raise typer.Exit(1)


def runs_command(
    directory: Path = typer.Argument(..., metavar="DIR", help="A study directory."),
    all_runs: bool = typer.Option(False, "--all", help="Also runs of earlier specs or settings."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    epochs: bool = typer.Option(False, "--epochs", help="One row per run and epoch."),
    table_format: str = typer.Option(
        None,
        "--format",
        help="csv, json or parquet: the tidy table (cnnlab.results); default: -o's suffix, csv.",
    ),
    output: Path = typer.Option(None, "-o", "--output", help="Write the table to this file."),
) -> None:
    """A table of the study's runs with their metrics; --format writes the tidy tables."""
    from cnnlab import study

    if as_json and table_format not in (None, "json"):
        raise SpecError(f"--json and --format {table_format} ask for two formats; give one")
    if table_format is not None or epochs or output is not None:
        suffix = output.suffix.lstrip(".") if output is not None else ""
        by_suffix = suffix if suffix in ("csv", "json", "parquet") else "csv"
        chosen = table_format or ("json" if as_json else by_suffix)
        _write_results(directory, all_runs, epochs, chosen, output)
        return
    runs = study.study_runs(directory, all_runs=all_runs)
    rows = [study.run_row(run) for run in runs]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    columns: tuple[str, ...] = ("model", "seed", "status", "epochs", "test_accuracy", "test_loss")
    if any(len({rate for rate in row["learning_rate"] if rate is not None}) > 1 for row in rows):
        columns += ("learning_rate",)  # a schedule or ReduceLROnPlateau changed it: the last
    columns += ("seconds", "key")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(*(_cell(row, column) for column in columns))
    console = _console()
    console.print(table)
    for run in runs:
        if run.reason:
            console.print(study.describe_run(run), markup=False, highlight=False)


def _write_results(
    directory: Path, all_runs: bool, epochs: bool, table_format: str, output: Path | None
) -> None:
    from cnnlab import tidy

    if table_format not in tidy.TABLE_FORMATS:  # before reading the store
        tidy.write_table([], table_format, output)
    tables = tidy.results(directory, all_runs=all_runs, frames=False)
    text = tidy.write_table(tables.epochs if epochs else tables.runs, table_format, output)
    if text is not None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)


def _console() -> Console:
    """Rich's console; as wide as tables need when piped (rich assumes 80 columns there)."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _cell(row: dict, column: str) -> str:
    value = row[column]
    if column == "epochs":
        return f"{value}/{row['epochs_planned']}"
    if value is None:
        return "-"
    if column in ("test_accuracy", "test_loss"):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}"
    if column == "learning_rate":
        last = next((rate for rate in reversed(value) if rate is not None), None)
        return "-" if last is None else f"{last:.3g}"
    return str(value)


def _count_line(counts: dict[str, int], *, of_all: bool = False) -> str:
    """'26 runs done', or '20 done, 1 failed, 5 pending' (states without runs left out);
    of_all: '20 of 26 done, 1 failed, 5 pending', with the done count always there."""
    if not of_all and {s for s, n in counts.items() if n} == {"done"}:
        return f"{counts['done']} runs done"
    order = ("failed", "diverged", "pruned", "running", "pending")
    others = [f"{counts[s]} {s}" for s in order if counts[s]]
    done = (
        f"{counts['done']} of {sum(counts.values())} done" if of_all else f"{counts['done']} done"
    )
    return ", ".join([done, *others] if counts["done"] or of_all else others)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


@contextlib.contextmanager
def _notes_on_stderr() -> Iterator[None]:
    """The study's warnings (damaged checkpoints, lost claims) as 'note:' lines."""
    logger = logging.getLogger("cnnlab.study")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def _interrupt_message(directory: Path | None, study_ref: str) -> Iterator[None]:
    """Ctrl-C: say what was kept and how to resume; exit code 130 like a shell."""
    try:
        yield
    except KeyboardInterrupt:
        if directory is not None and not directory.exists():
            message = "interrupted before anything was trained; nothing to keep"
        else:
            where = directory or "the study directory"
            message = (
                f"interrupted: finished runs are kept in {where}, the current ones resume from "
                f"their last epoch: run the same command again (cnnlab run {study_ref} ...)"
            )
        typer.secho(message, fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
