"""A library Subscriber followed from its own thread, for tests and bench/: every FeedEvent, in order,
with the wall time it arrived; callers wait on a condition for what they need to see, never on a
fixed sleep or a poll of their own.

The recorder's thread owns the Subscriber and its ControlClient (one thread per socket, as pyzmq
requires); a failure there is raised to whoever waits next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from protocol import Connection, Data, FeedEvent

T = TypeVar("T")
POLL_MS = 100
STOP_TIMEOUT_S = 10.0


class FeedRecorder:
    """Records every FeedEvent of one Subscriber and ``time.time()`` at its arrival."""

    def __init__(self, connection: Connection, timeout_ms: int = 1000, retries: int = 1) -> None:
        self._connection, self._timeout_ms, self._retries = connection, timeout_ms, retries
        self._events: list[FeedEvent] = []
        self._arrived: list[float] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feed-recorder", daemon=True)

    def start(self) -> FeedRecorder:
        self._thread.start()
        return self

    def stop(self, *exc: object) -> None:
        self._stopping.set()
        # The thread may be inside a control request (a probe or a backfill), with all its retries.
        self._thread.join(STOP_TIMEOUT_S + self._timeout_ms / 1000 * (self._retries + 1))
        assert not self._thread.is_alive(), "the feed recorder did not stop"

    __enter__, __exit__ = start, stop

    def events(self) -> list[FeedEvent]:
        with self._changed:
            return list(self._events)

    def live_data(self) -> list[tuple[Data, float]]:
        """The Data events delivered live (not replayed from history at start), with arrival times."""
        with self._changed:
            pairs = zip(self._events, self._arrived, strict=True)
            return [(e, at) for e, at in pairs if isinstance(e, Data) and not e.catching_up]

    def wait_for(self, probe: Callable[[list[FeedEvent]], T | None], timeout_s: float, what: str = "it") -> T:
        """The first truthy ``probe(events)``, evaluated again on every new event; an AssertionError
        naming ``what`` after ``timeout_s``, or if the recorder's thread failed."""
        found: list[T] = []

        def check() -> bool:
            if self._failure is not None:
                raise AssertionError(f"the feed recorder failed: {self._failure!r}")
            if result := probe(self._events):
                found.append(result)
            return bool(result)

        with self._changed:
            if not self._changed.wait_for(check, timeout_s):
                kinds = [type(e).__name__ for e in self._events[-10:]]
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {kinds}")
        return found[0]

    def _run(self) -> None:
        client = self._connection.control_client(timeout_ms=self._timeout_ms, retries=self._retries)
        subscriber = self._connection.subscriber(client)
        try:
            while not self._stopping.is_set():
                if events := subscriber.poll(POLL_MS):
                    now = time.time()
                    with self._changed:
                        self._events.extend(events)
                        self._arrived.extend([now] * len(events))
                        self._changed.notify_all()
        except BaseException as exc:  # raised to the waiting thread
            with self._changed:
                self._failure = exc
                self._changed.notify_all()
            raise
        finally:
            subscriber.close()
            client.close()
