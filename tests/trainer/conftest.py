"""Fixtures for the trainer's tests: private working directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.processes import free_ports, scratch_dir


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private directory (ipc paths must stay under ~100 characters)."""
    with scratch_dir("ct-") as path:
        yield path


@pytest.fixture
def free_tcp_endpoints() -> tuple[str, str]:
    """Two loopback tcp endpoints on ports that were free a moment ago."""
    control, metrics = free_ports(2)
    return f"tcp://127.0.0.1:{control}", f"tcp://127.0.0.1:{metrics}"
