"""The HTTP half shared by the fake chat services (fakes/wechat, fakes/ilink).

A fake service is its state class (with a `changed` condition and a `closed` flag, which waiters
watch) plus `HttpServing`, which serves a request handler on 127.0.0.1 (port 0: any free port)
from a daemon thread.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T", bound="HttpServing")


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) leaves a broken pipe: not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HttpServing:
    """Mixed into a fake's state class; handlers reach the fake as `self.server.fake`."""

    changed: threading.Condition
    closed: bool

    def _serve(self, handler: type[BaseHTTPRequestHandler], host: str, port: int, name: str) -> None:
        self._httpd = QuietHTTPServer((host, port), handler)
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self: T) -> T:
        self._thread.start()
        return self

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
