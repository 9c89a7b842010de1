"""Train one model, with one seed, on one dataset, the way the notebook's Keras `fit()` did.

Keras semantics kept: categorical cross-entropy (on logits), shuffling every epoch, the last
partial batch trained, `validation_split` as the *last* fraction of the training set taken
before shuffling, and a History of loss/accuracy averaged over the epoch's batches with dropout
active (weighted by batch size), plus val_loss/val_accuracy.

Beyond Keras: the whole dataset lives on the device as float tensors (converted once); a run's
seed fixes initialisation, shuffling and dropout (bit-identical on CPU); every epoch is
checkpointed atomically and an interrupted run resumes to the same numbers; a NaN loss or an
exception ends the run as `diverged` or `failed`, returned, with the finished epochs kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import numbers
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab import limits
from cnnlab.build import build_model
from cnnlab.checkpoint import load_latest, restore_optimizer_state, save_best, save_checkpoint
from cnnlab.devices import (
    check_fits_in_memory,
    configure_threads,
    describe_device,
    keep_freed_cpu_memory,
    keeps_callers_threads,
    resolve_device,
)
from cnnlab.errors import CnnlabError, DataError, SpecError
from cnnlab.memory import check_step_fits
from cnnlab.optim import ResolvedOptimizer, make_optimizer, resolve_optimizer
from cnnlab.progress import Progress, ProgressMode, make_progress
from cnnlab.spec import PRECISIONS, ModelSpec
from cnnlab.summary import summarize

if TYPE_CHECKING:
    from cnnlab.data import Dataset

Validation = float | Literal["test"]
Precision = Literal["fp32", "bf16"]
Status = Literal["done", "diverged", "failed"]

EVAL_BATCH = 1024  # evaluation has no backward pass: bigger batches, fewer Python round trips
DIVERGENCE_CHECK_STEPS = 50  # look for a diverged loss this often in an epoch (one sync each)
# Keras 2 clips probabilities to [1e-7, 1 - 1e-7] before the log (keras.backend.epsilon()), so its
# loss never exceeds -ln(1e-7) = 16.1. A mean loss above that is confidently wrong on average:
# the weights have blown up even where the loss is still finite.
DIVERGED_LOSS = -math.log(1e-7)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch as Keras's History records it, plus time and throughput."""

    epoch: int  # 1-based, as Keras prints it
    loss: float  # mean over the epoch's training batches, dropout active
    accuracy: float
    val_loss: float | None  # None when training without validation
    val_accuracy: float | None
    seconds: float  # wall time of the epoch: training and validation
    images_per_second: float  # training images / training time


@dataclass(frozen=True)
class Timings:
    setup_seconds: float  # data onto the device, model build, checkpoint load
    train_seconds: float  # epochs trained by this call (resumed ones excluded)
    test_seconds: float
    total_seconds: float


@dataclass(frozen=True, eq=False)
class TrainResult:
    """How a run ended, its history, and its test-set figures (None unless `done`)."""

    status: Status
    history: tuple[EpochRecord, ...]
    test_loss: float | None
    test_accuracy: float | None
    # Predicted class per test image (int64): for paired tests (McNemar) and confusion matrices.
    test_predictions: np.ndarray | None
    timings: Timings
    checkpoint: Path | None  # the last epoch's weights (safetensors), when run with a run_dir
    reason: str = ""  # why a run diverged or failed
    epoch: int | None = None  # the epoch in which it diverged or failed
    seed: int = 0
    device: str = ""
    precision: str = "fp32"
    parameters: int = 0
    resumed_from: int = 0  # epochs restored from the run directory's checkpoint
    notes: tuple[str, ...] = ()  # e.g. damaged checkpoints that were passed over
    # The trained network (build_model's: NCHW floats in [0, 1] in, logits out), in eval mode,
    # with its last epoch's weights: for a notebook's own plots and predictions.
    model: torch.nn.Module | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def keras_history(self) -> dict[str, list[float]]:
        """The history as Keras's `History.history`: {"loss": [...], "val_loss": [...], ...}."""
        keys = ("loss", "accuracy", "val_loss", "val_accuracy")
        return {
            key: [getattr(record, key) for record in self.history]
            for key in keys
            if all(getattr(record, key) is not None for record in self.history)
        }

    def to_dict(self, *, predictions: bool = False) -> dict[str, Any]:
        """JSON-ready fields; test predictions only when asked (10,000 numbers for MNIST)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.compare}
        data["history"] = [dataclasses.asdict(r) for r in self.history]
        data["timings"] = dataclasses.asdict(self.timings)
        data["checkpoint"] = str(self.checkpoint) if self.checkpoint else None
        data["notes"] = list(self.notes)
        data["test_predictions"] = (
            self.test_predictions.tolist()
            if predictions and self.test_predictions is not None
            else None
        )
        return data


@dataclass(frozen=True)
class SeedStreams:
    """Independent seeds for a run's three random streams, all derived from its one seed."""

    init: int
    shuffle: int
    dropout: int


