"""Drive a fake web-WeChat server running as its own process (`python -m fakes.wechat`).

with FakeWeChatProcess() as fake:          # starts it, reads its URL
    run the sidecar with itchat's BASE_URL = fake.url
    fake.push_text("owner", "filehelper", "status")
    sent = fake.wait_for_sent(lambda t: t["to_user"] == "filehelper", timeout_s=10)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 10.0
LONG_POLL_S = 1.0


class FakeWeChatClient:
    """The test-control API of a fake server at `url` (proxies never used)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, path: str, body: dict[str, Any] | None = None, timeout_s: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        with self._opener.open(self.url + path, data=data, timeout=timeout_s) as reply:
            return json.loads(reply.read())

    def push_text(self, from_user: str, to_user: str, text: str) -> None:
        """Queue a text: users by contact key ('owner', 'alice', 'bob', 'filehelper')."""
        self._call("/_test/push", {"from": from_user, "to": to_user, "text": text})

    def end_session(self) -> None:
        self._call("/_test/end_session", {})

    def state(self) -> dict[str, Any]:
        """qr_count, login_count, logout_count, user_names, sent_texts, sent_images."""
        return self._call("/_test/state")  # type: ignore[no-any-return]

    def wait_for_sent(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, after: int = 0
    ) -> dict[str, Any]:
        """The first sent text (a dict: from_user, to_user, text, msg_id, session) past
        index `after` matching `predicate`; AssertionError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen = after
        while True:
            state = self._call(f"/_test/state?sent_after={seen}&wait_s={LONG_POLL_S}")
            texts = state["sent_texts"]
            for sent in texts[after:]:
                if predicate(sent):
                    return sent  # type: ignore[no-any-return]
            seen = len(texts)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching sent text within {timeout_s} s: {texts!r}")


class FakeWeChatProcess(FakeWeChatClient):
    """`python -m fakes.wechat` as a child process; `url` read from its first line. `stderr`:
    where its log goes (`subprocess.DEVNULL` for a benchmark: it logs every sent text)."""

    def __init__(self, *args: str, stderr: int | None = None) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fakes.wechat", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        assert self._process.stdout is not None
        url = self._process.stdout.readline().strip()
        if not url.startswith("http://"):
            self.close()
            raise RuntimeError(f"fake WeChat server did not start: first line {url!r}")
        super().__init__(url)

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> FakeWeChatProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
