"""The store contract (docs/store-contract.md), rule by rule, against every backend.

Test names start with the rule id. A new backend joins by adding a factory to `BACKENDS`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnnlab.spec import Conv2D, Dense, Flatten, ModelSpec, TrainingSpec
from cnnlab.store import (
    STALE_AFTER_SECONDS,
    ClaimLostError,
    EpochMetrics,
    NewRun,
    Predictions,
    SqliteStore,
    Store,
    StoreError,
    TestMetrics,
    Worker,
    labels_hash,
    open_store,
    run_key,
)
from cnnlab.store.interface import host_identity


class Clock:
    """A settable clock, so staleness is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


BACKENDS: dict[str, Callable[[Path, Clock], Store]] = {
    "sqlite": lambda directory, clock: SqliteStore(directory / "store.sqlite", clock=clock),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request, tmp_path, clock):
    """Opens the same fresh store of one backend as often as asked (like separate processes)."""
    opened: list[Store] = []

    def make() -> Store:
        opened.append(BACKENDS[request.param](tmp_path, clock))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


ME = Worker.current("a")
OTHER = Worker.current("b")
REMOTE = Worker(id="remote:1", host="elsewhere/pid:[1]", pid=1)


def new_run(model: str = "m", seed: int = 0, **training) -> NewRun:
    spec = {"name": model, "layers": [{"type": "Dense", "units": 10}]}
    return NewRun(model, seed, "mnist", spec, {"epochs": 2, **training})


def epoch(n: int, loss: float = 0.5, **changes) -> EpochMetrics:
    values = dict(
        loss=loss,
        accuracy=0.9,
        val_loss=0.4,
        val_accuracy=0.91,
        seconds=1.5,
        images_per_second=4000.0,
    )
    return EpochMetrics(epoch=n, **{**values, **changes})


def claimed(store: Store, worker: Worker = ME, **runs) -> str:
    """Add one run and claim it; its key."""
    key = store.add_runs([new_run(**runs)])[0].key
    assert store.claim_next(worker, keys=[key]).key == key
    return key


def test_every_backend_satisfies_the_store_protocol(store):
    assert isinstance(store, Store)


# -- I: identity ---------------------------------------------------------------------------


def test_i1_run_key_ignores_key_order_and_tuple_or_list():
    a = run_key({"name": "m", "k": (3, 3)}, seed=1, dataset="mnist", training={"a": 1, "b": 2})
    b = run_key({"k": [3, 3], "name": "m"}, seed=1, dataset="mnist", training={"b": 2, "a": 1})
    assert a == b
    assert len(a) == 16 and int(a, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"spec": {"name": "m", "k": [5, 5]}},
        {"seed": 2},
        {"dataset": "fashion-mnist"},
        {"training": {"epochs": 13}},
    ],
)
def test_i1_run_key_changes_with_every_input(change):
    base = {"spec": {"name": "m", "k": [3, 3]}, "seed": 1, "dataset": "mnist"}
    base["training"] = {"epochs": 12}
    assert run_key(**base) != run_key(**{**base, **change})


def test_i1_run_key_of_spec_objects_ignores_description_and_reported_only():
    layers = (Conv2D(32, (3, 3), activation="relu"), Flatten(), Dense("classes"))
    spec = ModelSpec(name="Model-1", layers=layers)
    described = ModelSpec(name="Model-1", layers=layers, description="x", reported=(("a", 1.0),))
    wider = ModelSpec(name="Model-1", layers=(Conv2D(64, (3, 3), activation="relu"), *layers[1:]))

    def key(s: ModelSpec) -> str:
        return run_key(s, seed=0, dataset="mnist", training=TrainingSpec())

    assert key(spec) == key(described)
    assert key(spec) != key(wider)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"lr": math.nan}, "finite"), ({"lr": object()}, "cannot store a value"), ({1: 2}, "keys")],
)
def test_i1_run_key_refuses_values_json_cannot_hold(settings, message):
    with pytest.raises(StoreError, match=message):
        run_key({"name": "m"}, seed=0, dataset="mnist", training=settings)


