"""Helpers shared by the protocol tests: waiting on conditions, talking raw ZeroMQ, a fake trainer.

The fake trainer is the smallest thing that serves the protocol the way the real one does: a
`ControlServer` with `status` and `history` plus a `Publisher`, on ipc endpoints in a private dir.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from protocol import (
    ControlServer,
    Data,
    FeedEvent,
    Message,
    Publisher,
    Subscriber,
    new_session_id,
)

WAIT_TIMEOUT_S = 10.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S, what: str = "") -> None:
    """Return once `predicate()` holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.005)


class CallLog:
    """A handler wrapper that records every call, so tests can assert what ran and what did not."""

    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.called = threading.Event()
        self.handler = handler or (lambda args: {"n": len(self.calls)})

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(args)
        self.called.set()
        return self.handler(args)

    @property
    def count(self) -> int:
        return len(self.calls)


def raw_exchange(endpoint: str, frames: list[bytes], timeout_ms: int = 2000) -> Message:
    """Send frames on a fresh REQ socket and decode the one reply (fails if none comes)."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.REQ) as socket:
        socket.linger = 0
        socket.connect(endpoint)
        socket.send_multipart(frames)
        if not socket.poll(timeout_ms, zmq.POLLIN):
            raise AssertionError(f"no reply from {endpoint} within {timeout_ms} ms")
        return Message.from_frames(socket.recv_multipart())


class FakeTrainer:
    """A control server and a publisher for one session, as a trainer process would run them."""

    def __init__(
        self,
        control: str,
        metrics: str,
        *,
        session: str | None = None,
        heartbeat_interval_s: float = 0.1,
        history_size: int = 10_000,
        heartbeat_body: Callable[[], dict[str, Any]] | None = None,
        send_hwm: int = 10_000,
        queue_size: int = 100_000,  # tests publish bursts faster than a real loop: keep them all
        extra_handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        self.session = session or new_session_id()
        self.publisher = Publisher(
            metrics,
            session=self.session,
            heartbeat_interval_s=heartbeat_interval_s,
            history_size=history_size,
            heartbeat_body=heartbeat_body,
            send_hwm=send_hwm,
            queue_size=queue_size,
        )
        self.history_calls = CallLog(self.publisher.history_handler)
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self.status,
            "history": self.history_calls,
            **(extra_handlers or {}),
        }
        self.server = ControlServer(control, handlers, session=self.session)

    def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"state": "running", "session": self.session, "last_seq": self.publisher.last_seq}

    def start(self) -> FakeTrainer:
        self.server.start()
        self.publisher.start()
        return self

    def publish_many(self, count: int, topic: str = "metrics.step", pad: str = "") -> None:
        first = self.publisher.last_seq
        for index in range(count):
            self.publisher.publish(topic, {"i": index, "pad": pad})
        wait_until(lambda: self.publisher.last_seq >= first + count, what=f"{count} messages published")

    def close(self) -> None:
        self.publisher.close()
        self.server.close()


def poll_until(
    subscriber: Subscriber,
    done: Callable[[list[FeedEvent]], bool],
    timeout_s: float = WAIT_TIMEOUT_S,
    what: str = "",
) -> list[FeedEvent]:
    """Poll `subscriber`, collecting events, until `done(events)`; fail after `timeout_s`."""
    events: list[FeedEvent] = []
    deadline = time.monotonic() + timeout_s
    while not done(events):
        if time.monotonic() > deadline:
            kinds = [type(event).__name__ for event in events][-20:]
            raise AssertionError(f"timed out waiting for {what}; last events: {kinds}")
        events.extend(subscriber.poll(50))
    return events


def data_seqs(events: Iterable[FeedEvent]) -> list[int]:
    return [event.message.seq for event in events if isinstance(event, Data) and event.message.seq]


def delivered_up_to(seq: int) -> Callable[[list[FeedEvent]], bool]:
    return lambda events: seq in data_seqs(events)
