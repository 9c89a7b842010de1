"""Train one model, with one seed, on one dataset, the way the notebook's Keras `fit()` did.

Keras semantics kept: categorical cross-entropy (on logits), shuffling every epoch, the last
partial batch trained, `validation_split` as the *last* fraction of the training set taken
before shuffling, and a History of loss/accuracy averaged over the epoch's batches with dropout
active (weighted by batch size), plus val_loss/val_accuracy.

Beyond Keras: the whole dataset lives on the device as uint8 (each batch becomes floats there,
`cnnlab.inputs`: x / 255, optionally standardised per channel); a run's
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab import limits
from cnnlab.augment import augment, check_augmentation
from cnnlab.build import build_model
from cnnlab.checkpoint import load_latest, restore_optimizer_state, save_best, save_checkpoint
from cnnlab.data.normalize import ChannelStats, channel_stats
from cnnlab.devices import (
    bf16_note,
    check_fits_in_memory,
    configure_threads,
    describe_device,
    keep_freed_cpu_memory,
    keeps_callers_threads,
    resolve_device,
)
from cnnlab.errors import CnnlabError, DataError, SpecError
from cnnlab.inputs import Standardiser, as_inputs, with_standardisation
from cnnlab.memory import check_step_fits, stacking_refused
from cnnlab.optim import (
    ResolvedOptimizer,
    before_step,
    clips_per_variable,
    make_optimizer,
    needs_before_step,
    resolve_optimizer,
    set_learning_rate,
)
from cnnlab.progress import Progress, ProgressMode, make_progress
from cnnlab.recipe import Recipe
from cnnlab.spec import ModelSpec, TrainingSpec
from cnnlab.stacked import (
    CannotStack,
    StackedSeeds,
    gather_optimizer_state,
    repeat_images,
    share_optimizer_state,
    stack_images,
)
from cnnlab.summary import summarize

if TYPE_CHECKING:
    from cnnlab.data import Dataset

Validation = float | Literal["test"]
# paused: trained up to `until_epoch`, before its last epoch; its checkpoint resumes it.
Status = Literal["done", "diverged", "failed", "paused"]

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
    # The optimiser's learning rate as the epoch ended (Keras's `optimizer.learning_rate`, which
    # ReduceLROnPlateau logs): a schedule's value at the step count reached.
    learning_rate: float | None = None


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
    epoch: int | None = None  # the epoch in which it diverged or failed (or paused after)
    seed: int = 0
    device: str = ""
    precision: str = "fp32"
    parameters: int = 0
    resumed_from: int = 0  # epochs restored from the run directory's checkpoint
    notes: tuple[str, ...] = ()  # e.g. damaged checkpoints that were passed over
    # EarlyStopping: the epoch it stopped training at (None: it ran every epoch), and the
    # monitor's best epoch, whose weights the test saw when restore_best_weights is on.
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    # normalize = "per-channel": the training part's mean and std the inputs were standardised
    # with (None for x / 255 alone).
    channel_stats: ChannelStats | None = None
    # The trained network, in eval mode, with the weights the test saw: NCHW floats in [0, 1]
    # (x / 255) in, logits out, the per-channel standardisation built in when the run used it.
    # For a notebook's own plots and predictions.
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
        data["channel_stats"] = self.channel_stats.to_dict() if self.channel_stats else None
        data["test_predictions"] = (
            self.test_predictions.tolist()
            if predictions and self.test_predictions is not None
            else None
        )
        return data


@dataclass(frozen=True)
class SeedStreams:
    """Independent seeds for a run's random streams, all derived from its one seed."""

    init: int
    shuffle: int
    dropout: int
    augment: int  # added later: the first three words of the state are what they were


def seed_streams(seed: int) -> SeedStreams:
    """NumPy's SeedSequence spreads the seed, so seeds 0, 1, 2 give unrelated streams."""
    words = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64)
    return SeedStreams(*(int(word) for word in words))


