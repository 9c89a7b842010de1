"""What a user sees while a model trains: a live bar per epoch like Keras's `verbose=1`, one line
per epoch where output is not a terminal (CI, logs), or nothing.

The training loop calls `update` after every batch; a reporter reads the running loss and
accuracy (which costs a device sync) only when it redraws, at most `REFRESH_SECONDS` apart.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Literal, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from cnnlab.errors import SpecError

if TYPE_CHECKING:
    from cnnlab.train import EpochRecord

ProgressMode = Literal["auto", "bar", "lines", "quiet"]
REFRESH_SECONDS = 0.2  # redraws per second a person can follow; each one syncs the device


class Running(Protocol):
    """The epoch's metrics so far (averaged over the batches done)."""

    def loss(self) -> float: ...
    def accuracy(self) -> float: ...


class Progress(Protocol):
    """Receives a run's progress; `train_model` accepts any object with these methods."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def update(self, step: int, running: Running) -> None: ...
    def end_epoch(self, record: EpochRecord) -> None: ...
    def close(self) -> None: ...


class QuietProgress:
    """Shows nothing (`--quiet`, `--json`, studies that draw their own display)."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def update(self, step: int, running: Running) -> None:
        pass

    def end_epoch(self, record: EpochRecord) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(QuietProgress):
    """One line per finished epoch, for logs: no cursor movement, nothing between epochs."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self.file = file
        self.epochs = 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs

    def end_epoch(self, record: EpochRecord) -> None:
        line = f"Epoch {record.epoch}/{self.epochs} - {epoch_summary(record)}"
        print(line, file=self.file or sys.stderr, flush=True)


class BarProgress:
    """A live rich bar per epoch: batches done, ETA, running loss and accuracy (Keras verbose=1)."""

    def __init__(self, console: Console) -> None:
        self.bars = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
        )
        self.task = None
        self.next_draw = 0.0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.bars.start()
        self.task = self.bars.add_task(f"Epoch {epoch}/{epochs}", total=steps, metrics="")
        self.next_draw = 0.0

    def update(self, step: int, running: Running) -> None:
        now = time.monotonic()
        if now < self.next_draw:
            return
        self.next_draw = now + REFRESH_SECONDS
        metrics = f"loss: {running.loss():.4f} - accuracy: {running.accuracy():.4f}"
        self.bars.update(self.task, completed=step, metrics=metrics)

    def end_epoch(self, record: EpochRecord) -> None:
        task = self.bars.tasks[-1]
        self.bars.update(self.task, completed=task.total, metrics=epoch_summary(record))

    def close(self) -> None:
        self.bars.stop()


def make_progress(
    mode: ProgressMode | Progress = "auto", *, file: IO[str] | None = None
) -> Progress:
    """The reporter for a mode: "auto" is a bar on a terminal and lines elsewhere.

    Progress goes to stderr by default, so stdout carries only results (tables, --json).
    """
    if not isinstance(mode, str):
        return mode
    if mode == "quiet":
        return QuietProgress()
    console = Console(file=file or sys.stderr)
    if mode == "bar" or (mode == "auto" and console.is_terminal):
        return BarProgress(console)
    if mode in ("lines", "auto"):
        return LineProgress(file)
    raise SpecError(f"unknown progress mode {mode!r}; use auto, bar, lines or quiet")


def epoch_summary(record: EpochRecord) -> str:
    """Keras's epoch line: time, throughput, then loss/accuracy and the validation pair."""
    parts = [
        f"{record.seconds:.1f}s",
        f"{record.images_per_second:,.0f} img/s",
        f"loss: {record.loss:.4f}",
        f"accuracy: {record.accuracy:.4f}",
    ]
    if record.val_loss is not None:
        parts += [f"val_loss: {record.val_loss:.4f}", f"val_accuracy: {record.val_accuracy:.4f}"]
    return " - ".join(parts)
