"""The storage contract: the records a store holds and the operations every backend offers.

`docs/store-contract.md` states the rules; `tests/test_store_contract.py` checks each of them
against every backend. A backend is any class with these methods (a `typing.Protocol`), so a
server database can be added without the study runner noticing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from cnnlab.store.errors import StoreError
from cnnlab.store.identity import run_key

# pruned: stopped by `--prune halving` at a rung (its epoch in stopped_epoch); ended, never
# finished, so no final statistics count it (cnnlab.halving).
RunStatus = Literal["pending", "running", "done", "failed", "diverged", "pruned"]
STATUSES: tuple[RunStatus, ...] = ("pending", "running", "done", "failed", "diverged", "pruned")
FINAL_STATUSES: tuple[RunStatus, ...] = ("done", "failed", "diverged", "pruned")

# A worker should heartbeat every HEARTBEAT_SECONDS (from a thread, so long epochs count as
# alive); a claim unheard of for STALE_AFTER_SECONDS may be taken over. Ten missed beats
# leave room for a paused laptop or a slow shared disk before a run is trained twice.
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0


def host_identity() -> str:
    """This host as claims see it: the host name plus the PID namespace.

    Two containers may share a host name yet not each other's PIDs; the namespace tells them
    apart, so "pid N is dead here" is only concluded where pid N would be visible.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: the host name alone
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


@dataclass(frozen=True)
class Worker:
    """Who holds a claim: an id unique among live workers, the host identity and the PID."""

    id: str
    host: str
    pid: int

    @classmethod
    def current(cls, label: str = "") -> Worker:
        """This process as a worker; `label` tells apart several workers inside one process.

        Call it in the process that trains: a worker made before a fork carries its parent's PID.
        """
        pid = os.getpid()
        worker_id = f"{socket.gethostname()}:{pid}" + (f":{label}" if label else "")
        return cls(id=worker_id, host=host_identity(), pid=pid)


def pid_is_alive(pid: int) -> bool:
    """Whether process `pid` on this host still runs (a zombie, killed but unreaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Field 3, after the parenthesised command name, is the state; Z = zombie (proc(5)).
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim_is_stale(
    *, host: str, pid: int, heartbeat_at: float, now: float, stale_after: float
) -> bool:
    """Whether a `running` claim may be taken over by another worker.

    Stale when its heartbeat is older than `stale_after` seconds (works across hosts, and
    survives PID reuse), or at once when its worker lived on this host and its PID is gone
    (a SIGKILLed or crashed process on the same machine need not wait for the timeout).
    """
    if now - heartbeat_at > stale_after:
        return True
    return host == host_identity() and not pid_is_alive(pid)


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's figures, Keras's `History` keys; epochs count from 1 like Keras's log."""

    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    images_per_second: float
    learning_rate: float | None = None  # the optimiser's rate as the epoch ended


@dataclass(frozen=True)
class TestMetrics:
    """The final evaluation on the test set (the notebook's "Test loss" / "Test accuracy")."""

    __test__ = False  # a record, not a pytest test class

    loss: float
    accuracy: float


@dataclass(frozen=True, eq=False)
class Predictions:
    """The predicted class of every test image, tied to the test labels they answer.

    Paired statistics (McNemar, confusion matrices) compare predictions image by image, which
    is only meaningful when both runs saw the same test set: hence `test_labels_hash`.
    """

    predicted: np.ndarray  # (N,), int8 when every class index fits, else int16
    test_labels_hash: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "predicted", compact_classes(self.predicted))


def compact_classes(predicted: Any) -> np.ndarray:
    """Class indices as the smallest of int8/int16 that holds them (10 kB per MNIST run)."""
    values = np.asarray(predicted)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise StoreError(
            "predictions must be a 1-D array of integer class indices, "
            f"got shape {values.shape} dtype {values.dtype}"
        )
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0 or high > np.iinfo(np.int16).max:
        raise StoreError(f"predicted class indices must lie in [0, 32767], got [{low}, {high}]")
    dtype = np.int8 if high <= np.iinfo(np.int8).max else np.int16
    return values.astype(dtype)


@dataclass(frozen=True)
class NewRun:
    """A run as the study expands it, before it is stored; its key is derived, never given."""

    model: str
    seed: int
    dataset: str  # the dataset's identity (name plus content hash, as the runner defines it)
    spec: Any  # the fully resolved model spec: a JSON-able mapping or a frozen spec object
    training: Any  # every training setting that changes the result, in the same forms

    @property
    def key(self) -> str:
        return run_key(self.spec, seed=self.seed, dataset=self.dataset, training=self.training)


