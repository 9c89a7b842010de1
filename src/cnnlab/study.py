"""A study: models x seeds on one dataset, expanded into runs and trained into a results store.

`run_study` is the library call (`cnnlab run` is a thin layer over it). Everything is checked
before anything trains: the specs against the dataset's image shape, the settings, the study
directory and the disk space its checkpoints need. Each run's key hashes what determines its
result (resolved spec, seed, dataset content, training settings), so a study run again skips
what is done, resumes what was interrupted, and re-runs only the models that were edited.

A study directory holds `store.sqlite` (the results) and `runs/<run-key>/` (checkpoints).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from cnnlab.augment import check_augmentation
from cnnlab.data import Dataset, absolute_source, load_dataset
from cnnlab.devices import check_fits_in_memory
from cnnlab.errors import SpecError
from cnnlab.executors import (
    RunTask,
    StudyError,
    WorkerSetup,
    dataset_identity,
    make_executor,
    threads_per_job,
)
from cnnlab.grid import did_you_mean
from cnnlab.optim import resolve_optimizer
from cnnlab.rungs import expected_epochs, halving_of, reached
from cnnlab.shapes import check_classifier_output, infer_shapes
from cnnlab.spec import (
    PRECISIONS,
    ModelSpec,
    OptimizerSpec,
    StudySpec,
    TrainingSpec,
    load_study,
    parse_seeds,
)
from cnnlab.store import (
    FINAL_STATUSES,
    STALE_AFTER_SECONDS,
    STORE_FILENAME,
    NewRun,
    RunRecord,
    Store,
    StudyInfo,
    canonical_json,
    claim_is_stale,
    count_statuses,
    open_store,
)
from cnnlab.studydir import (  # study_directory: re-exported for cnnlab.trained and trackers
    default_directory,
    open_existing_store,
    study_directory,  # noqa: F401
)
from cnnlab.summary import summarize
from cnnlab.tidy import run_row  # re-exported: `cnnlab run --json` and status rows

RUNS_DIRNAME = "runs"
# A checkpoint holds the weights and up to two optimizer buffers of the same size (Adam's m and
# v, Adadelta's two accumulators), in float32.
CHECKPOINT_BYTES_PER_PARAM = 3 * 4
STORE_BYTES_PER_RUN = 64 * 1024  # test predictions (10 kB for MNIST), epochs and JSON, rounded up
DISK_MARGIN = 1.25  # room for a larger estimate than ours: other files, filesystem overhead
WATCH_SECONDS = 0.5  # how often the progress display reads the store

ProgressMode = Literal["auto", "bar", "lines", "quiet"]

__all__ = [
    "StudyError",
    "StudyOutcome",
    "StudyPlan",
    "StudyStatus",
    "plan_study",
    "run_study",
    "study_runs",
    "study_status",
]


@dataclass(frozen=True, eq=False)
class StudyPlan:
    """A study after overrides, checked against its dataset, as the runs to train."""

    study: StudySpec
    directory: Path
    dataset: Dataset
    dataset_id: str
    data_dir: str | None
    training: TrainingSpec
    tasks: tuple[RunTask, ...]
    model_subset: bool = False  # --models picked some of the study's models

    @property
    def keys(self) -> list[str]:
        return [task.key for task in self.tasks]

    def new_runs(self) -> list[NewRun]:
        return [
            NewRun(
                model=task.model.name,
                seed=task.seed,
                dataset=self.dataset_id,
                spec=task.model,
                training=self.training.identity(),
            )
            for task in self.tasks
        ]


@dataclass(frozen=True)
class StudyOutcome:
    """What a study's runs hold after `run_study`, in plan order."""

    name: str
    directory: Path
    runs: tuple[RunRecord, ...]
    finished: tuple[str, ...]  # keys of the runs that reached an end in this call
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.runs)

    @property
    def complete(self) -> bool:
        """Every run ended (done, failed, diverged or pruned)."""
        return all(run.status in FINAL_STATUSES for run in self.runs)

    def reached_epoch(self, epoch: int) -> bool:
        """Every run ended or holds `epoch` epochs (what `until_epoch=epoch` trains to)."""
        return all(reached(run, epoch) for run in self.runs)

    @property
    def nothing_to_do(self) -> bool:
        return not self.finished and self.complete


