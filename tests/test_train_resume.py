"""A training process killed with SIGKILL mid-epoch resumes to the weights of an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_weights

# Trains a small CNN (conv, batch norm, dropout, Adam: every kind of state a checkpoint must
# restore) for 3 epochs on 2,000 real MNIST images; kills itself with SIGKILL at batch KILL_STEP
# of epoch KILL_EPOCH when those are given.
CHILD = """
import os, signal, sys
from cnnlab.data import load_dataset
from cnnlab.spec import (CLASSES, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                         MaxPooling2D, ModelSpec, OptimizerSpec)
from cnnlab.train import train_model

data_dir, run_dir, kill_epoch, kill_step = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])

class KillMidEpoch:
    def start_epoch(self, epoch, epochs, steps):
        self.epoch = epoch
    def update(self, step, running):
        if (self.epoch, step) == (kill_epoch, kill_step):
            os.kill(os.getpid(), signal.SIGKILL)
    def end_epoch(self, record):
        pass
    def close(self):
        pass

spec = ModelSpec(
    name="tiny-bn",
    layers=(Conv2D(8, (3, 3), activation="relu"), BatchNormalization(), MaxPooling2D((2, 2)),
            Dropout(0.25), Flatten(), Dense(CLASSES, activation="softmax")),
    optimizer=OptimizerSpec("adam"),
)
result = train_model(spec, load_dataset("mnist", data_dir=data_dir), seed=7, epochs=3,
                     train_limit=2000, run_dir=run_dir, progress=KillMidEpoch(), threads=2)
print(result.status, result.resumed_from)
"""


def train_in_child(mnist_dir: Path, run_dir: Path, kill_at: tuple[int, int] = (0, 0)):
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(mnist_dir), str(run_dir), *map(str, kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def history(run_dir: Path) -> list[dict]:
    body = json.loads((run_dir / "epoch-0003.json").read_text())["body"]
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}
        for r in body["history"]
    ]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_mid_epoch_then_resume_gives_the_unbroken_runs_weights(mnist_dir, tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    assert train_in_child(mnist_dir, unbroken).stdout.split() == ["done", "0"]

    killed = train_in_child(mnist_dir, broken, kill_at=(2, 6))
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in broken.iterdir()) == [
        "best.json",  # epoch 1, the best so far
        "best.safetensors",
        "epoch-0001.json",
        "epoch-0001.safetensors",
    ]

    resumed = train_in_child(mnist_dir, broken)
    assert resumed.stdout.split() == ["done", "1"], resumed.stderr
    expected, got = (
        load_weights(unbroken / "epoch-0003.safetensors"),
        load_weights(broken / "epoch-0003.safetensors"),
    )
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    assert history(broken) == history(unbroken)