@dataclass(frozen=True)
class TensorData:
    """The run's images (N, H, W, C) as uint8 and labels, on the training device.

    Images stay bytes (a quarter of float32's memory: 50,000 colour 32x32 images are 150 MB,
    not 600 MB) and become floats one batch at a time (`as_inputs`, then `standardise`).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor | None
    val_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor
    # normalize = "per-channel": the training part's statistics on the device (None: x / 255).
    standardiser: Standardiser | None = None

    @property
    def stats(self) -> ChannelStats | None:
        return None if self.standardiser is None else self.standardiser.stats

    def standardise(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (channels last) as the network takes them, in place."""
        return images if self.standardiser is None else self.standardiser(images)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    predictions: np.ndarray


@dataclass(eq=False)
class Run:
    """One seed's run while it trains: its model, optimiser, generators, history and outcome."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer  # its own: the stack's state is shared into it to save
    data: TensorData
    shuffle: torch.Generator
    dropout: torch.Generator  # its dropout masks (the global generator's state for one seed)
    device: torch.device
    training: TrainingSpec
    seed: int
    directory: Path | None = None
    identity: dict[str, Any] = dataclasses.field(default_factory=dict)
    resumed_from: int = 0
    notes: tuple[str, ...] = ()
    history: list[EpochRecord] = dataclasses.field(default_factory=list)
    test_evaluation: Evaluation | None = None
    outcome: Outcome | None = None  # set when the run stops (diverged, failed, done)
    recipe: Recipe = None  # type: ignore[assignment]  # set by RunSetup.run
    final_state: dict[str, torch.Tensor] | None = None  # the weights EarlyStopping stopped with

    @property
    def training_on(self) -> bool:
        """Still to be tested: not diverged or failed (it may have stopped early)."""
        return self.outcome is None

    @property
    def active(self) -> bool:
        """Still taking steps: neither ended nor stopped by EarlyStopping."""
        return self.outcome is None and not self.recipe.stopped


SeedEpochCallback = Callable[[int, EpochRecord], None]  # (seed, the epoch it just saved)


@keeps_callers_threads
def train_model(
    spec: ModelSpec,
    dataset: Dataset,
    *,
    training: TrainingSpec | None = None,
    seed: int = 0,
    device: str | None = None,
    run_dir: Path | str | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: ProgressMode | Progress = "auto",
    threads: int | None = None,
    **changes: Any,
) -> TrainResult:
    """Train `spec` on `dataset` as `training` says, then evaluate it on the test set.

    training: the recipe (epochs, batch size, validation, precision...; `TrainingSpec()` is the
    notebook's); `changes` replace its fields by name (`epochs=2`), checked as it checks them.
    seed: fixes initial weights, shuffling and dropout. device: "auto", "cpu", "cuda",
    "cuda:N" or "mps". threads: torch CPU threads for this run (the caller's count comes back
    afterwards). progress: "auto", "bar", "lines", "quiet" or a Progress. run_dir: where
    checkpoints go; a run directory holding an unfinished run of the same settings is resumed
    from its last good epoch. `on_epoch` is called after each epoch is saved; an exception it
    raises propagates. Bad input raises SpecError before anything trains; a run that diverges
    or fails is returned with that status. Ctrl-C (KeyboardInterrupt) propagates; the last
    finished epoch is already on disk. The result holds the trained `model` and
    `keras_history`. A run is a group of one seed: `train_runs` trains it.
    """
    callback = None if on_epoch is None else (lambda _seed, record: on_epoch(record))
    (result,) = train_runs(
        spec,
        dataset,
        seeds=(check_seed(seed),),
        training=(training or TrainingSpec()).replace(**changes),
        device=device,
        run_dirs=None if run_dir is None else [run_dir],
        on_epoch=callback,
        progress=progress,
        threads=threads,
        stack=False,
    )
    return result


@keeps_callers_threads
def train_runs(
    spec: ModelSpec,
    dataset: Dataset,
    *,
    seeds: Sequence[int],
    training: TrainingSpec,
    device: str | None,
    run_dirs: Sequence[Path | str | None] | None,
    on_epoch: SeedEpochCallback | None,
    progress: ProgressMode | Progress,
    threads: int | None,
    stack: bool,
    until_epoch: int | None = None,
) -> list[TrainResult]:
    """The one training engine: runs of `spec` differing only in seed, one result per seed.

    stack: train the seeds as one stacked computation (`cnnlab.stacked`) when the network and
    the run directories allow it; otherwise (and always for one seed) each seed is a group of
    one, trained after the one before. Times are each seed's share of its group's wall time.
    until_epoch: stop after this epoch; a run it leaves short of `training.epochs` is
    "paused", untested, and its run directory resumes it exactly (successive halving's rungs,
    `cnnlab.halving`). A run ended sooner (diverged, EarlyStopping) ends as it would anyway.
    On a CPU the process keeps freed activation memory for reuse from the first run on
    (`devices.keep_freed_cpu_memory`: one training step no longer page-faults it in again).
    """
    started = time.perf_counter()
    if until_epoch is not None and (isinstance(until_epoch, bool) or until_epoch < 1):
        raise SpecError(f"until_epoch must be an epoch number >= 1, got {until_epoch!r}")
    resolved = resolve_optimizer(spec.optimizer)
    model_summary = summarize(spec, dataset.image_shape, dataset.classes)
    check_fits_in_memory(spec.name, model_summary.total_params)
    check_augmentation(training.augment, dataset.image_shape)
    directories = [None if d is None else Path(d) for d in (run_dirs or [None] * len(seeds))]
    target = _prepare_device(device, threads)
    check_step_fits(
        spec.name, model_summary, training.batch_size, training.precision, target.type, target.index
    )
    refused = None  # why stacked seeds, outgrowing the memory left, train one after another
    if stack and len(seeds) > 1:
        batch, precision = training.batch_size, training.precision
        refused = stacking_refused(
            model_summary, batch, precision, len(seeds), target.type, target.index
        )
    data = prepare_data(
        dataset, training.train_limit, training.validation, target, normalize=training.normalize
    )
    setup = RunSetup(spec, resolved, dataset, training, target, data)
    with _forked_rng(target):
        if stack and len(seeds) > 1 and refused is None:
            pairs = zip(seeds, directories, strict=True)
            runs = [setup.run(seed, directory) for seed, directory in pairs]
            try:
                if len({run.resumed_from for run in runs}) != 1:
                    raise CannotStack("the seeds' run directories hold different numbers of epochs")
                network: Network = StackedNetwork(runs, resolved)
            except CannotStack:
                pass
            else:
                group = Group(runs, network, make_progress(progress), until_epoch)
                return group.train(on_epoch, started)
        results = []
        for seed, directory in zip(seeds, directories, strict=True):
            run = setup.run(seed, directory)
            run.notes += (refused,) if refused else ()
            group = Group([run], SingleNetwork(run), make_progress(progress), until_epoch)
            results += group.train(on_epoch, started)
            started = time.perf_counter()
        return results


@dataclass(frozen=True)
class RunSetup:
    """What every seed's run of a group is made from: the same model, recipe, device, data."""

    spec: ModelSpec
    optimizer: ResolvedOptimizer
    dataset: Dataset
    training: TrainingSpec
    device: torch.device
    data: TensorData

    def run(self, seed: int, directory: Path | None) -> Run:
        """Model (from the seed's init stream), optimiser and generators, resumed when saved."""
        streams = seed_streams(seed)
        init = torch.Generator().manual_seed(streams.init)
        model = build_model(
            self.spec, self.dataset.image_shape, self.dataset.classes, generator=init
        )
        model = _to_device(model, self.device)
        torch.manual_seed(streams.dropout)  # inside _forked_rng: the caller's state comes back
        run = Run(
            model=model,
            optimizer=make_optimizer(self.optimizer, model.parameters()),
            data=self.data,
            shuffle=torch.Generator().manual_seed(streams.shuffle),
            dropout=torch.Generator(device=self.device),
            device=self.device,
            training=self.training,
            seed=seed,
            directory=directory,
            identity=run_identity(
                self.spec, self.optimizer, self.dataset, self.training, seed, stats=self.data.stats
            ),
            recipe=Recipe(
                self.training, float(self.optimizer.kwargs()["learning_rate"]), streams.augment
            ),
        )
        run.resumed_from, run.notes = _resume(run)
        slow = bf16_note(self.device, self.training.precision)
        run.notes += (slow,) if slow else ()
        # The global generator now holds this seed's dropout state (seeded or restored).
        run.dropout.set_state(_global_dropout_state(self.device))
        return run


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str = ""
    epoch: int | None = None
    train_seconds: float = 0.0
    test: Evaluation | None = None


class CallbackError(Exception):
    """An exception of the caller's `on_epoch`, carried past the run's own failure handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Network(Protocol):
    """How a group's seeds compute: logits (S, N, classes) for the seeds' images."""

    optimizer: torch.optim.Optimizer

    def train_mode(self) -> None: ...

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Training: each seed its own images, (S, N, H, W, C) -> (S, N, classes)."""
        ...

    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        """Inference: the same images for every seed, (N, H, W, C) -> (S, N, classes)."""
        ...

    def begin_epoch(self) -> None: ...

    def end_epoch(self) -> None:
        """Bring each seed's own model, optimiser and dropout state up to date (to save)."""
        ...

    def read_models(self) -> None:
        """Take up the seeds' own models' weights again (EarlyStopping restored some)."""
        ...


class SingleNetwork:
    """One seed's own model and optimiser; its dropout draws on the global generator."""

    def __init__(self, run: Run) -> None:
        self.run, self.model, self.optimizer = run, run.model, run.optimizer

    def train_mode(self) -> None:
        self.model.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images[0].permute(0, 3, 1, 2)).unsqueeze(0)  # NHWC -> NCHW view

    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(images.permute(0, 3, 1, 2)).unsqueeze(0)

    def begin_epoch(self) -> None:
        _set_global_dropout_state(self.run.device, self.run.dropout.get_state())

    def end_epoch(self) -> None:
        self.run.dropout.set_state(_global_dropout_state(self.run.device))

    def read_models(self) -> None:
        pass  # the run's own model is the network