def seed_streams(seed: int) -> SeedStreams:
    """NumPy's SeedSequence spreads the seed, so seeds 0, 1, 2 give unrelated streams."""
    init, shuffle, dropout = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return SeedStreams(int(init), int(shuffle), int(dropout))


@dataclass(frozen=True)
class TrainOptions:
    """How a run trains, checked once: a SpecError names the option, the rule and the value."""

    seed: int = 0
    epochs: int = 12
    batch_size: int = 128
    validation: Validation = 0.1
    train_limit: int | None = None
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
        # NumPy integers (a loop over np.arange) are whole numbers too; 1.0 and "1" are not.
        for name, minimum in (("seed", 0), ("epochs", 1), ("batch_size", 1), ("train_limit", 1)):
            value = getattr(self, name)
            if value is None and name == "train_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise SpecError(f"{name} must be a whole number, got {value!r}")
            if value < minimum:
                raise SpecError(f"{name} must be at least {minimum}, got {value}")
            limits.check(name, value)  # and at most its documented bound
            object.__setattr__(self, name, int(value))
        if self.validation != "test" and not (
            isinstance(self.validation, (int, float)) and 0 <= self.validation < 1
        ):
            raise SpecError(
                f'validation must be a fraction in [0, 1) or "test", got {self.validation!r}'
            )
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision must be fp32 or bf16, got {self.precision!r}")


@dataclass(frozen=True)
class TensorData:
    """The run's images (N, H, W, C) as uint8 and labels, on the training device.

    Images stay bytes (a quarter of float32's memory: 50,000 colour 32x32 images are 150 MB,
    not 600 MB) and become floats one batch at a time (`as_inputs`).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    predictions: np.ndarray


@dataclass
class _Run:
    """What one training run holds while it trains (internal)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: TensorData
    shuffle: torch.Generator
    device: torch.device
    options: TrainOptions
    progress: Progress
    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    test_evaluation: Evaluation | None = None


