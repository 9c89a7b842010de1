"""`cnnlab data list|fetch|verify`: the dataset registry, downloads, and checks of local copies."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from cnnlab import data, limits

DATA_DIR_HELP = (
    "Directory with the dataset files, looked for in DIR and then DIR/NAME/ "
    "(default: $CNNLAB_DATA_DIR, else the per-user cache)."
)
CHECK_WORDS = {
    "content SHA-256": "content SHA-256 matches",
    "archive MD5": "archive MD5 matches; no checksum of the content is published",
    "structure only": "structure checked; no checksum known",
    "file SHA-256": "file SHA-256 matches",
    "size only": "size matches; no checksum known",
    "decoded": "images decoded",
}


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the root app."""
    group = typer.Typer(
        help="Datasets: list the registry, download, verify local copies.",
        no_args_is_help=True,
    )
    group.command("list")(list_datasets)
    group.command("fetch")(fetch)
    group.command("verify")(verify)
    app.add_typer(group, name="data")


def list_datasets(
    data_dir: Path = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the registered datasets and whether their files are present."""
    directory = data.resolve_data_dir(data_dir)
    rows = [_list_row(info, directory) for info in data.list_datasets()]
    if as_json:
        payload = {"data_dir": str(directory), "datasets": rows, "sources": list(data.SOURCES)}
        typer.echo(json.dumps(payload, indent=2))
        return
    typer.echo(f"data dir: {directory}")
    typer.echo(f"{'name':<15}{'classes':>8}{'size':>10}{'mirrors':>9}  cached")
    for row in rows:
        typer.echo(
            f"{row['name']:<15}{row['classes']:>8}{row['size_mb']:>7.1f} MB"
            f"{row['mirrors']:>9}  {_cached_words(row, data_dir)}"
        )
    typer.echo("local sources (for --dataset and a study's dataset key):")
    for source in data.SOURCES:
        typer.echo(f"  {source}")


def _list_row(info: data.DatasetInfo, directory: Path) -> dict:
    local = data.inspect_local_copy(info, directory)
    return {
        "name": info.name,
        "description": info.description,
        "classes": info.classes,
        "size_mb": round(info.size / 1e6, 1),
        "mirrors": len(info.mirrors),
        "files": [str(path) if path else None for path in local.paths],
        "problem": local.problem,
    }


def _cached_words(row: dict, data_dir: Path | None) -> str:
    present = [path for path in row["files"] if path]
    if not present:
        return "no"
    if row["problem"]:
        # The same --data-dir, or the verify suggested would look in another directory.
        where = f" --data-dir {shlex.quote(str(data_dir))}" if data_dir is not None else ""
        return f"no: files found fail their check (see `cnnlab data verify {row['name']}{where}`)"
    if len(present) < len(row["files"]):
        return f"partly ({len(present)} of {len(row['files'])} files)"
    folders = sorted({str(Path(path).parent) for path in present})
    return f"yes ({', '.join(folders)})"


def fetch(
    name: str = typer.Argument(..., help="A registered dataset (see `cnnlab data list`)."),
    data_dir: Path = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    offline: bool = typer.Option(
        False, "--offline", help="Never download (also CNNLAB_OFFLINE=1); only check copies."
    ),
    timeout: float = typer.Option(data.DOWNLOAD_TIMEOUT_S, help="Seconds before a mirror is left."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Download a dataset's missing files (trying each mirror) and verify them all."""
    limits.check("timeout", timeout, what="--timeout")  # NaN passes typer's own range check
    report = None if as_json else (lambda line: typer.echo(line, err=True))
    fetched = data.fetch(name, data_dir=data_dir, offline=offline, timeout=timeout, report=report)
    if as_json:
        files = [{"name": f.name, "path": str(f.path), "url": f.url} for f in fetched]
        typer.echo(json.dumps({"name": name, "files": files}, indent=2))
        return
    for item in fetched:
        origin = f"downloaded from {item.url}" if item.url else "already present"
        typer.echo(f"valid  {item.path}  ({origin})")
    typer.echo(f"{name}: all {len(fetched)} files present and verified")


def verify(
    source: str = typer.Argument(
        ..., help="A registered dataset, idx:DIR, npz:FILE, cifar:DIR or folder:DIR."
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Check a dataset's files where they lie (never downloads) and describe what they hold."""
    checked = data.verify_dataset(source, data_dir=data_dir)
    dataset = checked.dataset
    if as_json:
        typer.echo(json.dumps(_verification_dict(checked), indent=2))
        return
    for item in checked.files:
        typer.echo(
            f"valid  {item.role:<12}  {item.path}  ({CHECK_WORDS.get(item.check, item.check)})"
        )
    typer.echo(f"{dataset.name}: {dataset.describe()}")
    if dataset.class_names:
        names = dataset.class_names
        more = f", ... ({len(names)} in all)" if len(names) > 12 else ""
        typer.echo(f"classes: {', '.join(names[:12])}{more}")


def _verification_dict(checked: data.Verification) -> dict:
    dataset = checked.dataset
    return {
        "name": dataset.name,
        "files": [
            {"role": f.role, "path": str(f.path), "check": f.check, "shape": list(f.shape)}
            for f in checked.files
        ],
        "train": len(dataset.train_images),
        "test": len(dataset.test_images),
        "image_shape": list(dataset.image_shape),
        "classes": dataset.classes,
        "class_names": list(dataset.class_names) if dataset.class_names else None,
    }
