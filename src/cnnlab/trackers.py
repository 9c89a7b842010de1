"""A study's runs in the trackers teams already use: TensorBoard event files and MLflow runs.

Both are written with the packages' own writers (optional extras: `pip install
'cnnlab[tensorboard]'`, `pip install 'cnnlab[mlflow]'`), from the results store, so a finished
study or one still training can be exported, again and again:

- TensorBoard (`export_tensorboard`): one log directory per run, `<model>/seed-<seed>` (the
  model's name as the report's plot files spell it, `slugs.unique_slugs`), with
  every epoch's scalars (step = epoch), a histogram of every weight tensor at each epoch whose
  checkpoint is kept (the last and the best), and the run's HParams (model, seed, training
  settings, grid factors; metrics test_accuracy and best_val_accuracy), so TensorBoard's HParams
  table and parallel-coordinates view work. A run's directory is written afresh each time.
- MLflow (`export_mlflow`): one experiment named after the study, one MLflow run per cnnlab run
  (tagged `cnnlab.run_key`), its parameters, per-epoch metrics and the report as an artifact.
  A run already exported as finished is left as it is; one exported while still training is
  replaced by its current state.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.checkpoint import CheckpointDamaged, load_best, load_epoch
from cnnlab.errors import CnnlabError
from cnnlab.slugs import unique_slugs
from cnnlab.store import RunRecord

EPOCH_SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_second")
HPARAM_METRICS = ("test_accuracy", "best_val_accuracy")
# Tracking URIs of MLflow's SQLAlchemy store, which mlflow-skinny cannot open.
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class TrackerError(CnnlabError):
    """A tracker export cannot run: its package is missing, or its destination is unusable."""


def export_tensorboard(directory: str | Path, output: str | Path) -> list[Path]:
    """Write the study's runs as TensorBoard event files under `output`; returns the run
    directories written (one per run)."""
    _need("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    root, runs = _study(directory)
    names = unique_slugs(list(dict.fromkeys(run.model for run in runs)))
    written = []
    for run in runs:
        run_dir = Path(output) / names[run.model] / f"seed-{run.seed}"
        _clear_events(run_dir)
        try:
            writer = SummaryWriter(log_dir=str(run_dir))
        except OSError as error:
            raise TrackerError(f"cannot write {run_dir}: {error.strerror or error}") from None
        with writer:
            _write_run_events(writer, run, root)
        written.append(run_dir)
    return written


def _write_run_events(writer: Any, run: RunRecord, root: Path) -> None:
    for record in run.epochs:
        for name in EPOCH_SCALARS:
            value = getattr(record, name)
            if value is not None:
                writer.add_scalar(name, value, global_step=record.epoch)
    for epoch, state in _kept_weights(root, run):
        for name, tensor in state.items():
            if tensor.is_floating_point() and tensor.numel() > 1:
                writer.add_histogram(f"weights/{name}", tensor.float(), global_step=epoch)
    metrics = {name: value for name, value in _summary_metrics(run).items() if value is not None}
    _write_hparams(writer, run, metrics)


# TensorBoard's HParams session status per run status: a diverged run is no success.
SESSION_STATUS = {
    "done": "STATUS_SUCCESS",
    "failed": "STATUS_FAILURE",
    "diverged": "STATUS_FAILURE",
    "pruned": "STATUS_UNKNOWN",  # stopped on purpose: TensorBoard has no word for it
}


def _write_hparams(writer: Any, run: RunRecord, metrics: dict[str, float]) -> None:
    """The run's HParams into its own event file, as `SummaryWriter.add_hparams` writes them,
    but with the session's real status (add_hparams calls every session a success)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    experiment, start, _ = hparams(hyperparameters(run), metrics)
    status = api_pb2.Status.Value(SESSION_STATUS.get(run.status, "STATUS_RUNNING"))
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    end = Summary(
        value=[
            Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin)
            )
        ]
    )
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)
    for name, value in metrics.items():
        writer.add_scalar(name, value)


def _kept_weights(root: Path, run: RunRecord) -> list[tuple[int, dict[str, Any]]]:
    """(epoch, model weights) of the run's kept checkpoints: its last epoch and its best."""
    run_dir = root / "runs" / run.key
    found: dict[int, dict[str, Any]] = {}
    try:
        last = load_epoch(run_dir, len(run.epochs)) if run.epochs else None
        best = load_best(run_dir)
    except CheckpointDamaged:
        return []  # histograms are a view; the scalars still export
    for checkpoint in (best, last):
        if checkpoint is not None:
            found[checkpoint.epoch] = checkpoint.model_state
    return sorted(found.items())


