"""The iLink backend against the fake iLink server: login, receive, send, media, restart."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from fakes.ilink import OWNER, VERIFY_CODE, FakeIlinkServer
from sidecar.backend import OWNER_CHAT, Priority
from sidecar.i18n import EN, tr
from sidecar.ilink import REPLY_RETRY_S
from sidecar.ilink_login import CredentialStore
from sidecar.ilink_store import UpdatesCursor
from tests.sidecar.ilink_harness import running_ilink

STRANGER = "x1_stranger@im.wechat"
WAIT_S = 10.0

pytestmark = pytest.mark.usefixtures("no_proxy")


def test_qr_login_stores_the_token_0600_and_an_owner_command_arrives_from_the_owner_chat(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        message = running.inbox.wait_for(lambda m: m.text == "status")
    assert (message.sender_id, message.chat_id, message.from_owner) == (OWNER, OWNER_CHAT, True)
    credentials = CredentialStore(tmp_path).load()
    assert credentials is not None and credentials.ilink_user_id == OWNER
    assert stat.S_IMODE((tmp_path / "ilink.json").stat().st_mode) == 0o600
    assert (tmp_path / "qr.png").read_bytes().startswith(b"\x89PNG")
    assert "▀" in running.qr_output.getvalue() or "▄" in running.qr_output.getvalue()
    assert server.bad_requests == []


def test_a_restart_reuses_the_saved_token_without_a_new_qr_code(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path):
        pass
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status")
    assert server.qrcodes == ["qr-1"]
    assert server.notifications == ["start", "stop", "start", "stop"]


def test_an_expired_qr_code_is_replaced_by_a_new_one(server: FakeIlinkServer, tmp_path: Path) -> None:
    server.qr_scripts = [["wait", "expired"]]
    with running_ilink(server, tmp_path):
        assert server.qrcodes == ["qr-1", "qr-2"]


def test_need_verifycode_asks_on_the_terminal_and_sends_the_code(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    server.qr_scripts = [["scaned", "need_verifycode", "confirmed"]]
    with running_ilink(server, tmp_path) as running:
        assert running.prompts and "verification code" in running.prompts[0]
    assert server.verify_codes == [VERIFY_CODE]


def test_without_a_terminal_need_verifycode_keeps_polling_at_its_pace_until_a_new_qr(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    server.qr_scripts = [["scaned", "need_verifycode", "confirmed"]]
    with running_ilink(server, tmp_path, wait_ready=False, code="", qr_poll_interval_s=0.2) as running:
        server.wait_until(lambda s: len(running.prompts) >= 3, WAIT_S)
        # A poll interval between asks, not a busy loop (times taken as each prompt was asked:
        # when the test thread notices is no measure on a loaded machine).
        asked = running.prompted_at
        assert asked[2] - asked[0] >= 0.4 * 0.95, asked
        assert not running.backend.ready.is_set() and server.verify_codes == []


def test_verify_code_blocked_gets_a_new_qr_code(server: FakeIlinkServer, tmp_path: Path) -> None:
    server.qr_scripts = [["scaned", "verify_code_blocked"]]
    with running_ilink(server, tmp_path):
        assert len(server.qrcodes) == 2


def test_scaned_but_redirect_polls_at_the_redirect_host(server: FakeIlinkServer, tmp_path: Path) -> None:
    server.qr_scripts = [["scaned", "scaned_but_redirect", "confirmed"]]
    with running_ilink(server, tmp_path):
        assert server.redirected


def test_session_expired_logs_in_again_with_a_new_qr_code_and_says_so(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.expire_session()
        server.wait_until(lambda s: len(s.issued_tokens) == 2, WAIT_S)
        assert running.backend.ready.wait(WAIT_S)
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status")
        assert "session expired" in running.qr_output.getvalue()
    assert len(server.qrcodes) == 2


def test_replies_carry_the_context_token_of_the_message_they_answer(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        token = server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status")
        running.backend.send_text("State: idle", to=OWNER_CHAT)
    assert [(s.to, s.context_token, s.text) for s in server.sent] == [(OWNER, token, "State: idle")]


def test_a_non_zero_ret_on_send_is_a_failure_not_a_silent_success(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "status")
        running.inbox.wait_for(lambda m: m.text == "status")
        server.fail("sendmessage", {"ret": -5, "errmsg": "system busy"}, times=1 + len(REPLY_RETRY_S))
        running.backend.send_text("State: idle")  # every try refused: held for the next summary
        assert running.backend.windows.held(OWNER) == [(Priority.REPLY, "State: idle")]
    assert server.sent == []


def test_voice_with_a_transcript_is_text_and_other_items_get_a_text_only_reply(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, items=[{"type": 3, "voice_item": {"text": "停止"}}])
        running.inbox.wait_for(lambda m: m.text == "停止")
        server.push(OWNER, items=[{"type": 2, "image_item": {}}])
        server.wait_text(tr(EN, "ilink_text_only"))
        server.push(STRANGER, items=[{"type": 2, "image_item": {}}])
        server.push(STRANGER, "停止")
        stranger = running.inbox.wait_for(lambda m: m.sender_id == STRANGER)
    assert (stranger.from_owner, stranger.chat_id) == (False, STRANGER)
    assert server.texts(to=STRANGER) == []
    assert [m.text for m in running.inbox.messages] == ["停止", "停止"]


def test_a_restart_neither_loses_nor_reruns_a_message(server: FakeIlinkServer, tmp_path: Path) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "开始")
        running.inbox.wait_for(lambda m: m.text == "开始")
    server.push(OWNER, "lr 0.01")  # while the sidecar is down
    cursor = UpdatesCursor(tmp_path)
    cursor.advance("cur-0")  # as if killed after handling 开始 but before saving the cursor
    with running_ilink(server, tmp_path) as running:
        running.inbox.wait_for(lambda m: m.text == "lr 0.01")
        server.push(OWNER, "停止")
        running.inbox.wait_for(lambda m: m.text == "停止")
    assert [m.text for m in running.inbox.messages] == ["lr 0.01", "停止"]


def test_the_server_suggested_long_poll_timeout_is_honoured(server: FakeIlinkServer, tmp_path: Path) -> None:
    server.hold_s, server.suggest_ms = 0.2, 200
    with running_ilink(server, tmp_path) as running:
        server.wait_until(lambda s: s.polls >= 2, WAIT_S)
        assert running.backend.poll_timeout_s < 5.0
        server.hang_next_poll_s = 120.0  # the client gives up after ~3.2 s and polls again
        before = server.polls
        server.wait_until(lambda s: s.polls >= before + 2, 30.0)


def test_poll_errors_back_off_with_one_line_logs_and_receiving_resumes(
    server: FakeIlinkServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar.ilink")
    with running_ilink(server, tmp_path) as running:
        server.fail("getupdates", 502, times=2)
        server.fail("getupdates", {"ret": -1, "errmsg": "system error"})
        server.wait_until(lambda s: s.failures_left("getupdates") == 0, WAIT_S)
        server.push(OWNER, "status")  # arrives by the first poll that works
        running.inbox.wait_for(lambda m: m.text == "status")
    retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) >= 2 and all(r.exc_info is None for r in retries)
    assert any("HTTP 502" in r.getMessage() for r in retries)
    assert any("ret -1" in r.getMessage() for r in retries)


def test_a_plot_goes_out_as_an_aes_encrypted_image_the_server_decrypts(
    server: FakeIlinkServer, tmp_path: Path, png_file: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "plot")
        running.inbox.wait_for(lambda m: m.text == "plot")
        running.backend.send_image(png_file)
    assert [s.image for s in server.sent] == [png_file.read_bytes()]
    assert server.bad_requests == []


def test_a_failed_image_upload_falls_back_to_text(
    server: FakeIlinkServer, tmp_path: Path, png_file: Path
) -> None:
    with running_ilink(server, tmp_path) as running:
        server.push(OWNER, "plot")
        running.inbox.wait_for(lambda m: m.text == "plot")
        server.fail("cdn", 500, times=1)
        running.backend.send_image(png_file)
    assert [s.image for s in server.sent] == [None]
    assert "could not be sent as an image" in server.sent[0].text


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    import pyqrcode

    path = tmp_path / "plot.png"
    pyqrcode.create("a plot").png(str(path), scale=4)
    return path


def test_an_unexpected_failure_ends_run_with_the_error_so_the_sidecar_exits_for_a_restart(
    server: FakeIlinkServer, tmp_path: Path
) -> None:
    """Not a deaf backend that looks alive: the receiver's error ends ``run()`` with it."""
    with running_ilink(server, tmp_path) as running:
        cursor = UpdatesCursor(tmp_path).path  # where the receiver keeps its place: now unwritable
        cursor.unlink(missing_ok=True)
        cursor.mkdir()
        server.push(OWNER, "status")
        running.thread.join(WAIT_S)
        assert not running.thread.is_alive()
    assert isinstance(running.error, RuntimeError)
    assert isinstance(running.error.__cause__, OSError)
    assert "iLink receiver failed" in str(running.error)
