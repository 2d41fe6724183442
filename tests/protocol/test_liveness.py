"""Dead is told apart from busy: a closed connection is 'down' at once, silence on a live one is
only 'not responding', and only after a long threshold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from protocol import (
    Liveness,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    Subscriber,
    TrainerBack,
    TrainerDown,
)
from tests.protocol.support import FakeTrainer, poll_until
from tests.protocol.test_subscriber import kinds, poll_until_quiet, synced

REPO = Path(__file__).resolve().parents[2]
DOWN_WITHIN_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_silence_on_a_live_connection_is_not_responding_only_after_the_threshold() -> None:
    clock = Clock()
    live = Liveness(not_responding_after_s=30.0, unreachable_after_s=10.0, clock=clock)
    live.on_connected()
    live.on_message()
    clock.now = 29.0
    assert live.check() is None
    clock.now = 31.0
    assert live.check() == NotResponding(31.0)
    assert live.check() is None  # said once
    assert live.on_message() == ("not_responding", 31.0)
    assert live.condition is None


def test_a_closed_connection_is_down_at_once_and_once() -> None:
    clock = Clock()
    live = Liveness(clock=clock)
    live.on_connected()
    live.on_message()
    clock.now = 0.5
    assert live.on_disconnected() == TrainerDown(0.5, reason="disconnected")
    assert live.on_disconnected() is None
    assert live.check() is None
    assert live.on_message()[0] == "down"


def test_a_disconnect_without_a_handshake_is_no_news_but_long_unreachability_is() -> None:
    clock = Clock()
    live = Liveness(unreachable_after_s=10.0, clock=clock)
    assert live.on_disconnected() is None
    clock.now = 11.0
    assert live.check() == TrainerDown(11.0, reason="unreachable")


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Liveness(not_responding_after_s=0)


@pytest.fixture
def gil_holder(endpoint: Callable[[str], str]) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.protocol.gil_holder", endpoint("control"), endpoint("metrics")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait()


def _sub(endpoint: Callable[[str], str], closing: Callable[[Any], Any], **kw: Any) -> Subscriber:
    from protocol import ControlClient

    control = closing(ControlClient(endpoint("control"), timeout_ms=500, retries=1))
    return closing(Subscriber(endpoint("metrics"), control, **kw))


def _first_events(sub: Subscriber) -> None:
    poll_until(sub, lambda evs: bool(kinds(evs, Snapshot)), what="a snapshot")
    poll_until(sub, lambda evs: sub.connected, what="a transport handshake")


def test_a_trainer_holding_the_gil_is_never_down(
    gil_holder: subprocess.Popen[str], endpoint: Callable[[str], str], closing: Callable[[Any], Any]
) -> None:
    sub = _sub(endpoint, closing, not_responding_after_s=1.5)
    _first_events(sub)
    assert gil_holder.stdin is not None and gil_holder.stdout is not None
    gil_holder.stdin.write("hold 5\n")
    gil_holder.stdin.flush()
    events = poll_until(sub, lambda evs: bool(kinds(evs, Responding)), timeout_s=30, what="Responding")
    assert gil_holder.stdout.readline().strip() == "released"
    assert not kinds(events, TrainerDown), events
    [silent] = kinds(events, NotResponding)
    assert events.index(silent) < events.index(kinds(events, Responding)[0])


def test_a_killed_trainer_is_down_within_seconds_and_back_when_restarted(
    gil_holder: subprocess.Popen[str],
    endpoint: Callable[[str], str],
    closing: Callable[[Any], Any],
) -> None:
    sub = _sub(endpoint, closing)  # default thresholds: silence alone would take 30 s
    _first_events(sub)
    killed_at = time.monotonic()
    os.kill(gil_holder.pid, signal.SIGKILL)
    gil_holder.wait()
    events = poll_until(sub, lambda evs: bool(kinds(evs, TrainerDown)), timeout_s=20, what="TrainerDown")
    assert time.monotonic() - killed_at < DOWN_WITHIN_S
    assert kinds(events, TrainerDown)[0].reason == "disconnected"
    new = closing(FakeTrainer(endpoint("control"), endpoint("metrics")).start())
    events = poll_until(sub, lambda evs: bool(kinds(evs, TrainerBack)), what="TrainerBack")
    assert [change.new for change in kinds(events, SessionChanged)] == [new.session]
    assert kinds(events, TrainerBack)[0].restarted is True
    assert not kinds(events + poll_until_quiet(sub, 0.5), TrainerDown)


def test_what_a_killed_trainer_sent_is_delivered_before_it_is_reported_down(
    gil_holder: subprocess.Popen[str], endpoint: Callable[[str], str], closing: Callable[[Any], Any]
) -> None:
    from protocol import Data

    sub = _sub(endpoint, closing)
    _first_events(sub)
    # A witness on the same publisher: once it has all 200, libzmq has written them to the wire
    # (a kill -9 loses what is still queued in the dead process, which no subscriber can help).
    witness = closing(zmq.Context.instance().socket(zmq.SUB))
    witness.setsockopt(zmq.SUBSCRIBE, b"metrics.steps")
    witness.connect(endpoint("metrics"))
    assert gil_holder.stdin is not None and gil_holder.stdout is not None
    gil_holder.stdin.write("burst 200\n")
    gil_holder.stdin.flush()
    assert gil_holder.stdout.readline().strip() == "sent"
    received = 0
    while received < 200 and witness.poll(5000):
        witness.recv_multipart()
        received += 1
    os.kill(gil_holder.pid, signal.SIGKILL)
    gil_holder.wait()
    events = poll_until(sub, lambda evs: bool(kinds(evs, TrainerDown)), timeout_s=20, what="TrainerDown")
    down = events.index(kinds(events, TrainerDown)[0])
    assert len([e for e in events[:down] if isinstance(e, Data)]) >= received - 1  # the probe aside
    assert not [e for e in events[down:] if isinstance(e, Data)]
    assert not kinds(events, TrainerBack)  # never a 'back' made up from the dead one's tail


def test_a_closed_trainer_is_down_then_back(
    trainer: Callable[..., FakeTrainer], subscriber: Callable[..., Subscriber]
) -> None:
    fake = trainer()
    sub = subscriber()
    synced(sub, fake)
    fake.close()
    events = poll_until(sub, lambda evs: bool(kinds(evs, TrainerDown)), timeout_s=DOWN_WITHIN_S, what="down")
    assert [down.reason for down in kinds(events, TrainerDown)] == ["disconnected"]