@keeps_callers_threads
def train_model(
    spec: ModelSpec,
    dataset: Dataset,
    *,
    seed: int = 0,
    epochs: int = 12,
    batch_size: int = 128,
    validation: Validation = 0.1,
    train_limit: int | None = None,
    device: str | None = None,
    run_dir: Path | str | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: ProgressMode | Progress = "auto",
    precision: Precision = "fp32",
    threads: int | None = None,
) -> TrainResult:
    """Train `spec` on `dataset` for `epochs` epochs and evaluate it on the test set.

    validation: a fraction of the training set held out (its last part, as Keras's
    `validation_split`), "test" to validate on the test set (what the seed notebook did), or 0.
    train_limit: train on the first N training images only. device: "auto", "cpu", "cuda",
    "cuda:N" or "mps". precision: "fp32", or "bf16" (autocast; the fast mode). threads: torch
    CPU threads for this run (the caller's count comes back afterwards). progress: "auto",
    "bar", "lines", "quiet" or a Progress. run_dir: where checkpoints go; a run directory
    holding an unfinished run of the same settings is resumed from its last good epoch.
    `on_epoch` is called after each epoch is saved; an exception it raises propagates.
    Bad input raises SpecError before anything trains; a run that diverges or fails is
    returned with that status. Ctrl-C (KeyboardInterrupt) propagates; the last finished epoch
    is already on disk. The result holds the trained `model` and `keras_history`. On a CPU the
    process keeps freed activation memory for reuse from the first run on (`devices.
    keep_freed_cpu_memory`: one training step no longer page-faults it in again).
    """
    started = time.perf_counter()
    options = TrainOptions(seed, epochs, batch_size, validation, train_limit, precision)
    resolved = resolve_optimizer(spec.optimizer)
    model_summary = summarize(spec, dataset.image_shape, dataset.classes)
    check_fits_in_memory(spec.name, model_summary.total_params)
    target = _prepare_device(device, threads)
    check_step_fits(
        spec.name, model_summary, options.batch_size, options.precision, target.type, target.index
    )
    directory = Path(run_dir) if run_dir is not None else None
    identity = run_identity(spec, resolved, dataset, options)
    with _forked_rng(target):
        run = _new_run(spec, resolved, dataset, options, target, make_progress(progress))
        resumed_from, notes = _resume(run, directory, identity)
        setup_seconds = time.perf_counter() - started
        outcome = _train_epochs(run, resumed_from, directory, identity, on_epoch)
    timings = Timings(
        setup_seconds, outcome.train_seconds, outcome.test_seconds, time.perf_counter() - started
    )
    return _result(run, outcome, timings, resumed_from, notes, directory)


def _prepare_device(name: str | None, threads: int | None) -> torch.device:
    device = resolve_device(name)
    if threads is not None:
        configure_threads(threads)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    return device


def _new_run(
    spec: ModelSpec,
    optimizer: ResolvedOptimizer,
    dataset: Dataset,
    options: TrainOptions,
    device: torch.device,
    progress: Progress,
    data: TensorData | None = None,
) -> _Run:
    """Model (initialised from the seed's init stream), optimiser and data on the device.

    `data`: the prepared tensors when several runs share them (seeds trained together).
    """
    streams = seed_streams(options.seed)
    init = torch.Generator().manual_seed(streams.init)
    model = build_model(spec, dataset.image_shape, dataset.classes, generator=init)
    if data is None:
        data = prepare_data(dataset, options.train_limit, options.validation, device)
    model = _to_device(model, device)
    torch.manual_seed(streams.dropout)  # inside _forked_rng: the caller's state comes back
    return _Run(
        model=model,
        optimizer=make_optimizer(optimizer, model.parameters()),
        data=data,
        shuffle=torch.Generator().manual_seed(streams.shuffle),
        device=device,
        options=options,
        progress=progress,
    )


@dataclass(frozen=True)
class _Outcome:
    status: Status
    reason: str = ""
    epoch: int | None = None
    train_seconds: float = 0.0
    test: Evaluation | None = None
    test_seconds: float = 0.0


