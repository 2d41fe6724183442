"""A fake push webhook on 127.0.0.1: WeCom group robot style (`/cgi-bin/webhook/send?key=...`).

Records each POSTed JSON body; answers `{"errcode": 0}`, or WeCom's errors for a text over
2048 bytes (40058) and more than 20 messages a minute (45009).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "0f1e2d3c-secret-key"
PATH = "/cgi-bin/webhook/send"
MAX_TEXT_BYTES = 2048
MAX_PER_MINUTE = 20


class FakeWebhook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.changed = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{PATH}?key={KEY}"

    def texts(self) -> list[str]:
        with self.changed:
            return [_text(b) for b in self.bodies]

    def wait_until(self, predicate: Callable[[FakeWebhook], bool], timeout_s: float) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: predicate(self), timeout_s)
        assert ok, f"fake webhook: condition not met within {timeout_s} s; got {self.bodies!r}"

    def record(self, body: Any, path: str) -> dict[str, Any]:
        with self.changed:
            now = time.monotonic()
            recent = sum(1 for b in self.bodies if now - b["_at"] < 60.0)
            if path != f"{PATH}?key={KEY}":
                return {"errcode": 93000, "errmsg": "invalid webhook url"}
            text = _text(body)
            if len(str(text).encode()) > MAX_TEXT_BYTES:
                self.errors.append("text over 2048 bytes")
                return {"errcode": 40058, "errmsg": "content exceed max length"}
            if recent >= MAX_PER_MINUTE:
                self.errors.append("over 20 a minute")
                return {"errcode": 45009, "errmsg": "api freq out of limit"}
            self.bodies.append({**body, "_at": now})
            self.changed.notify_all()
            return {"errcode": 0, "errmsg": "ok"}

    def __enter__(self) -> FakeWebhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _text(body: Any) -> str:
    """WeCom's {"msgtype": "text", "text": {"content": ...}} or the generic {"text": ...}."""
    if not isinstance(body, dict):
        return ""
    text = body.get("text")
    return str(text.get("content", "")) if isinstance(text, dict) else str(text or "")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        answer = json.dumps(self.server.fake.record(body, self.path)).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