def run_study(
    study: StudySpec | str | Path,
    *,
    directory: str | Path | None = None,
    seeds: int | Sequence[int] | None = None,
    epochs: int | None = None,
    dataset: str | None = None,
    models: str | Sequence[str] | None = None,
    train_limit: int | None = None,
    precision: str | None = None,
    normalize: str | None = None,
    training: TrainingSpec | None = None,
    device: str | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
    gpus_per_run: float | None = None,
    shared_dir: bool | None = None,
    progress: ProgressMode | StudyDisplay = "auto",
    data_dir: str | Path | None = None,
    retry_failed: bool = False,
    stack_seeds: bool = False,
    annotations: Mapping[str, Any] | None = None,
    until_epoch: int | None = None,
) -> StudyOutcome:
    """Train every run of `study` that is not finished, into the store in its directory.

    study: a preset (`seed`), a study file or a StudySpec. seeds: a count N (seeds 0..N-1) or
    the seeds. models: names (or the part after the last "/") to train a subset. directory:
    default `studies/<study name>`. precision: "bf16" for the fast mode (autocast). normalize:
    "per-channel" to standardise inputs with the training part's mean and std. training:
    a TrainingSpec that replaces the study's [training] (epochs, precision, normalize and
    train_limit given here still apply on top). jobs: runs
    at once (local: separate processes; Ray: tasks in flight, default the cluster's CPUs).
    threads: CPU threads per run (default: the cores split between jobs). retry_failed: train
    failed and diverged runs again. stack_seeds: train a model's seeds together as one stacked
    computation (`cnnlab.train_seeds`; pays on a GPU, not on a CPU that one seed fills; local
    executor only). Ray only: address (HOST:PORT of a running cluster; default a local one),
    gpus_per_run (a GPU share, 0.25: four runs per GPU), shared_dir (whether every node sees
    `directory`; None: detected; False: checkpoints travel through the driver).
    annotations: extra entries for the study's stored settings (the `--until-decided`
    procedure's, see `cnnlab.until_decided`). until_epoch: train each run only up to that
    epoch and leave it pending, to resume later (`--prune halving`'s rungs, `cnnlab.halving`);
    runs that hold it already are not touched.
    Ctrl-C propagates as KeyboardInterrupt after the current runs are given back.
    """
    started = time.perf_counter()
    if stack_seeds and executor != "local":  # before the data is loaded or Ray started
        raise StudyError(
            f"stacked seeds train in local workers; the {executor} executor sends each run "
            "as its own task: leave out --stack-seeds or use --executor local"
        )
    plan = plan_study(
        study,
        directory=directory,
        seeds=seeds,
        epochs=epochs,
        dataset=dataset,
        models=models,
        train_limit=train_limit,
        precision=precision,
        normalize=normalize,
        training=training,
        data_dir=data_dir,
    )
    runner = make_executor(
        executor, jobs=jobs, address=address, gpus_per_run=gpus_per_run, shared_dir=shared_dir
    )
    setup = _worker_setup(plan, device, threads or threads_per_job(jobs or 1))
    setup = dataclasses.replace(setup, stack_seeds=stack_seeds, until_epoch=until_epoch)
    display = make_display(progress)
    with open_study_store(plan.directory) as store:
        setup = dataclasses.replace(setup, store_url=store.url)
        before = register_runs(
            store, plan, retry_failed=retry_failed, annotations=annotations or {}
        )
        todo = [run for run in before if not reached(run, until_epoch)]
        if todo:
            check_disk_space(plan, todo, jobs or 1)
            display.start(plan, before)
            tasks = tasks_by_key(plan)
            try:
                with watching(store, plan.keys, display):
                    chosen = {run.key: tasks[run.key] for run in todo}
                    runner.execute(store, chosen, plan.dataset, setup)
            finally:
                display.close()
        after = store.list_runs(keys=plan.keys)
    return _outcome(plan, before, after, time.perf_counter() - started)


