"""Test doubles for the sidecar: a MemoryBackend whose sends can be awaited (no sleeps), private
ipc endpoints, and a running Sidecar. The fake trainer is shared with trainctl: fakes/trainer.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes.processes import scratch_dir
from sidecar.app import Sidecar
from sidecar.backend import MemoryBackend, Priority, SentMessage
from sidecar.config import Config

WAIT_S = 10.0


class WaitingBackend(MemoryBackend):
    """MemoryBackend whose sends can be awaited."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        super().send_text(text, to, priority)
        with self.changed:
            self.changed.notify_all()

    def send_image(self, path: Path, to: str | None = None) -> None:
        super().send_image(path, to)
        with self.changed:
            self.changed.notify_all()

    def snapshot(self) -> list[SentMessage]:
        with self._lock:
            return list(self.sent)

    def wait_for(
        self, predicate: Callable[[SentMessage], bool], timeout_s: float = WAIT_S, after: int = 0
    ) -> SentMessage:
        """The first sent message (from index `after` on) matching `predicate`."""

        def found() -> SentMessage | None:
            return next((m for m in self.snapshot()[after:] if predicate(m)), None)

        with self.changed:
            ok = self.changed.wait_for(lambda: found() is not None, timeout_s)
        assert ok, f"nothing matching within {timeout_s} s; sent: {self.snapshot()!r}"
        message = found()
        assert message is not None
        return message

    def wait_text(self, fragment: str, timeout_s: float = WAIT_S, after: int = 0) -> str:
        return self.wait_for(lambda m: fragment in m.text, timeout_s, after).text

    def count(self, fragment: str) -> int:
        return sum(fragment in m.text for m in self.snapshot())


@contextmanager
def endpoints() -> Iterator[tuple[str, str]]:
    """Short ipc endpoints in a fresh private directory (ipc paths have a ~100 byte limit)."""
    with scratch_dir("ct-") as directory:
        yield f"ipc://{directory}/c", f"ipc://{directory}/m"


def make_config(control: str, metrics: str, state_dir: Path, **overrides: Any) -> Config:
    options: dict[str, Any] = {
        "backend": "memory",
        "control": control,
        "metrics": metrics,
        "state_dir": state_dir,
        "request_timeout_ms": 500,
        "request_retries": 1,
        "progress_interval_s": 60.0,
    }
    options.update(overrides)
    return Config(**options)


@contextmanager
def running_sidecar(config: Config) -> Iterator[tuple[Sidecar, WaitingBackend]]:
    backend = WaitingBackend()
    app = Sidecar(config, backend)
    backend.connect(app.on_message)
    app.start()
    try:
        yield app, backend
    finally:
        app.close()
