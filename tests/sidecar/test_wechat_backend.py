"""The WeChat backend with the real itchat 1.3.10, talking HTTP to a fake web-WeChat server."""

from __future__ import annotations

import html.parser
import io
import logging
import os
import pickle
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fakes.processes import free_ports
from fakes.wechat import FakeWeChatServer
from sidecar.access import AccessPolicy
from sidecar.backend import IncomingText, SendError

if TYPE_CHECKING:
    from tests.sidecar.conftest import RunningBackend

StartBackend = Callable[..., "RunningBackend"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_login_shows_the_qr_in_the_terminal_and_saves_it_in_the_state_dir(
    start_wechat_backend: StartBackend,
    fake_wechat: FakeWeChatServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    running = start_wechat_backend()
    qr_png = tmp_path / "state" / "qr.png"
    assert qr_png.read_bytes().startswith(PNG_MAGIC)
    assert "█" in running.qr_output.getvalue()
    assert not (tmp_path / "QR.png").exists()  # itchat's default: written to cwd, then a viewer
    assert (tmp_path / "state" / "itchat.pkl").stat().st_mode & 0o077 == 0
    assert (fake_wechat.qr_count, fake_wechat.login_count) == (1, 1)


def test_owner_text_to_filehelper_arrives_from_the_owner(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend()
    # Web WeChat escapes text as HTML: this is the path Python 3.9+ broke inside itchat.
    text = "set lr=1e-3 & <go>\nnow"
    fake_wechat.push_text("owner", "filehelper", text)
    message = running.inbox.wait_for(lambda m: True)
    assert message.text == text
    assert message.from_owner
    assert message.chat_id == "filehelper"
    assert message.sender_id == fake_wechat.user_name("owner")
    assert message.sender_name == "Owner"


def test_itchat_text_path_needs_the_restored_unescape() -> None:
    import itchat.utils

    import sidecar.wechat  # noqa: F401  (applies the fix)

    assert not hasattr(html.parser.HTMLParser, "unescape"), "stdlib has it again: drop the fix"
    assert itchat.utils.htmlParser.unescape("a &amp; b") == "a & b"


def test_contact_text_carries_the_stable_user_name_with_nickname_and_remark(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend()
    fake_wechat.push_text("alice", "owner", "status")
    message = running.inbox.wait_for(lambda m: True)
    alice = fake_wechat.user_name("alice")
    assert (message.from_owner, message.sender_id, message.chat_id) == (False, alice, alice)
    assert (message.sender_name, message.sender_remark) == ("Alice", "Ally")


def test_owner_chats_with_others_are_not_delivered(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend()
    fake_wechat.push_text("owner", "alice", "stop")  # the owner chatting with Alice
    fake_wechat.push_text("owner", "filehelper", "marker")
    running.inbox.wait_for(lambda m: m.text == "marker")
    assert [m.text for m in running.inbox.messages] == ["marker"]


def test_login_resolves_the_allow_list_by_remark_name_to_this_logins_user_names(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    access = AccessPolicy(["ally", "Bob"])  # Bob is only a nickname: anyone may choose it
    running = start_wechat_backend(access=access)
    assert access.allowed_ids() == {fake_wechat.user_name("alice")}
    fake_wechat.end_session()  # a new login: new UserNames, resolved again
    fake_wechat.wait_until(lambda f: f.login_count == 2, timeout_s=20)
    assert running.backend.ready.wait(20)
    assert access.allowed_ids() == {fake_wechat.user_name("alice")}


def test_send_text_goes_to_filehelper_by_default_and_to_a_given_chat(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend()
    running.backend.send_text("training started")
    running.backend.send_text("hello Alice", to=fake_wechat.user_name("alice"))
    first = fake_wechat.wait_for_sent(lambda t: t.text == "training started", timeout_s=5)
    second = fake_wechat.wait_for_sent(lambda t: t.text == "hello Alice", timeout_s=5)
    assert first.to_user == "filehelper"
    assert first.from_user == fake_wechat.user_name("owner")
    assert second.to_user == fake_wechat.user_name("alice")


def test_own_replies_echoed_back_by_sync_are_not_taken_as_commands(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend()
    assert fake_wechat.echo_sent
    running.backend.send_text("stop")  # the server echoes it: owner -> filehelper, "stop"
    fake_wechat.wait_for_sent(lambda t: t.text == "stop", timeout_s=5)
    fake_wechat.push_text("owner", "filehelper", "marker")
    running.inbox.wait_for(lambda m: m.text == "marker")
    assert [m.text for m in running.inbox.messages] == ["marker"]


def test_send_image_uploads_in_chunks_and_sends(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, tmp_path: Path
) -> None:
    running = start_wechat_backend()
    image = tmp_path / "loss.png"
    image.write_bytes(PNG_MAGIC + os.urandom(700_000))  # > 512 KiB: two upload chunks
    running.backend.send_image(image)
    fake_wechat.wait_until(lambda s: bool(s.sent_images), timeout_s=5)
    sent = fake_wechat.sent_images[0]
    assert sent.data == image.read_bytes()
    assert (sent.to_user, sent.file_name) == ("filehelper", "loss.png")
    assert fake_wechat.requests.count("/cgi-bin/mmwebwx-bin/webwxuploadmedia") == 2


def test_send_of_a_missing_image_raises_send_error(
    start_wechat_backend: StartBackend, tmp_path: Path
) -> None:
    running = start_wechat_backend()
    with pytest.raises(SendError, match="no such file"):
        running.backend.send_image(tmp_path / "missing.png")


def test_handler_exception_is_logged_and_the_backend_keeps_delivering(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_wechat_backend()
    delivered = running.inbox

    def explode_once(message: IncomingText) -> None:
        delivered(message)
        if message.text == "boom":
            raise RuntimeError("handler bug")

    running.backend._on_message = explode_once  # the callback run() was given
    fake_wechat.push_text("owner", "filehelper", "boom")
    delivered.wait_for(lambda m: m.text == "boom")
    fake_wechat.push_text("owner", "filehelper", "after")
    delivered.wait_for(lambda m: m.text == "after")
    assert "handler bug" in caplog.text


def test_a_message_itchat_cannot_read_loses_only_itself_not_its_batch(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_wechat_backend()
    with fake_wechat.changed:  # one webwxsync answer holds both
        fake_wechat.push_text("owner", "filehelper", "unreadable", Content=None)
        fake_wechat.push_text("owner", "filehelper", "status")
    assert running.inbox.wait_for(lambda m: True).text == "status"
    assert "dropped a message WeChat sent that cannot be read" in caplog.text


@pytest.mark.parametrize("answer", [{"BaseResponse": None}, [1, 2], "x"], ids=["null", "list", "text"])
def test_a_send_answer_that_cannot_be_read_is_a_send_error(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, answer: object
) -> None:
    running = start_wechat_backend()
    fake_wechat.answer_next("/webwxsendmsg", answer)
    with pytest.raises(SendError, match="cannot be read"):
        running.backend.send_text("State: idle")
    running.backend.send_text("State: idle")  # the next answer is a normal one
    assert [t.text for t in fake_wechat.sent_texts] == ["State: idle"]


def test_session_ended_by_wechat_logs_in_again_with_a_new_qr(
    start_wechat_backend: StartBackend,
    fake_wechat: FakeWeChatServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = start_wechat_backend()
    first_qr = (tmp_path / "state" / "qr.png").read_bytes()
    fake_wechat.end_session()  # synccheck answers retcode 1101
    fake_wechat.wait_until(lambda s: s.login_count == 2, timeout_s=10)
    assert running.backend.ready.wait(5)
    assert "WeChat ended the session" in caplog.text
    assert fake_wechat.qr_count == 2
    assert (tmp_path / "state" / "qr.png").read_bytes() != first_qr
    fake_wechat.push_text("owner", "filehelper", "still there?")
    message = running.inbox.wait_for(lambda m: m.text == "still there?")
    assert message.sender_id == fake_wechat.user_name("owner")  # the new session's UserName
    running.backend.send_text("yes")
    assert fake_wechat.wait_for_sent(lambda t: t.text == "yes", timeout_s=5).session == 2


def test_restart_with_the_same_state_dir_needs_no_new_qr_scan(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, tmp_path: Path
) -> None:
    first = start_wechat_backend()
    first.stop()
    second = start_wechat_backend()
    assert (fake_wechat.qr_count, fake_wechat.login_count) == (1, 1)
    assert second.qr_output.getvalue() == ""
    fake_wechat.push_text("owner", "filehelper", "status")
    assert second.inbox.wait_for(lambda m: m.text == "status").from_owner
    second.backend.send_text("ok")
    assert fake_wechat.wait_for_sent(lambda t: t.text == "ok", timeout_s=5).session == 1


class _Planted:
    """A pickle that runs code when loaded: here it only creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_saved_session_others_could_have_written_is_deleted_unloaded(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    planted = state / "itchat.pkl"
    planted.write_bytes(pickle.dumps(_Planted(tmp_path / "code-ran")))
    planted.chmod(0o666)
    running = start_wechat_backend()
    assert not (tmp_path / "code-ran").exists()
    assert fake_wechat.qr_count == 1  # a fresh QR login instead
    assert stat.S_IMODE(planted.stat().st_mode) == 0o600  # the new session, saved privately
    running.stop()


def test_send_before_login_raises_send_error(tmp_path: Path) -> None:
    from sidecar.wechat import WeChatBackend

    backend = WeChatBackend(tmp_path, base_url="http://127.0.0.1:9")
    with pytest.raises(SendError, match="not logged in"):
        backend.send_text("hello")


@pytest.mark.filterwarnings("error")
def test_login_survives_warnings_as_errors(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    # itchat calls the deprecated Thread.setDaemon when it starts its receive thread.
    running = start_wechat_backend()
    fake_wechat.push_text("owner", "filehelper", "status")
    running.inbox.wait_for(lambda m: m.text == "status")


def test_stop_ends_run_while_waiting_for_a_qr_scan(
    fake_wechat: FakeWeChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.wechat import WeChatBackend

    fake_wechat.auto_scan = False
    backend = WeChatBackend(tmp_path, base_url=fake_wechat.url, qr_stream=io.StringIO())
    thread = threading.Thread(target=backend.run, args=(lambda m: None,))
    thread.start()
    fake_wechat.wait_until(lambda s: s.qr_count == 1, timeout_s=5)
    backend.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert fake_wechat.login_count == 0


def test_a_hung_server_cannot_hang_a_send(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer
) -> None:
    running = start_wechat_backend(request_timeout_s=(2.0, 0.5))
    fake_wechat.stall("/webwxsendmsg")
    with pytest.raises(SendError, match="timed out"):
        running.backend.send_text("hello")
    fake_wechat.release()
    running.backend.send_text("hello again")
    fake_wechat.wait_for_sent(lambda t: t.text == "hello again", timeout_s=5)


def test_fake_server_runs_as_a_process_driven_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fakes.wechat import FakeWeChatProcess
    from sidecar.wechat import WeChatBackend

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeWeChatProcess() as fake:
        backend = WeChatBackend(tmp_path, base_url=fake.url, qr_stream=io.StringIO())
        inbox: list[IncomingText] = []
        thread = threading.Thread(target=backend.run, args=(inbox.append,))
        thread.start()
        try:
            assert backend.ready.wait(10)
            fake.push_text("owner", "filehelper", "ping")
            backend.send_text("pong")
            sent = fake.wait_for_sent(lambda t: t["text"] == "pong", timeout_s=5)
            assert sent["to_user"] == "filehelper"
            assert fake.state()["login_count"] == 1
        finally:
            backend.stop()
            thread.join(10)


def test_outage_that_stops_itchats_receive_loop_is_followed_by_a_hot_reload(
    start_wechat_backend: StartBackend, fake_wechat: FakeWeChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.wechat")
    running = start_wechat_backend()
    fake_wechat.fail("/synccheck")
    # itchat retries 5 times, one second apart, then ends its receive loop.
    fake_wechat.wait_until(lambda s: s.failures == 6, timeout_s=15)
    fake_wechat.recover()
    fake_wechat.push_text("owner", "filehelper", "back?")
    running.inbox.wait_for(lambda m: m.text == "back?", timeout_s=10)
    assert "WeChat ended the session" in caplog.text
    assert (fake_wechat.qr_count, fake_wechat.login_count) == (1, 1)  # hot reload: no new QR


def test_an_unreachable_wechat_is_one_line_per_attempt_with_the_next_retry_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.wechat import WeChatBackend

    port = free_ports()[0]  # a port nobody listens on: connection refused
    backend = WeChatBackend(
        tmp_path, base_url=f"http://127.0.0.1:{port}", qr_stream=io.StringIO(), relogin_delays_s=(0.01, 0.02)
    )
    attempts = threading.Event()

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying in" in record.getMessage() and len(retries()) >= 3:
                attempts.set()

    def retries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "retrying in" in r.getMessage()]

    counter = Counter()
    logging.getLogger("sidecar.wechat").addHandler(counter)
    caplog.set_level(logging.INFO, logger="sidecar.wechat")
    thread = threading.Thread(target=backend.run, args=(lambda m: None,))
    thread.start()
    try:
        assert attempts.wait(60), [r.getMessage() for r in caplog.records]
    finally:
        backend.stop()
        thread.join(30)
        logging.getLogger("sidecar.wechat").removeHandler(counter)
    assert not thread.is_alive()
    lines = [r.getMessage() for r in retries()]
    assert lines[0] == (
        "cannot reach WeChat (127.0.0.1: connection refused); "
        "retrying in 0 s (without WeChat: --backend console)"
    ), lines
    assert all("\n" not in line for line in lines)
    # One line each: the traceback goes to debug only, never with the warning.
    assert all(r.exc_info is None for r in retries())
    assert not any(r.levelno >= logging.WARNING and r.exc_info for r in caplog.records)