def _worker_setup(plan: StudyPlan, device: str | None, threads: int) -> WorkerSetup:
    return WorkerSetup(
        store_url="",
        dataset=plan.study.dataset,
        dataset_id=plan.dataset_id,
        data_dir=plan.data_dir,
        device=device,
        threads=threads,
    )


def _outcome(
    plan: StudyPlan, before: list[RunRecord], after: list[RunRecord], seconds: float
) -> StudyOutcome:
    ended_before = {run.key for run in before if run.status in FINAL_STATUSES}
    by_key = {run.key: run for run in after}
    runs = tuple(by_key[key] for key in plan.keys)
    finished = tuple(
        run.key for run in runs if run.status in FINAL_STATUSES and run.key not in ended_before
    )
    return StudyOutcome(plan.study.name, plan.directory, runs, finished, seconds)


# -- planning ----------------------------------------------------------------------------------


def plan_study(
    study: StudySpec | str | Path,
    *,
    directory: str | Path | None = None,
    seeds: int | Sequence[int] | None = None,
    epochs: int | None = None,
    dataset: str | None = None,
    models: str | Sequence[str] | None = None,
    train_limit: int | None = None,
    precision: str | None = None,
    normalize: str | None = None,
    training: TrainingSpec | None = None,
    data_dir: str | Path | None = None,
) -> StudyPlan:
    """Expand a study into runs (seed-major), checking every spec against the dataset."""
    spec = load_study(study) if isinstance(study, (str, Path)) else study
    if training is not None:
        spec = dataclasses.replace(spec, training=training)
    spec = apply_overrides(
        spec,
        seeds=seeds,
        epochs=epochs,
        dataset=dataset,
        models=models,
        precision=precision,
        normalize=normalize,
    )
    data = load_dataset(spec.dataset, data_dir=data_dir)
    training = (
        spec.training if train_limit is None else spec.training.replace(train_limit=train_limit)
    )
    check_training(training, data)
    resolved = [resolve_model(model, data) for model in spec.models]
    root = (Path(directory) if directory else default_directory(spec.name)).expanduser()
    root = root.absolute()
    tasks = expand_runs(resolved, spec.seeds, training, dataset_identity(data, spec.dataset), root)
    data_dir_text = None if data_dir is None else str(Path(data_dir).expanduser().absolute())
    return StudyPlan(
        spec,
        root,
        data,
        dataset_identity(data, spec.dataset),
        data_dir_text,
        training,
        tasks,
        model_subset=models is not None,
    )


def apply_overrides(
    study: StudySpec,
    *,
    seeds: int | Sequence[int] | None = None,
    epochs: int | None = None,
    dataset: str | None = None,
    models: str | Sequence[str] | None = None,
    precision: str | None = None,
    normalize: str | None = None,
) -> StudySpec:
    """The study with command-line overrides applied; they become part of each run's key."""
    changes: dict[str, Any] = {}
    training = study.training
    if seeds is not None:
        changes["seeds"] = parse_seeds(seeds)
    if epochs is not None:
        if epochs < 1:
            raise SpecError(f"--epochs must be at least 1, got {epochs}")
        training = dataclasses.replace(training, epochs=epochs)
    if precision is not None:
        if precision not in PRECISIONS:
            raise SpecError(f"--precision must be fp32 or bf16, got {precision!r}")
        training = dataclasses.replace(training, precision=precision)
    if normalize is not None:
        training = training.replace(normalize=normalize)  # checked, as in a study file
    if training != study.training:
        changes["training"] = training
    if dataset is not None:
        if not isinstance(dataset, str):
            raise SpecError(
                "dataset must name a dataset (mnist, idx:DIR or npz:FILE): a study loads it in "
                f"each worker itself; got {type(dataset).__name__}"
            )
        if not dataset.strip():
            raise SpecError('--dataset must name a dataset such as "mnist", got an empty name')
        changes["dataset"] = dataset
    if models is not None:
        changes["models"] = select_models(study.models, models)
    return dataclasses.replace(study, **changes)


