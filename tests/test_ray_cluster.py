"""Studies on multi-node Ray clusters on this machine, as a cluster user runs them.

Each node gets its own TMPDIR, so node-local run directories differ between nodes as on
separate machines; with `shared_dir=False` (`--shared-dir no`) no task writes to the study
directory, so a checkpoint that did not travel through the driver cannot be found by accident.
Slow (a cluster takes 10-20 s to start on 2 cores): a few short tests, one cluster for most.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cnnlab import study
from cnnlab.cli import main
from cnnlab.ray_executor import NODE_DIRNAME
from cnnlab.store import STORE_FILENAME, open_store

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the Ray executor needs `pip install cnnlab[ray]`")

EPOCHS = 5
TRAIN_LIMIT = 6000  # 1-2 s an epoch on one loaded core: time to look and to kill
STUDY = f"""
name = "cluster"
seeds = 1
[[model]]
name = "conv"
optimizer = "adam"
layers = [
  {{ conv = 8, kernel = 3, activation = "relu" }}, {{ maxpool = 2 }}, {{ dropout = 0.25 }},
  "flatten", {{ dense = "classes", activation = "softmax" }},
]
[training]
epochs = {EPOCHS}
batch_size = 64
validation = 0.1
"""
DEADLINE = 240.0  # seconds a test waits for a study step before it fails
# Each node's object store holds the dataset (55 MB of MNIST) once per study that sends it,
# and a killed driver's copy is freed late: room for a few (Cluster's default is 150 MB).
OBJECT_STORE_BYTES = 400 * 1024 * 1024


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "cluster.toml"
    path.write_text(STUDY)
    return path


def cli_options(directory: Path, mnist_dir: Path) -> list[str]:
    return [
        "--dir", str(directory), "--data-dir", str(mnist_dir), "--threads", "1",
        "--train-limit", str(TRAIN_LIMIT), "--no-report",
    ]  # fmt: skip


def epoch_records(directory: Path) -> dict[tuple[str, int], float]:
    """When the store recorded each (run, epoch): a redone epoch gets a new time. None yet
    while the driver is still creating the store (its file exists before its tables)."""
    uri = f"{(directory / STORE_FILENAME).as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        try:
            rows = db.execute("SELECT run_key, epoch, recorded_at FROM epochs").fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return {}
    return {(key, epoch): at for key, epoch, at in rows}


def wait_for(condition, what: str, *, every: float = 0.2):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"gave up waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- a cluster started the way Ray users start one ------------------------------------------------


def test_cnnlab_run_on_a_cluster_started_with_ray_start(study_file, tmp_path, mnist_dir):
    """`ray start --head` on 127.0.0.1, a second `ray start --address`, `cnnlab run --executor
    ray --address`; each `ray start --block` ends its node's processes when terminated (never
    `ray stop`, which would end every Ray instance of this user on the machine)."""
    ray_bin = Path(sys.executable).with_name("ray")
    port = free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="cnnlab-ray-")  # short: Ray's socket paths must fit 107 bytes
    head = [str(ray_bin), "start", "--block", "--head", "--node-ip-address", "127.0.0.1"]
    head += ["--port", str(port), "--num-cpus", "1", "--include-dashboard", "false"]
    head += ["--temp-dir", temp, "--disable-usage-stats"]
    node = [str(ray_bin), "start", "--block", "--address", address, "--num-cpus", "1"]
    node += ["--node-ip-address", "127.0.0.1"]
    # Without a token of its own: `ray start` turns token authentication on when the user has
    # one (~/.ray/auth_token), and then every client needs RAY_AUTH_MODE=token too.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    nodes = [subprocess.Popen(head, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)]
    try:
        wait_for(lambda: ray_status_ok(ray_bin, address, env), "the head node", every=1)
        nodes.append(
            subprocess.Popen(node, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        )
        wait_for(lambda: ray_status_ok(ray_bin, address, env, nodes=2), "the 2nd node", every=1)
        command = [sys.executable, "-m", "cnnlab", "run", str(study_file), "--executor", "ray"]
        command += ["--address", address, "--epochs", "1", "--json"]
        command += cli_options(tmp_path, mnist_dir)
        too_big = subprocess.run(
            [*command, "--threads", "4"], capture_output=True, text=True, timeout=DEADLINE, env=env
        )  # a run no node can take would wait forever: refused
        assert too_big.returncode == 2, too_big.stderr
        assert "the largest node of the cluster has 1; pass --threads 1" in too_big.stderr
        done = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE, env=env)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        assert [(row["status"], row["epochs"]) for row in rows] == [("done", 1)]
    finally:
        for process in reversed(nodes):
            process.terminate()
        for process in reversed(nodes):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def ray_status_ok(ray_bin: Path, address: str, env: dict, nodes: int = 1) -> bool:
    status = subprocess.run(
        [str(ray_bin), "status", "--address", address], capture_output=True, text=True, env=env
    )
    return status.returncode == 0 and status.stdout.count("node_") >= nodes


# -- one cluster of three nodes: the driver's (no CPUs) and two workers -----------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head node for the driver (no CPUs: no run trains there) and two one-CPU worker nodes,
    each with its own TMPDIR."""
    from ray.cluster_utils import Cluster

    roots = {name: tmp_path_factory.mktemp(name) for name in ("head", "node1", "node2")}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, **node_options(roots["head"])},
    )
    forget_address(cluster.address)
    workers = {
        cluster.add_node(num_cpus=1, **node_options(roots[name])): roots[name]
        for name in ("node1", "node2")
    }
    ray.init(address=cluster.address, include_dashboard=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def forget_address(address: str) -> None:
    """Cluster writes its address where a plain `ray.init()` on this machine looks for a
    cluster to join (/tmp/ray/ray_current_cluster); take it back, so that others using Ray
    here meanwhile start their own instance instead of joining this one."""
    from ray._common.utils import reset_ray_address
    from ray._private.utils import read_ray_address

    if read_ray_address() == address:
        reset_ray_address()


def node_options(root: Path) -> dict:
    return {"env_vars": {"TMPDIR": str(root)}, "object_store_memory": OBJECT_STORE_BYTES}


def in_thread(function) -> dict:
    """Call `function` in a thread, failing the test when it has not returned by DEADLINE."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(value=function()), daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def joined(result: dict):
    result["thread"].join(timeout=DEADLINE)
    if "value" not in result:
        pytest.fail("the study did not end in time (or raised: see the thread's exception)")
    return result["value"]


def replace_node(ray_cluster, workers: dict, removed) -> None:
    """A new node on the removed one's directory, in its place in `workers` (the module's
    tests share the cluster: a later test must find the node that is there now)."""
    root = workers.pop(removed)
    workers[ray_cluster.add_node(num_cpus=1, **node_options(root))] = root


def node_dir_of(workers: dict, key: str):
    """The worker node whose own disk holds the run's directory (it trains the run there)."""
    for node, root in workers.items():
        if list((root / NODE_DIRNAME).glob(f"*/{key}/epoch-*.json")):
            return node
    return None