def test_i2_new_runs_are_pending_and_returned_in_input_order(store):
    runs = [new_run("b"), new_run("a"), new_run("c")]
    records = store.add_runs(runs)
    assert [r.model for r in records] == ["b", "a", "c"]
    assert [r.key for r in records] == [r.key for r in runs]
    assert {(r.status, r.attempts, r.epochs) for r in records} == {("pending", 0, ())}


def test_i2_adding_an_existing_key_changes_nothing_and_returns_the_stored_run(store):
    key = claimed(store)
    store.record_epoch(key, ME, epoch(1))
    again = store.add_runs([new_run(), new_run("other"), new_run()])
    assert again[0] == again[2] == store.get_run(key)
    assert (again[0].status, len(again[0].epochs)) == ("running", 1)
    assert len(store.list_runs()) == 2


def test_i3_getting_an_unknown_run_names_its_key(store):
    with pytest.raises(StoreError, match="no run 'feedbeef'"):
        store.get_run("feedbeef")


def test_i4_json_values_come_back_as_their_json_round_trip(store):
    spec = {"name": "m", "kernel": (3, 3), "nested": {"rate": 0.25, "on": True, "none": None}}
    run = NewRun("m", 0, "mnist", spec, {"epochs": 1})
    stored = store.add_runs([run])[0]
    assert stored.spec == {"name": "m", "kernel": [3, 3], "nested": spec["nested"]}
    assert stored.training == {"epochs": 1}


# -- L: listing ----------------------------------------------------------------------------


def test_l1_list_runs_filters_by_status_model_and_keys_in_insertion_order(store):
    records = store.add_runs([new_run("b", 0), new_run("a", 0), new_run("b", 1)])
    store.claim_next(ME)
    assert [r.model for r in store.list_runs()] == ["b", "a", "b"]
    assert [r.seed for r in store.list_runs(model="b")] == [0, 1]
    assert [r.key for r in store.list_runs(status="running")] == [records[0].key]
    assert len(store.list_runs(status=["pending", "running"])) == 3
    assert store.list_runs(status="pending", model="b") == [store.get_run(records[2].key)]
    assert [r.key for r in store.list_runs(keys=[records[2].key, "x"])] == [records[2].key]
    assert store.list_runs(keys=[]) == []


def test_l1_unknown_status_is_refused_with_the_known_ones(store):
    with pytest.raises(StoreError, match="unknown run status 'finished'; known: pending"):
        store.list_runs(status="finished")


# -- C: claims -----------------------------------------------------------------------------


def test_c1_claim_takes_the_first_pending_run_and_marks_it_running(store, clock):
    first, second = store.add_runs([new_run("a"), new_run("b")])
    run = store.claim_next(ME)
    assert run.key == first.key
    assert (run.status, run.worker, run.attempts) == ("running", ME, 1)
    assert run.heartbeat_at == run.started_at == clock.now
    assert store.claim_next(OTHER).key == second.key
    assert store.claim_next(OTHER) is None


def test_c2_a_fresh_claim_of_a_live_worker_is_not_taken(store, clock):
    key = claimed(store, REMOTE)
    claimed(store, ME, model="local")  # this process: alive
    clock.now += STALE_AFTER_SECONDS - 1
    assert store.claim_next(OTHER) is None
    assert store.get_run(key).worker == REMOTE


def test_c2_a_claim_whose_heartbeat_timed_out_is_taken_over(store, clock):
    key = claimed(store, REMOTE)
    clock.now += 100
    store.heartbeat(key, REMOTE)
    clock.now += 150
    assert store.claim_next(OTHER, stale_after=200) is None
    clock.now += 51
    run = store.claim_next(OTHER, stale_after=200)
    assert (run.key, run.worker, run.attempts, run.started_at) == (key, OTHER, 2, 1_000_000.0)


def test_c2_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(store):
    dead = Worker(id="dead", host=host_identity(), pid=_pid_of_finished_process())
    key = claimed(store, dead)
    assert store.claim_next(OTHER).key == key


def test_c2_a_claim_of_a_zombie_process_on_this_host_is_taken_at_once(store):
    child = subprocess.Popen(["true"])
    try:
        _wait_until_zombie(child.pid)
        key = claimed(store, Worker(id="zombie", host=host_identity(), pid=child.pid))
        assert store.claim_next(OTHER).key == key
    finally:
        child.wait()


