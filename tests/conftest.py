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