class StackedNetwork:
    """The seeds side by side as one computation, with one optimiser over the stack."""

    def __init__(self, runs: list[Run], optimizer: ResolvedOptimizer) -> None:
        self.runs = runs
        training = runs[0].training
        if training.reduce_lr_on_plateau is not None:
            raise CannotStack("ReduceLROnPlateau gives each seed its own learning rate")
        if clips_per_variable(runs[0].optimizer):
            raise CannotStack("clipnorm and global_clipnorm take each seed's own gradient norm")
        self.stack = StackedSeeds([r.model for r in runs], [r.dropout for r in runs])
        self.optimizer = make_optimizer(optimizer, self.stack.stacked_parameters())
        gather_optimizer_state(self.optimizer, self.stack, [r.optimizer for r in runs])

    def train_mode(self) -> None:
        self.stack.train()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stack(stack_images(images))

    def evaluate(self, images: torch.Tensor) -> torch.Tensor:
        self.stack.eval()
        return self.stack(repeat_images(images, len(self.runs)))

    def begin_epoch(self) -> None:
        pass

    def end_epoch(self) -> None:
        self.stack.write_back()
        share_optimizer_state(self.optimizer, self.stack, [r.optimizer for r in self.runs])

    @torch.no_grad()
    def read_models(self) -> None:
        """The seeds' own models' weights into the stack (after restoring best weights)."""
        for binding in (*self.stack.bindings, *self.stack.buffer_bindings):
            binding.stacked.copy_(binding.join([piece.detach() for piece in binding.pieces]))