def test_c2_same_pid_on_another_host_is_not_judged_dead(store):
    gone = _pid_of_finished_process()
    key = claimed(store, Worker(id="far", host="elsewhere/pid:[9]", pid=gone))
    assert store.claim_next(OTHER) is None
    assert store.get_run(key).status == "running"


@pytest.mark.parametrize("status", ["done", "failed", "diverged", "pruned"])
def test_c2_finished_runs_are_never_claimed(store, clock, status):
    key = claimed(store)
    test = None if status == "pruned" else TestMetrics(0.1, 0.9)
    store.finish_run(key, ME, status=status, reason="r", test=test, stopped_epoch=1)
    clock.now += 10 * STALE_AFTER_SECONDS
    assert store.claim_next(OTHER, stale_after=0) is None


def test_c3_threads_sharing_one_store_claim_each_run_once(store):
    keys = [r.key for r in store.add_runs([new_run(seed=s) for s in range(30)])]
    taken: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        worker = Worker.current(f"t{i}")
        while (run := store.claim_next(worker)) is not None:
            taken[i].append(run.key)
            store.finish_run(run.key, worker, status="done", test=TestMetrics(0.1, 0.9))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(k for keys_of in taken for k in keys_of) == sorted(keys)
    assert {r.attempts for r in store.list_runs()} == {1}


def test_c4_claims_are_restricted_to_the_given_keys(store):
    old, new = store.add_runs([new_run("edited-away"), new_run("current")])
    assert store.claim_next(ME, keys=[new.key]).key == new.key
    assert store.claim_next(ME, keys=[new.key]) is None
    assert store.get_run(old.key).status == "pending"


def test_c5_a_taken_over_run_keeps_its_epochs_and_checkpoint(store, clock):
    key = claimed(store, REMOTE)
    store.record_epoch(key, REMOTE, epoch(1), checkpoint="ckpt/1")
    store.record_epoch(key, REMOTE, epoch(2), checkpoint="ckpt/2")
    clock.now += STALE_AFTER_SECONDS + 1
    run = store.claim_next(OTHER)
    assert [e.epoch for e in run.epochs] == [1, 2]
    assert run.checkpoint == "ckpt/2"


# -- O: ownership --------------------------------------------------------------------------


def _owner_calls(store: Store, key: str, worker: Worker) -> dict[str, Callable[[], object]]:
    return {
        "heartbeat": lambda: store.heartbeat(key, worker),
        "record_setup": lambda: store.record_setup(
            key, worker, device="cpu", versions={}, params=1, flops=1
        ),
        "record_epoch": lambda: store.record_epoch(key, worker, epoch(1)),
        "finish_run": lambda: store.finish_run(key, worker, status="failed", reason="x"),
        "release": lambda: store.release(key, worker),
    }


@pytest.mark.parametrize(
    "call", ["heartbeat", "record_setup", "record_epoch", "finish_run", "release"]
)
def test_o1_a_worker_that_lost_its_claim_cannot_write(store, clock, call):
    key = claimed(store, REMOTE)
    clock.now += STALE_AFTER_SECONDS + 1
    store.claim_next(OTHER)
    before = store.get_run(key)
    with pytest.raises(
        ClaimLostError, match=f"run {key} is running under {OTHER.id}, not claimed by {REMOTE.id}"
    ):
        _owner_calls(store, key, REMOTE)[call]()
    assert store.get_run(key) == before


@pytest.mark.parametrize("call", ["heartbeat", "record_epoch", "release"])
def test_o1_an_unclaimed_run_cannot_be_written(store, call):
    key = store.add_runs([new_run()])[0].key
    with pytest.raises(ClaimLostError, match="is pending, not claimed by"):
        _owner_calls(store, key, ME)[call]()
    with pytest.raises(StoreError, match="no run 'nope'"):
        _owner_calls(store, "nope", ME)[call]()


def test_o1_writes_of_the_holder_refresh_its_heartbeat(store, clock):
    key = claimed(store)
    clock.now += 10
    store.heartbeat(key, ME)
    assert store.get_run(key).heartbeat_at == clock.now
    clock.now += 10
    store.record_epoch(key, ME, epoch(1))
    assert store.get_run(key).heartbeat_at == clock.now


