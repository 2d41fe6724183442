"""FeedHandler decisions with a fake clock and fabricated feed events (no sockets, no sleeps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from protocol import (
    Data,
    Message,
    NotResponding,
    Responding,
    SessionChanged,
    Snapshot,
    TrainerBack,
    TrainerDown,
)
from sidecar.backend import Priority
from sidecar.cursor import Cursor, CursorStore
from sidecar.feed import BACK_LOADING_NOTE_S, EVENT_BURST, PARAM_COALESCE_S, FeedHandler
from sidecar.link import Catalog, OwnChanges
from sidecar.series import MetricSeries

INTERVAL_S = 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class FakeTrainerRequests:
    """Answers describe and history from a list of data message maps."""

    def __init__(self, messages: list[dict[str, Any]] | None = None) -> None:
        self.messages = messages or []

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        if op == "describe":
            return {"ops": [], "params": []}
        if op == "history":
            since = args["since"]
            return {"messages": [m for m in self.messages if m["seq"] > since]}
        raise AssertionError(op)


def status(session: str = "s1", last_seq: int = 0, step: int = 0) -> dict[str, Any]:
    return {"state": "running", "step": step, "session": session, "last_seq": last_seq}


class Harness:
    def __init__(self, tmp_path: Path, requests: FakeTrainerRequests | None = None) -> None:
        self.clock = FakeClock()
        self.sent: list[str] = []
        self.priorities: list[Priority] = []
        self.cursors = CursorStore(tmp_path)
        self.series = MetricSeries()
        self.seq = 0
        self.lang = "en"
        self.own_changes = OwnChanges(self.clock)
        self.handler = FeedHandler(
            self.notify,
            requests or FakeTrainerRequests(),
            catalog=Catalog(),
            series=self.series,
            cursors=self.cursors,
            progress_interval_s=INTERVAL_S,
            clock=self.clock,
            language=lambda: self.lang,
            own_changes=self.own_changes,
        )

    def notify(self, text: str, priority: Priority) -> None:
        self.sent.append(text)
        self.priorities.append(priority)

    def data(self, topic: str, body: dict[str, Any], session: str = "s1") -> None:
        self.seq += 1
        self.handler.handle(Data(Message("data", body, session=session, seq=self.seq, topic=topic)))
        self.handler.tick()

    def report(self, step: int) -> None:
        self.data("metrics.report", {"step": step, "loss": 1.0 / step, "accuracy": 0.5})


@pytest.fixture
def feed(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    harness.handler.handle(Snapshot(status()))
    harness.sent.clear()
    harness.priorities.clear()
    return harness


def test_progress_is_coalesced_to_one_message_per_interval_latest_winning(feed: Harness) -> None:
    for step in range(1, 31):  # 30 reports, one every 5 s: 150 s
        feed.report(step * 10)
        feed.clock.now += 5
    progress = [t for t in feed.sent if t.startswith("Iter")]
    assert [t.split(",")[0] for t in progress] == ["Iter 10", "Iter 130", "Iter 250"]
    feed.clock.now += INTERVAL_S
    feed.handler.tick()  # the pending tail is flushed once the interval has passed
    assert feed.sent[-1].startswith("Iter 300,")


def test_the_final_state_gets_through_inside_the_finished_message(feed: Harness) -> None:
    feed.report(10)
    feed.report(20)  # pending: the interval has not passed
    feed.data("event.finished", {"event": "finished", "step": 20, "test_accuracy": 0.97})
    assert feed.sent[-1].startswith("🏁 Training finished at step 20")
    assert "Iter 20," in feed.sent[-1]
    feed.clock.now += INTERVAL_S
    feed.handler.tick()
    assert not any(t.startswith("Iter 20,") for t in feed.sent)  # not sent twice


def test_param_changed_spam_is_coalesced_into_one_message(feed: Harness) -> None:
    for value in range(50):
        feed.data(
            "event.param_changed",
            {
                "event": "param_changed",
                "name": "learning_rate",
                "old": value,
                "new": value + 1,
                "applies_at_step": 3,
            },
        )
    assert feed.sent == []
    feed.clock.now += PARAM_COALESCE_S
    feed.handler.tick()
    assert feed.sent == ["⚙️ Parameter changed: learning_rate: 0 → 50 (from step 3)"]


def change(name: str, old: Any, new: Any, at: int = 3) -> dict[str, Any]:
    return {"event": "param_changed", "name": name, "old": old, "new": new, "applies_at_step": at}


def test_a_change_made_from_the_chat_is_not_announced_a_second_time(feed: Harness) -> None:
    feed.own_changes.note({"learning_rate": 0.01})  # the chat's reply already said it
    feed.data("event.param_changed", change("learning_rate", 0.001, 0.01))
    feed.data("event.param_changed", change("batch_size", 128, 64))  # from trainctl: announced
    feed.clock.now += PARAM_COALESCE_S
    feed.handler.tick()
    assert feed.sent == ["⚙️ Parameter changed: batch_size: 128 → 64 (from step 3)"]
    feed.data("event.param_changed", change("learning_rate", 0.01, 0.01))  # noted once, consumed
    feed.clock.now += PARAM_COALESCE_S
    feed.handler.tick()
    assert feed.sent[-1] == "⚙️ Parameter changed: learning_rate: 0.01 → 0.01 (from step 3)"


def test_notices_follow_the_owners_language(feed: Harness) -> None:
    feed.lang = "zh"
    feed.data("event.paused", {"event": "paused", "step": 7})
    feed.data("event.checkpoint_saved", {"event": "checkpoint_saved", "step": 8, "path": "/c/ckpt-8"})
    assert feed.sent == ["⏸ 已暂停（第 7 步）", "💾 已在第 8 步保存检查点（ckpt-8）"]


def test_an_event_flood_is_capped_and_the_rest_counted(feed: Harness) -> None:
    for step in range(EVENT_BURST + 20):
        feed.data(
            "event.checkpoint_saved", {"event": "checkpoint_saved", "step": step, "path": f"/ckpt/{step}"}
        )
    assert len(feed.sent) == EVENT_BURST
    feed.clock.now += 30
    feed.handler.tick()
    assert feed.sent[-1].startswith("(20 more events not shown")


def test_terminal_events_are_never_dropped_by_the_flood_guard(feed: Harness) -> None:
    for step in range(EVENT_BURST):
        feed.data("event.checkpoint_saved", {"event": "checkpoint_saved", "step": step})
    feed.data(
        "event.failed",
        {"event": "failed", "step": 11, "error": {"type": "ValueError", "message": "nan loss"}},
    )
    assert feed.sent[-1] == "❌ Training failed at step 11: ValueError: nan loss"


def test_a_failed_checkpoint_is_an_alert_saying_what_a_crash_would_lose(feed: Harness) -> None:
    for step in range(EVENT_BURST):  # the flood guard is spent: an alert still goes out
        feed.data("event.checkpoint_saved", {"event": "checkpoint_saved", "step": step})
    error = "OSError: [Errno 28] No space left on device"
    body = {"event": "checkpoint_failed", "step": 300, "error": error, "last_checkpoint_step": 240}
    feed.data("event.checkpoint_failed", body)
    assert feed.sent[-1] == (
        "⚠️ Checkpoint of step 300 NOT saved (OSError: [Errno 28] No space left on device); training "
        "goes on. A crash now would resume from step 240."
    )
    feed.lang = "zh"
    feed.data("event.checkpoint_failed", {**body, "last_checkpoint_step": None})
    assert feed.sent[-1].startswith("⚠️ 第 300 步的检查点未能保存") and "将从头开始" in feed.sent[-1]


def test_one_down_and_one_back_per_outage(feed: Harness) -> None:
    feed.handler.handle(TrainerDown(3.0))
    feed.handler.handle(TrainerDown(6.0))
    feed.handler.handle(SessionChanged("s1", "s2", status("s2", step=40)))
    feed.handler.handle(TrainerBack(status("s2", step=40), restarted=True))
    assert len(feed.sent) == 2, feed.sent
    assert feed.sent[0].startswith("⚠️ Trainer down: its connection closed")
    assert feed.sent[1] == "✅ Trainer back (new process), resumed at step 40; no steps lost."


def test_down_says_the_step_reached_and_the_last_checkpoint(feed: Harness) -> None:
    feed.data("event.checkpoint_saved", {"event": "checkpoint_saved", "step": 240})
    feed.report(263)
    feed.handler.handle(TrainerDown(0.2, reason="disconnected"))
    assert feed.sent[-1].startswith("⚠️ Trainer down at step 263: its connection closed")
    assert "Last checkpoint announced: step 240." in feed.sent[-1]


def _restart_while_loading(feed: Harness) -> None:
    feed.report(263)
    feed.handler.handle(TrainerDown(0.2))
    loading = {**status("s2", step=0), "state": "loading"}
    feed.handler.handle(SessionChanged("s1", "s2", loading))
    feed.handler.handle(TrainerBack(loading, restarted=True))


def test_back_after_a_restart_waits_for_loading_and_says_what_is_redone(feed: Harness) -> None:
    _restart_while_loading(feed)
    assert not [t for t in feed.sent if "Trainer back" in t]  # the step it resumes from is not known yet
    feed.data("event.state", {"event": "state", "state": "running", "previous": "loading", "step": 240}, "s2")
    assert feed.sent[-1] == (
        "✅ Trainer back (new process), resumed at step 240; "
        "the 23 steps since the last checkpoint (241–263) are being redone."
    )
    assert len([t for t in feed.sent if "Trainer back" in t]) == 1


def test_a_restart_that_comes_back_idle_says_the_steps_wait_to_be_redone(feed: Harness) -> None:
    _restart_while_loading(feed)
    feed.data("event.state", {"event": "state", "state": "idle", "previous": "loading", "step": 0}, "s2")
    assert feed.sent[-1] == (
        "✅ Trainer back (new process), idle at step 0; "
        "no checkpoint was saved, so all 263 steps (1–263) will be redone when it runs."
    )


def test_a_restart_still_loading_after_a_minute_is_announced_once(feed: Harness) -> None:
    _restart_while_loading(feed)
    feed.clock.now += BACK_LOADING_NOTE_S
    feed.handler.tick()
    feed.clock.now += BACK_LOADING_NOTE_S
    feed.handler.tick()
    assert [t for t in feed.sent if "still loading" in t] == [
        "✅ Trainer back (new process), still loading; I will say where it resumes."
    ]
    feed.data("event.state", {"event": "state", "state": "running", "previous": "loading", "step": 263}, "s2")
    assert feed.sent[-1] == "✅ Trainer back (new process), resumed at step 263; no steps lost."


def test_a_busy_trainer_is_not_responding_then_responding_never_down(feed: Harness) -> None:
    feed.handler.handle(NotResponding(31.0))
    feed.handler.handle(Responding(45.0))
    assert len(feed.sent) == 2
    assert feed.sent[0].startswith("⏳ Trainer not responding for 31s, but its connection is open")
    assert feed.sent[1] == "✅ Trainer responding again (it was silent for 45s)."
    assert not any("Trainer down" in t for t in feed.sent)


def test_cursor_follows_what_was_notified(feed: Harness, tmp_path: Path) -> None:
    feed.data("event.started", {"event": "started", "step": 0})
    assert CursorStore(tmp_path).load() == Cursor("s1", 1)


def test_a_restarted_sidecar_sends_one_summary_from_history(tmp_path: Path) -> None:
    CursorStore(tmp_path).save(Cursor("s1", 2))
    events = [("started", 1), ("checkpoint_saved", 3), ("checkpoint_saved", 4), ("paused", 5)]
    history = [
        {"seq": seq, "session": "s1", "topic": f"event.{name}", "body": {"event": name, "step": seq * 10}}
        for name, seq in events
    ]
    harness = Harness(tmp_path, FakeTrainerRequests(history))
    harness.handler.handle(Snapshot(status(last_seq=5)))
    assert len(harness.sent) == 1
    assert "While I was away: 2× checkpoint saved (last at step 40), paused" in harness.sent[0]
    assert "started" not in harness.sent[0]  # seq 1 was told before the restart
    assert CursorStore(tmp_path).load() == Cursor("s1", 5)


def test_a_restarted_sidecar_facing_a_new_trainer_session_summarises_status(tmp_path: Path) -> None:
    CursorStore(tmp_path).save(Cursor("old-session", 7))
    harness = Harness(tmp_path)
    harness.handler.handle(Snapshot(status("s9", last_seq=3, step=12)))
    assert len(harness.sent) == 1
    assert "trainer restarted meanwhile" in harness.sent[0]
    assert "step 12" in harness.sent[0]


def test_each_message_says_how_much_it_matters_to_a_backend_that_can_send_only_so_much(
    feed: Harness,
) -> None:
    feed.report(10)  # the first progress goes out at once
    feed.data("event.checkpoint_saved", {"event": "checkpoint_saved", "step": 10})
    feed.handler.handle(NotResponding(31.0))
    feed.handler.handle(TrainerDown(0.1))
    feed.handler.handle(SessionChanged("s1", "s2", status("s2", step=10)))
    feed.data("event.finished", {"event": "finished", "step": 20, "test_accuracy": 0.9}, "s2")
    assert feed.priorities == [
        Priority.PROGRESS,
        Priority.EVENT,
        Priority.EVENT,
        Priority.ALERT,  # down
        Priority.ALERT,  # back
        Priority.ALERT,  # finished
    ], feed.sent
