"""The iLink backend against a server that misbehaves: malformed messages and answers, a
trickling connection, failed sends, messages without ids; and its own texts in Chinese."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from fakes.ilink import OWNER, FakeIlinkServer, FakeWebhook, Raw
from sidecar.backend import Priority
from sidecar.i18n import ZH, LanguagePreference, tr
from sidecar.ilink import POLL_MARGIN_S, REPLY_RETRY_S
from sidecar.ilink_api import IlinkApi, IlinkUnavailable
from sidecar.ilink_messages import MAX_LONG_POLL_S
from sidecar.ilink_store import UpdatesCursor
from sidecar.push import PushChannel
from tests.sidecar.ilink_harness import running_ilink

WAIT_S = 30.0  # generous: a loaded 2-core machine; every wait ends on an event
HOUR_S = 3600.0

pytestmark = pytest.mark.usefixtures("no_proxy")


def warnings_naming(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [m for m in messages if fragment in m]


# -- D1: a message that cannot be read ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"item_list": 5}, "item_list is int"),
        ({"item_list": [{"type": 1, "text_item": "hi"}]}, "item_list[0].text_item is str"),
        ({"item_list": [{"type": 3, "voice_item": [1]}]}, "item_list[0].voice_item is list"),
        ({"item_list": ["status"]}, "item_list[0] is str"),
    ],
)
def test_an_unreadable_message_is_logged_once_marked_handled_and_a_restart_does_not_meet_it_again(
    server: FakeIlinkServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
    named: str,
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.ilink")
    server.push(OWNER, **fields)  # served on every poll until the cursor moves past it
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
    assert running.error is None
    UpdatesCursor(tmp_path).advance("cur-0")  # as if killed before the cursor was saved
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "help")
        running.inbox.wait_for(lambda m: m.text == "help", WAIT_S)
    assert running.error is None and [m.text for m in running.inbox.messages] == ["help"]
    assert len(warnings_naming(caplog, named)) == 1, caplog.text


def test_msgs_that_is_not_a_list_is_an_error_answer_backed_off_with_one_log_line(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.ilink")
    with running_ilink(server, tmp_path) as running:
        server.fail("getupdates", {"ret": 0, "msgs": 5})
        server.wait_until(lambda s: s.failures_left("getupdates") == 0, WAIT_S)
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
    assert running.error is None
    assert [r.exc_info for r in caplog.records if "msgs is int" in r.getMessage()] == [None]


# -- D2: malformed top-level answers ----------------------------------------------------------


@pytest.mark.parametrize("suggested", [1e300, math.inf, 10**400, math.nan, -5000])
def test_an_absurd_long_poll_suggestion_is_clamped_to_a_finite_bound(
    server: FakeIlinkServer, tmp_path: Path, suggested: float
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.fail("getupdates", {"ret": 0, "msgs": [], "longpolling_timeout_ms": suggested})
        server.wait_until(lambda s: s.failures_left("getupdates") == 0, WAIT_S)
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
        timeout_s = running.backend.poll_timeout_s
    assert running.error is None
    assert 0 < timeout_s <= MAX_LONG_POLL_S + POLL_MARGIN_S


def test_json_nested_deeper_than_the_parser_goes_is_a_bad_answer_not_a_dead_receiver(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.ilink")
    with running_ilink(server, tmp_path) as running:
        server.fail("getupdates", Raw(b'{"ret": 0, "msgs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
        server.wait_until(lambda s: s.failures_left("getupdates") == 0, WAIT_S)
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
    assert running.error is None and warnings_naming(caplog, "not JSON")


# -- D3: a total deadline per call --------------------------------------------------------------

TRICKLED = Raw(b'{"ret": 0, "msgs": []' + b" " * 400 + b"}", trickle_s=0.5)  # 200 s in all


def test_a_trickling_getupdates_answer_ends_at_its_deadline_and_receiving_goes_on(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.ilink")
    server.hold_s, server.suggest_ms = 0.2, 200  # client poll timeout: the shortest hold plus the margin
    with running_ilink(server, tmp_path) as running:
        server.wait_until(lambda s: s.polls >= 2, WAIT_S)
        server.fail("getupdates", TRICKLED)
        server.wait_until(lambda s: s.failures_left("getupdates") == 0, WAIT_S)
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
    assert warnings_naming(caplog, "no complete answer within")


def test_a_trickling_sendmessage_answer_ends_at_the_request_deadline(server: FakeIlinkServer) -> None:
    api = IlinkApi(server.url, "tok", request_timeout_s=1.0)
    server.fail("sendmessage", TRICKLED)
    started = time.monotonic()
    with pytest.raises(IlinkUnavailable, match="no complete answer within 1.0 s"):
        api.send_message(OWNER, "ctx-1", {"type": 1, "text_item": {"text": "State: idle"}})
    assert time.monotonic() - started < WAIT_S  # not the 200 s the server would take


def test_a_long_poll_whose_body_stays_silent_past_its_timeout_is_an_empty_poll(
    server: FakeIlinkServer,
) -> None:
    api = IlinkApi(server.url, "tok")
    server.fail("getupdates", Raw(b"{}", trickle_s=60.0))  # the headers, then nothing for a minute
    started = time.monotonic()
    assert api.get_updates("cursor-1", timeout_s=1.0) == {"ret": 0, "msgs": [], "get_updates_buf": "cursor-1"}
    assert time.monotonic() - started < WAIT_S


# -- D4, D5: failed sends are held, alerts pushed, replies retried -----------------------------

SEND_FAILURES = [{"ret": -1, "errmsg": "system busy"}, {"ret": 0, "errcode": -14, "errmsg": "expired"}, 500]


@pytest.mark.parametrize("failure", SEND_FAILURES, ids=["ret-1", "errcode-14", "http500"])
def test_any_failed_send_of_an_alert_is_pushed_and_held_for_the_summary(
    server: FakeIlinkServer, tmp_path: Path, failure: dict[str, Any] | int
) -> None:
    with FakeWebhook() as webhook:
        push = PushChannel(webhook.url, "wecom")
        with running_ilink(server, tmp_path, push=push) as running:
            server.push(OWNER, "开始")
            running.inbox.wait_for(lambda m: m.text == "开始", WAIT_S)
            server.fail("sendmessage", failure, times=2)
            running.backend.send_text("❌ Training failed at step 0: OOM", priority=Priority.ALERT)
            running.backend.send_text("💾 Checkpoint saved at step 0", priority=Priority.EVENT)
            webhook.wait_until(lambda w: len(w.bodies) == 1, WAIT_S)
            server.push(OWNER, "ok")
            summary = server.wait_text("did not deliver", WAIT_S)
    assert webhook.texts() == ["❌ Training failed at step 0: OOM"]
    assert "Training failed at step 0" in summary and "Checkpoint saved" in summary


@pytest.mark.parametrize("failure", [500, {"ret": -1, "errmsg": "system busy"}], ids=["http500", "ret-1"])
def test_a_reply_is_tried_again_after_a_transient_failure(
    server: FakeIlinkServer, tmp_path: Path, failure: dict[str, Any] | int
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
        server.fail("sendmessage", failure)
        running.backend.send_text("State: idle")
    assert server.texts() == ["State: idle"]


def test_a_reply_that_still_cannot_go_comes_whole_with_the_next_summary(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    reply = "State: running, step 5\nLoss 0.1000, accuracy 0.9700"
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status", WAIT_S)
        server.fail("sendmessage", 503, times=1 + len(REPLY_RETRY_S))  # every try
        running.backend.send_text(reply)
        assert server.failures_left("sendmessage") == 0
        server.push(OWNER, "ok")
        summary = server.wait_text("did not deliver", WAIT_S)
    assert reply in summary


# -- D6: messages without ids -------------------------------------------------------------------


def test_messages_without_ids_are_each_handled_once(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.ilink")
    no_ids = {"message_id": None, "seq": None, "create_time_ms": None}
    for text in ("hello", "status", "stop"):
        server.push(OWNER, text, **no_ids)
    with running_ilink(server, tmp_path) as running:
        running.inbox.wait_for(lambda m: m.text == "stop", WAIT_S)
        assert [m.text for m in running.inbox.messages] == ["hello", "status", "stop"]
    UpdatesCursor(tmp_path).advance("cur-0")  # the same three served again after a restart
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "help")
        running.inbox.wait_for(lambda m: m.text == "help", WAIT_S)
    assert [m.text for m in running.inbox.messages] == ["help"]
    assert sum("handled already" in r.getMessage() for r in caplog.records) == 3


# -- D12: the backend's own texts in the sidecar's language ------------------------------------


def test_the_backends_own_texts_follow_the_language(server: FakeIlinkServer, tmp_path: Path) -> None:
    chinese = LanguagePreference(ZH)
    with running_ilink(server, tmp_path, language=chinese) as running:
        server.push(OWNER, items=[{"type": 2, "image_item": {}}])
        server.wait_text(tr(ZH, "ilink_text_only"), WAIT_S)
        running.backend.send_image(tmp_path / "no-such-plot.png")
        server.wait_text("曲线图未能以图片发送", WAIT_S)
        server.advance(25 * HOUR_S)  # the window closes: the next event is held
        running.backend.send_text("💾 已在第 0 步保存检查点", priority=Priority.EVENT)
        server.wait_until(lambda s: len(s.refused) == 1, WAIT_S)
        server.push(OWNER, "好")
        summary = server.wait_text("💾 已在第 0 步保存检查点", WAIT_S)
        for _ in range(8):  # spend the per-inbound budget down to the notice
            running.backend.send_text("状态：训练中")
        notice = server.wait_text("⏳", WAIT_S)
    assert summary.startswith(tr(ZH, "held_head_one"))
    assert notice == tr(ZH, "window_notice", why=tr(ZH, "window_left", count=2))
