"""Fixtures for the protocol tests: private ipc endpoints, real servers, cleanup in reverse order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from fakes.processes import free_ports, scratch_dir
from protocol import ControlClient, ControlServer, Subscriber
from tests.protocol.support import FakeTrainer


class Closeable(Protocol):
    def close(self) -> None: ...


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short, private (0700) directory under /tmp: ipc paths must stay under ~100 characters."""
    with scratch_dir("ct-") as path:
        yield path


@pytest.fixture
def endpoint(ipc_dir: Path) -> Callable[[str], str]:
    """`endpoint("control")` -> an ipc endpoint in the private directory."""
    return lambda name: f"ipc://{ipc_dir}/{name}"


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Register something with `.close()`; everything registered is closed at teardown, newest first."""
    items: list[Closeable] = []

    def register(item: Any) -> Any:
        items.append(item)
        return item

    yield register
    for item in reversed(items):
        item.close()


@pytest.fixture
def serve(closing: Callable[[Any], Any]) -> Callable[..., ControlServer]:
    """`serve(endpoint, handlers, session=...)` -> a started ControlServer, closed at teardown."""

    def start(
        endpoint: str, handlers: dict[str, Any], *, session: str = "test-session", **kw: Any
    ) -> ControlServer:
        server = ControlServer(endpoint, handlers, session=session, **kw)
        server.start()
        closing(server)
        return server

    return start


@pytest.fixture
def client(closing: Callable[[Any], Any]) -> Callable[..., ControlClient]:
    """`client(endpoint, timeout_ms=..., retries=...)` -> a ControlClient, closed at teardown."""
    return lambda endpoint, **kw: closing(ControlClient(endpoint, **kw))


@pytest.fixture
def trainer(endpoint: Callable[[str], str], closing: Callable[[Any], Any]) -> Callable[..., FakeTrainer]:
    """`trainer(**options)` -> a started FakeTrainer on this test's control/metrics endpoints."""
    return lambda **kw: closing(FakeTrainer(endpoint("control"), endpoint("metrics"), **kw).start())


@pytest.fixture
def subscriber(endpoint: Callable[[str], str], closing: Callable[[Any], Any]) -> Callable[..., Subscriber]:
    """`subscriber(**options)` -> a Subscriber (and its ControlClient) on this test's endpoints."""

    def make(timeout_ms: int = 500, retries: int = 1, **kw: Any) -> Subscriber:
        control = closing(ControlClient(endpoint("control"), timeout_ms=timeout_ms, retries=retries))
        sub = Subscriber(endpoint("metrics"), control, **kw)
        closing(sub)
        return sub

    return make


@pytest.fixture
def free_tcp_endpoint() -> Callable[[], str]:
    """A tcp://127.0.0.1 endpoint on a port that was free a moment ago."""

    return lambda: f"tcp://127.0.0.1:{free_ports()[0]}"