def test_o1_record_setup_stores_device_versions_params_and_flops(store):
    key = claimed(store)
    versions = {"python": "3.11.7", "torch": "2.13.0", "cnnlab": "0.1.0"}
    store.record_setup(key, ME, device="cuda:0", versions=versions, params=1199882, flops=42)
    run = store.get_run(key)
    assert (run.device, run.versions, run.params, run.flops) == ("cuda:0", versions, 1199882, 42)


# -- E: epochs -----------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "bad"), [(0, 0), (0, 2), (2, 4), (1, -1)])
def test_e1_epochs_are_recorded_in_order_from_one(store, after, bad):
    key = claimed(store)
    for n in range(1, after + 1):
        store.record_epoch(key, ME, epoch(n))
    with pytest.raises(StoreError, match=f"cannot record epoch {bad} when"):
        store.record_epoch(key, ME, epoch(bad))
    assert [e.epoch for e in store.get_run(key).epochs] == list(range(1, after + 1))


def test_e2_redoing_an_epoch_replaces_it_and_drops_later_ones(store):
    key = claimed(store)
    for n in (1, 2, 3, 4):
        store.record_epoch(key, ME, epoch(n))
    store.record_epoch(key, ME, epoch(2, loss=0.25))
    assert [(e.epoch, e.loss) for e in store.get_run(key).epochs] == [(1, 0.5), (2, 0.25)]
    store.record_epoch(key, ME, epoch(3, loss=0.125))
    assert [e.epoch for e in store.get_run(key).epochs] == [1, 2, 3]


def test_e3_metrics_round_trip_with_nan_infinity_and_no_validation(store):
    key = claimed(store)
    odd = epoch(1, loss=math.nan, accuracy=0.1, val_loss=None, val_accuracy=None, seconds=math.inf)
    store.record_epoch(key, ME, odd)
    (back,) = store.get_run(key).epochs
    assert math.isnan(back.loss) and back.seconds == math.inf
    assert (back.accuracy, back.val_loss, back.val_accuracy) == (0.1, None, None)
    store.record_epoch(key, ME, epoch(1, loss=1 / 3))
    assert store.get_run(key).epochs == (epoch(1, loss=1 / 3),)


def test_e4_checkpoint_path_is_set_when_given_and_kept_otherwise(store):
    key = claimed(store)
    store.record_epoch(key, ME, epoch(1), checkpoint="runs/k/epoch-1.ckpt")
    store.record_epoch(key, ME, epoch(2))
    assert store.get_run(key).checkpoint == "runs/k/epoch-1.ckpt"


# -- F: outcomes ---------------------------------------------------------------------------


def test_f1_a_done_run_keeps_its_test_metrics_and_loses_its_claim(store, clock):
    key = claimed(store)
    clock.now += 60
    run = store.finish_run(key, ME, status="done", test=TestMetrics(0.03, 0.99), seconds=58.5)
    assert (run.status, run.test, run.seconds) == ("done", TestMetrics(0.03, 0.99), 58.5)
    assert (run.worker, run.heartbeat_at, run.finished_at) == (None, None, clock.now)
    assert store.get_run(key) == run


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_f1_failed_and_diverged_runs_keep_reason_and_epoch(store, status):
    key = claimed(store)
    run = store.finish_run(key, ME, status=status, reason="loss is nan", stopped_epoch=3)
    assert (run.status, run.reason, run.stopped_epoch, run.test) == (status, "loss is nan", 3, None)


