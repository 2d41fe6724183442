"""The push fallback against the fake webhook: body formats, the 2048-byte and 20-a-minute
limits, and a URL secret that never reaches the log."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fakes.ilink import FakeWebhook
from fakes.ilink.webhook import KEY
from sidecar.push import MAX_TEXT_BYTES, PushChannel, redacted

pytestmark = pytest.mark.usefixtures("no_proxy")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def webhook() -> Iterator[FakeWebhook]:
    with FakeWebhook() as fake:
        yield fake


def test_a_wecom_push_is_a_text_message_cut_to_2048_bytes(webhook: FakeWebhook) -> None:
    channel = PushChannel(webhook.url, "wecom")
    assert channel.push("🏁 Training finished " + "长" * 1000)
    body = webhook.bodies[0]
    assert body["msgtype"] == "text"
    content = body["text"]["content"]
    assert content.startswith("🏁 Training finished") and len(content.encode()) <= MAX_TEXT_BYTES
    assert webhook.errors == []


def test_the_wecom_host_picks_the_wecom_format_and_other_urls_get_generic_json() -> None:
    assert PushChannel("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k").wecom
    generic = PushChannel("https://hooks.example.org/alert")
    assert not generic.wecom and generic.body("x") == {"source": "chattrain", "text": "x"}


def test_more_than_20_a_minute_are_not_sent_so_the_webhook_never_refuses(webhook: FakeWebhook) -> None:
    clock = Clock()
    channel = PushChannel(webhook.url, "wecom", clock=clock)
    results = [channel.push(f"alert {i}") for i in range(25)]
    assert results == [True] * 20 + [False] * 5
    assert len(webhook.bodies) == 20 and webhook.errors == []


def test_a_minute_later_the_channel_sends_again() -> None:
    clock = Clock()
    channel = PushChannel("http://127.0.0.1:9/hook", max_per_minute=1, clock=clock)
    channel.push("first")  # unreachable: still counts as an attempt
    assert not channel.push("second")  # rate-limited: not even tried
    clock.now += 60.0
    assert channel.push("third") is False  # tried again (and fails: nothing listens)


def test_the_url_secret_is_never_logged(webhook: FakeWebhook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar")
    channel = PushChannel(webhook.url.replace("/send", "/wrong"), "wecom")
    assert not channel.push("❌ Training failed")
    channel.push("again")
    assert caplog.records and KEY not in caplog.text
    assert KEY not in redacted(webhook.url) and "/cgi-bin/webhook/send" in redacted(webhook.url)
    with pytest.raises(ValueError) as error:
        PushChannel(f"ftp://user:{KEY}@host/x")
    assert KEY not in str(error.value)


def test_an_unreachable_webhook_is_logged_and_never_raises() -> None:
    channel = PushChannel("http://127.0.0.1:9/cgi-bin/webhook/send?key=k")
    assert channel.push("⚠️ Trainer down") is False
