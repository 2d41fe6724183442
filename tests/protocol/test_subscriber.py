"""The subscriber delivers every seq once, in order, or says exactly what was lost and why."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from protocol import (
    Data,
    FeedEvent,
    Gap,
    Message,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    Subscriber,
    TrainerBack,
    TrainerDown,
    Unstalled,
)
from protocol import message as msg
from tests.protocol.support import FakeTrainer, data_seqs, delivered_up_to, poll_until

HEARTBEAT_S = 0.1
SILENT_S = 0.5


def kinds(events: list[FeedEvent], kind: type) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def synced(sub: Subscriber, fake: FakeTrainer) -> list[FeedEvent]:
    """Poll until the subscriber has its snapshot and a first message arrived through the feed."""
    events = poll_until(sub, lambda evs: bool(kinds(evs, Snapshot)), what="a snapshot")
    fake.publisher.publish("metrics.steps", {"probe": True})
    target = fake.publisher.last_seq + 1
    return events + poll_until(sub, delivered_up_to(target), what=f"probe seq {target}")


def drop_on_the_wire(fake: FakeTrainer, monkeypatch: pytest.MonkeyPatch, seqs: set[int]) -> None:
    """Simulate PUB dropping these data seqs (past the high-water mark, say): never sent, still in history."""
    send = fake.publisher._send_frames

    def lossy(socket: Any, frames: list[bytes]) -> None:
        message = Message.from_frames(frames)
        if message.type == msg.DATA and message.seq in seqs:
            return
        send(socket, frames)

    monkeypatch.setattr(fake.publisher, "_send_frames", lossy)


def poll_until_quiet(sub: Subscriber, duration_s: float) -> list[FeedEvent]:
    """Everything the subscriber reports during `duration_s` (a window, for asserting absence)."""
    events: list[FeedEvent] = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        events += sub.poll(20)
    return events


def test_late_joiner_gets_a_snapshot_then_only_newer_data(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer()
    fake.publish_many(50)
    sub = subscriber()
    first = poll_until(sub, lambda evs: bool(evs), what="first events")
    assert isinstance(first[0], Snapshot)
    assert first[0].status["last_seq"] == 50
    fake.publish_many(30)
    events = first + poll_until(sub, delivered_up_to(80), what="seq 80")
    assert data_seqs(events) == list(range(51, 81))
    assert not any(event.catching_up for event in kinds(events, Data))
    assert not kinds(events, Gap)


def test_a_subscriber_that_falls_behind_is_backfilled_contiguously_exactly_once(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer(send_hwm=10, history_size=30_000)
    sub = subscriber(receive_hwm=10)
    events = synced(sub, fake)
    fake.publish_many(20_000, pad="p" * 200)  # ~5 MB while nobody polls: PUB must drop
    events += poll_until(sub, delivered_up_to(20_001), timeout_s=30, what="seq 20001")
    assert data_seqs(events) == list(range(1, 20_002))
    assert not kinds(events, Gap)
    assert fake.history_calls.count > 0, "nothing was dropped, so backfill was not exercised"


def test_messages_gone_from_history_are_reported_as_one_gap_range(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    history = 100
    fake = trainer(send_hwm=10, history_size=history)
    sub = subscriber(receive_hwm=10)
    events = synced(sub, fake)
    total = 1 + 20_000
    fake.publish_many(20_000, pad="p" * 200)
    events += poll_until(sub, delivered_up_to(total), timeout_s=30, what=f"seq {total}")
    delivered, gaps = data_seqs(events), kinds(events, Gap)
    assert gaps, "nothing was lost"
    lost = [seq for gap in gaps for seq in range(gap.first_seq, gap.last_seq + 1)]
    assert sorted(delivered + lost) == list(range(1, total + 1)), "a seq was lost silently or twice"
    assert delivered == sorted(delivered)
    assert max(lost) == total - history, "the gap must end where history starts"
    assert set(range(total - history + 1, total + 1)) <= set(delivered)


def test_too_old_gives_a_gap_with_the_exact_range(
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = trainer(history_size=5, heartbeat_interval_s=5.0)
    sub = subscriber()
    events = synced(sub, fake)  # seq 1
    drop_on_the_wire(fake, monkeypatch, set(range(2, 21)))
    fake.publish_many(24)  # 2..25; history keeps 21..25
    events = poll_until(sub, delivered_up_to(25), what="seq 25")
    assert kinds(events, Gap) == [Gap(2, 20)]
    assert data_seqs(events) == [21, 22, 23, 24, 25]


def test_a_lost_tail_is_found_by_the_heartbeat_and_backfilled(
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = trainer()
    sub = subscriber()
    synced(sub, fake)
    drop_on_the_wire(fake, monkeypatch, {2, 3, 4, 5, 6})
    calls_before = fake.history_calls.count
    fake.publish_many(5)  # nothing follows them: only the heartbeat's seq tells
    events = poll_until(sub, delivered_up_to(6), what="the lost tail")
    assert data_seqs(events) == [2, 3, 4, 5, 6]
    assert fake.history_calls.count > calls_before
    assert not kinds(events, Gap)


def test_a_gap_in_the_middle_is_backfilled_before_the_next_message(
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = trainer(heartbeat_interval_s=5.0)
    sub = subscriber()
    synced(sub, fake)
    drop_on_the_wire(fake, monkeypatch, {3, 4})
    fake.publish_many(5)
    events = poll_until(sub, delivered_up_to(6), what="seq 6")
    assert data_seqs(events) == [2, 3, 4, 5, 6]


def test_a_restarted_trainer_is_a_new_session_followed_from_seq_1(
    endpoint: Callable[[str], str],
    closing: Callable[[Any], Any],
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
) -> None:
    old = trainer()
    sub = subscriber()
    synced(sub, old)
    old.publish_many(10)
    poll_until(sub, delivered_up_to(11), what="seq 11 of the old session")
    old.close()
    new = closing(FakeTrainer(endpoint("control"), endpoint("metrics")).start())
    new.publish_many(5)
    events = poll_until(sub, delivered_up_to(5), what="seq 5 of the new session")
    changes = kinds(events, SessionChanged)
    assert [(change.old, change.new) for change in changes] == [(old.session, new.session)]
    after = events[events.index(changes[0]) :]
    assert data_seqs(after) == [1, 2, 3, 4, 5]
    assert {event.message.session for event in kinds(after, Data)} == {new.session}
    assert sub.session == new.session


def test_a_frozen_heartbeat_is_not_responding_once_then_responding(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    beating = threading.Event()
    beating.set()

    def heartbeat_body() -> dict[str, Any]:
        beating.wait(30)  # a cleared event freezes the publisher thread, as a starved GIL would
        return {"state": "running", "loop_age_s": 0.0}

    fake = trainer(heartbeat_body=heartbeat_body, heartbeat_interval_s=HEARTBEAT_S)
    sub = subscriber(not_responding_after_s=SILENT_S)
    synced(sub, fake)
    beating.clear()
    events = poll_until(sub, lambda evs: bool(kinds(evs, NotResponding)), what="NotResponding")
    [silent] = kinds(events, NotResponding)
    assert silent.silent_s > SILENT_S
    quiet = poll_until_quiet(sub, 5 * HEARTBEAT_S)  # still silent: said once
    beating.set()
    events = poll_until(sub, lambda evs: bool(kinds(evs, Responding)), what="Responding")
    assert not kinds(quiet + events, NotResponding), "NotResponding was reported twice"
    assert not kinds(quiet + events, TrainerDown), "a live connection was reported down"
    assert not kinds(quiet + events, TrainerBack)
    events = poll_until_quiet(sub, 0.5)
    assert not kinds(events, NotResponding) and not kinds(events, Responding)


def test_stalled_when_the_loop_stops_moving_and_unstalled_when_it_moves(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    loop_age = {"value": 0.0}
    fake = trainer(heartbeat_body=lambda: {"state": "running", "loop_age_s": loop_age["value"]})
    sub = subscriber(stall_after_s=1.0)
    synced(sub, fake)
    loop_age["value"] = 100.0
    events = poll_until(sub, lambda evs: bool(kinds(evs, Stalled)), what="Stalled")
    assert kinds(events, Stalled) == [Stalled(100.0)]
    loop_age["value"] = 0.2
    events = poll_until(sub, lambda evs: bool(kinds(evs, Unstalled)), what="Unstalled")
    assert not kinds(events, Stalled)


@pytest.mark.parametrize("activity", ["evaluating", "checkpointing", "tracing"])
def test_a_long_evaluation_checkpoint_or_trace_is_not_a_stall(
    activity: str, trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    body = {"state": "running", "loop_age_s": 1000.0, "activity": activity}
    fake = trainer(heartbeat_body=lambda: dict(body))
    sub = subscriber(stall_after_s=1.0)
    synced(sub, fake)
    assert not kinds(poll_until_quiet(sub, 5 * HEARTBEAT_S), Stalled)
    body["activity"] = "step"  # the same age while stepping is one
    events = poll_until(sub, lambda evs: bool(kinds(evs, Stalled)), what="Stalled")
    assert kinds(events, Stalled) == [Stalled(1000.0, "step")]


def test_a_paused_trainer_with_an_old_loop_age_is_not_stalled(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer(heartbeat_body=lambda: {"state": "paused", "loop_age_s": 1000.0})
    sub = subscriber(stall_after_s=1.0)
    synced(sub, fake)
    assert not kinds(poll_until_quiet(sub, 5 * HEARTBEAT_S), Stalled)


def test_resume_replays_from_the_given_seq_as_catching_up(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer()
    fake.publish_many(30)
    sub = subscriber(resume=(fake.session, 10))
    events = poll_until(sub, delivered_up_to(30), what="replay to seq 30")
    assert isinstance(events[0], Snapshot)
    replay = kinds(events, Data)
    assert [event.message.seq for event in replay] == list(range(11, 31))
    assert all(event.catching_up for event in replay)
    fake.publish_many(2)
    live = kinds(poll_until(sub, delivered_up_to(32), what="seq 32"), Data)
    assert [(event.message.seq, event.catching_up) for event in live] == [(31, False), (32, False)]


def test_resume_from_another_session_starts_from_the_snapshot(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer()
    fake.publish_many(30)
    sub = subscriber(resume=("some-older-session", 10))
    events = poll_until(sub, lambda evs: bool(kinds(evs, Snapshot)), what="snapshot")
    assert not kinds(events, Data)
    fake.publish_many(1)
    assert data_seqs(poll_until(sub, delivered_up_to(31), what="seq 31")) == [31]


def test_topics_filter_what_is_delivered_but_not_gap_detection(
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = trainer()
    sub = subscriber(topics=("event.",))
    poll_until(sub, lambda evs: bool(kinds(evs, Snapshot)), what="a snapshot")
    drop_on_the_wire(fake, monkeypatch, {3})
    for index in range(6):
        fake.publisher.publish("event.paused" if index % 2 else "metrics.steps", {"i": index})
    events = poll_until(sub, delivered_up_to(6), what="seq 6")
    assert data_seqs(events) == [2, 4, 6]
    assert not kinds(events, Gap)


def test_backfill_of_large_messages_loses_nothing(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer()
    fake.publish_many(3000, topic="log", pad="x" * 1000)  # e.g. log lines with tracebacks
    sub = subscriber(resume=(fake.session, 0), timeout_ms=2000)
    events = poll_until(sub, lambda evs: 3000 in data_seqs(evs) or bool(kinds(evs, Gap)), what="seq 3000")
    assert not kinds(events, Gap)
    assert data_seqs(events) == list(range(1, 3001))


def test_a_backfill_that_times_out_is_retried_not_reported_lost(
    trainer: Callable[..., FakeTrainer],
    subscriber: Callable[..., Subscriber],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = trainer()
    sub = subscriber(timeout_ms=200, retries=0)
    synced(sub, fake)
    release = threading.Event()
    history = fake.history_calls.handler

    def stalls_once(args: dict[str, Any]) -> dict[str, Any]:
        release.wait(1.0)  # longer than the subscriber's control budget, the first time only
        release.set()
        return history(args)

    fake.history_calls.handler = stalls_once
    drop_on_the_wire(fake, monkeypatch, {2, 3})
    fake.publish_many(3)
    events = poll_until(sub, lambda evs: 4 in data_seqs(evs) or bool(kinds(evs, Gap)), what="seq 4")
    events += poll_until(sub, lambda evs: 4 in data_seqs(events + evs), what="seq 4")
    assert not kinds(events, Gap)
    assert data_seqs(events) == [2, 3, 4]