@dataclass(frozen=True)
class RunRecord:
    """A stored run with everything known about it so far (predictions: `get_predictions`)."""

    key: str
    model: str
    seed: int
    dataset: str
    spec: dict[str, Any]
    training: dict[str, Any]
    status: RunStatus
    attempts: int  # how many times it was claimed
    created_at: float
    reason: str | None = None  # why it failed, diverged or was pruned
    # The epoch it failed or diverged in, the rung's epoch it was pruned at, or the one
    # EarlyStopping stopped after (done runs): the status tells which.
    stopped_epoch: int | None = None
    best_epoch: int | None = None  # EarlyStopping's best epoch (its weights tested if restored)
    worker: Worker | None = None  # the claim holder while running
    heartbeat_at: float | None = None
    device: str | None = None
    versions: dict[str, str] | None = None  # python, torch, cnnlab
    params: int | None = None
    flops: int | None = None
    checkpoint: str | None = None
    started_at: float | None = None  # first claim
    finished_at: float | None = None
    seconds: float | None = None  # training wall time, as the runner measured it
    test: TestMetrics | None = None
    test_labels_hash: str | None = None  # set when predictions are stored
    epochs: tuple[EpochMetrics, ...] = field(default=())


def count_statuses(runs: Iterable[RunRecord]) -> dict[str, int]:
    """How many runs are in each state, every state named (zeros included), in STATUSES order."""
    counts = dict.fromkeys(STATUSES, 0)
    for run in runs:
        counts[run.status] += 1
    return counts


@dataclass(frozen=True)
class StudyInfo:
    """What the store knows of the study it holds: its name and settings."""

    name: str
    settings: dict[str, Any]
    created_at: float
    updated_at: float


@runtime_checkable
class Store(Protocol):
    """A results store: one study's runs, their epochs, test metrics and predictions.

    Every method is one transaction: all of it happens or none of it, also when the process is
    killed. Errors are `StoreError`s naming the store and what to do. One store object per
    process (it may be shared by threads); child processes open their own from `url`.
    """

    @property
    def url(self) -> str:
        """Where the store lives, in a form `open_store` accepts (pass this to workers)."""
        ...

    def get_study(self) -> StudyInfo | None:
        """The study's name and settings, or None before `set_study`."""
        ...

    def set_study(self, name: str, settings: Mapping[str, Any]) -> StudyInfo:
        """Record (or replace) the study's name and settings; `created_at` is kept."""
        ...

    def add_runs(self, runs: Iterable[NewRun]) -> list[RunRecord]:
        """Add runs as `pending`; a key already stored is left untouched and its row returned.

        Returns one record per input, in input order, so callers see what is done already.
        """
        ...

    def get_run(self, key: str) -> RunRecord:
        """The run with its epochs; StoreError naming the key when it is unknown."""
        ...

    def list_runs(
        self,
        *,
        status: RunStatus | Iterable[RunStatus] | None = None,
        model: str | None = None,
        keys: Iterable[str] | None = None,
    ) -> list[RunRecord]:
        """Runs in insertion order, with their epochs; the filters given must all hold."""
        ...

    def claim_next(
        self,
        worker: Worker,
        *,
        keys: Iterable[str] | None = None,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> RunRecord | None:
        """Atomically take the first pending or stale-running run (among `keys`), or None.

        The run becomes `running` under `worker` with a fresh heartbeat and one more attempt;
        its recorded epochs and checkpoint stay, so a taken-over run resumes. See
        `claim_is_stale` for when a running claim is stale.
        """
        ...

    def heartbeat(self, key: str, worker: Worker) -> None:
        """Say the worker still trains the run; ClaimLostError when it no longer holds it."""
        ...

    def record_setup(
        self,
        key: str,
        worker: Worker,
        *,
        device: str,
        versions: Mapping[str, str],
        params: int,
        flops: int,
    ) -> None:
        """Record what the run trains on and with, once its model is built."""
        ...

    def record_epoch(
        self, key: str, worker: Worker, metrics: EpochMetrics, *, checkpoint: str | None = None
    ) -> None:
        """Record epoch e (1 <= e <= last recorded + 1), dropping any records of epochs >= e.

        A resumed run redoes epochs after its checkpoint; their old records came from the lost
        attempt, so the epochs stored are always exactly 1..e. `checkpoint`, when given, is
        the path of the checkpoint written after this epoch.
        """
        ...

    def finish_run(
        self,
        key: str,
        worker: Worker,
        *,
        status: RunStatus,
        reason: str | None = None,
        stopped_epoch: int | None = None,
        test: TestMetrics | None = None,
        predictions: Predictions | None = None,
        seconds: float | None = None,
        best_epoch: int | None = None,
    ) -> RunRecord:
        """End the claim with done (needs `test`), failed/diverged (needs `reason`) or pruned
        (needs `reason` and `stopped_epoch`, the epoch it stopped at)."""
        ...

    def release(self, key: str, worker: Worker) -> None:
        """Give a claimed run back as `pending` (Ctrl-C); its epochs and checkpoint stay."""
        ...

    def requeue(self, key: str) -> RunRecord:
        """Make a failed or diverged run `pending` again, forgetting its results."""
        ...

    def get_predictions(self, key: str) -> Predictions | None:
        """The run's test-set predictions, or None when none were stored."""
        ...

    def verify(self) -> list[str]:
        """Problems found by the backend's own consistency check; empty when healthy."""
        ...

    def close(self) -> None:
        """Release the connection; the object is unusable afterwards."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        ...