def test_f1_a_pruned_run_keeps_its_epochs_reason_and_the_epoch_it_stopped_at(store):
    key = claimed(store)
    store.record_epoch(key, ME, epoch(1), checkpoint="c1")
    reason = "ranked 3 of 3 models at rung 1 (epoch 1)"
    run = store.finish_run(key, ME, status="pruned", reason=reason, stopped_epoch=1, seconds=2.0)
    assert (run.status, run.reason, run.stopped_epoch, run.test) == ("pruned", reason, 1, None)
    assert (len(run.epochs), run.checkpoint, run.worker) == (1, "c1", None)
    assert [r.key for r in store.list_runs(status="pruned")] == [key]


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        ({"status": "done"}, "a done run needs its test metrics"),
        ({"status": "failed"}, "a failed run needs a reason"),
        ({"status": "diverged", "reason": ""}, "a diverged run needs a reason"),
        (
            {"status": "running", "reason": "x"},
            "finishes as done, failed, diverged, pruned, got 'running'",
        ),
        ({"status": "pruned", "reason": "ranked last"}, "a pruned run needs the epoch it stopped"),
        ({"status": "pruned", "stopped_epoch": 1}, "a pruned run needs a reason"),
    ],
)
def test_f1_an_incomplete_outcome_is_refused_and_nothing_changes(store, outcome, message):
    key = claimed(store)
    before = store.get_run(key)
    with pytest.raises(StoreError, match=message):
        store.finish_run(key, ME, **outcome)
    assert store.get_run(key) == before


@pytest.mark.parametrize(
    ("classes", "dtype"), [(10, np.int8), (128, np.int8), (129, np.int16), (1000, np.int16)]
)
def test_f2_predictions_come_back_equal_in_the_smallest_dtype(store, classes, dtype):
    key = claimed(store)
    rng = np.random.default_rng(0)
    predicted, labels = rng.integers(0, classes, 10_000), rng.integers(0, classes, 10_000)
    predicted[0] = classes - 1
    predictions = Predictions(predicted, labels_hash(labels))
    run = store.finish_run(
        key, ME, status="done", test=TestMetrics(0.1, 0.9), predictions=predictions
    )
    back = store.get_predictions(key)
    assert back.predicted.dtype == dtype
    np.testing.assert_array_equal(back.predicted, predicted)
    assert back.test_labels_hash == run.test_labels_hash == labels_hash(labels)


def test_f2_runs_without_predictions_have_none(store):
    key = claimed(store)
    store.finish_run(key, ME, status="failed", reason="out of memory")
    assert store.get_predictions(key) is None
    assert store.get_run(key).test_labels_hash is None


@pytest.mark.parametrize(
    ("predicted", "message"),
    [
        (np.zeros((2, 5), dtype=np.int64), "1-D array of integer"),
        (np.zeros(5, dtype=np.float32), "1-D array of integer"),
        (np.array([0, -1]), r"must lie in \[0, 32767\], got \[-1, 0\]"),
        (np.array([0, 40_000]), r"got \[0, 40000\]"),
    ],
)
def test_f2_predictions_that_are_not_class_indices_are_refused(predicted, message):
    with pytest.raises(StoreError, match=message):
        Predictions(predicted, "hash")


def test_f2_labels_hash_tells_test_sets_apart():
    labels = np.arange(10) % 3
    assert labels_hash(labels) == labels_hash(labels.astype(np.uint8))
    assert labels_hash(labels) != labels_hash(labels[::-1])


def test_f3_release_returns_a_run_to_pending_with_its_epochs(store):
    key = claimed(store)
    store.record_epoch(key, ME, epoch(1), checkpoint="c1")
    store.release(key, ME)
    run = store.get_run(key)
    assert (run.status, run.worker, run.checkpoint, len(run.epochs)) == ("pending", None, "c1", 1)
    again = store.claim_next(OTHER)
    assert (again.key, again.attempts, len(again.epochs)) == (key, 2, 1)


def test_f4_requeue_forgets_a_failed_runs_results(store):
    key = claimed(store)
    store.record_epoch(key, ME, epoch(1), checkpoint="c1")
    predictions = Predictions(np.zeros(3, dtype=np.int64), "h")
    store.finish_run(key, ME, status="diverged", reason="nan", predictions=predictions)
    run = store.requeue(key)
    assert (run.status, run.reason, run.epochs, run.checkpoint) == ("pending", None, (), None)
    assert store.get_predictions(key) is None


@pytest.mark.parametrize("status", ["pending", "running", "done", "pruned"])
def test_f4_only_failed_or_diverged_runs_can_be_requeued(store, status):
    key = store.add_runs([new_run()])[0].key
    if status != "pending":
        store.claim_next(ME)
    if status == "done":
        store.finish_run(key, ME, status="done", test=TestMetrics(0.1, 0.9))
    if status == "pruned":
        store.finish_run(key, ME, status="pruned", reason="ranked last", stopped_epoch=1)
    with pytest.raises(StoreError, match=f"run {key} is {status}; only failed or diverged"):
        store.requeue(key)


