"""The publisher's bounded queue between the threads that publish and the one that sends.

When the sending thread falls behind (or stops), the queue must not grow without bound, and what
it gives up must be what matters least: the per-step metrics (`metrics.steps`, one per compiled
call) go first, oldest first; then other non-event messages; events never.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from protocol.steps import METRICS_STEPS

logger = logging.getLogger(__name__)

FEED_QUEUE_SIZE = 10_000
DROPPED_FIRST = METRICS_STEPS
NEVER_DROPPED_PREFIX = "event."

Item = tuple[str, dict[str, Any]]


class FeedQueue:
    """(topic, body) items, first in first out, holding at most `max_items` that may be dropped."""

    def __init__(self, max_items: int = FEED_QUEUE_SIZE) -> None:
        if max_items < 1:
            raise ValueError(f"a feed queue needs room for at least 1 item, received {max_items}")
        self.max_items = max_items
        self.dropped = 0  # how many items were given up, in all
        self._items: deque[Item] = deque()
        self._cond = threading.Condition()
        self._unreported = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, topic: str, body: dict[str, Any]) -> None:
        """Queue an item; never blocks. When full, make room by dropping the least important item."""
        with self._cond:
            if len(self._items) >= self.max_items and not self._make_room(topic):
                self._count_drop()
                return  # the item itself was the least important
            self._items.append((topic, body))
            self._cond.notify()

    def get(self, timeout_s: float) -> Item | None:
        """The oldest item, waiting up to `timeout_s`; None if there was none (or on `wake`)."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            if not self._items and self._unreported:
                logger.warning("the feed queue dropped %d messages while full", self._unreported)
                self._unreported = 0
            return item

    def wake(self) -> None:
        """Wake a waiting `get` (e.g. to notice a stop request)."""
        with self._cond:
            self._cond.notify_all()

    def _make_room(self, incoming: str) -> bool:
        """Drop one queued item to make room for `incoming`; False if `incoming` should go instead."""
        for wanted in (_is_step, _droppable):
            index = next((i for i, (topic, _) in enumerate(self._items) if wanted(topic)), None)
            if index is not None:
                del self._items[index]
                self._count_drop()
                return True
            if wanted(incoming):
                return False  # nothing queued matters less than the item itself
        return True  # only events are queued and an event arrives: events are never dropped

    def _count_drop(self) -> None:
        if not self._unreported:
            logger.warning("the feed queue is full (%d): dropping the oldest messages", self.max_items)
        self.dropped += 1
        self._unreported += 1


def _is_step(topic: str) -> bool:
    return topic == DROPPED_FIRST


def _droppable(topic: str) -> bool:
    return not topic.startswith(NEVER_DROPPED_PREFIX)
