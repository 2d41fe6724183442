"""Fixtures for sidecar tests: a fake web-WeChat server and real-itchat backends against it."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fakes.ilink import FakeIlinkServer
from fakes.processes import scratch_dir
from fakes.wechat import FakeWeChatServer
from sidecar.backend import IncomingText

if TYPE_CHECKING:
    from sidecar.wechat import WeChatBackend

READY_TIMEOUT_S = 10.0


@pytest.fixture(autouse=True)
def private_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Default endpoints and instance keys in a private directory, not the user's shared one."""
    with scratch_dir("cts-") as path:
        monkeypatch.setenv("CHATTRAIN_RUNTIME_DIR", str(path))
        yield path


@pytest.fixture
def fake_wechat(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWeChatServer]:
    """A fake web-WeChat server on 127.0.0.1 (any free port), proxies bypassed for it."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FakeWeChatServer() as server:
        yield server


@pytest.fixture
def server() -> Iterator[FakeIlinkServer]:
    """The iLink tests' fake iLink server on 127.0.0.1 (any free port; see `no_proxy`)."""
    with FakeIlinkServer() as fake:
        yield fake


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to fake servers on 127.0.0.1 bypass any proxy set in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class Inbox:
    """Collects what a backend delivers; tests wait on it, never sleep."""

    def __init__(self) -> None:
        self.messages: list[IncomingText] = []
        self._changed = threading.Condition()

    def __call__(self, message: IncomingText) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[IncomingText], bool], timeout_s: float = 5.0) -> IncomingText:
        with self._changed:
            ok = self._changed.wait_for(lambda: any(predicate(m) for m in self.messages), timeout_s)
            assert ok, f"no matching message within {timeout_s} s; got {self.messages!r}"
            return next(m for m in self.messages if predicate(m))


class RunningBackend:
    """A WeChatBackend running in its own thread, with its inbox and QR output."""

    def __init__(self, backend: WeChatBackend, inbox: Inbox, qr_output: io.StringIO) -> None:
        self.backend = backend
        self.inbox = inbox
        self.qr_output = qr_output
        self.thread = threading.Thread(target=backend.run, args=(inbox,), name="backend-run")

    def stop(self) -> None:
        self.backend.stop()
        self.thread.join(READY_TIMEOUT_S)
        assert not self.thread.is_alive(), "backend.run() did not return after stop()"


@pytest.fixture
def start_wechat_backend(
    fake_wechat: FakeWeChatServer, tmp_path: Path
) -> Iterator[Callable[..., RunningBackend]]:
    """Start a real-itchat WeChatBackend against `fake_wechat`; waits until it is ready."""
    from sidecar.wechat import WeChatBackend

    started: list[RunningBackend] = []

    def start(state_dir: Path | None = None, **kwargs: Any) -> RunningBackend:
        qr_output = io.StringIO()
        state = state_dir or tmp_path / "state"
        backend = WeChatBackend(state, base_url=fake_wechat.url, qr_stream=qr_output, **kwargs)
        running = RunningBackend(backend, Inbox(), qr_output)
        started.append(running)
        running.thread.start()
        assert backend.ready.wait(READY_TIMEOUT_S), "backend did not log in"
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