def on_ray(study_file: Path, directory: Path, mnist_dir: Path) -> study.StudyOutcome:
    """The study on the cluster, checkpoints sent through the driver (`--shared-dir no`)."""
    return study.run_study(
        study_file,
        directory=directory,
        executor="ray",
        shared_dir=False,
        threads=1,
        train_limit=TRAIN_LIMIT,
        data_dir=mnist_dir,
        progress="quiet",
    )


def test_a_lost_node_costs_only_the_epoch_in_flight_and_epochs_stream_meanwhile(
    cluster, study_file, tmp_path, mnist_dir, capsys
):
    ray_cluster, workers = cluster
    directory = tmp_path / "study"
    driving = in_thread(lambda: on_ray(study_file, directory, mnist_dir))

    def running_with_epochs():  # what `cnnlab runs --json` shows while the task trains
        if not (directory / STORE_FILENAME).exists() or main(["runs", str(directory), "--json"]):
            return None
        rows = json.loads(capsys.readouterr().out)
        return rows if rows[0]["status"] == "running" and rows[0]["epochs"] >= 1 else None

    rows = wait_for(running_with_epochs, "an epoch of the running Ray run in the store")
    key = rows[0]["key"]
    node = wait_for(lambda: node_dir_of(workers, key), "the node training the run")
    ray_cluster.remove_node(node, allow_graceful=False)
    killed_at = time.time()
    before = {k: at for k, at in epoch_records(directory).items() if at < killed_at}
    assert joined(driving).counts["done"] == 1

    after = epoch_records(directory)
    assert sorted(epoch for _, epoch in after) == list(range(1, EPOCHS + 1))
    assert len(before) >= 1
    for done_before, at in before.items():  # finished epochs were not trained again
        assert after[done_before] == at
    assert any(at > killed_at for at in after.values())  # the rest trained on the other node
    # The driver's copy holds the final and the best checkpoint: they travelled, no node wrote
    # them there.
    assert sorted(p.name for p in (directory / "runs" / key).glob("*.safetensors")) == [
        "best.safetensors",
        f"epoch-{EPOCHS:04d}.safetensors",
    ]
    unbroken = study.run_study(
        study_file,
        directory=tmp_path / "local",
        threads=1,
        train_limit=TRAIN_LIMIT,
        data_dir=mnist_dir,
        progress="quiet",
    )
    with open_store(directory) as resumed, open_store(unbroken.directory) as local:
        assert np.array_equal(
            resumed.get_predictions(key).predicted, local.get_predictions(key).predicted
        )
    replace_node(ray_cluster, workers, node)


