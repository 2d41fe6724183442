"""The nickname spoof, end to end: real itchat against the fake web-WeChat server, the real
Sidecar, a fake trainer on real sockets. A friend who renames himself to an allowed name, or who
had that nickname all along, is never obeyed; the contact the owner named so is."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.trainer import FakeTrainer
from fakes.wechat import FILEHELPER, OWNER_KEY, Contact, FakeWeChatServer
from sidecar.access import AccessPolicy
from sidecar.app import Sidecar
from tests.sidecar.harness import endpoints, make_config

WAIT_S = 20.0
CONTACTS = (
    Contact(OWNER_KEY, "Owner"),
    Contact("alice", "Alice", "Alice"),  # the owner set her remark to "Alice"
    Contact("mallory", "Mallory"),  # renames himself to "Alice" once the sidecar runs
    Contact("eve", "Alice"),  # chose the nickname "Alice" before the sidecar logged in
)


@pytest.fixture
def chat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[FakeWeChatServer, FakeTrainer, Sidecar]]:
    from sidecar.wechat import WeChatBackend

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with endpoints() as eps, FakeWeChatServer(CONTACTS) as fake:
        trainer = FakeTrainer(*eps, announce=False).start()
        trainer.state = "running"
        config = make_config(*eps, tmp_path / "state", allow=("Alice",), backend="wechat")
        access = AccessPolicy(config.allow)
        backend = WeChatBackend(config.state_dir, base_url=fake.url, qr_stream=io.StringIO(), access=access)
        app = Sidecar(config, backend, access=access)
        thread = threading.Thread(target=app.run, name="sidecar-run")
        thread.start()
        try:
            assert backend.ready.wait(WAIT_S), "the sidecar did not log in"
            yield fake, trainer, app
        finally:
            app.stop()
            thread.join(WAIT_S)
            trainer.close()


def reply_to(fake: FakeWeChatServer, key: str, text: str, to: str = OWNER_KEY, chat: str = "") -> str:
    """Send `text` from contact `key` (to `to`) and wait for the sidecar's reply in `chat` (by
    default, the chat with that contact)."""
    before = len(fake.sent_texts)
    fake.push_text(key, to, text)
    chat = chat or fake.user_name(key)
    return fake.wait_for_sent(lambda t: t.to_user == chat and fake.sent_texts.index(t) >= before, WAIT_S).text


def test_a_friend_renamed_to_an_allowed_nickname_is_refused_and_the_named_contact_obeyed(
    chat: tuple[FakeWeChatServer, FakeTrainer, Sidecar], caplog: pytest.LogCaptureFixture
) -> None:
    fake, trainer, _ = chat
    fake.rename("mallory", "Alice")
    # Once the sync carrying the rename is served, itchat has applied it before its next sync.
    fake.wait_until(lambda f: f.current is not None and not f.current.modified, WAIT_S)
    with caplog.at_level(logging.INFO, logger="sidecar.access"):
        fake.push_text("mallory", OWNER_KEY, "停止")
        fake.push_text("eve", OWNER_KEY, "stop")
        assert reply_to(fake, "alice", "status").startswith("State: running")  # after both
    assert "stop" not in trainer.requests and trainer.state == "running"
    strangers = {fake.user_name("mallory"), fake.user_name("eve")}
    assert not [t for t in fake.sent_texts if t.to_user in strangers]
    assert f"ignored message from {fake.user_name('mallory')} (nickname 'Alice'" in caplog.text
    assert f"ignored message from {fake.user_name('eve')} (nickname 'Alice'" in caplog.text


FILE_SENDING_PATHS = ("/webwxuploadmedia", "/webwxsendmsgimg", "/webwxsendappmsg", "/webwxsendvideomsg")


def test_chat_text_can_never_make_the_sidecar_send_a_file(
    chat: tuple[FakeWeChatServer, FakeTrainer, Sidecar],
) -> None:
    # itchat's send() takes text starting @fil@ / @img@ / @vid@ as a local path to upload: through
    # the real itchat, no chat text (nor our own) may reach that path.
    fake, _, app = chat
    fake.wait_for_sent(lambda t: "Sidecar connected" in t.text, WAIT_S)  # before our replies
    fake.push_text(OWNER_KEY, FILEHELPER, "@fil@/etc/passwd")  # chatter: ignored
    reply = reply_to(fake, OWNER_KEY, "set @fil@/etc/passwd 1", to=FILEHELPER, chat=FILEHELPER)
    assert reply.startswith("Unknown parameter '@fil@/etc/passwd'")
    app.outbox.text("@img@/etc/hosts")  # even our own text cannot start with a file prefix
    sent = fake.wait_for_sent(lambda t: "/etc/hosts" in t.text, WAIT_S)
    assert not fake.sent_images
    assert not [path for path in fake.requests if path.endswith(FILE_SENDING_PATHS)], fake.requests
    assert sent.text == " @img@/etc/hosts" and sent.to_user == FILEHELPER
