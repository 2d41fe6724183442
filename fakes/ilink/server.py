"""A fake iLink bot API on 127.0.0.1, written from Tencent/openclaw-weixin docs/protocol.md.

Checks what a real client must send (headers, `base_info`, the bot token, a `context_token`
issued to the recipient, one item per message) and records what it found wrong in
`bad_requests`; enforces the reply window and the per-inbound limit with `ret -2`; answers
errcode -14 for a token it no longer knows; the CDN decrypts uploads and checks them against
`getuploadurl`. `scaned_but_redirect` sends the client to `<url>/redirected`.

    with FakeIlinkServer() as server:
        server.push(OWNER, "status")
        server.wait_text("State:")
"""

from __future__ import annotations

import base64
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.http import HttpServing

from .state import SESSION_EXPIRED, FakeIlinkState, Raw

REDIRECT_PREFIX = "/redirected"
CDN_PREFIX = "/c2c"
POLL_STEP_S = 0.05


class FakeIlinkServer(FakeIlinkState, HttpServing):
    """The state plus its HTTP server (port 0: any free port) in a thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._serve(_Handler, host, port, "fake-ilink")

    @property
    def cdn_url(self) -> str:
        return self.url + CDN_PREFIX


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    @property
    def fake(self) -> FakeIlinkServer:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(length))

    def _dispatch(self, raw: bytes) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path.startswith(CDN_PREFIX + "/upload"):
            self._cdn_upload(query, raw)
            return
        redirected = path.startswith(REDIRECT_PREFIX)
        path = path.removeprefix(REDIRECT_PREFIX).removeprefix("/ilink/bot/")
        failure = self.fake.take_failure(path)
        if isinstance(failure, int):
            self._reply(failure, b"busy")
            return
        if isinstance(failure, Raw):
            self._raw(failure)
            return
        if failure is not None:
            self._json(failure)
            return
        self._check_headers(path)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self.fake.bad_requests.append(f"{path}: body is not JSON")
            self._reply(400, b"bad json")
            return
        self._json(self._answer(path, query, body, redirected))

    def _answer(self, path: str, query: dict[str, str], body: dict[str, Any], redirected: bool) -> Any:
        if path == "get_bot_qrcode":
            return self.fake.new_qr()
        if path == "get_qrcode_status":
            return self._qr_status(query, redirected)
        if not self._authorized(body):
            return SESSION_EXPIRED
        if path == "getupdates":
            return self._get_updates(body)
        if path == "sendmessage":
            return self.fake.send(body.get("msg") or {})
        if path == "getuploadurl":
            return self.fake.upload_url(body)
        if path in ("msg/notifystart", "msg/notifystop"):
            self.fake.notified(path.removeprefix("msg/notify"))
            return {"ret": 0, "errmsg": ""}
        return {"ret": -1, "errmsg": f"unknown path {path}"}

    def _qr_status(self, query: dict[str, str], redirected: bool) -> dict[str, Any]:
        answer = self.fake.qr_status(query.get("qrcode", ""), query.get("verify_code", ""), redirected)
        if answer.get("redirect_host") == "REDIRECT":
            answer["redirect_host"] = self.fake.url + REDIRECT_PREFIX
        if answer.get("baseurl") == "BASEURL":
            answer["baseurl"] = self.fake.url
        return answer

    def _authorized(self, body: dict[str, Any]) -> bool:
        info = body.get("base_info") or {}
        if not info.get("channel_version") or info.get("bot_agent") != "chattrain":
            self.fake.bad_requests.append(f"{self.path}: base_info {info!r}")
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        return token in self.fake.valid_tokens

    def _check_headers(self, path: str) -> None:
        wrong = []
        if self.headers.get("AuthorizationType") != "ilink_bot_token":
            wrong.append("AuthorizationType")
        if not (self.headers.get("iLink-App-Id") and self.headers.get("iLink-App-ClientVersion")):
            wrong.append("iLink-App-Id / iLink-App-ClientVersion")
        try:
            int(base64.b64decode(self.headers.get("X-WECHAT-UIN") or "", validate=True).decode())
        except ValueError:
            wrong.append("X-WECHAT-UIN")
        if wrong:
            self.fake.bad_requests.append(f"{path}: headers {', '.join(wrong)}")

    def _get_updates(self, body: dict[str, Any]) -> dict[str, Any]:
        cursor = str(body.get("get_updates_buf") or "")
        with self.fake.changed:
            self.fake.polls += 1
            hang, self.fake.hang_next_poll_s = self.fake.hang_next_poll_s, 0.0
            self.fake.changed.notify_all()
        if hang:  # a server that holds too long: the client must give up first
            with self.fake.changed:
                self.fake.changed.wait_for(lambda: self.fake.closed, hang)
        deadline = time.monotonic() + self.fake.hold_s
        with self.fake.changed:
            self.fake.changed.wait_for(
                lambda: (
                    bool(self.fake.updates_after(cursor)) or self.fake.closed or not self._authorized(body)
                ),
                max(0.0, deadline - time.monotonic()),
            )
        if not self._authorized(body):
            return SESSION_EXPIRED
        messages = self.fake.updates_after(cursor)
        answer: dict[str, Any] = {
            "ret": 0,
            "msgs": messages,
            "get_updates_buf": self.fake.cursor_of(messages, cursor),
        }
        if self.fake.suggest_ms is not None:
            answer["longpolling_timeout_ms"] = self.fake.suggest_ms
        return answer

    def _cdn_upload(self, query: dict[str, str], ciphertext: bytes) -> None:
        if self.headers.get("Content-Type") != "application/octet-stream":
            self.fake.bad_requests.append("CDN upload without Content-Type application/octet-stream")
        if self.fake.take_failure("cdn") is not None:
            self._reply(500, b"", {"x-error-message": "injected failure"})
            return
        download, why = self.fake.cdn_upload(
            query.get("encrypted_query_param", ""), query.get("filekey", ""), ciphertext
        )
        if download is None:
            self.fake.bad_requests.append(f"CDN upload: {why}")
            self._reply(400, b"", {"x-error-message": why})
        else:
            self._reply(200, b"", {"x-encrypted-param": download})

    def _raw(self, answer: Raw) -> None:
        if not answer.trickle_s:
            self._reply(200, answer.body, {"Content-Type": "application/json"})
            return
        self._reply(200, b"", {"Content-Type": "application/json"}, length=len(answer.body))
        for index in range(len(answer.body)):
            self.wfile.write(answer.body[index : index + 1])  # a client that gave up: ConnectionError
            with self.fake.changed:
                if self.fake.changed.wait_for(lambda: self.fake.closed, answer.trickle_s):
                    return

    def _json(self, value: Any) -> None:
        self._reply(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _reply(
        self, status: int, payload: bytes, headers: dict[str, str] | None = None, length: int | None = None
    ) -> None:
        """`payload` after the headers; `length`: the Content-Length of a body the caller writes on."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload) if length is None else length))
        self.end_headers()
        self.wfile.write(payload)
