"""The chat backend interface the sidecar talks to, and an in-memory backend for tests.

A backend logs in, keeps the session alive, hands every incoming text to one callback
and sends text and images. The sidecar core never sees the chat library: only
`IncomingText` and `ChatBackend`. `sidecar/wechat.py` is the WeChat implementation.
"""

from __future__ import annotations

import enum
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Where `send_text(..., to=None)` goes: the owner's notification chat.
OWNER_CHAT = "filehelper"


class Priority(enum.IntEnum):
    """What an outgoing text is, most important first; backends with a delivery budget use it.

    REPLY answers a command (always sent). ALERT: failed, finished, stopped, trainer down,
    trainer back (never dropped). EVENT: the other trainer events. PROGRESS: the periodic
    progress line (coalesced, latest wins, dropped first).
    """

    REPLY = 0
    ALERT = 1
    EVENT = 2
    PROGRESS = 3


class SendError(ConnectionError):
    """A send failed: not logged in, the chat service refused it, or it timed out."""


@dataclass(frozen=True)
class IncomingText:
    """One text message received by the backend."""

    text: str
    sender_id: str  # the backend's user id (itchat UserName)
    sender_name: str  # NickName
    sender_remark: str  # RemarkName, '' if none
    chat_id: str  # where a reply goes ('filehelper' for the owner's own chat)
    from_owner: bool  # sent by the logged-in account itself


MessageCallback = Callable[[IncomingText], None]


class ChatBackend(ABC):
    """A chat connection: run with a text callback, send text, send image, stop."""

    @abstractmethod
    def run(self, on_message: MessageCallback) -> None:
        """Log in and deliver incoming texts to `on_message` until `stop()`.

        Blocks. Keeps the session alive (logs in again when the chat service ends it).
        `on_message` runs on the backend's receive thread; an exception from it is
        logged and never stops the backend.
        """

    @abstractmethod
    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        """Send `text` to chat `to` (None: the owner's notification chat).

        `priority` matters to backends that may only send so much (iLink's reply window);
        others ignore it. Raises SendError when it cannot (bounded in time: never hangs for good).
        """

    @abstractmethod
    def send_image(self, path: Path, to: str | None = None) -> None:
        """Send the image file at `path` to chat `to` (None: the owner's chat).

        Raises SendError when it cannot.
        """

    @abstractmethod
    def stop(self) -> None:
        """Make `run()` return. Safe to call from any thread, more than once."""

    @property
    @abstractmethod
    def ready(self) -> threading.Event:
        """Set once logged in and receiving; cleared while logged out."""


@dataclass(frozen=True)
class SentMessage:
    """What `MemoryBackend` recorded for one send: kind is 'text' or 'image'."""

    kind: str
    to: str
    text: str = ""
    path: Path | None = None
    priority: Priority = Priority.REPLY


class MemoryBackend(ChatBackend):
    """A backend with no network, for tests: push messages in, read what was sent.

    `push_message()` delivers synchronously on the caller's thread, whether or not
    `run()` is running, so a test sees the reply as soon as it returns.
    """

    def __init__(self, owner_id: str = "@owner", owner_name: str = "Owner") -> None:
        self.owner_id = owner_id
        self.owner_name = owner_name
        self.sent: list[SentMessage] = []
        self.errors: list[BaseException] = []  # what on_message raised, for tests to check
        self._on_message: MessageCallback | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    @property
    def ready(self) -> threading.Event:
        return self._ready

    def connect(self, on_message: MessageCallback) -> None:
        """Set the callback without blocking (what `run()` does before it waits)."""
        self._on_message = on_message
        self._ready.set()

    def run(self, on_message: MessageCallback) -> None:
        self.connect(on_message)
        self._stopped.wait()
        self._ready.clear()

    def stop(self) -> None:
        self._stopped.set()

    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        with self._lock:
            self.sent.append(SentMessage("text", to or OWNER_CHAT, text=text, priority=priority))

    def send_image(self, path: Path, to: str | None = None) -> None:
        with self._lock:
            self.sent.append(SentMessage("image", to or OWNER_CHAT, path=Path(path)))

    def push_message(
        self,
        text: str,
        *,
        sender_id: str | None = None,
        sender_name: str | None = None,
        sender_remark: str = "",
        chat_id: str | None = None,
    ) -> None:
        """Deliver `text` as if received; by default from the owner in the owner's chat."""
        if self._on_message is None:
            raise RuntimeError("push_message() before run()/connect(): no callback yet")
        from_owner = sender_id is None or sender_id == self.owner_id
        message = IncomingText(
            text=text,
            sender_id=sender_id or self.owner_id,
            sender_name=sender_name or (self.owner_name if from_owner else ""),
            sender_remark=sender_remark,
            chat_id=chat_id or (OWNER_CHAT if from_owner else (sender_id or "")),
            from_owner=from_owner,
        )
        try:
            self._on_message(message)
        except Exception as error:
            self.errors.append(error)
            logger.exception("message handler failed on %r", text)

    def pop_message(self) -> SentMessage:
        """Remove and return the oldest sent message (IndexError if none)."""
        with self._lock:
            return self.sent.pop(0)

    def texts(self, to: str | None = None) -> list[str]:
        """The texts sent so far (to chat `to`, or all when None)."""
        with self._lock:
            return [m.text for m in self.sent if m.kind == "text" and (to is None or m.to == to)]