def hyperparameters(run: RunRecord) -> dict[str, Any]:
    """The run's settings as flat values (TensorBoard's HParams and MLflow's params)."""
    values: dict[str, Any] = {"model": run.model, "seed": run.seed, "dataset": run.dataset}
    optimizer = run.spec.get("optimizer", {})
    values["optimizer"] = optimizer.get("name", "")
    for name, value in optimizer.get("params", []):
        values[f"optimizer.{name}"] = value
    for name, value in run.training.items():
        values[name] = value
    for name, value in run.spec.get("factors", []):
        values[f"factor.{name}"] = value
    return {
        k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in values.items()
    }


def _summary_metrics(run: RunRecord) -> dict[str, float | None]:
    validated = [e.val_accuracy for e in run.epochs if e.val_accuracy is not None]
    return {
        "test_accuracy": run.test.accuracy if run.test else None,
        "best_val_accuracy": max(validated) if validated else None,
    }


def _clear_events(run_dir: Path) -> None:
    """Remove the event files an earlier export wrote here (so steps are not doubled)."""
    if run_dir.is_dir():
        for path in run_dir.glob("events.out.tfevents.*"):
            path.unlink()


# -- MLflow -----------------------------------------------------------------------------------


def export_mlflow(directory: str | Path, uri: str) -> list[str]:
    """Log the study's runs to the MLflow tracking store at `uri` (e.g. `file:./mlruns`, a
    server's address); returns the MLflow run ids, one per cnnlab run."""
    _need("mlflow", "mlflow")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    root, runs = _study(directory)
    report = root / "report" / "report.html"
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = _experiment(client, _study_name(root))
        return [_mlflow_run(client, experiment, run, report) for run in runs]
    except (MlflowException, ImportError) as error:  # a store it refuses, a backend's package
        raise TrackerError(f"MLflow at {uri}: {_mlflow_refusal(uri, error)}") from None


def _mlflow_refusal(uri: str, error: Exception) -> str:
    """MLflow's reason in one line; for a database URI that mlflow-skinny (the extra) cannot
    open, the fix, where MLflow itself speaks of its model registry."""
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException

    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in DATABASE_SCHEMES and isinstance(error, UnsupportedModelRegistryStoreURIException):
        return (
            f"a {scheme}:/// store needs the full mlflow package (pip install mlflow); the "
            "cnnlab[mlflow] extra is mlflow-skinny, the client alone: give a tracking server's "
            "http:// address, or a file: store with MLFLOW_ALLOW_FILE_STORE=true"
        )
    return " ".join(str(error).split())


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    return client.create_experiment(name)


def _mlflow_run(client: Any, experiment: str, run: RunRecord, report: Path) -> str:
    from mlflow.entities import Metric, Param, RunTag

    earlier = client.search_runs([experiment], filter_string=f"tags.`cnnlab.run_key` = '{run.key}'")
    for old in earlier:
        if old.info.status == "FINISHED" and run.status == "done":
            return old.info.run_id  # exported when it was done: nothing new to say
        client.delete_run(old.info.run_id)
    tags = {
        "cnnlab.run_key": run.key,
        "cnnlab.status": run.status,
        "mlflow.runName": f"{run.model} seed {run.seed}",
    }
    created = client.create_run(experiment, run_name=f"{run.model} seed {run.seed}", tags=tags)
    run_id = created.info.run_id
    start = int((run.started_at or run.created_at) * 1000)
    metrics = [
        Metric(name, float(getattr(e, name)), start + e.epoch, e.epoch)
        for e in run.epochs
        for name in EPOCH_SCALARS
        if getattr(e, name) is not None
    ]
    metrics += [
        Metric(name, float(value), start, len(run.epochs))
        for name, value in _summary_metrics(run).items()
        if value is not None
    ]
    params = [Param(k, str(v)[:500]) for k, v in hyperparameters(run).items()]
    for chunk in range(0, max(len(metrics), 1), 1000):  # MLflow's log_batch limit
        client.log_batch(
            run_id, metrics=metrics[chunk : chunk + 1000], params=params if chunk == 0 else []
        )
    client.log_batch(run_id, tags=[RunTag("cnnlab.reason", run.reason or "")])
    if report.is_file():
        client.log_artifact(run_id, str(report))
    # MLflow's KILLED: stopped on purpose before its end, as a pruned run was (RunStatus).
    status = {"done": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "pruned": "KILLED"}
    status = status.get(run.status)
    client.set_terminated(run_id, status=status or "RUNNING")
    return run_id


# -- shared ------------------------------------------------------------------------------------


def _study(directory: str | Path) -> tuple[Path, Sequence[RunRecord]]:
    from cnnlab.study import study_directory, study_runs

    root = study_directory(directory)
    return root, study_runs(root)


def _study_name(root: Path) -> str:
    from cnnlab.study import open_existing_store

    with open_existing_store(root) as store:
        info = store.get_study()
    return f"cnnlab {info.name if info else root.name}"


def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise TrackerError(f"this export needs the {module} package: pip install 'cnnlab[{extra}]'")