def driven_study(
    study: StudySpec | str | Path,
    models: str | Sequence[str] | None,
    directory: str | Path | None,
) -> tuple[StudySpec, list[str], Path]:
    """What a driver over `run_study` (until-decided, halving) works on: the spec, the names
    of the models chosen, and the study directory, absolute."""
    spec = load_study(study) if isinstance(study, (str, Path)) else study
    names = [m.name for m in (select_models(spec.models, models) if models else spec.models)]
    root = (Path(directory) if directory else default_directory(spec.name)).expanduser().absolute()
    return spec, names, root


def drivers_outcome(
    spec: StudySpec, root: Path, names: Sequence[str], finished: Sequence[str], seconds: float
) -> StudyOutcome:
    """A driver's calls of `run_study` as one outcome: the chosen models' runs as stored now,
    the runs finished over all the calls."""
    runs = tuple(run for run in study_runs(root) if run.model in names) if root.exists() else ()
    return StudyOutcome(spec.name, root, runs, tuple(finished), seconds)


def select_models(
    models: tuple[ModelSpec, ...], names: str | Sequence[str]
) -> tuple[ModelSpec, ...]:
    """The models named, in the order given; a name may omit its prefix ("model-3")."""
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    wanted = [name for name in wanted if name]
    if not wanted:
        raise SpecError("--models names no model; give names separated by commas")
    chosen = [_find_model(models, name) for name in wanted]
    if len({model.name for model in chosen}) != len(chosen):
        raise SpecError(f"--models names a model twice: {', '.join(wanted)}")
    return tuple(chosen)


def _find_model(models: tuple[ModelSpec, ...], name: str) -> ModelSpec:
    by_name = {model.name: model for model in models}
    if name in by_name:
        return by_name[name]
    short = [model for model in models if model.name.rsplit("/", 1)[-1] == name]
    if len(short) == 1:
        return short[0]
    names = list(by_name)
    hint = did_you_mean(name, names + [n.rsplit("/", 1)[-1] for n in names])
    raise SpecError(f"--models: the study has no model {name!r}{hint} (it has {', '.join(names)})")


def check_training(training: TrainingSpec, dataset: Dataset) -> None:
    """Settings the dataset cannot satisfy, refused before anything trains."""
    check_augmentation(training.augment, dataset.image_shape)
    available = len(dataset.train_labels)
    limit = training.train_limit
    if limit is not None and not 1 <= limit <= available:
        raise SpecError(
            f"--train-limit must be between 1 and the {available} training images of "
            f"{dataset.name}, got {limit}"
        )
    count = limit or available
    if training.validation != "test":
        # train.prepare_data splits as Keras does: floor(n * (1 - validation)) images train.
        kept = int(count * (1.0 - float(training.validation)))
        if kept == 0 or (float(training.validation) > 0 and kept == count):
            raise SpecError(
                f"validation={training.validation} of {count} training images leaves {kept} to "
                "train on and the rest to validate; use more images (--train-limit) or another "
                "validation fraction"
            )


def resolve_model(model: ModelSpec, dataset: Dataset) -> tuple[ModelSpec, int, int]:
    """The model with every optimizer setting spelled out, its parameter count and FLOPs.

    Spelling out Keras's defaults puts them in the run key: a changed default re-runs the model
    instead of mixing old results with new ones.
    """
    try:
        optimizer = resolve_optimizer(model.optimizer)
        shapes = infer_shapes(
            model.layers, dataset.image_shape, dataset.classes, model.layer_places
        )
        check_classifier_output(shapes, dataset.classes)
        summary = summarize(model, dataset.image_shape, dataset.classes)
        check_fits_in_memory(model.name, summary.total_params)
    except SpecError as error:
        shape = "x".join(map(str, dataset.image_shape))
        raise SpecError(
            f"model {model.name!r} on {dataset.name} ({shape} images): {error}"
        ) from None
    resolved = dataclasses.replace(model, optimizer=OptimizerSpec(optimizer.name, optimizer.params))
    return resolved, summary.total_params, summary.flops


