"""The control server's memory of recent replies, so that a retried request is answered, not re-run.

Bounded twice: by count and by bytes, because one reply may be large (an error naming thousands
of parameters once made 1,100 cached replies cost the trainer almost a gigabyte). The oldest
replies go first. Each entry remembers the op it answered, so a reused id cannot fetch the reply
of a different operation.
"""

from __future__ import annotations

from collections import OrderedDict

REPLY_CACHE_SIZE = 1024
REPLY_CACHE_BYTES = 4 * 1024 * 1024


class ReplyCache:
    """Request id -> (op, reply frames), least recently used first out. One thread uses it."""

    def __init__(self, max_entries: int = REPLY_CACHE_SIZE, max_bytes: int = REPLY_CACHE_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"a reply cache needs room, received {max_entries} entries, {max_bytes} bytes")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[str, list[bytes], int]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The total size of the cached reply frames."""
        return self._bytes

    def get(self, request_id: str) -> tuple[str | None, list[bytes] | None]:
        """(op, frames) of the reply cached for `request_id`, or (None, None)."""
        entry = self._entries.get(request_id)
        if entry is None:
            return None, None
        self._entries.move_to_end(request_id)
        return entry[0], entry[1]

    def put(self, request_id: str, op: str, frames: list[bytes]) -> None:
        """Remember a reply; one bigger than the whole budget is not kept."""
        size = len(request_id) + len(op) + sum(len(frame) for frame in frames)
        old = self._entries.pop(request_id, None)
        if old is not None:
            self._bytes -= old[2]
        if size > self.max_bytes:
            return
        self._entries[request_id] = (op, frames, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, _, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted
