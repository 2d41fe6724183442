"""The reply window and the unsolicited budget: decisions (pure, with a fake clock), then the
iLink backend against the fake server's ret -2 and the fake push webhook."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fakes.ilink import OWNER, FakeIlinkServer, FakeWebhook
from fakes.ilink.webhook import KEY
from sidecar.backend import Priority
from sidecar.push import PushChannel
from sidecar.window import ReplyWindows
from tests.sidecar.ilink_harness import running_ilink

HOUR_S = 3600.0
CHAT = "u1@im.wechat"

pytestmark = pytest.mark.usefixtures("no_proxy")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def spend_while_allowed(windows: ReplyWindows, priority: Priority, limit: int = 50) -> int:
    sent = 0
    while sent < limit and windows.may_send(CHAT, priority):
        windows.sent(CHAT)
        sent += 1
    return sent


def test_progress_never_spends_the_last_of_the_budget_and_alerts_may(tmp_path: Path, clock: Clock) -> None:
    windows = ReplyWindows(tmp_path, window_s=12 * HOUR_S, per_inbound=10, clock=clock)
    windows.inbound(CHAT, "ctx-1")
    assert spend_while_allowed(windows, Priority.PROGRESS) == 7  # 3 kept back
    assert spend_while_allowed(windows, Priority.EVENT) == 1  # 2 kept back
    assert spend_while_allowed(windows, Priority.ALERT) == 2  # the very last too
    assert windows.may_send(CHAT, Priority.REPLY)  # a reply to a command is always tried


def test_the_window_closes_after_its_time_and_a_refusal_closes_it_until_the_next_inbound(
    tmp_path: Path, clock: Clock
) -> None:
    windows = ReplyWindows(tmp_path, window_s=12 * HOUR_S, clock=clock)
    assert not windows.may_send(CHAT, Priority.ALERT)  # never written: no context token
    windows.inbound(CHAT, "ctx-1")
    clock.now += 12 * HOUR_S + 1
    assert not windows.may_send(CHAT, Priority.ALERT)
    windows.inbound(CHAT, "ctx-2")
    windows.refused(CHAT)
    assert not windows.may_send(CHAT, Priority.ALERT)
    windows.inbound(CHAT, "ctx-3")
    assert windows.may_send(CHAT, Priority.ALERT) and windows.context_token(CHAT) == "ctx-3"


def test_the_send_any_message_notice_comes_once_per_inbound(tmp_path: Path, clock: Clock) -> None:
    windows = ReplyWindows(tmp_path, per_inbound=10, clock=clock)
    windows.inbound(CHAT, "ctx-1")
    for _ in range(7):
        windows.sent(CHAT)
    assert windows.take_notice(CHAT) is None
    windows.sent(CHAT)
    notice = windows.take_notice(CHAT)
    assert notice is not None and "Send any message" in notice and "only 2 more" in notice
    assert windows.take_notice(CHAT) is None
    windows.inbound(CHAT, "ctx-2")
    clock.now += windows.window_s - 1800
    closing = windows.take_notice(CHAT)
    assert closing is not None and "closes in about 30m" in closing


def test_held_updates_come_back_as_one_summary_with_progress_latest_only_and_survive_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    windows = ReplyWindows(tmp_path, clock=clock)
    windows.inbound(CHAT, "ctx-1")
    windows.hold(CHAT, Priority.PROGRESS, "Iter 100, Minibatch Loss= 0.5")
    windows.hold(CHAT, Priority.ALERT, "🏁 Training finished at step 200: test accuracy 0.9800")
    windows.hold(CHAT, Priority.PROGRESS, "Iter 200, Minibatch Loss= 0.1")
    restarted = ReplyWindows(tmp_path, clock=clock)
    summary = restarted.inbound(CHAT, "ctx-2")
    assert summary is not None
    assert summary.count("\n") == 2 and "2 updates" in summary
    assert "Training finished" in summary and "Last progress: Iter 200" in summary
    assert "Iter 100" not in summary
    assert restarted.inbound(CHAT, "ctx-3") is None  # said once


def test_held_updates_are_bounded_and_alerts_are_kept_first(tmp_path: Path, clock: Clock) -> None:
    windows = ReplyWindows(tmp_path, clock=clock)
    windows.hold(CHAT, Priority.ALERT, "❌ Training failed at step 5")
    for step in range(100):
        windows.hold(CHAT, Priority.EVENT, f"💾 Checkpoint saved at step {step}")
    summary = windows.inbound(CHAT, "ctx-1")
    assert summary is not None and "Training failed" in summary and "older updates" in summary
    assert len(summary.splitlines()) <= 32


# -- the backend against the fake server ---------------------------------------------------------


def test_progress_floods_within_the_budget_and_the_notice_asks_for_a_message(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "开始")
        running.inbox.wait_for(lambda m: m.text == "开始")
        for step in range(20):
            running.backend.send_text(f"Iter {step}", priority=Priority.PROGRESS)
        running.backend.send_text("🏁 Training finished at step 20", priority=Priority.ALERT)
    texts = server.texts()
    assert server.refused == []  # never ran into ret -2
    assert texts.count("🏁 Training finished at step 20") == 1
    assert sum("Send any message" in t for t in texts) == 1
    assert sum(t.startswith("Iter") for t in texts) == 7


def test_with_the_window_closed_an_alert_goes_to_the_webhook_and_the_summary_comes_with_the_next_message(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar")
    with FakeWebhook() as webhook:
        push = PushChannel(webhook.url, "wecom")
        with running_ilink(server, tmp_path, push=push) as running:
            server.push(OWNER, "开始")
            running.inbox.wait_for(lambda m: m.text == "开始")
            server.advance(25 * HOUR_S)  # the server closes the window; the sidecar learns from ret -2
            running.backend.send_text("Iter 5", priority=Priority.PROGRESS)
            running.backend.send_text("🏁 Training finished at step 9", priority=Priority.ALERT)
            running.backend.send_text("Iter 9", priority=Priority.PROGRESS)
            webhook.wait_until(lambda w: len(w.bodies) == 1, 10.0)
            assert webhook.texts() == ["🏁 Training finished at step 9"]
            before = len(server.texts())
            server.push(OWNER, "status")
            running.inbox.wait_for(lambda m: m.text == "status")
            summary = server.wait_text("WeChat did not deliver", after=before)
    assert "Training finished at step 9" in summary and "Last progress: Iter 9" in summary
    assert len(server.refused) == 1  # one ret -2, then nothing more tried until the user wrote
    assert KEY not in caplog.text