# -- S: study ------------------------------------------------------------------------------


def test_s1_study_settings_are_recorded_and_replaced(store, clock):
    assert store.get_study() is None
    first = store.set_study("seed", {"seeds": [0, 1], "epochs": 12})
    clock.now += 5
    second = store.set_study("seed-v2", {"seeds": (0, 1, 2)})
    assert (second.name, second.settings) == ("seed-v2", {"seeds": [0, 1, 2]})
    assert (second.created_at, second.updated_at) == (first.created_at, clock.now)
    assert store.get_study() == second


# -- D: durability and concurrency ---------------------------------------------------------


def test_d1_a_second_store_object_sees_every_committed_write(make_store):
    writer, reader = make_store(), make_store()
    key = claimed(writer)
    writer.record_epoch(key, ME, epoch(1))
    assert reader.get_run(key).epochs == (epoch(1),)
    assert reader.claim_next(OTHER) is None


def test_d3_a_store_reopens_from_its_url(store):
    key = store.add_runs([new_run()])[0].key
    with open_store(store.url) as again:
        assert again.get_run(key) == store.get_run(key)


def _claim_until_none(url: str, label: str, start, results) -> None:
    """A worker process: claim and finish runs until none is left."""
    with open_store(url) as store:
        worker = Worker.current(label)
        start.wait()
        taken = []
        while (run := store.claim_next(worker)) is not None:
            taken.append(run.key)
            store.record_epoch(run.key, worker, epoch(1))
            store.finish_run(run.key, worker, status="done", test=TestMetrics(0.1, 0.9))
        results.put(taken)


@pytest.mark.slow
def test_c3_two_processes_claiming_concurrently_take_each_run_exactly_once(store):
    keys = [r.key for r in store.add_runs([new_run(seed=s) for s in range(40)])]
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Event(), spawn.Queue()
    workers = [
        spawn.Process(target=_claim_until_none, args=(store.url, f"p{i}", start, results))
        for i in range(2)
    ]
    for process in workers:
        process.start()
    start.set()
    taken = [results.get(timeout=60) for _ in workers]
    for process in workers:
        process.join(timeout=30)
    assert sorted(taken[0] + taken[1]) == sorted(keys)
    runs = store.list_runs()
    assert {(r.status, r.attempts, len(r.epochs)) for r in runs} == {("done", 1, 1)}


def _record_epochs_forever(url: str, key: str, ready) -> None:
    """A worker process that writes epochs (redoing 1..12 over and over) until killed."""
    store = open_store(url)
    worker = Worker.current("doomed")
    store.claim_next(worker, keys=[key])
    ready.set()
    for n in range(10**9):
        store.record_epoch(key, worker, epoch(n % 12 + 1, loss=float(n)), checkpoint=f"c{n}")


@pytest.mark.slow
def test_d1_a_writer_killed_mid_write_leaves_a_sound_store_and_a_reclaimable_run(store):
    spawn = multiprocessing.get_context("spawn")
    rng = random.Random(5)
    key = store.add_runs([new_run()])[0].key
    for attempt in range(1, 4):
        ready = spawn.Event()
        child = spawn.Process(target=_record_epochs_forever, args=(store.url, key, ready))
        child.start()
        assert ready.wait(timeout=60)
        time.sleep(rng.uniform(0.02, 0.2))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert store.verify() == []
        run = store.get_run(key)
        assert (run.status, run.attempts, run.worker.pid) == ("running", 2 * attempt - 1, child.pid)
        assert [e.epoch for e in run.epochs] == list(range(1, len(run.epochs) + 1))
        if run.epochs:  # the epoch and its checkpoint path were written together
            assert run.checkpoint == f"c{int(run.epochs[-1].loss)}"
        assert store.claim_next(OTHER).key == key
        store.release(key, OTHER)


def _pid_of_finished_process() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _wait_until_zombie(pid: int) -> None:
    """Wait for an exited, unreaped child to show state Z (proc(5)); Linux only."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        pytest.skip("needs /proc to see zombie processes")
    for _ in range(500):
        if stat.read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    pytest.fail(f"child {pid} did not exit")