def expand_runs(
    models: list[tuple[ModelSpec, int, int]],
    seeds: tuple[int, ...],
    training: TrainingSpec,
    dataset_id: str,
    directory: Path,
) -> tuple[RunTask, ...]:
    """Seed-major: every model's seed 0 first, so an early stop already compares every model."""
    tasks = []
    for seed in seeds:
        for model, params, flops in models:
            key = NewRun(model.name, seed, dataset_id, model, training.identity()).key
            run_dir = directory / RUNS_DIRNAME / key
            tasks.append(RunTask(key, model, seed, training, run_dir, directory, params, flops))
    return tuple(tasks)


# -- the study directory -----------------------------------------------------------------------


@contextmanager
def open_study_store(directory: Path) -> Iterator[Store]:
    """The study's store, created with the directory; an unwritable place fails here."""
    if (directory / STORE_FILENAME).is_dir():
        raise StudyError(
            f"{directory / STORE_FILENAME} is a directory, where the study's store file belongs; "
            "move it away or choose another --dir"
        )
    store = open_store(directory / STORE_FILENAME)
    try:
        runs = directory / RUNS_DIRNAME
        try:
            runs.mkdir(exist_ok=True)
        except OSError as error:
            raise StudyError(
                f"cannot create {runs} for checkpoints ({error.strerror}); make the study "
                "directory writable or choose another with --dir"
            ) from error
        yield store
    finally:
        store.close()


def register_runs(
    store: Store,
    plan: StudyPlan,
    *,
    retry_failed: bool = False,
    annotations: Mapping[str, Any] | None = None,
) -> list[RunRecord]:
    """Add the plan's runs (existing keys keep their state) and record the study's settings."""
    info = store.get_study()
    if info is not None and info.name != plan.study.name:
        raise StudyError(
            f"{plan.directory} holds study {info.name!r}, not {plan.study.name!r}: one directory "
            "keeps one study's results; choose another --dir (or give the study its old name)"
        )
    settings = _study_settings(plan, _shown_keys(store, plan, info))
    kept = _kept_annotations(store, info, settings, retry_failed=retry_failed)
    store.set_study(plan.study.name, {**settings, **kept, **(annotations or {})})
    records = store.add_runs(plan.new_runs())
    if retry_failed:
        records = [
            store.requeue(run.key) if run.status in ("failed", "diverged") else run
            for run in records
        ]
    return records


def _kept_annotations(
    store: Store, info: StudyInfo | None, settings: Mapping[str, Any], *, retry_failed: bool
) -> dict[str, Any]:
    """A driver's record (`--prune halving`'s rungs, `--until-decided`'s procedure) that a
    plain `cnnlab run` of the same runs keeps: every one ended, so nothing trains now and
    they still are what that driver decided. New, unfinished or retried runs drop it."""
    previous = info.settings if info else {}
    keys = set(settings["keys"])
    if not previous or set(previous.get("keys") or ()) != keys:
        return {}
    runs = store.list_runs(keys=list(keys))
    retried = ("failed", "diverged") if retry_failed else ()
    if len(runs) != len(keys) or any(
        run.status not in FINAL_STATUSES or run.status in retried for run in runs
    ):
        return {}
    return {name: value for name, value in previous.items() if name not in settings}


def _shown_keys(store: Store, plan: StudyPlan, info: StudyInfo | None) -> list[str]:
    """The runs `status`, `runs` and the report show: the plan's; after a `--models` subset,
    also the other models' runs of the latest expansion, so that training a few models again
    does not hide the rest of the study."""
    previous = (info.settings.get("keys") if info else None) or []
    if not plan.model_subset or not previous:
        return plan.keys
    chosen = {model.name for model in plan.study.models}
    training = canonical_json(plan.training.identity())
    kept = [
        run.key
        for run in store.list_runs(keys=previous)
        if run.model not in chosen
        and run.dataset == plan.dataset_id
        and canonical_json(run.training) == training  # same recipe: comparable runs only
    ]
    return kept + [key for key in plan.keys if key not in kept]


