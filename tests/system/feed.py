"""A library Subscriber attached from the test process, and checks on what it (or `trainctl watch
--json`) saw: contiguous seqs within each session, contiguous steps, the sessions in order.

The recorder's thread owns the Subscriber and its ControlClient (one thread per socket); the test
thread waits on a condition for what it needs to see, never on a fixed sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from protocol import Connection, Data, FeedEvent, SessionChanged
from protocol.steps import METRICS_STEPS, step_losses

T = TypeVar("T")
POLL_MS = 100
STOP_TIMEOUT_S = 10.0


class FeedRecorder:
    """Records every FeedEvent of one Subscriber, in order."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection  # endpoints and keys, as every client gets them
        self._events: list[FeedEvent] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feed-recorder", daemon=True)

    def start(self) -> FeedRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT_S)
        assert not self._thread.is_alive(), "the feed recorder did not stop"

    def events(self) -> list[FeedEvent]:
        with self._changed:
            return list(self._events)

    def wait_for(self, probe: Callable[[list[FeedEvent]], T | None], timeout_s: float, what: str) -> T:
        """The first truthy `probe(events)`, re-evaluated on every new event, until `timeout_s`."""
        found: list[T] = []

        def check() -> bool:
            if self._failure is not None:
                raise AssertionError(f"the feed recorder failed: {self._failure!r}")
            result = probe(self._events)
            if result:
                found.append(result)
            return bool(result)

        with self._changed:
            if not self._changed.wait_for(check, timeout_s):
                seen = summary(self._events)
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; {seen}")
        return found[0]

    def _run(self) -> None:
        client = self._connection.control_client(timeout_ms=1000, retries=1)
        subscriber = self._connection.subscriber(client)
        try:
            while not self._stopping.is_set():
                events = subscriber.poll(POLL_MS)
                if events:
                    with self._changed:
                        self._events.extend(events)
                        self._changed.notify_all()
        except BaseException as exc:  # surfaced to the waiting test thread
            with self._changed:
                self._failure = exc
                self._changed.notify_all()
            raise
        finally:
            subscriber.close()
            client.close()


# -- what a feed looked like, from FeedEvents or from `trainctl watch --json` lines -----------------


def data_messages(events: Iterable[FeedEvent]) -> list[dict[str, Any]]:
    """Data events as {session, seq, topic, body} maps, the shape `watch --json` prints."""
    return [
        {"session": e.message.session, "seq": e.message.seq, "topic": e.message.topic, "body": e.message.body}
        for e in events
        if isinstance(e, Data)
    ]


def kinds(events: Iterable[FeedEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def steps(messages: Iterable[dict[str, Any]], session: str | None = None) -> list[int]:
    """Every step the `metrics.steps` messages hold, in the order delivered (one session's only,
    if given)."""
    return [
        step
        for m in messages
        if m["topic"] == METRICS_STEPS and (session is None or m["session"] == session)
        for step, _ in step_losses(m["body"])
    ]


def sessions(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The sessions the data came from, each once, in order of first appearance."""
    seen: list[str] = []
    for m in messages:
        if m["session"] not in seen:
            seen.append(m["session"])
    return seen


def breaks(numbers: list[int]) -> list[tuple[int, int]]:
    """Each (previous, next) pair where next is not previous + 1: empty for a contiguous run."""
    return [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1]


def seq_breaks_per_session(messages: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    """Seq breaks within each session (a session appearing twice, interleaved, shows as a break)."""
    found = {}
    for session in sessions(messages):
        seqs = [int(m["seq"]) for m in messages if m["session"] == session]
        found[session] = breaks(seqs)
    return found


def checkpoint_steps(messages: Iterable[dict[str, Any]], session: str | None = None) -> list[int]:
    return [
        int(m["body"]["step"])
        for m in messages
        if m["topic"] == "event.checkpoint_saved" and (session is None or m["session"] == session)
    ]


def session_changes(events: Iterable[FeedEvent]) -> list[SessionChanged]:
    return [e for e in events if isinstance(e, SessionChanged)]


def summary(events: list[FeedEvent]) -> str:
    """A short account for failure messages: event kinds (data counted) and the last steps."""
    counts: dict[str, int] = {}
    for kind in kinds(events):
        counts[kind] = counts.get(kind, 0) + 1
    messages = data_messages(events)
    return f"feed so far: {counts}, sessions {sessions(messages)}, last steps {steps(messages)[-5:]}"