class Group:
    """Runs of one model that differ in seed, trained step by step through one network."""

    def __init__(
        self,
        runs: list[Run],
        network: Network,
        progress: Progress,
        until_epoch: int | None = None,
    ) -> None:
        self.runs, self.network, self.progress = runs, network, progress
        self.lead = runs[0]  # data, device and recipe are the same for every seed
        self.until_epoch = until_epoch

    def train(self, on_epoch: SeedEpochCallback | None, started: float) -> list[TrainResult]:
        """Every epoch after the resumed ones, then the test set; a result per seed."""
        setup_seconds = time.perf_counter() - started
        train_seconds, test_seconds = self._epochs(on_epoch)
        share = len(self.runs)  # each seed's share of the time the group took
        total = time.perf_counter() - started
        timings = Timings(
            setup_seconds / share, train_seconds / share, test_seconds / share, total / share
        )
        return [_result(run, timings) for run in self.runs]

    def _epochs(self, on_epoch: SeedEpochCallback | None) -> tuple[float, float]:
        started = time.perf_counter()
        epochs, first = self.lead.training.epochs, self.lead.resumed_from
        last = epochs if self.until_epoch is None else min(epochs, self.until_epoch)
        epoch = first
        try:
            for epoch in range(first + 1, last + 1):
                if not any(run.active for run in self.runs):
                    break
                self.train_epoch(epoch, epochs, on_epoch)
            train_seconds = time.perf_counter() - started
            self.pause(train_seconds)
            test_started = time.perf_counter()
            self.test(train_seconds)
            return train_seconds, time.perf_counter() - test_started
        except CallbackError as failed:  # the caller's own code failed, not the runs
            raise failed.error from None
        except CnnlabError:
            raise
        except Exception as error:  # recorded for the seeds still training, not raised
            reason = f"{type(error).__name__}: {error}"
            seconds = time.perf_counter() - started
            for run in self.runs:
                if run.training_on:
                    run.outcome = Outcome("failed", reason, epoch, seconds)
            return seconds, 0.0
        finally:
            self.progress.close()

    def pause(self, train_seconds: float) -> None:
        """Runs still taking steps but short of their last epoch (`until_epoch` came first)
        stop here untested; their checkpoints resume them."""
        for run in self.runs:
            if run.active and len(run.history) < run.training.epochs:
                run.outcome = Outcome("paused", "", len(run.history), train_seconds)

    def train_epoch(self, epoch: int, epochs: int, on_epoch: SeedEpochCallback | None) -> None:
        """One epoch for every seed still training: train, validate, record, save."""
        started = time.perf_counter()
        steps = math.ceil(len(self.lead.data.train_y) / self.lead.training.batch_size)
        self.progress.start_epoch(epoch, epochs, steps)
        self.network.begin_epoch()
        meters, stopped = self.train_one_epoch((epoch - 1) * steps)
        train_seconds = time.perf_counter() - started
        for index, (run, meter) in enumerate(zip(self.runs, meters, strict=True)):
            if run.active and (index in stopped or meter.diverged()):
                run.outcome = Outcome("diverged", diverged_reason(meter, epoch), epoch)
        if not any(run.active for run in self.runs):
            return
        validations = self.validate(epoch == epochs)
        self.network.end_epoch()
        share = len(self.runs)  # a seed's share of the epoch's wall time
        records = []
        for run, meter, val in zip(self.runs, meters, validations, strict=True):
            if not run.active:
                continue
            seconds = (time.perf_counter() - started) / share
            record = epoch_record(epoch, meter, val, seconds, train_seconds / share)
            record = dataclasses.replace(record, learning_rate=run.recipe.rate_at(epoch * steps))
            run.history.append(record)
            records.append(record)
            run.recipe.end_epoch(epoch, _logs(record), run.model)
            if run.recipe.stopped:  # the weights it stopped with, before the stack moves on
                run.final_state = _copy_state(run.model)
            if run.directory is not None:
                _save(run, epoch)
            if on_epoch is not None:
                try:
                    on_epoch(run.seed, record)
                except Exception as error:
                    raise CallbackError(error) from error
        self.progress.end_epoch(_mean_record(records, share))

    def train_one_epoch(self, first_step: int) -> tuple[list[EpochMeter], set[int]]:
        """One pass over each seed's own shuffle of the training set, all seeds per step.

        Returns each seed's meter and the positions of seeds whose loss blew up on the way.
        `first_step`: the optimiser steps taken before this epoch (for a schedule).
        """
        lead, network = self.lead, self.network
        recipe, layers = lead.recipe, lead.training.augment
        smoothing = lead.training.label_smoothing
        extras = needs_before_step(network.optimizer)
        network.train_mode()
        data, device, seeds = lead.data, lead.device, len(self.runs)
        meters = [EpochMeter(device) for _ in self.runs]
        stopped: set[int] = set()
        count = len(data.train_y)
        orders = torch.stack([torch.randperm(count, generator=r.shuffle) for r in self.runs]).to(
            device
        )  # (S, n): each seed's order, from its own generator as a separate run
        for index, batch in enumerate(orders.split(lead.training.batch_size, dim=1)):
            if recipe.sets_rates:
                set_learning_rate(network.optimizer, recipe.rate_at(first_step + index))
            size = batch.shape[1]
            images = as_inputs(data.train_x.index_select(0, batch.reshape(-1)))  # uint8 -> [0, 1]
            images = images.view(seeds, size, *images.shape[1:])
            labels = data.train_y.index_select(0, batch.reshape(-1)).view(seeds, size)
            if layers:  # in [0, 1] units, as Keras's layers see x / 255 (clip, zero padding)
                images = augment(images, layers, [run.recipe.augment for run in self.runs])
            images = data.standardise(images)
            with _autocast(lead):
                logits = network.forward(images)
            losses = seed_losses(logits, labels, smoothing=smoothing)
            network.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # seeds share no weights: each gets its own loss's gradient
            if extras:
                before_step(network.optimizer)
            network.optimizer.step()
            live = self._live(stopped)
            for index, (meter, loss) in enumerate(zip(meters, losses.detach(), strict=True)):
                if live[index]:
                    meter.add(loss, logits[index].detach(), labels[index])
            self.progress.update(meters[0].steps, _MeanOfSeeds(meters, live))
            if meters[0].steps % DIVERGENCE_CHECK_STEPS == 0:
                stopped |= {i for i, meter in enumerate(meters) if meter.diverged()}
                if not any(self._live(stopped)):
                    break
        return meters, stopped

    def _live(self, stopped: set[int]) -> list[bool]:
        return [run.active and i not in stopped for i, run in enumerate(self.runs)]

    def validate(self, last_epoch: bool) -> list[Evaluation | None]:
        """The epoch's validation pass; on the test set at the last epoch it is also the test."""
        data = self.lead.data
        if data.val_x is None:
            return [None] * len(self.runs)
        results = self.evaluate(data.val_x, data.val_y)
        if last_epoch and data.val_x is data.test_x:
            for run, result in zip(self.runs, results, strict=True):
                if run.active:
                    run.test_evaluation = result
        return list(results)

    def test(self, train_seconds: float) -> None:
        """The test set, with the weights each run keeps: EarlyStopping's best when it restores
        them (Keras's on_train_end), else the ones it stopped or ended with."""
        training = [run for run in self.runs if run.training_on]
        if not training:
            return
        for run in training:
            if run.recipe.restore_best(run.model):
                run.test_evaluation = None
            elif run.final_state is not None:
                run.model.load_state_dict(run.final_state)
                run.test_evaluation = None
        self.network.read_models()
        if any(run.test_evaluation is None for run in training):
            data = self.lead.data
            results = self.evaluate(data.test_x, data.test_y)
            for run, result in zip(self.runs, results, strict=True):
                if run.test_evaluation is None:
                    run.test_evaluation = result
        for run in training:
            run.outcome = Outcome("done", "", None, train_seconds, run.test_evaluation)

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> list[Evaluation]:
        """Every seed on the same images, in inference mode (dropout off, BN frozen)."""
        seeds = len(self.runs)
        loss_sums = torch.zeros(seeds, device=self.lead.device)
        predictions = []
        for start in range(0, len(labels), EVAL_BATCH):
            with _autocast(self.lead):
                batch = self.lead.data.standardise(as_inputs(images[start : start + EVAL_BATCH]))
                logits = self.network.evaluate(batch).float()
            target = labels[start : start + EVAL_BATCH]
            smoothing = self.lead.training.label_smoothing  # Keras's evaluate uses the loss too
            loss_sums += seed_losses(
                logits, target.expand(seeds, -1), reduction="sum", smoothing=smoothing
            )
            predictions.append(logits.argmax(dim=2))
        predicted = torch.cat(predictions, dim=1)  # (S, n)
        correct = (predicted == labels).sum(dim=1)
        return [
            Evaluation(
                loss=loss_sums[s].item() / len(labels),
                accuracy=correct[s].item() / len(labels),
                predictions=predicted[s].cpu().numpy().astype(np.int64),
            )
            for s in range(seeds)
        ]


