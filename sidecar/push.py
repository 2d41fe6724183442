"""A send-only push channel for alerts when the chat cannot deliver them (off by default).

Configured by one URL: a WeCom group robot webhook (企业微信 "消息推送",
`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`: JSON `{"msgtype": "text", ...}`,
about 20 messages a minute, text at most 2048 bytes) or any other URL, which gets a generic
JSON body `{"source": "chattrain", "text": ...}`. The URL's secret (its query string, or
user info) is never logged: logs name the channel by `redacted()`. A failing push is logged
and never raises into the sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

logger = logging.getLogger(__name__)

WECOM_HOST = "qyapi.weixin.qq.com"
FORMATS = ("auto", "wecom", "json")
MAX_PER_MINUTE = 20
MAX_TEXT_BYTES = 2048
TIMEOUT_S = 10.0


def redacted(url: str) -> str:
    """`url` without what may be a secret: user info, query and fragment."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    secret = "?…" if parts.query or parts.username or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{secret}"


def truncate_utf8(text: str, limit: int = MAX_TEXT_BYTES) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode("utf-8", errors="ignore") + "…"


class PushChannel:
    """POST alerts to a webhook, at most `max_per_minute` (the rest dropped, logged)."""

    def __init__(
        self,
        url: str,
        fmt: str = "auto",
        *,
        max_per_minute: int = MAX_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"push format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"push URL must be http(s)://host/..., got {redacted(url)}")
        self._url = url
        self.name = redacted(url)
        self.wecom = fmt == "wecom" or (fmt == "auto" and parts.hostname == WECOM_HOST)
        self._max_per_minute = max_per_minute
        self._clock = clock
        self._sent_at: deque[float] = deque()
        self._lock = threading.Lock()
        self._http = requests.Session()

    def body(self, text: str) -> dict[str, Any]:
        content = truncate_utf8(text)
        if self.wecom:
            return {"msgtype": "text", "text": {"content": content}}
        return {"source": "chattrain", "text": content}

    def push(self, text: str) -> bool:
        """Send `text`; False (logged) when rate-limited or it failed."""
        if not self._take_slot():
            logger.warning("push %s: over %d a minute, not sent", self.name, self._max_per_minute)
            return False
        try:
            response = self._http.post(self._url, json=self.body(text), timeout=TIMEOUT_S)
            answer = response.json() if response.status_code == 200 and response.content else {}
        except (requests.RequestException, ValueError) as error:
            logger.warning("push %s failed: %s", self.name, type(error).__name__)
            return False
        errcode = answer.get("errcode", 0) if isinstance(answer, dict) else 0
        if response.status_code != 200 or errcode:
            logger.warning("push %s refused: HTTP %d, errcode %s", self.name, response.status_code, errcode)
            return False
        logger.info("pushed an alert to %s", self.name)
        return True

    def _take_slot(self) -> bool:
        with self._lock:
            now = self._clock()
            while self._sent_at and now - self._sent_at[0] >= 60.0:
                self._sent_at.popleft()
            if len(self._sent_at) >= self._max_per_minute:
                return False
            self._sent_at.append(now)
            return True