def _study_settings(plan: StudyPlan, keys: list[str]) -> dict[str, Any]:
    """What `cnnlab status` needs to know about the latest expansion (its keys above all)."""
    return {
        "description": plan.study.description,
        "models": [model.name for model in plan.study.models],
        "seeds": list(plan.study.seeds),
        "dataset": plan.dataset_id,
        # Where a local source's path leads from here, so a report built from another
        # directory finds the test set (the identity keeps the source as it was written).
        "dataset_source": absolute_source(plan.study.dataset),
        # A folder's or CIFAR's class names, for load_run and predict (which never load it).
        "class_names": list(plan.dataset.class_names or ()),
        "training": plan.training.identity(),
        "keys": keys,
    }


def check_disk_space(plan: StudyPlan, todo: Sequence[RunRecord], jobs: int) -> None:
    """Refuse to start when the checkpoints of the runs to train would not fit on the disk."""
    params = {task.key: task.params for task in plan.tasks}
    needed = estimate_disk_bytes([params[run.key] for run in todo], jobs)
    free = shutil.disk_usage(plan.directory).free
    if needed * DISK_MARGIN > free:
        raise StudyError(
            f"not enough disk space in {plan.directory}: {len(todo)} runs need about "
            f"{needed / 1e6:,.0f} MB for checkpoints and results, {free / 1e6:,.0f} MB are free; "
            "free some space or choose another --dir"
        )


def estimate_disk_bytes(params: Sequence[int], jobs: int) -> int:
    """One checkpoint per finished run, plus a second for each run in flight (kept to resume)."""
    if not params:
        return 0
    checkpoints = sum(params) + jobs * max(params)
    return checkpoints * CHECKPOINT_BYTES_PER_PARAM + len(params) * STORE_BYTES_PER_RUN


# -- looking at a study ------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyStatus:
    """Where a study stands: runs by state, epochs done of all, and a time estimate."""

    name: str
    directory: Path
    counts: dict[str, int]
    epochs_done: int
    epochs_total: int
    eta_seconds: float | None  # None until an epoch has been timed
    running: tuple[RunRecord, ...]
    other_runs: int  # stored runs outside the latest expansion (edited specs, other settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "directory": str(self.directory),
            "runs": sum(self.counts.values()),
            "counts": self.counts,
            "epochs_done": self.epochs_done,
            "epochs_total": self.epochs_total,
            "eta_seconds": self.eta_seconds,
            "running": [run_row(run) for run in self.running],
            "other_runs": self.other_runs,
        }


def study_status(directory: str | Path) -> StudyStatus:
    """The status of the study in `directory` (only its latest expansion's runs)."""
    with open_existing_store(directory) as store:
        name, runs, others = _current_runs(store, all_runs=False)
        info = store.get_study()
    halving = halving_of(info.settings if info else {}, runs)
    expected = (lambda run: expected_epochs(halving, run)) if halving else None
    return summarize_progress(name, Path(directory), runs, others, expected_epochs=expected)


def check_store(directory: str | Path) -> list[str]:
    """Every problem SQLite's integrity check and the foreign-key check find in the study's
    store (none: an empty list); read-only, so an archived study can be checked too."""
    with open_existing_store(directory) as store:
        return store.verify()


def dataset_class_names(directory: str | Path, dataset: str) -> tuple[str, ...] | None:
    """The class names of `dataset` (an identity, as runs hold it) as the study recorded them
    when `cnnlab run` last started; None where it recorded none or used another dataset."""
    with open_existing_store(directory) as store:
        info = store.get_study()
    settings = info.settings if info else {}
    names = settings.get("class_names")
    if settings.get("dataset") != dataset or not isinstance(names, list) or not names:
        return None
    return tuple(str(name) for name in names)


def study_runs(directory: str | Path, *, all_runs: bool = False) -> list[RunRecord]:
    """The runs of the study in `directory`: the latest expansion's, or every stored one.

    A run whose worker is gone (killed) reads as pending, as `study_status` counts it: the
    store still says running until the next `cnnlab run` takes it over.
    """
    with open_existing_store(directory) as store:
        return [_as_seen(run) for run in _current_runs(store, all_runs=all_runs)[1]]


def _as_seen(run: RunRecord) -> RunRecord:
    if run.status == "running" and _abandoned(run):
        return dataclasses.replace(run, status="pending", worker=None, heartbeat_at=None)
    return run


