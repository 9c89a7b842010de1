"""Keras's learning-rate schedules and its EarlyStopping and ReduceLROnPlateau callbacks.

Each follows Keras 3's source line by line (keras/src/optimizers/schedules/
learning_rate_schedule.py; keras/src/callbacks/early_stopping.py, reduce_lr_on_plateau.py and
monitor_callback.py), as plain Python on the epoch's recorded figures: the same metric history
gives the same decisions. A schedule is read at the optimizer's step count before each update
(Keras's `optimizer.iterations`: 0 for the first step). The callbacks' state is a small dict,
saved in every checkpoint, so a resumed run decides as the uninterrupted one would.
Epochs here are Keras's 0-based indices; the run's records number them from 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlab.spec.recipes import KerasObject


def learning_rate_at(schedule: KerasObject, step: int) -> float:
    """The rate `schedule` gives at optimizer step `step` (the count of updates done)."""
    args = schedule.kwargs()
    return _SCHEDULES[schedule.name](float(step), **args)


def _exponential(step, initial_learning_rate, decay_steps, decay_rate, staircase) -> float:
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return initial_learning_rate * decay_rate**p


def _piecewise(step, boundaries, values) -> float:
    if step <= boundaries[0]:
        return values[0]
    for low, high, value in zip(boundaries[:-1], boundaries[1:], values[1:-1], strict=True):
        if low < step <= high:
            return value
    return values[-1]


def _cosine(step, initial_learning_rate, decay_steps, alpha, warmup_target, warmup_steps) -> float:
    def decay(step: float, start: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
        return start * ((1 - alpha) * cosine + alpha)

    if warmup_target is None:
        return decay(min(step, decay_steps), initial_learning_rate)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - initial_learning_rate) * step / warmup_steps + (
            initial_learning_rate
        )
    return decay(step - warmup_steps, warmup_target)


def _polynomial(step, initial_learning_rate, decay_steps, end_learning_rate, power, cycle) -> float:
    if cycle:
        decay_steps = decay_steps * (1.0 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    p = step / decay_steps
    return (initial_learning_rate - end_learning_rate) * (1 - p) ** power + end_learning_rate


_SCHEDULES = {
    "ExponentialDecay": _exponential,
    "PiecewiseConstantDecay": _piecewise,
    "CosineDecay": _cosine,
    "PolynomialDecay": _polynomial,
}


@dataclass
class _Monitor:
    """MonitorCallback: which way is better for the monitored figure, and by how much."""

    monitor: str
    mode: str
    min_delta: float

    def lower_is_better(self) -> bool:
        if self.mode != "auto":
            return self.mode == "min"
        return self.monitor.removeprefix("val_") == "loss"  # accuracy goes up

    def is_improvement(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        delta = abs(self.min_delta)
        if self.lower_is_better():
            return value + delta < reference  # Keras: less(value - (-delta), reference)
        return value - delta > reference


@dataclass
class EarlyStopping:
    """keras.callbacks.EarlyStopping: its arguments, and its state between epochs."""

    monitor: str = "val_loss"
    min_delta: float = 0.0
    patience: int = 0
    mode: str = "auto"
    baseline: float | None = None
    restore_best_weights: bool = False
    start_from_epoch: int = 0
    wait: int = 0
    stopped_epoch: int = 0  # Keras's: 0 while training goes on
    best: float | None = None
    best_epoch: int = 0
    has_best_weights: bool = False  # Keras's `best_weights is not None`

    @classmethod
    def from_spec(cls, spec: KerasObject) -> EarlyStopping:
        return cls(**spec.kwargs())

    def on_epoch_end(self, epoch: int, logs: dict[str, float | None]) -> tuple[bool, bool]:
        """(keep this epoch's weights as the best, stop training) after 0-based `epoch`."""
        current = logs.get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return False, False
        keep = False
        if self.restore_best_weights and not self.has_best_weights:
            # Keras: if best weights were never set, the current weights are the best.
            self.has_best_weights, self.best_epoch, keep = True, epoch, True
        self.wait += 1
        watch = _Monitor(self.monitor, self.mode, self.min_delta)
        if watch.is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            keep = keep or self.restore_best_weights
            # Only restart wait if we beat both the baseline and our previous best.
            if self.baseline is None or watch.is_improvement(current, self.baseline):
                self.wait = 0
            return keep, False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return keep, True
        return keep, False

    def state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ReduceLROnPlateau:
    """keras.callbacks.ReduceLROnPlateau: its arguments, and its state between epochs."""

    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    mode: str = "auto"
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0
    cooldown_counter: int = 0
    wait: int = 0
    best: float | None = None

    @classmethod
    def from_spec(cls, spec: KerasObject) -> ReduceLROnPlateau:
        return cls(**spec.kwargs())

    def on_epoch_end(self, logs: dict[str, float | None], learning_rate: float) -> float:
        """The learning rate for the next epoch, given this epoch's figures and rate."""
        current = logs.get(self.monitor)
        if current is None:
            return learning_rate
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if _Monitor(self.monitor, self.mode, self.min_delta).is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience and learning_rate > np.float32(self.min_lr):
                self.cooldown_counter, self.wait = self.cooldown, 0
                return max(learning_rate * self.factor, self.min_lr)
        return learning_rate

    def state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
