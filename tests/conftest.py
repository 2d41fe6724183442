"""Fixtures every test package shares: where the test data is, and how a trainer gets it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI and developers have the real MNIST beside the clone, in ../shared/data; CHATTRAIN_TEST_MNIST
# points elsewhere. Without it, tests that need data use small generated arrays instead.
MNIST_PATH = Path(os.environ.get("CHATTRAIN_TEST_MNIST", REPO_ROOT.parent / "shared" / "data" / "mnist.npz"))


@pytest.fixture(scope="session")
def mnist_path() -> Path | None:
    """The real MNIST npz if present, else None (callers fall back to generated data)."""
    return MNIST_PATH if MNIST_PATH.exists() else None


DATA_LIMIT = 512  # samples: enough for a few dozen steps, quick to load
SYNTHETIC_SAMPLES = 512


@pytest.fixture(scope="session")
def data_args(mnist_path: Path | None) -> list[str]:
    """`python -m trainer` arguments: MNIST's first few hundred samples, or generated data."""
    if mnist_path is None:
        return ["--synthetic-data", str(SYNTHETIC_SAMPLES)]
    return ["--data", str(mnist_path), "--data-limit", str(DATA_LIMIT)]
