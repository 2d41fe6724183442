"""One thread that does all sending to the chat backend.

The feed thread and the message thread only enqueue; a hung or failing chat service (itchat
calls have no timeout) therefore never stalls the trainer feed or the command path. Sends are
in enqueue order, held while the backend is not ready (logging in); a failed send is logged
and dropped. The queue is bounded by priority, never blocking the caller: a progress line
replaces the one still queued for the same chat (latest wins); when the queue is full the
oldest event goes first, then the oldest reply, then the queued progress; an alert (failed,
finished, stopped, trainer down/back) is never dropped. After hours of a logged-out WeChat
the owner therefore gets the final state and the latest progress, not 200 stale lines.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.serving import ThreadDeath, guarded_thread
from sidecar.backend import ChatBackend, Priority

logger = logging.getLogger(__name__)

MAX_QUEUED = 200
STOP_TIMEOUT_S = 5.0
READY_POLL_S = 0.5
FILE_PREFIXES = ("@fil@", "@img@", "@vid@", "@msg@")
# Progress is coalesced to one per chat already: dropping it frees little and loses the latest.
EVICTION_ORDER = (Priority.EVENT, Priority.REPLY, Priority.PROGRESS)  # ALERT: never


@dataclass(frozen=True)
class Outgoing:
    text: str = ""
    image: Path | None = None
    to: str | None = None
    priority: Priority = Priority.REPLY


class Outbox:
    """Queue texts and images for the backend; `start()` runs the sending thread."""

    def __init__(
        self, backend: ChatBackend, max_queued: int = MAX_QUEUED, on_death: ThreadDeath | None = None
    ) -> None:
        self._backend = backend
        self._max_queued = max_queued
        self._items: deque[Outgoing] = deque()
        self._unfinished = 0  # queued plus the one being sent
        self._changed = threading.Condition()
        self._closing = threading.Event()
        target = guarded_thread("sidecar-outbox", self._run, self._closing, on_death)
        self._thread = threading.Thread(target=target, name="sidecar-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        """Queue `text` for chat `to` (None: the owner's chat); `priority` says what it is."""
        if text.startswith(FILE_PREFIXES):
            text = " " + text  # itchat's send() would read the rest as a local file path
        self._put(Outgoing(text=text, to=to, priority=Priority(priority)))

    def image(self, path: Path, to: str | None = None) -> None:
        self._put(Outgoing(image=path, to=to))

    def queued(self) -> list[Outgoing]:
        """What waits to be sent, in order (for tests and status)."""
        with self._changed:
            return list(self._items)

    def join(self) -> None:
        """Wait until everything queued so far was handed to the backend."""
        with self._changed:
            self._changed.wait_for(lambda: self._unfinished == 0)

    def close(self) -> None:
        """Send what is queued (while the backend is ready), then stop the thread."""
        with self._changed:
            self._closing.set()
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)

    def _put(self, item: Outgoing) -> None:
        with self._changed:
            if item.priority is Priority.PROGRESS:
                self._remove(lambda o: o.priority is Priority.PROGRESS and o.to == item.to)
            full = len(self._items) >= self._max_queued
            if full and not self._evict_one() and item.priority is not Priority.ALERT:
                logger.error("outbox full of alerts (%d queued): dropped %r", len(self._items), item)
                return
            self._items.append(item)
            self._unfinished += 1
            self._changed.notify_all()

    def _evict_one(self) -> bool:
        """Drop the least important queued message; False when only alerts are queued."""
        for priority in EVICTION_ORDER:
            victim = next((o for o in self._items if o.priority is priority), None)
            if victim is not None:
                logger.error("outbox full (%d queued): dropped %r", len(self._items), victim)
                self._items.remove(victim)
                self._unfinished -= 1
                return True
        return False

    def _remove(self, match: Callable[[Outgoing], bool]) -> None:
        keep = deque(o for o in self._items if not match(o))
        self._unfinished -= len(self._items) - len(keep)
        self._items = keep

    def _next(self) -> Outgoing | None:
        with self._changed:
            self._changed.wait_for(lambda: self._items or self._closing.is_set())
            return self._items.popleft() if self._items else None

    def _wait_ready(self) -> bool:
        """Hold sends while the backend is logged out; False when closing meanwhile."""
        while not self._backend.ready.wait(READY_POLL_S):
            if self._closing.is_set():
                return False
        return True

    def _run(self) -> None:
        while (item := self._next()) is not None:
            try:
                if not self._wait_ready():
                    return
                if item.image is not None:
                    self._backend.send_image(item.image, to=item.to)
                else:
                    self._backend.send_text(item.text, to=item.to, priority=item.priority)
            except Exception:
                logger.exception("sending to chat %s failed; dropped", item.to)
            finally:
                with self._changed:
                    self._unfinished -= 1
                    self._changed.notify_all()