def seed_losses(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean", smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy per seed: logits (S, N, classes), labels (S, N) -> (S,).

    smoothing: Keras's label_smoothing, y * (1 - s) + s / classes, as torch's.
    """
    seeds, batch, classes = logits.shape
    if seeds == 1:  # torch's fused reduction: a lone seed's numbers stay a separate run's
        return F.cross_entropy(
            logits[0].float(), labels[0], reduction=reduction, label_smoothing=smoothing
        ).unsqueeze(0)
    each = F.cross_entropy(
        logits.float().reshape(seeds * batch, classes),
        labels.reshape(-1),
        reduction="none",
        label_smoothing=smoothing,
    ).view(seeds, batch)
    return each.mean(dim=1) if reduction == "mean" else each.sum(dim=1)


class _MeanOfSeeds:
    """The running loss and accuracy the progress bar shows: the mean over live seeds."""

    def __init__(self, meters: list[EpochMeter], live: list[bool]) -> None:
        self.meters = [meter for meter, alive in zip(meters, live, strict=True) if alive] or meters

    def loss(self) -> float:
        return sum(m.loss() for m in self.meters) / len(self.meters)

    def accuracy(self) -> float:
        return sum(m.accuracy() for m in self.meters) / len(self.meters)


def _mean_record(records: list[EpochRecord], share: int) -> EpochRecord:
    """What the progress line shows for the group: mean figures, the group's wall time."""

    def mean(name: str) -> float | None:
        values = [getattr(r, name) for r in records]
        return None if values[0] is None else sum(values) / len(values)

    first = records[0]
    return dataclasses.replace(
        first,
        loss=mean("loss"),
        accuracy=mean("accuracy"),
        val_loss=mean("val_loss"),
        val_accuracy=mean("val_accuracy"),
        seconds=first.seconds * share,
    )


def _prepare_device(name: str | None, threads: int | None) -> torch.device:
    device = resolve_device(name)
    if threads is not None:
        configure_threads(threads)
    if device.type == "cpu":
        keep_freed_cpu_memory()
    return device


def check_seed(seed: Any) -> int:
    """A run's seed: a whole number >= 0 (NumPy integers too)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise SpecError(f"seed must be an integer, got {seed!r}")
    if seed < 0:
        raise SpecError(f"seed must be >= 0, got {seed}")
    limits.check("seed", seed)  # and at most its documented bound
    return int(seed)


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


def prepare_data(
    dataset: Dataset,
    train_limit: int | None,
    validation: Validation,
    device: torch.device,
    *,
    normalize: str = "scale",
) -> TensorData:
    """Images and labels on the device, as bytes; the validation split as Keras makes it.

    normalize = "per-channel": the statistics of the images trained on, after the train limit
    and without the validation part (the test set is never looked at).
    """
    _check_labels(dataset)
    count = len(dataset.train_labels) if train_limit is None else train_limit
    images, labels = dataset.train_images[:count], dataset.train_labels[:count]
    test_x, test_y = _on_device(dataset.test_images, device), _labels(dataset.test_labels, device)
    if validation == "test":
        return _with_stats(
            TensorData(
                _on_device(images, device), _labels(labels, device), test_x, test_y, test_x, test_y
            ),
            images,
            normalize,
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
    data = TensorData(
        _on_device(images[:split], device),
        _labels(labels[:split], device),
        val_x,
        val_y,
        test_x,
        test_y,
    )
    return _with_stats(data, images[:split], normalize)


def _with_stats(data: TensorData, trained_on: np.ndarray, normalize: str) -> TensorData:
    """`data` standardising with the statistics of `trained_on` when normalize asks for it."""
    if normalize == "scale":
        return data
    stats = channel_stats(trained_on)
    standardiser = Standardiser(stats, data.train_x.device, tuple(trained_on.shape[1:]))
    return dataclasses.replace(data, standardiser=standardiser)


def run_identity(
    spec: ModelSpec,
    optimizer: ResolvedOptimizer,
    dataset: Dataset,
    training: TrainingSpec,
    seed: int,
    *,
    stats: ChannelStats | None = None,
) -> dict[str, Any]:
    """What determines a run's numbers (all but the epoch count): a resumed run must match.

    With normalize = "per-channel" it holds the statistics the inputs were standardised with
    (`channel_stats`), so every checkpoint can reproduce its inputs without the dataset.
    """
    settings = {"seed": seed, **training.identity()}
    del settings["epochs"]
    if stats is not None:
        settings["channel_stats"] = stats.to_dict()
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


def _resume(run: Run) -> tuple[int, tuple[str, ...]]:
    """Restore the newest good checkpoint; returns the epochs it holds and notes on damage."""
    directory = run.directory
    if directory is None:
        return 0, ()
    checkpoint, damaged = load_latest(directory)
    notes = tuple(f"damaged checkpoint passed over: {d}" for d in damaged)
    if checkpoint is None:
        return 0, notes
    if checkpoint.identity != json.loads(json.dumps(run.identity)):
        raise SpecError(
            f"run directory {directory} holds a run with other settings (model, seed, data or "
            "training options); use another --run-dir or delete it"
        )
    held, asked = checkpoint.epoch, run.training.epochs
    if held > asked:
        raise SpecError(
            f"run directory {directory} already holds {held} epochs, more than the {asked} "
            f"asked; ask for at least {held} or use another --run-dir"
        )
    run.model.load_state_dict(checkpoint.model_state)
    restore_optimizer_state(run.optimizer, checkpoint.optimizer_state)
    _restore_rng_states(run, checkpoint.rng_states)
    run.history.extend(EpochRecord(**record) for record in checkpoint.history)
    run.recipe.restore(checkpoint.recipe_state, checkpoint.kept_state)
    if run.recipe.stopped:
        run.final_state = _copy_state(run.model)
    return checkpoint.epoch, notes


def _save(run: Run, epoch: int) -> None:
    """The run's checkpoint (weights, optimiser, generators, history and recipe state after
    `epoch`), and its best epoch's weights when this epoch is the best so far."""
    history = [dataclasses.asdict(record) for record in run.history]
    save_checkpoint(
        run.directory,  # type: ignore[arg-type]
        epoch=epoch,
        model=run.model,
        optimizer=run.optimizer,
        rng_states=_rng_states(run),
        history=history,
        identity=run.identity,
        recipe_state=run.recipe.state(),
        kept_state=run.recipe.kept,
    )
    save_best(
        run.directory,  # type: ignore[arg-type]
        epoch=epoch,
        model=run.model,
        history=history,
        identity=run.identity,
    )