class CallbackError(Exception):
    """An exception of the caller's `on_epoch`, carried past the run's own failure handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _train_epochs(
    run: _Run,
    first: int,
    directory: Path | None,
    identity: dict[str, Any],
    on_epoch: Callable[[EpochRecord], None] | None,
) -> _Outcome:
    """Epochs after `first`, each saved; then the test set. Failure is data, not an exception."""
    train_started = time.perf_counter()
    epoch, epochs = first, run.options.epochs
    try:
        for epoch in range(first + 1, epochs + 1):
            record, problem = run_epoch(run, epoch, epochs)
            if record is None:
                return _Outcome("diverged", problem, epoch, time.perf_counter() - train_started)
            run.history.append(record)
            if directory is not None:
                _save(run, directory, epoch, identity)
            if on_epoch is not None:
                try:
                    on_epoch(record)
                except Exception as error:
                    raise CallbackError(error) from error
        train_seconds = time.perf_counter() - train_started
        test_started = time.perf_counter()
        test = run.test_evaluation or evaluate(run, run.data.test_x, run.data.test_y)
        return _Outcome("done", "", None, train_seconds, test, time.perf_counter() - test_started)
    except CallbackError as failed:  # the caller's own code failed, not the run: theirs to see
        raise failed.error from None
    except CnnlabError:
        raise
    except Exception as error:  # any failure of the run is recorded, not raised
        reason = f"{type(error).__name__}: {error}"
        return _Outcome("failed", reason, epoch, time.perf_counter() - train_started)
    finally:
        run.progress.close()


def _save(
    run: _Run,
    directory: Path,
    epoch: int,
    identity: dict[str, Any],
    rng_states: dict[str, torch.Tensor] | None = None,
) -> None:
    """The run's checkpoint, and its best epoch's weights when this epoch is the best so far;
    `rng_states` when its dropout draws from its own generator."""
    history = [dataclasses.asdict(record) for record in run.history]
    save_checkpoint(
        directory,
        epoch=epoch,
        model=run.model,
        optimizer=run.optimizer,
        rng_states=rng_states if rng_states is not None else _rng_states(run),
        history=history,
        identity=identity,
    )
    save_best(directory, epoch=epoch, model=run.model, history=history, identity=identity)


def run_epoch(run: _Run, epoch: int, epochs: int) -> tuple[EpochRecord | None, str]:
    """Train one epoch and validate; (None, why) when the loss stopped being finite."""
    started = time.perf_counter()
    steps = math.ceil(len(run.data.train_y) / run.options.batch_size)
    run.progress.start_epoch(epoch, epochs, steps)
    meter = train_one_epoch(run)
    train_seconds = time.perf_counter() - started
    if meter.diverged():
        return None, diverged_reason(meter, epoch)
    val = validate(run, epoch == epochs)
    record = epoch_record(epoch, meter, val, time.perf_counter() - started, train_seconds)
    run.progress.end_epoch(record)
    return record, ""


def diverged_reason(meter: EpochMeter, epoch: int) -> str:
    return (
        f"training loss reached {meter.loss():.4g} in epoch {epoch} (by batch {meter.steps}); "
        f"a finite loss above {DIVERGED_LOSS:.1f} (-ln 1e-7, the most Keras's clipped "
        "cross-entropy can report) counts as diverged too"
    )


def epoch_record(
    epoch: int, meter: EpochMeter, val: Evaluation | None, seconds: float, train_seconds: float
) -> EpochRecord:
    """The History entry of an epoch: the meter's means, validation, time and throughput."""
    return EpochRecord(
        epoch=epoch,
        loss=meter.loss(),
        accuracy=meter.accuracy(),
        val_loss=val.loss if val else None,
        val_accuracy=val.accuracy if val else None,
        seconds=seconds,
        images_per_second=meter.seen / train_seconds,
    )


class EpochMeter:
    """Running loss and accuracy kept on the device: no sync per batch, only when read."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0
        self.steps = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        # Keras's epoch loss is the batch losses' mean weighted by batch size.
        self.loss_sum += loss * len(labels)
        self.correct += (logits.argmax(dim=1) == labels).sum()
        self.seen += len(labels)
        self.steps += 1

    def loss(self) -> float:
        return self.loss_sum.item() / max(self.seen, 1)

    def accuracy(self) -> float:
        return self.correct.item() / max(self.seen, 1)

    def diverged(self) -> bool:
        """NaN/inf, or above anything Keras's clipped cross-entropy can report."""
        loss = self.loss()
        return not math.isfinite(loss) or loss > DIVERGED_LOSS


