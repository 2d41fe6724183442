"""Helpers shared by the protocol tests: talking raw ZeroMQ, polling a subscriber until a condition.

The fake trainer, `CallLog` and `wait_until` are the ones every test package uses (`fakes.trainer`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import zmq

from fakes.trainer import WAIT_TIMEOUT_S, CallLog, FakeTrainer, wait_until
from protocol import Data, FeedEvent, Message, Subscriber

__all__ = ["WAIT_TIMEOUT_S", "CallLog", "FakeTrainer", "data_seqs", "delivered_up_to", "poll_until",
           "raw_exchange", "wait_until"]  # fmt: skip


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
