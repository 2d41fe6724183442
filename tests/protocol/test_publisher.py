"""The publisher: `history` answers every argument exactly, the queue is bounded, a dead thread is heard."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from protocol import ErrorCode, Publisher, RequestError
from protocol.feed_queue import FeedQueue
from tests.protocol.support import FakeTrainer, wait_until


@pytest.fixture
def fake(trainer: Callable[..., FakeTrainer]) -> FakeTrainer:
    started = trainer()
    started.publish_many(30)
    return started


def test_history_with_limit_0_says_more_while_messages_remain(fake: FakeTrainer) -> None:
    page = fake.publisher.history_handler({"since": 10, "limit": 0})
    assert (page["messages"], page["more"], page["last_seq"]) == ([], True, 30)
    assert fake.publisher.history_handler({"since": 30, "limit": 0})["more"] is False


def test_history_pages_say_more_until_the_last_seq(fake: FakeTrainer) -> None:
    first = fake.publisher.history_handler({"since": 0, "limit": 29})
    last = fake.publisher.history_handler({"since": 29, "limit": 29})
    assert (len(first["messages"]), first["more"]) == (29, True)
    assert ([m["seq"] for m in last["messages"]], last["more"]) == ([30], False)


@pytest.mark.parametrize("args", [{"since": 2**64 - 1}, {"since": 2**63}, {"since": 0, "limit": 2**64 - 1}])
def test_history_with_a_huge_seq_is_a_bad_request(fake: FakeTrainer, args: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as raised:
        fake.publisher.history_handler(args)
    assert raised.value.code == ErrorCode.BAD_REQUEST
    assert "must be an integer from 0 to" in raised.value.message


def test_history_past_the_last_seq_is_an_empty_final_page(fake: FakeTrainer) -> None:
    page = fake.publisher.history_handler({"since": 2**63 - 1})
    assert (page["messages"], page["more"]) == ([], False)


def test_a_full_queue_drops_the_oldest_step_metrics_first_and_never_events() -> None:
    queue = FeedQueue(max_items=4)
    for topic, step in (
        ("metrics.steps", 1),
        ("event.started", 0),
        ("metrics.steps", 2),
        ("metrics.report", 2),
    ):
        queue.put(topic, {"step": step})
    queue.put("metrics.steps", {"step": 3})  # full: the oldest step (1) goes
    queue.put("event.paused", {"step": 3})  # the oldest step left (2) goes
    queue.put("metrics.steps", {"step": 4})  # the older step (3) goes
    queue.put("event.resumed", {"step": 4})  # step 4 goes
    queue.put("metrics.steps", {"step": 5})  # no step queued: this newest one is the least important
    queue.put("event.stopped", {"step": 5})  # no step at all: the report goes
    queue.put("event.finished", {"step": 5})  # only events: kept, over the bound
    items = [(topic, body["step"]) for topic, body in iter(lambda: queue.get(0), None)]
    assert items == [
        ("event.started", 0),
        ("event.paused", 3),
        ("event.resumed", 4),
        ("event.stopped", 5),
        ("event.finished", 5),
    ]
    assert queue.dropped == 6


def test_the_publisher_queue_is_bounded_while_its_thread_cannot_send(endpoint: Callable[[str], str]) -> None:
    publisher = Publisher(endpoint("metrics"), session="s", queue_size=100)  # not started: nobody sends
    for step in range(1000):
        publisher.publish("metrics.steps", {"step": step})
    publisher.publish("event.finished", {"event": "finished"})
    assert publisher.dropped == 901
    publisher.close()


class Fault(BaseException):
    """Not an Exception: what the loop's guard does not catch."""


def test_a_dead_publisher_thread_is_reported_to_the_owner(endpoint: Callable[[str], str]) -> None:
    deaths: list[tuple[str, BaseException | None]] = []
    died = threading.Event()
    armed = threading.Event()

    def heartbeat_body() -> dict[str, Any]:
        if armed.is_set():
            raise Fault("injected")
        return {}

    def on_death(name: str, exc: BaseException | None) -> None:
        deaths.append((name, exc))
        died.set()

    publisher = Publisher(
        endpoint("metrics"),
        session="s",
        heartbeat_interval_s=0.05,
        heartbeat_body=heartbeat_body,
        on_thread_death=on_death,
    )
    publisher.start()
    try:
        publisher.publish("metrics.steps", {"step": 1})
        wait_until(lambda: publisher.last_seq == 1, what="the first message sent")
        armed.set()
        assert died.wait(10)
        [(name, exc)] = deaths
        assert name == "metrics-publisher" and isinstance(exc, Fault)
        assert not publisher.alive
    finally:
        publisher.close()


def test_a_failing_heartbeat_source_does_not_stop_the_feed(trainer: Callable[..., FakeTrainer]) -> None:
    calls: list[int] = []

    def broken() -> dict[str, Any]:
        calls.append(1)
        raise RuntimeError("status source broke")

    fake = trainer(heartbeat_body=broken, heartbeat_interval_s=0.02)
    wait_until(lambda: len(calls) >= 3, what="heartbeats despite the failure")
    fake.publish_many(5)
    assert fake.publisher.alive


def test_a_send_that_fails_is_logged_and_the_publisher_goes_on(
    trainer: Callable[..., FakeTrainer], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = trainer()
    send = fake.publisher._send_frames
    failed = threading.Event()

    def fails_once(socket: Any, frames: list[bytes]) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("the send broke")
        send(socket, frames)

    monkeypatch.setattr(fake.publisher, "_send_frames", fails_once)
    assert failed.wait(10)
    fake.publish_many(5)
    assert fake.publisher.alive
    assert fake.publisher.history_handler({"since": 0})["last_seq"] == 5
