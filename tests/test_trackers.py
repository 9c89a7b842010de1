"""Tracker exports read back with the trackers' own readers: TensorBoard events, MLflow runs."""

from __future__ import annotations

import pytest

from cnnlab import study
from cnnlab.cli import main
from cnnlab.trackers import TrackerError, export_tensorboard


def test_tensorboard_events_read_back_show_every_epoch_histograms_and_hparams(
    trained_study, tmp_path
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["export-logs", str(trained_study), "--tensorboard", str(out)]) == 0
    runs = study.study_runs(trained_study)
    for run in runs:
        events = EventAccumulator(str(out / run.model / f"seed-{run.seed}"), size_guidance={})
        events.Reload()
        scalars = events.Scalars("val_accuracy")
        assert [s.step for s in scalars] == [1, 2, 3, 4]
        assert [s.value for s in scalars] == pytest.approx([e.val_accuracy for e in run.epochs])
        histograms = events.Tags()["histograms"]
        assert any(tag.startswith("weights/") and tag.endswith("weight") for tag in histograms)
        assert 4 in {h.step for h in events.Histograms(histograms[0])}
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    # Exported again (a study still training), each run's steps are not doubled.
    export_tensorboard(trained_study, out)
    events = EventAccumulator(str(out / "conv" / "seed-0"), size_guidance={})
    events.Reload()
    assert [s.step for s in events.Scalars("loss")] == [1, 2, 3, 4]


def test_mlflow_local_store_holds_one_run_per_cnnlab_run(trained_study, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    # MLflow 3 keeps its file store only on request (sqlite:/// needs the full mlflow package).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export-logs", str(trained_study), "--mlflow", uri]) == 0
    assert main(["export-logs", str(trained_study), "--mlflow", uri]) == 0  # idempotent
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cnnlab trained")
    found = client.search_runs([experiment.experiment_id])
    runs = study.study_runs(trained_study)
    assert sorted(r.data.tags["cnnlab.run_key"] for r in found) == sorted(r.key for r in runs)
    one = next(r for r in found if r.data.tags["cnnlab.run_key"] == runs[0].key)
    history = client.get_metric_history(one.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert one.data.params["model"] == runs[0].model and one.info.status == "FINISHED"
    assert one.data.metrics["test_accuracy"] == pytest.approx(runs[0].test.accuracy)


def test_export_logs_without_a_destination_or_package_is_one_line(
    trained_study, capsys, monkeypatch
):
    assert main(["export-logs", str(trained_study)]) == 2
    assert "--tensorboard OUT and/or --mlflow URI" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(
        TrackerError, match=r"needs the mlflow package: pip install 'cnnlab\[mlflow\]'"
    ):
        from cnnlab.trackers import export_mlflow

        export_mlflow(trained_study, "file:/nowhere")


def test_tensorboard_gives_models_whose_names_share_a_directory_name_one_each(tmp_path, mnist_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    layers = 'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
    spec = tmp_path / "names.toml"
    spec.write_text(
        "".join(f'[[model]]\nname = "{name}"\noptimizer = "adam"\n{layers}' for name in NAMES)
        + "[training]\nepochs = 1\nvalidation = 0.25\n"
    )
    study.run_study(
        spec, directory=tmp_path / "s", data_dir=mnist_dir, train_limit=200, progress="quiet"
    )
    written = export_tensorboard(tmp_path / "s", tmp_path / "tb")
    assert len(set(written)) == len(NAMES)
    for run, run_dir in zip(study.study_runs(tmp_path / "s"), written, strict=True):
        events = EventAccumulator(str(run_dir), size_guidance={})
        events.Reload()
        assert [s.value for s in events.Scalars("test_accuracy")] == pytest.approx(
            [run.test.accuracy]
        )


NAMES = ("a/b", "a-b", "plain")


def test_mlflow_database_store_without_the_full_package_is_one_line_with_the_fix(
    trained_study, tmp_path
):
    pytest.importorskip("mlflow")
    import importlib.metadata

    try:
        importlib.metadata.distribution("mlflow")
        pytest.skip("the full mlflow package is installed: a sqlite store works")
    except importlib.metadata.PackageNotFoundError:
        pass
    from cnnlab.trackers import export_mlflow

    with pytest.raises(TrackerError, match=r"sqlite:/// store needs the full mlflow package"):
        export_mlflow(trained_study, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_tensorboard_hparams_session_status_follows_the_run(tmp_path, mnist_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    spec = tmp_path / "status.toml"
    spec.write_text(
        '[[model]]\nname = "exploding"\noptimizer = { name = "sgd", learning_rate = 1e6 }\n'
        'layers = ["flatten", { dense = 32, activation = "relu" }, '
        '{ dense = "classes", activation = "softmax" }]\n'
        '[[model]]\nname = "plain"\noptimizer = "adam"\n'
        'layers = ["flatten", { dense = "classes", activation = "softmax" }]\n'
        "[training]\nepochs = 1\nvalidation = 0.25\n"
    )
    study.run_study(
        spec, directory=tmp_path / "s", data_dir=mnist_dir, train_limit=300, progress="quiet"
    )
    statuses = {}
    written = export_tensorboard(tmp_path / "s", tmp_path / "tb")
    for run, run_dir in zip(study.study_runs(tmp_path / "s"), written, strict=True):
        events = EventAccumulator(str(run_dir), size_guidance={})
        events.Reload()
        content = events.PluginTagToContent("hparams")["_hparams_/session_end_info"]
        status = plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status
        statuses[run.status] = api_pb2.Status.Name(status)
    assert statuses == {"diverged": "STATUS_FAILURE", "done": "STATUS_SUCCESS"}
