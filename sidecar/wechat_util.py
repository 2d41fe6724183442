"""Parts of the WeChat backend that need no itchat: request timeouts, sent-text memory, QR art,
the one-line cause of a failed login."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlparse

import pyqrcode
from requests.adapters import HTTPAdapter

REQUEST_TIMEOUT_S = (10.0, 40.0)  # (connect, read); WeChat's login check long-polls ~25 s
ECHO_MEMORY_S = 600.0  # how long a sent text is remembered to recognise it coming back
ECHO_MEMORY_ENTRIES = 200  # and at most this many texts and message ids (a flood stays bounded)


class TimeoutAdapter(HTTPAdapter):
    """An adapter that gives every request without a timeout a default one."""

    def __init__(self, timeout_s: tuple[float, float]) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(self, request: Any, timeout: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().send(request, timeout=timeout or self.timeout_s, **kwargs)


class SentLog:
    """Texts this backend sent, to recognise them when web WeChat echoes them back."""

    def __init__(self, memory_s: float = ECHO_MEMORY_S, max_entries: int = ECHO_MEMORY_ENTRIES) -> None:
        self._memory_s = memory_s
        self._max_entries = max_entries
        self._entries: list[tuple[float, str, str]] = []  # (sent at, chat, text)
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest id goes first
        self._lock = threading.Lock()

    def record(self, chat: str, text: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._entries = [e for e in self._entries if now - e[0] < self._memory_s]
            self._entries.append((now, chat, text))
            del self._entries[: -self._max_entries]

    def record_id(self, msg_id: str) -> None:
        with self._lock:
            self._ids[msg_id] = None
            while len(self._ids) > self._max_entries:
                del self._ids[next(iter(self._ids))]

    def take_echo(self, msg_id: str, chat: str, text: str) -> bool:
        """True (once) if this message is one we sent."""
        with self._lock:
            by_id = self._ids.pop(msg_id, 0) is None
            for entry in self._entries:
                if entry[1:] == (chat, text):
                    self._entries.remove(entry)
                    return True
            return by_id


def qr_text(url: str) -> str:
    """`url` as a QR code drawn with half blocks, for a dark terminal (light modules lit)."""
    rows = pyqrcode.create(url).text(quiet_zone=2).split()
    rows += ["0" * len(rows[0])] if len(rows) % 2 else []
    glyphs = {("0", "0"): "█", ("0", "1"): "▀", ("1", "0"): "▄", ("1", "1"): " "}
    pairs = zip(rows[::2], rows[1::2], strict=True)
    lines = ["".join(glyphs[m] for m in zip(top, bottom, strict=True)) for top, bottom in pairs]
    return "\n".join(lines) + "\n"


def login_failure(error: BaseException) -> str:
    """A failed login in one line: 'cannot reach WeChat (login.weixin.qq.com: name not resolved)'."""
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
        if len(chain) > 10:
            break
    host = next((_host(e) for e in chain if _host(e)), None)
    if any(isinstance(e, socket.gaierror) or "NameResolution" in type(e).__name__ for e in chain):
        reason = "name not resolved"
    elif any(isinstance(e, (TimeoutError, socket.timeout)) or "Timeout" in type(e).__name__ for e in chain):
        reason = "timed out"
    elif any(isinstance(e, ConnectionRefusedError) for e in chain):
        reason = "connection refused"
    elif any(isinstance(e, OSError) or "ConnectionError" in type(e).__name__ for e in chain):
        reason = "no connection"
    else:
        return f"WeChat login failed ({type(error).__name__}: {str(error)[:200]})"
    return f"cannot reach WeChat ({host + ': ' if host else ''}{reason})"


def _host(error: BaseException) -> str | None:
    request = getattr(error, "request", None)
    url = getattr(request, "url", None) or getattr(error, "url", None)
    if isinstance(url, str) and url:
        return urlparse(url).hostname
    pool = getattr(error, "pool", None)
    return getattr(pool, "host", None)
