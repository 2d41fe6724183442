"""The metrics feed: a PUB socket owned by one thread, sequence numbers, heartbeats and history.

Any thread may call `publish()`: it only puts (topic, body) on a queue, so the training loop never
touches a socket or waits. The publisher thread numbers each data message (contiguous from 1 within a
session), sends it, and keeps it in a bounded ring that the `history` op serves, so a subscriber
that lost messages (PUB drops past the high-water mark, and the slow joiner loses the first ones) can
catch up. Heartbeats carry the last seq without consuming one, so a lost tail is noticed too.

The queue is bounded (`FeedQueue`: per-step metrics are dropped first, events never). The sending
loop logs and survives what an iteration raises; if the thread ends anyway, the owner's
`on_thread_death` is called.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from protocol import message as msg
from protocol.codec import MAX_MESSAGE_BYTES
from protocol.errors import ErrorCode, ProtocolError, RequestError
from protocol.feed_queue import FEED_QUEUE_SIZE, FeedQueue
from protocol.security import ServerCurve
from protocol.serving import CLOSE_TIMEOUT_S, ServerSocket, SocketHandover, ThreadDeath, guarded_thread

logger = logging.getLogger(__name__)

HEARTBEAT_TOPIC = "heartbeat"
DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
DEFAULT_HISTORY_SIZE = 10_000
HISTORY_PAGE_MAX = 2_000
HISTORY_PAGE_BYTES = MAX_MESSAGE_BYTES // 2
SEND_HWM = 10_000
MAX_CONSECUTIVE_FAILURES = 50


class Publisher:
    """Publishes data messages and heartbeats for one trainer process (one `session`)."""

    def __init__(
        self,
        endpoint: str,
        *,
        session: str,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        history_size: int = DEFAULT_HISTORY_SIZE,
        heartbeat_body: Callable[[], dict[str, Any]] | None = None,
        curve: ServerCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        allow_remote: bool = False,
        send_hwm: int = SEND_HWM,
        queue_size: int = FEED_QUEUE_SIZE,
        on_thread_death: ThreadDeath | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self.heartbeat_interval_s = heartbeat_interval_s
        self._heartbeat_body = heartbeat_body or dict
        self._server_options = {
            "curve": curve,
            "context": context,
            "allow_remote": allow_remote,
            "send_hwm": send_hwm,
        }
        self._queue = FeedQueue(queue_size)
        self._on_thread_death = on_thread_death
        self._closing = threading.Event()
        # (message map, encoded size): the size keeps history pages under the frame limit.
        self._ring: deque[tuple[dict[str, Any], int]] = deque(maxlen=history_size)
        self._ring_lock = threading.Lock()
        self._last_seq = 0
        self._thread: threading.Thread | None = None
        self._server: ServerSocket | None = None
        self._handover = SocketHandover("metrics-publisher")

    @property
    def last_seq(self) -> int:
        """The seq of the last data message sent (0 before the first)."""
        return self._last_seq

    def start(self) -> None:
        """Bind now (raises EndpointInUse or ValueError) and publish from a daemon thread."""
        self._server = ServerSocket(zmq.PUB, self.endpoint, **self._server_options)  # type: ignore[arg-type]
        target = guarded_thread("metrics-publisher", self._run, self._closing, self._on_thread_death)
        self._thread = threading.Thread(target=target, name="metrics-publisher", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the publishing thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def dropped(self) -> int:
        """How many queued messages were given up because the queue was full."""
        return self._queue.dropped

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        """Queue a data message; never blocks. `body` must not be mutated afterwards."""
        self._queue.put(topic, body)

    def close(self) -> None:
        """Send what is queued, then close."""
        self._closing.set()
        if self._thread is not None:
            self._queue.wake()
        self._handover.close(self._thread, self._close_socket, CLOSE_TIMEOUT_S)

    def _close_socket(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def history_handler(self, args: dict[str, Any]) -> dict[str, Any]:
        """The `history` op: data messages with seq > `since`, oldest first, at most `limit`."""
        since, limit = args.get("since", 0), args.get("limit", HISTORY_PAGE_MAX)
        for name, value in (("since", since), ("limit", limit)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= msg.MAX_SEQ:
                raise RequestError(
                    ErrorCode.BAD_REQUEST,
                    f"{name} must be an integer from 0 to {msg.MAX_SEQ}, received {msg.received(value)}",
                )
        limit = min(limit, HISTORY_PAGE_MAX)
        with self._ring_lock:
            last_seq = self._last_seq
            oldest = self._ring[0][0]["seq"] if self._ring else last_seq + 1
            if since + 1 < oldest and since < last_seq:
                raise RequestError(
                    ErrorCode.TOO_OLD,
                    f"history starts at seq {oldest}; seq {since + 1} is gone",
                    {"oldest_seq": oldest, "last_seq": last_seq},
                )
            messages: list[dict[str, Any]] = []
            page_bytes = 0
            for item, size in itertools.islice(self._ring, max(0, since + 1 - oldest), None):
                if len(messages) >= limit or (messages and page_bytes + size > HISTORY_PAGE_BYTES):
                    break  # a page must fit in one reply frame
                messages.append(item)
                page_bytes += size
        # Whatever the limit (0 included), `more` says whether seqs after this page remain.
        more = (messages[-1]["seq"] if messages else max(since, oldest - 1)) < last_seq
        return {"session": self.session, "last_seq": last_seq, "messages": messages, "more": more}

    def _run(self) -> None:
        try:
            self._run_loop()
        finally:
            self._handover.thread_ended(self._close_socket)

    def _run_loop(self) -> None:
        assert self._server is not None
        socket = self._server.socket
        next_heartbeat = time.monotonic()
        failures = 0
        while True:
            try:
                next_heartbeat, done = self._run_once(socket, next_heartbeat)
                failures = 0
            except Exception:
                if self._closing.is_set():
                    return
                logger.exception("the publisher loop failed; publishing on")
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"the publisher loop failed {failures} times in a row") from None
                continue
            if done:
                return

    def _run_once(self, socket: zmq.Socket[bytes], next_heartbeat: float) -> tuple[float, bool]:
        """One heartbeat or one data message; (when the next heartbeat is due, whether to stop)."""
        now = time.monotonic()
        if now >= next_heartbeat:
            next_heartbeat = now + self.heartbeat_interval_s
            self._send_frames(socket, self._heartbeat())
        item = self._queue.get(timeout_s=max(0.0, next_heartbeat - time.monotonic()))
        if item is None:
            return next_heartbeat, self._closing.is_set()
        frames = self._data(*item)
        if frames is not None:
            self._send_frames(socket, frames)
        return next_heartbeat, False

    def _data(self, topic: str, body: dict[str, Any]) -> list[bytes] | None:
        """Number, encode and remember one data message; a body that cannot be encoded is dropped
        before it takes a seq, so the sequence stays contiguous."""
        seq = self._last_seq + 1
        message = msg.Message(type=msg.DATA, topic=topic, session=self.session, seq=seq, body=body)
        try:
            frames = message.to_frames()
        except ProtocolError:
            logger.exception("dropped an unencodable message on topic %r", topic)
            return None
        with self._ring_lock:
            self._ring.append((message.to_map(), len(frames[1])))
            self._last_seq = seq
        return frames

    def _heartbeat(self) -> list[bytes]:
        try:
            body = dict(self._heartbeat_body())
        except Exception:  # a broken status source must not silence the heartbeat
            logger.exception("heartbeat body failed")
            body = {}
        body["interval_s"] = self.heartbeat_interval_s
        message = msg.Message(
            type=msg.HEARTBEAT, topic=HEARTBEAT_TOPIC, session=self.session, seq=self._last_seq, body=body
        )
        try:
            return message.to_frames()
        except ProtocolError:
            logger.exception("heartbeat body cannot be encoded; sending a bare heartbeat")
            message.body = {"interval_s": self.heartbeat_interval_s}
            return message.to_frames()

    def _send_frames(self, socket: zmq.Socket[bytes], frames: list[bytes]) -> None:
        # PUB never blocks: past the high-water mark it drops for that subscriber, which then
        # notices the gap by seq and catches up through `history`.
        socket.send_multipart(frames)
