"""A subscriber fed frames and history pages of any shape never raises: it skips them and goes on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from protocol import ControlServer, Data, FeedEvent, Gap, Subscriber
from tests.protocol.support import WAIT_TIMEOUT_S

SESSION = "hostile"
HOSTILE_FRAMES: list[list[bytes]] = [
    [b"\xc1garbage"],
    [b"metrics.steps", b"\xc1"],
    [b"metrics.steps", msgpack.packb({"v": 1, "type": "data", "seq": "one", "session": SESSION})],
    [b"metrics.steps", msgpack.packb([1, 2, 3])],
    [b"a", b"b", b"c"],
    [
        b"heartbeat",
        msgpack.packb({"v": 1, "type": "heartbeat", "session": SESSION, "ts": None, "body": None}),
    ],
    [
        b"heartbeat",
        msgpack.packb(
            {"v": 1, "type": "heartbeat", "session": SESSION, "body": {"interval_s": "x", "state": 5}}
        ),
    ],
]


def _data(seq: int, **fields: Any) -> list[bytes]:
    base = {"v": 1, "type": "data", "topic": "metrics.steps", "session": SESSION, "seq": seq, "body": {}}
    return [b"metrics.steps", msgpack.packb({**base, **fields})]


def _heartbeat(seq: int) -> list[bytes]:
    body = {"v": 1, "type": "heartbeat", "topic": "heartbeat", "session": SESSION, "seq": seq, "body": {}}
    return [b"heartbeat", msgpack.packb(body)]


def _feed_until(
    publisher: zmq.Socket[bytes],
    sub: Subscriber,
    frames: list[list[bytes]],
    done: Callable[[list[FeedEvent]], bool],
) -> list[FeedEvent]:
    """Send `frames` over and over (a SUB may join late) and poll until `done`; poll must never raise."""
    events: list[FeedEvent] = []
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not done(events):
        assert time.monotonic() < deadline, f"timed out; events {events}"
        for item in frames:
            publisher.send_multipart(item)
        events += sub.poll(20)
    return events


def test_garbage_and_null_fields_on_the_feed_are_skipped_and_data_still_arrives(
    endpoint: Callable[[str], str], serve: Callable[..., ControlServer], subscriber: Callable[..., Subscriber]
) -> None:
    serve(endpoint("control"), {"status": lambda args: {"session": SESSION, "last_seq": 0}}, session=SESSION)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.PUB) as publisher:
        publisher.linger = 0
        publisher.bind(endpoint("metrics"))
        sub = subscriber()
        first = _data(1, ts=None, expires=None, error=None)  # nulls are absent: a valid message
        events = _feed_until(
            publisher, sub, [*HOSTILE_FRAMES, first], lambda evs: any(isinstance(e, Data) for e in evs)
        )
    [data] = [event for event in events if isinstance(event, Data)]
    assert data.message.seq == 1 and data.message.ts == 0.0


def test_a_history_page_of_the_wrong_shape_is_a_gap_not_a_crash(
    endpoint: Callable[[str], str], serve: Callable[..., ControlServer], subscriber: Callable[..., Subscriber]
) -> None:
    bad_items = [
        5,
        None,
        {"v": 1, "type": "data", "seq": "2"},
        {"v": 1, "type": "data", "seq": 1, "ts": "now"},
    ]
    pages = iter([{"session": SESSION, "last_seq": 3, "messages": bad_items, "more": False}])
    handlers = {
        "status": lambda args: {"session": SESSION, "last_seq": 0},
        "history": lambda args: next(pages, {"session": SESSION, "last_seq": 3, "messages": "none"}),
    }
    serve(endpoint("control"), handlers, session=SESSION)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.PUB) as publisher:
        publisher.linger = 0
        publisher.bind(endpoint("metrics"))
        sub = subscriber()
        events = _feed_until(
            publisher, sub, [_heartbeat(3)], lambda evs: any(isinstance(e, Gap) for e in evs)
        )
    assert [event for event in events if isinstance(event, Gap)] == [Gap(1, 3)]