def _rng_states(run: Run) -> dict[str, torch.Tensor]:
    """The generators whose state decides the next epoch: shuffling and dropout."""
    if run.device.type == "cuda":
        states = {"torch_cpu": torch.get_rng_state(), "torch_cuda": run.dropout.get_state()}
    else:
        states = {"torch_cpu": run.dropout.get_state()}
    return {"shuffle": run.shuffle.get_state(), **states}


def _restore_rng_states(run: Run, states: dict[str, torch.Tensor]) -> None:
    """Into the global generators, from which `RunSetup.run` gives the run its dropout state."""
    run.shuffle.set_state(states["shuffle"])
    torch.set_rng_state(states["torch_cpu"])
    if run.device.type == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state(states["torch_cuda"], run.device)


def _logs(record: EpochRecord) -> dict[str, float | None]:
    """An epoch's figures as Keras's callbacks see them."""
    return {
        "loss": record.loss,
        "accuracy": record.accuracy,
        "val_loss": record.val_loss,
        "val_accuracy": record.val_accuracy,
    }


def _copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _global_dropout_state(device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_global_dropout_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _result(run: Run, timings: Timings) -> TrainResult:
    outcome = run.outcome or Outcome("failed", "the run ended without an outcome")
    last = len(run.history)
    test = outcome.test
    directory = run.directory
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
        seed=run.seed,
        device=describe_device(run.device),
        precision=run.training.precision,
        parameters=sum(p.numel() for p in run.model.parameters()),
        resumed_from=run.resumed_from,
        notes=run.notes,
        stopped_epoch=run.recipe.stopped_epoch,
        best_epoch=run.recipe.best_epoch,
        channel_stats=run.data.stats,
        model=with_standardisation(run.model, run.data.stats, run.device),
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


def _labels(labels: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(labels, dtype=np.int64, order="C")).to(device)


def _to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the model once; channels_last on CPU/CUDA, where oneDNN and cuDNN run it faster."""
    if device.type in ("cpu", "cuda"):
        return model.to(device=device, memory_format=torch.channels_last)
    return model.to(device)


def _autocast(run: Run) -> contextlib.AbstractContextManager:
    if run.training.precision == "bf16":
        return torch.autocast(run.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Seed torch's global generator for the run's dropout, and give the caller's back after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
