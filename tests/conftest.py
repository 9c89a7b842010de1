"""Shared fixtures: the real MNIST copy beside the repo (never a mocked dataset)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The directory with the four MNIST IDX .gz files that CI has beside the repo."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"MNIST not found at {SHARED_MNIST}; clone the repo beside ../shared")
    return SHARED_MNIST


# A small study trained once per test session for the tests that use its results (load_run,
# exports, results tables, tracker logs): two models, two seeds, four epochs on 1200 images,
# the last quarter held out for validation, so the best epoch is often not the last.
TRAINED_STUDY = """
name = "trained"
seeds = 2
[[model]]
name = "conv"
optimizer = "adam"
layers = [
  { conv = 6, kernel = 3, activation = "relu" }, { maxpool = 2 }, { dropout = 0.25 },
  "flatten", { dense = "classes", activation = "softmax" },
]
[[model]]
name = "dense"
optimizer = { name = "sgd", learning_rate = 0.05 }
layers = [
  "flatten", { dense = 32, activation = "relu" }, { dense = "classes", activation = "softmax" },
]
[training]
epochs = 4
batch_size = 64
validation = 0.25
"""
TRAINED_STUDY_LIMIT = 1200


@pytest.fixture(scope="session")
def trained_study(tmp_path_factory, mnist_dir) -> Path:
    """The directory of TRAINED_STUDY, trained (about 10 s on two cores)."""
    from cnnlab import study

    root = tmp_path_factory.mktemp("trained")
    spec = root / "trained.toml"
    spec.write_text(TRAINED_STUDY)
    directory = root / "study"
    study.run_study(
        spec,
        directory=directory,
        data_dir=mnist_dir,
        train_limit=TRAINED_STUDY_LIMIT,
        progress="quiet",
    )
    return directory
