"""Fixtures for the system tests: the Procfile stack (one per test module) and a skip off Linux."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.stack import ProcfileStack


@pytest.fixture(scope="module")
def stack(mnist_path: Path | None) -> Iterator[ProcfileStack]:
    """`honcho start` on the repository's Procfile, training autostarted, the sidecar logging in
    to a fake web-WeChat server; torn down whatever happens, and no process of it may survive."""
    if not sys.platform.startswith("linux"):
        pytest.skip("finds its processes in /proc")
    pytest.importorskip("honcho", reason="needs honcho (the Procfile launcher)")
    running = ProcfileStack(mnist_path).start()
    try:
        yield running
    finally:
        running.close()
    assert not running.strays, f"processes outlived the Procfile launcher (killed now): {running.strays}"
