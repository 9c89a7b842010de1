"""Train several seeds of one model together, as one stacked computation (`cnnlab.stacked`).

Each seed keeps everything its separate run has: its initial weights, its shuffling, its dropout
masks and its optimiser state. Its run directory receives the checkpoints a separate run writes,
so a run stacked today resumes alone tomorrow and the other way round. A seed that diverges is
recorded as diverged at that epoch while the others go on; a failure fails the seeds still
training and keeps every finished epoch.

It pays where one seed leaves the hardware idle (a GPU and these small models); on a CPU whose
cores one seed already fills it does not (`benchmarks/multi_seed.py` measures both).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from cnnlab.devices import keeps_callers_threads
from cnnlab.errors import CnnlabError, SpecError
from cnnlab.optim import make_optimizer, resolve_optimizer
from cnnlab.progress import Progress, ProgressMode, make_progress
from cnnlab.spec import ModelSpec, parse_seeds
from cnnlab.stacked import CannotStack, StackedSeeds, repeat_images, stack_images
from cnnlab.train import (
    DIVERGENCE_CHECK_STEPS,
    EVAL_BATCH,
    CallbackError,
    EpochMeter,
    EpochRecord,
    Evaluation,
    Precision,
    Timings,
    TrainOptions,
    TrainResult,
    Validation,
    _autocast,
    _forked_rng,
    _new_run,
    _Outcome,
    _prepare_device,
    _result,
    _resume,
    _Run,
    as_inputs,
    diverged_reason,
    epoch_record,
    prepare_data,
    run_identity,
    train_model,
)
from cnnlab.train import _save as _save_run

if TYPE_CHECKING:
    from cnnlab.data import Dataset

SeedEpochCallback = Callable[[int, EpochRecord], None]  # (seed, the epoch it just saved)


@dataclass(eq=False)  # members are told apart by identity (sets of stopped seeds)
class _Member:
    """One seed of the group: its own run (model, optimiser, shuffling) and how it stands."""

    run: _Run
    directory: Path | None
    identity: dict[str, Any]
    resumed_from: int
    notes: tuple[str, ...]
    dropout: torch.Generator
    outcome: _Outcome | None = None  # set when the seed stops (diverged, failed, done)

    @property
    def training(self) -> bool:
        return self.outcome is None


@keeps_callers_threads
def train_seeds(
    spec: ModelSpec,
    dataset: Dataset,
    *,
    seeds: int | Sequence[int],
    epochs: int = 12,
    batch_size: int = 128,
    validation: Validation = 0.1,
    train_limit: int | None = None,
    device: str | None = None,
    run_dirs: Sequence[Path | str] | None = None,
    on_epoch: SeedEpochCallback | None = None,
    progress: ProgressMode | Progress = "auto",
    precision: Precision = "fp32",
    threads: int | None = None,
) -> list[TrainResult]:
    """Train `spec` once per seed, all seeds in one computation; one TrainResult per seed.

    The same arguments as `train_model`, with `seeds` (a count N: seeds 0..N-1, or the seeds)
    and one run directory per seed. Each
    result is what `train_model` returns for that seed up to float rounding, which training
    amplifies over many steps (the same run in distribution; docs/performance.md). When the seeds'
    run directories hold different numbers of epochs, or the network cannot be stacked (a
    softmax inside it), the seeds are trained one after another instead. The live progress
    shows the mean over the seeds still training. Times (epoch seconds, images/s, timings) are
    each seed's share of the group's wall time, so they add up over runs as separate runs' do.
    """
    started = time.perf_counter()
    seeds = parse_seeds(seeds)
    directories = _check_group(seeds, run_dirs)
    resolved = resolve_optimizer(spec.optimizer)
    target = _prepare_device(device, threads)
    options = [
        TrainOptions(seed, epochs, batch_size, validation, train_limit, precision) for seed in seeds
    ]
    data = prepare_data(dataset, train_limit, validation, target)
    members = [
        _member(spec, resolved, dataset, option, target, data, directory)
        for option, directory in zip(options, directories, strict=True)
    ]
    try:
        if len({member.resumed_from for member in members}) != 1:
            raise CannotStack("the seeds' run directories hold different numbers of epochs")
        stack = StackedSeeds([m.run.model for m in members], [m.dropout for m in members])
    except CannotStack:
        return _one_after_another(spec, dataset, options, directories, device, on_epoch, progress)
    optimizer = make_optimizer(resolved, stack.stacked_parameters())
    gather_optimizer_state(optimizer, stack, [m.run.optimizer for m in members])
    group = _Group(members, stack, optimizer, make_progress(progress))
    setup_seconds = time.perf_counter() - started
    train_seconds, test_seconds = group.train(on_epoch)
    total_seconds = time.perf_counter() - started
    share = len(seeds)  # each seed's share of the time the group took
    timings = Timings(
        setup_seconds / share, train_seconds / share, test_seconds / share, total_seconds / share
    )
    return [
        _result(m.run, m.outcome, timings, m.resumed_from, m.notes, m.directory)  # type: ignore[arg-type]
        for m in members
    ]


def _check_group(seeds: Sequence[int], run_dirs: Sequence[Path | str] | None) -> list[Path | None]:
    if run_dirs is None:
        return [None] * len(seeds)
    if len(run_dirs) != len(seeds):
        raise SpecError(
            f"one run directory per seed is needed: {len(seeds)} seeds, {len(run_dirs)} directories"
        )
    return [Path(directory) for directory in run_dirs]


def _member(spec, resolved, dataset, options, device, data, directory) -> _Member:
    """A seed set up exactly as `train_model` sets it up, resumed from its run directory."""
    identity = run_identity(spec, resolved, dataset, options)
    with _forked_rng(device):
        run = _new_run(spec, resolved, dataset, options, device, make_progress("quiet"), data)
        resumed_from, notes = _resume(run, directory, identity)
        # The global generator now holds this seed's dropout state (seeded or restored).
        dropout = torch.Generator(device=device)
        if device.type == "cuda":
            dropout.set_state(torch.cuda.get_rng_state(device))
        else:
            dropout.set_state(torch.get_rng_state())
    return _Member(run, directory, identity, resumed_from, notes, dropout)


def _one_after_another(spec, dataset, options, directories, device, on_epoch, progress):
    results = []
    for option, directory in zip(options, directories, strict=True):
        callback = None if on_epoch is None else _bound(on_epoch, option.seed)
        results.append(
            train_model(
                spec,
                dataset,
                seed=option.seed,
                epochs=option.epochs,
                batch_size=option.batch_size,
                validation=option.validation,
                train_limit=option.train_limit,
                device=device,
                run_dir=directory,
                on_epoch=callback,
                progress=progress,
                precision=option.precision,
            )
        )
    return results


def _bound(on_epoch: SeedEpochCallback, seed: int) -> Callable[[EpochRecord], None]:
    return lambda record: on_epoch(seed, record)


class _Group:
    """The seeds while they train: the stack, its optimiser, and each seed's own run."""

    def __init__(
        self,
        members: list[_Member],
        stack: StackedSeeds,
        optimizer: torch.optim.Optimizer,
        progress: Progress,
    ) -> None:
        self.members, self.stack, self.optimizer = members, stack, optimizer
        self.progress = progress
        self.lead = members[0].run  # data, device and options are the same for every seed

    def train(self, on_epoch: SeedEpochCallback | None) -> tuple[float, float]:
        """Every epoch after the resumed ones, then the test set; (train, test) seconds."""
        started = time.perf_counter()
        epochs, first = self.lead.options.epochs, self.members[0].resumed_from
        epoch = first
        try:
            for epoch in range(first + 1, epochs + 1):
                self.train_epoch(epoch, epochs, on_epoch)
                if not any(m.training for m in self.members):
                    break
            train_seconds = time.perf_counter() - started
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
            for member in self.members:
                if member.training:
                    member.outcome = _Outcome("failed", reason, epoch, seconds)
            return seconds, 0.0
        finally:
            self.progress.close()

    def train_epoch(self, epoch: int, epochs: int, on_epoch: SeedEpochCallback | None) -> None:
        started = time.perf_counter()
        steps = math.ceil(len(self.lead.data.train_y) / self.lead.options.batch_size)
        self.progress.start_epoch(epoch, epochs, steps)
        meters, stopped = self.train_one_epoch()
        train_seconds = time.perf_counter() - started
        for member, meter in zip(self.members, meters, strict=True):
            if member.training and (member in stopped or meter.diverged()):
                member.outcome = _Outcome(
                    "diverged", diverged_reason(meter, epoch), epoch, train_seconds
                )
        training = [m for m in self.members if m.training]
        if not training:
            return
        validations = self.validate(epoch == epochs)
        self.stack.write_back()
        share_optimizer_state(self.optimizer, self.stack, [m.run.optimizer for m in self.members])
        records = []
        for member, meter, val in zip(self.members, meters, validations, strict=True):
            if not member.training:
                continue
            share = len(self.members)  # a seed's share of the epoch's wall time
            seconds = (time.perf_counter() - started) / share
            record = epoch_record(epoch, meter, val, seconds, train_seconds / share)
            member.run.history.append(record)
            records.append(record)
            if member.directory is not None:
                _save(member, epoch)
            if on_epoch is not None:
                try:
                    on_epoch(member.run.options.seed, record)
                except Exception as error:
                    raise CallbackError(error) from error
        self.progress.end_epoch(_mean_record(records, len(self.members)))

    def train_one_epoch(self) -> tuple[list[EpochMeter], set[_Member]]:
        """One pass over each seed's own shuffle of the training set, all seeds per step."""
        run, stack = self.lead, self.stack
        stack.train()
        data, device, seeds = run.data, run.device, len(self.members)
        meters = [EpochMeter(device) for _ in self.members]
        stopped: set[_Member] = set()
        count = len(data.train_y)
        orders = torch.stack(
            [torch.randperm(count, generator=m.run.shuffle) for m in self.members]
        ).to(device)  # (S, n): each seed's order, from its own generator as a separate run
        for batch in orders.split(run.options.batch_size, dim=1):
            size = batch.shape[1]
            images = as_inputs(data.train_x.index_select(0, batch.reshape(-1)))
            labels = data.train_y.index_select(0, batch.reshape(-1)).view(seeds, size)
            with _autocast(run):
                logits = stack(stack_images(images.view(seeds, size, *images.shape[1:])))
            losses = _seed_losses(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # seeds share no weights: each gets its own loss's gradient
            self.optimizer.step()
            for member, meter, loss, seed_logits, seed_labels in zip(
                self.members, meters, losses.detach(), logits.detach(), labels, strict=True
            ):
                if member.training and member not in stopped:
                    meter.add(loss, seed_logits, seed_labels)
            self.progress.update(meters[0].steps, _MeanOfSeeds(meters, self._live(stopped)))
            if meters[0].steps % DIVERGENCE_CHECK_STEPS == 0:
                stopped |= {
                    m for m, meter in zip(self.members, meters, strict=True) if meter.diverged()
                }
                if not self._live(stopped):
                    break
        return meters, stopped

    def _live(self, stopped: set[_Member]) -> list[bool]:
        return [m.training and m not in stopped for m in self.members]

    def validate(self, last_epoch: bool) -> list[Evaluation | None]:
        data = self.lead.data
        if data.val_x is None:
            return [None] * len(self.members)
        results = self.evaluate(data.val_x, data.val_y)
        if last_epoch and data.val_x is data.test_x:
            for member, result in zip(self.members, results, strict=True):
                member.run.test_evaluation = result
        return list(results)

    def test(self, train_seconds: float) -> None:
        training = [m for m in self.members if m.training]
        if not training:
            return
        if any(m.run.test_evaluation is None for m in training):
            data = self.lead.data
            for member, result in zip(
                self.members, self.evaluate(data.test_x, data.test_y), strict=True
            ):
                member.run.test_evaluation = result
        for member in training:
            member.outcome = _Outcome("done", "", None, train_seconds, member.run.test_evaluation)

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> list[Evaluation]:
        """Every seed on the same images: loss, accuracy and predictions per seed."""
        self.stack.eval()
        seeds = len(self.members)
        loss_sums = torch.zeros(seeds, device=self.lead.device)
        predictions = []
        for start in range(0, len(labels), EVAL_BATCH):
            batch = repeat_images(as_inputs(images[start : start + EVAL_BATCH]), seeds)
            with _autocast(self.lead):
                logits = self.stack(batch).float()  # (S, B, classes)
            target = labels[start : start + EVAL_BATCH]
            loss_sums += _seed_losses(logits, target.expand(seeds, -1), reduction="sum")
            predictions.append(logits.argmax(dim=2))
        predicted = torch.cat(predictions, dim=1)  # (S, n)
        correct = (predicted == labels).sum(dim=1)
        return [
            Evaluation(
                loss=loss_sums[s].item() / len(labels),
                accuracy=correct[s].item() / len(labels),
                predictions=predicted[s].cpu().numpy().astype("int64"),
            )
            for s in range(seeds)
        ]


def _seed_losses(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy per seed: logits (S, N, classes), labels (S, N) -> (S,)."""
    seeds, batch, classes = logits.shape
    each = F.cross_entropy(
        logits.float().reshape(seeds * batch, classes), labels.reshape(-1), reduction="none"
    ).view(seeds, batch)
    return each.mean(dim=1) if reduction == "mean" else each.sum(dim=1)


def _save(member: _Member, epoch: int) -> None:
    """The checkpoint the seed's separate run would write (its own dropout state included)."""
    run = member.run
    states = {"shuffle": run.shuffle.get_state()}
    if run.device.type == "cuda":
        states["torch_cpu"] = torch.get_rng_state()
        states["torch_cuda"] = member.dropout.get_state()
    else:
        states["torch_cpu"] = member.dropout.get_state()
    _save_run(run, member.directory, epoch, member.identity, states)  # type: ignore[arg-type]


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


# -- optimiser state between the stack and the seeds' own optimisers ------------------------


def share_optimizer_state(
    stacked: torch.optim.Optimizer, stack: StackedSeeds, own: Sequence[torch.optim.Optimizer]
) -> None:
    """Give each seed's optimiser its part of the stacked state (for its checkpoint)."""
    for binding in stack.bindings:
        state = stacked.state.get(binding.stacked)
        if not state:
            continue
        for index, optimizer in enumerate(own):
            optimizer.state[binding.pieces[index]] = {
                key: _part(binding, value, index) for key, value in state.items()
            }
    for optimizer in own:
        _copy_group_settings(stacked, optimizer)


def gather_optimizer_state(
    stacked: torch.optim.Optimizer, stack: StackedSeeds, own: Sequence[torch.optim.Optimizer]
) -> None:
    """Start the stacked optimiser from the seeds' own states (restored from checkpoints)."""
    for binding in stack.bindings:
        states = [
            optimizer.state.get(piece) for optimizer, piece in zip(own, binding.pieces, strict=True)
        ]
        if not all(states):
            continue
        stacked.state[binding.stacked] = {
            key: _joined(binding, [state[key] for state in states])  # type: ignore[index]
            for key in states[0]  # type: ignore[union-attr]
        }
    _copy_group_settings(own[0], stacked)


def _part(binding, value: Any, index: int) -> Any:
    if torch.is_tensor(value) and value.shape == binding.stacked.shape:
        return binding.split(value)[index].clone()
    return value.clone() if torch.is_tensor(value) else value


def _joined(binding, values: list[Any]) -> Any:
    first = values[0]
    if torch.is_tensor(first) and first.shape == binding.pieces[0].shape and first.dim() > 0:
        return binding.join(values)
    return first.clone() if torch.is_tensor(first) else first


def _copy_group_settings(source: torch.optim.Optimizer, target: torch.optim.Optimizer) -> None:
    """Per-group values an optimiser keeps beside its tensors (Keras Adam's step count)."""
    for key, value in source.param_groups[0].items():
        if key != "params":
            target.param_groups[0][key] = value