def _current_runs(store: Store, *, all_runs: bool) -> tuple[str, list[RunRecord], int]:
    info = store.get_study()
    runs = store.list_runs()
    keys = (info.settings.get("keys") if info else None) or [run.key for run in runs]
    if all_runs:
        return (info.name if info else "?"), runs, 0
    wanted = set(keys)
    current = [run for run in runs if run.key in wanted]
    return (info.name if info else "?"), current, len(runs) - len(current)


def summarize_progress(
    name: str,
    directory: Path,
    runs: Sequence[RunRecord],
    other_runs: int = 0,
    *,
    expected_epochs: Callable[[RunRecord], float] | None = None,
) -> StudyStatus:
    """Counts, epochs done of all and an ETA from the measured epoch times; a run whose worker
    is gone counts as pending, which it is for the next `cnnlab run`. expected_epochs: the
    epochs a run still going will train in all, when not its plan (`--prune halving`)."""
    done = sum(_epochs_done(run) for run in runs)
    total = sum(_epochs_planned(run) for run in runs)
    claimed = [run for run in runs if run.status == "running"]
    running = tuple(run for run in claimed if not _abandoned(run))
    counts = count_statuses(runs)
    counts["running"] -= len(claimed) - len(running)  # a killed worker's runs wait again
    counts["pending"] += len(claimed) - len(running)
    return StudyStatus(
        name=name,
        directory=directory,
        counts=counts,
        epochs_done=done,
        epochs_total=total,
        eta_seconds=estimate_remaining_seconds(
            runs, workers=max(1, len(running)), expected_epochs=expected_epochs
        ),
        running=running,
        other_runs=other_runs,
    )


def _abandoned(run: RunRecord) -> bool:
    """A `running` claim whose worker is gone (killed: no heartbeat, or its PID dead here):
    the next `cnnlab run` takes it over, so it is not training."""
    if run.worker is None or run.heartbeat_at is None:
        return False
    return claim_is_stale(
        host=run.worker.host,
        pid=run.worker.pid,
        heartbeat_at=run.heartbeat_at,
        now=time.time(),
        stale_after=STALE_AFTER_SECONDS,
    )


def estimate_remaining_seconds(
    runs: Sequence[RunRecord],
    *,
    workers: int,
    expected_epochs: Callable[[RunRecord], float] | None = None,
) -> float | None:
    """Epochs left times the mean epoch time of their model (of all models when unmeasured),
    shared among the workers now training; a run's epochs left are its plan's, or what
    `expected_epochs` expects for a run still going."""
    seconds: dict[str, list[float]] = {}
    for run in runs:
        seconds.setdefault(run.model, []).extend(e.seconds for e in run.epochs)
    measured = [s for values in seconds.values() for s in values]
    if not measured:
        return None
    overall = sum(measured) / len(measured)
    left = 0.0
    for run in runs:
        own = seconds.get(run.model)
        per_epoch = sum(own) / len(own) if own else overall
        planned: float = _epochs_planned(run)
        if expected_epochs is not None and run.status not in FINAL_STATUSES:
            planned = expected_epochs(run)
        left += (planned - _epochs_done(run)) * per_epoch
    return left / workers


def _epochs_planned(run: RunRecord) -> int:
    """The epochs a run will have trained: its plan, or once it ended (stopped early, pruned,
    diverged, failed) the epochs it did train, so the totals show what stopping saved."""
    if run.status in FINAL_STATUSES:
        return len(run.epochs)
    return int(run.training.get("epochs", len(run.epochs)))


def _epochs_done(run: RunRecord) -> int:
    """Epochs behind a run (an ended run has none left to do)."""
    return len(run.epochs)


# -- showing progress while a study trains ------------------------------------------------------


class StudyDisplay(Protocol):
    """Shows a study's progress; fed snapshots of the store's runs (whatever the executor)."""

    def start(self, plan: StudyPlan, runs: Sequence[RunRecord]) -> None: ...
    def update(self, runs: Sequence[RunRecord]) -> None: ...
    def close(self) -> None: ...


