"""Fixtures for the trainer's tests: private working directories."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private directory (ipc paths must stay under ~100 characters)."""
    path = Path(tempfile.mkdtemp(prefix="ct-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def free_tcp_endpoints() -> tuple[str, str]:
    """Two loopback tcp endpoints on ports that were free a moment ago."""
    import socket

    ports = []
    holders = []
    for _ in range(2):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holders.append(holder)
        ports.append(holder.getsockname()[1])
    for holder in holders:
        holder.close()
    return f"tcp://127.0.0.1:{ports[0]}", f"tcp://127.0.0.1:{ports[1]}"
