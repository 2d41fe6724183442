"""One thread that does all sending to the chat backend.

The feed thread and the message thread only enqueue; a hung or failing chat service (itchat
calls have no timeout) therefore never stalls the trainer feed or the command path. Sends are
in enqueue order, held while the backend is not ready (logging in); a failed send is logged
and dropped. The queue is bounded: when it is full
the new message is dropped and logged, never blocking the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sidecar.backend import ChatBackend

logger = logging.getLogger(__name__)

MAX_QUEUED = 200
RECENT_TEXTS = 50
STOP_TIMEOUT_S = 5.0
READY_POLL_S = 0.5
FILE_PREFIXES = ("@fil@", "@img@", "@vid@", "@msg@")


@dataclass(frozen=True)
class Outgoing:
    text: str = ""
    image: Path | None = None
    to: str | None = None


class Outbox:
    """Queue texts and images for the backend; `start()` runs the sending thread."""

    def __init__(self, backend: ChatBackend, max_queued: int = MAX_QUEUED) -> None:
        self._backend = backend
        self._queue: queue.Queue[Outgoing | None] = queue.Queue(max_queued)
        self._recent: deque[str] = deque(maxlen=RECENT_TEXTS)
        self._recent_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sidecar-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def text(self, text: str, to: str | None = None) -> None:
        if text.startswith(FILE_PREFIXES):
            text = " " + text  # itchat's send() would read the rest as a local file path
        with self._recent_lock:
            self._recent.append(text.strip())
        self._put(Outgoing(text=text, to=to))

    def image(self, path: Path, to: str | None = None) -> None:
        self._put(Outgoing(image=path, to=to))

    def sent_recently(self, text: str) -> bool:
        """Whether `text` is one of our own recent messages (the chat may echo them back)."""
        with self._recent_lock:
            return text.strip() in self._recent

    def join(self) -> None:
        """Wait until everything queued so far was handed to the backend."""
        self._queue.join()

    def close(self) -> None:
        """Send what is queued (while the backend is ready), then stop the thread."""
        self._closing.set()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(STOP_TIMEOUT_S)

    def _put(self, item: Outgoing) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            logger.error("outbox full (%d queued): dropped %r", self._queue.qsize(), item)

    def _wait_ready(self) -> bool:
        """Hold sends while the backend is logged out; False when closing meanwhile."""
        while not self._backend.ready.wait(READY_POLL_S):
            if self._closing.is_set():
                return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None or not self._wait_ready():
                    return
                if item.image is not None:
                    self._backend.send_image(item.image, to=item.to)
                else:
                    self._backend.send_text(item.text, to=item.to)
            except Exception:
                logger.exception("sending to chat %s failed; dropped", item and item.to)
            finally:
                self._queue.task_done()