def train_one_epoch(run: _Run) -> EpochMeter:
    """One pass over the shuffled training set in batches, the last one partial."""
    run.model.train()
    data, meter = run.data, EpochMeter(run.device)
    order = torch.randperm(len(data.train_y), generator=run.shuffle).to(run.device)
    for batch in order.split(run.options.batch_size):
        images = as_inputs(data.train_x.index_select(0, batch)).permute(0, 3, 1, 2)  # NCHW view
        labels = data.train_y.index_select(0, batch)
        with _autocast(run):
            logits = run.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        meter.add(loss.detach(), logits.detach(), labels)
        run.progress.update(meter.steps, meter)
        if meter.steps % DIVERGENCE_CHECK_STEPS == 0 and meter.diverged():
            break
    return meter


def validate(run: _Run, last_epoch: bool) -> Evaluation | None:
    """The epoch's validation pass; on the test set at the last epoch it is also the test."""
    data = run.data
    if data.val_x is None:
        return None
    result = evaluate(run, data.val_x, data.val_y)
    if last_epoch and data.val_x is data.test_x:
        run.test_evaluation = result
    return result


@torch.inference_mode()
def evaluate(run: _Run, images: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """Mean loss, accuracy and predicted classes, in inference mode (dropout off, BN frozen)."""
    run.model.eval()
    loss_sum = torch.zeros((), device=run.device)
    predictions = []
    for start in range(0, len(labels), EVAL_BATCH):
        batch = as_inputs(images[start : start + EVAL_BATCH]).permute(0, 3, 1, 2)
        with _autocast(run):
            logits = run.model(batch).float()
        target = labels[start : start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions)
    return Evaluation(
        loss=loss_sum.item() / len(labels),
        accuracy=(predicted == labels).sum().item() / len(labels),
        predictions=predicted.cpu().numpy().astype(np.int64),
    )


def prepare_data(
    dataset: Dataset, train_limit: int | None, validation: Validation, device: torch.device
) -> TensorData:
    """Images and labels on the device, as bytes; the validation split as Keras makes it."""
    _check_labels(dataset)
    count = len(dataset.train_labels) if train_limit is None else train_limit
    images, labels = dataset.train_images[:count], dataset.train_labels[:count]
    test_x, test_y = _on_device(dataset.test_images, device), _labels(dataset.test_labels, device)
    if validation == "test":
        return TensorData(
            _on_device(images, device), _labels(labels, device), test_x, test_y, test_x, test_y
        )
    # Keras: split_at = floor(n * (1 - validation_split)); the tail validates
    # (keras/src/trainers/data_adapters/array_slicing.py, train_validation_split).
    split = math.floor(len(labels) * (1.0 - validation))
    if split == 0 or (validation > 0 and split == len(labels)):
        raise SpecError(
            f"validation={validation} leaves {split} of {len(labels)} images for training; "
            "use a fraction that keeps both parts non-empty, or more images"
        )
    val_x = _on_device(images[split:], device) if split < len(labels) else None
    val_y = _labels(labels[split:], device) if split < len(labels) else None
    return TensorData(
        _on_device(images[:split], device),
        _labels(labels[:split], device),
        val_x,
        val_y,
        test_x,
        test_y,
    )


def run_identity(
    spec: ModelSpec, optimizer: ResolvedOptimizer, dataset: Dataset, options: TrainOptions
) -> dict[str, Any]:
    """What determines a run's numbers (all but the epoch count): a resumed run must match."""
    settings = dataclasses.asdict(options)
    del settings["epochs"]
    return {
        "layers": [
            {"type": type(layer).__name__, **dataclasses.asdict(layer)} for layer in spec.layers
        ],
        "optimizer": {"name": optimizer.name, **optimizer.kwargs()},
        "dataset": {
            "name": dataset.name,
            "image_shape": list(dataset.image_shape),
            "classes": dataset.classes,
            "train": len(dataset.train_labels),
            "labels_sha256": hashlib.sha256(dataset.train_labels.tobytes()).hexdigest(),
        },
        **settings,
    }


def _resume(
    run: _Run, directory: Path | None, identity: dict[str, Any]
) -> tuple[int, tuple[str, ...]]:
    """Restore the newest good checkpoint; returns the epochs it holds and notes on damage."""
    if directory is None:
        return 0, ()
    checkpoint, damaged = load_latest(directory)
    notes = tuple(f"damaged checkpoint passed over: {d}" for d in damaged)
    if checkpoint is None:
        return 0, notes
    if checkpoint.identity != json.loads(json.dumps(identity)):
        raise SpecError(
            f"run directory {directory} holds a run with other settings (model, seed, data or "
            "training options); use another --run-dir or delete it"
        )
    held, asked = checkpoint.epoch, run.options.epochs
    if held > asked:
        raise SpecError(
            f"run directory {directory} already holds {held} epochs, more than the {asked} "
            f"asked; ask for at least {held} or use another --run-dir"
        )
    run.model.load_state_dict(checkpoint.model_state)
    restore_optimizer_state(run.optimizer, checkpoint.optimizer_state)
    _restore_rng_states(run, checkpoint.rng_states)
    run.history.extend(EpochRecord(**record) for record in checkpoint.history)
    return checkpoint.epoch, notes


def _rng_states(run: _Run) -> dict[str, torch.Tensor]:
    """The generators whose state decides the next epoch: shuffling and dropout."""
    states = {"shuffle": run.shuffle.get_state(), "torch_cpu": torch.get_rng_state()}
    if run.device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state(run.device)
    return states


def _restore_rng_states(run: _Run, states: dict[str, torch.Tensor]) -> None:
    run.shuffle.set_state(states["shuffle"])
    torch.set_rng_state(states["torch_cpu"])
    if run.device.type == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state(states["torch_cuda"], run.device)


def _result(
    run: _Run,
    outcome: _Outcome,
    timings: Timings,
    resumed_from: int,
    notes: tuple[str, ...],
    directory: Path | None,
) -> TrainResult:
    last = len(run.history)
    test = outcome.test
    return TrainResult(
        status=outcome.status,
        history=tuple(run.history),
        test_loss=test.loss if test else None,
        test_accuracy=test.accuracy if test else None,
        test_predictions=test.predictions if test else None,
        timings=timings,
        checkpoint=directory / f"epoch-{last:04d}.safetensors" if directory and last else None,
        reason=outcome.reason,
        epoch=outcome.epoch,
        seed=run.options.seed,
        device=describe_device(run.device),
        precision=run.options.precision,
        parameters=sum(p.numel() for p in run.model.parameters()),
        resumed_from=resumed_from,
        notes=notes,
        model=run.model.eval(),
    )


def _check_labels(dataset: Dataset) -> None:
    for part, labels in (("train", dataset.train_labels), ("test", dataset.test_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= dataset.classes):
            raise DataError(
                f"{dataset.name}: {part} labels run from {labels.min()} to {labels.max()}, "
                f"but the dataset declares {dataset.classes} classes (0..{dataset.classes - 1})"
            )


def _on_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) on the device, still bytes. The copy keeps torch off the dataset's
    read-only arrays."""
    return torch.from_numpy(np.array(images, order="C")).to(device)


def as_inputs(images: torch.Tensor) -> torch.Tensor:
    """A batch of uint8 images -> float32 in [0, 1], on their device.

    x / 255 in float32, as the notebook's `x_train.astype('float32') / 255`: the same values
    the whole array converted at once would give.
    """
    return images.float().div_(255)


def _labels(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(labels, dtype=np.int64, order="C")).to(device)


def _to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the model once; channels_last on CPU/CUDA, where oneDNN and cuDNN run it faster."""
    if device.type in ("cpu", "cuda"):
        return model.to(device=device, memory_format=torch.channels_last)
    return model.to(device)


def _autocast(run: _Run) -> contextlib.AbstractContextManager:
    if run.options.precision == "bf16":
        return torch.autocast(run.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Seed torch's global generator for the run's dropout, and give the caller's back after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