class QuietDisplay:
    """Shows nothing (`--quiet`, notebooks that look at the outcome)."""

    def start(self, plan: StudyPlan, runs: Sequence[RunRecord]) -> None:
        pass

    def update(self, runs: Sequence[RunRecord]) -> None:
        pass

    def close(self) -> None:
        pass


class LineDisplay(QuietDisplay):
    """One line per run that ends, for logs and CI (no cursor movement)."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self.write = write or _print_to_stderr
        self.ended: set[str] = set()
        self.total = 0

    def start(self, plan: StudyPlan, runs: Sequence[RunRecord]) -> None:
        self.ended = {run.key for run in runs if run.status in FINAL_STATUSES}
        self.total = len(runs)
        self.write(
            f"study {plan.study.name}: {len(runs)} runs in {plan.directory}, "
            f"{len(runs) - len(self.ended)} to train"
        )

    def update(self, runs: Sequence[RunRecord]) -> None:
        for run in runs:
            if run.status in FINAL_STATUSES and run.key not in self.ended:
                self.ended.add(run.key)
                self.write(f"[{len(self.ended)}/{self.total}] {describe_run(run)}")


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BarDisplay(QuietDisplay):
    """Live bars on a terminal: runs ended and epochs done of all, with an ETA."""

    def __init__(self) -> None:
        self.bars = RichProgress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(stderr=True),
        )
        self.runs = self.bars.add_task("runs", total=None, note="")
        self.epochs = self.bars.add_task("epochs", total=None, note="")
        console = self.bars.console
        self.lines = LineDisplay(
            write=lambda line: console.print(line, markup=False, highlight=False)
        )

    def start(self, plan: StudyPlan, runs: Sequence[RunRecord]) -> None:
        self.lines.start(plan, runs)
        self.bars.start()
        self.update(runs)

    def update(self, runs: Sequence[RunRecord]) -> None:
        status = summarize_progress("", Path(), runs)
        ended = sum(status.counts[s] for s in FINAL_STATUSES)
        training = ", ".join(f"{r.model} s{r.seed} ({len(r.epochs)})" for r in status.running)
        self.bars.update(self.runs, completed=ended, total=len(runs), note=training)
        self.bars.update(self.epochs, completed=status.epochs_done, total=status.epochs_total)
        self.lines.update(runs)

    def close(self) -> None:
        self.bars.stop()


def describe_run(run: RunRecord) -> str:
    """'seed/model-1 seed 0: done, test accuracy 0.9901 (12.3 s)' or why it did not finish."""
    head = f"{run.model} seed {run.seed}: {run.status}"
    if run.status == "done" and run.test:
        return f"{head}, test accuracy {run.test.accuracy:.4f} ({run.seconds or 0:.1f} s)"
    if run.reason:
        return f"{head} at epoch {run.stopped_epoch}: {run.reason}"
    return head


def make_display(progress: ProgressMode | StudyDisplay) -> StudyDisplay:
    """ "auto": live bars on a terminal, one line per finished run elsewhere."""
    if not isinstance(progress, str):
        return progress
    if progress == "auto":
        progress = "bar" if sys.stderr.isatty() else "lines"
    displays = {"bar": BarDisplay, "lines": LineDisplay, "quiet": QuietDisplay}
    if progress not in displays:
        raise SpecError(f"progress must be one of auto, {', '.join(displays)}; got {progress!r}")
    return displays[progress]()


@contextmanager
def watching(store: Store, keys: list[str], display: StudyDisplay) -> Iterator[None]:
    """Feed `display` snapshots of the runs from a thread while the body trains them."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(WATCH_SECONDS):
            _show(store, keys, display)

    thread = threading.Thread(target=watch, name="cnnlab-study-display", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _show(store, keys, display)


def _show(store: Store, keys: list[str], display: StudyDisplay) -> None:
    try:
        runs = store.list_runs(keys=keys)
    except Exception:  # a busy store or a closing one: the next look will do
        return
    by_key = {run.key: run for run in runs}
    display.update([by_key[key] for key in keys if key in by_key])


def tasks_by_key(plan: StudyPlan) -> Mapping[str, RunTask]:
    return {task.key: task for task in plan.tasks}