def test_killing_the_driver_then_running_again_loses_no_finished_epoch(
    cluster, study_file, tmp_path, mnist_dir
):
    ray_cluster, _ = cluster
    directory = tmp_path / "study"
    command = [sys.executable, "-m", "cnnlab", "run", str(study_file), "--executor", "ray"]
    command += ["--address", ray_cluster.address, "--shared-dir", "no", "--quiet"]
    command += cli_options(directory, mnist_dir)
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: (directory / STORE_FILENAME).exists() and len(epoch_records(directory)) >= 1,
            "an epoch recorded",
        )
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.communicate()
    before = epoch_records(directory)
    outcome = joined(in_thread(lambda: on_ray(study_file, directory, mnist_dir)))
    assert outcome.counts["done"] == 1 and outcome.runs[0].attempts == 2
    after = epoch_records(directory)
    assert len(after) == EPOCHS
    for epoch, at in before.items():
        assert after[epoch] == at


def test_a_run_whose_ray_retries_are_spent_is_pending_again_and_resumes_later(
    cluster, study_file, tmp_path, mnist_dir, capsys, monkeypatch
):
    from cnnlab import ray_executor

    monkeypatch.setattr(ray_executor, "TASK_RETRIES", 0)  # the node's loss spends them all
    ray_cluster, workers = cluster
    directory = tmp_path / "study"
    driving = in_thread(lambda: on_ray(study_file, directory, mnist_dir))
    wait_for(
        lambda: (directory / STORE_FILENAME).exists() and len(epoch_records(directory)) >= 1,
        "an epoch recorded",
    )
    key = study.study_runs(directory)[0].key
    node = wait_for(lambda: node_dir_of(workers, key), "the node training the run")
    ray_cluster.remove_node(node, allow_graceful=False)
    try:
        outcome = joined(driving)
    finally:
        replace_node(ray_cluster, workers, node)
    # Given back, not failed: no --retry-failed needed, and the finished epochs stay.
    assert outcome.counts["failed"] == 0 and outcome.counts["pending"] == 1
    (run,) = study.study_runs(directory)
    assert run.status == "pending"
    before = epoch_records(directory)
    assert len(before) >= 1

    monkeypatch.setattr(ray_executor, "TASK_RETRIES", 3)
    resumed = joined(in_thread(lambda: on_ray(study_file, directory, mnist_dir)))
    assert resumed.counts["done"] == 1
    after = epoch_records(directory)
    assert len(after) == EPOCHS
    for epoch, at in before.items():  # resumed from its last checkpoint, not from epoch 0
        assert after[epoch] == at
