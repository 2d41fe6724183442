"""A metrics subscriber that never misses silently: the Clone pattern of the ZeroMQ Guide.

It subscribes first and then takes a snapshot (`status`), so nothing falls between the two; it
applies data in seq order, backfills gaps (and a lost tail, which heartbeats reveal) from `history`,
follows a new session (trainer restart) from its first message, and reports the trainer down after
`missed_heartbeats` silent intervals and back when anything arrives again. It subscribes to every
topic, because gap detection needs every seq, and filters what it delivers by `topics` prefixes.
One thread owns a Subscriber and the ControlClient given to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from protocol import message as msg
from protocol.client import ControlClient
from protocol.errors import ErrorCode, ProtocolError, RemoteError, TrainerUnavailable
from protocol.feed_events import (
    Data,
    FeedEvent,
    Gap,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    TrainerDown,
    Unstalled,
)
from protocol.publisher import DEFAULT_HEARTBEAT_INTERVAL_S
from protocol.security import ClientCurve

logger = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3
STALL_AFTER_S = 60.0
MAX_BATCH = 10_000


class Subscriber:
    """Turns the raw feed into ordered `FeedEvent`s; call `poll()` from one thread."""

    def __init__(
        self,
        metrics_endpoint: str,
        control: ControlClient,
        *,
        topics: Iterable[str] = ("",),
        resume: tuple[str, int] | None = None,
        missed_heartbeats: int = MISSED_HEARTBEATS,
        stall_after_s: float = STALL_AFTER_S,
        curve: ClientCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        receive_hwm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control
        self._topics = tuple(topics)
        self._resume = resume
        self._missed = missed_heartbeats
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._own_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        if receive_hwm is not None:
            self._socket.rcvhwm = receive_hwm
        if curve is not None:
            curve.apply(self._socket)
        self._socket.subscribe(b"")
        self._socket.connect(metrics_endpoint)
        self.session: str | None = None
        self.last_seq = 0
        self._synced = False
        self._first_poll = True
        self._interval_s = DEFAULT_HEARTBEAT_INTERVAL_S
        self._last_contact = clock()
        self._down = False
        self._stalled = False

    def poll(self, timeout_ms: int) -> list[FeedEvent]:
        """Wait up to `timeout_ms` for the feed; return what happened, in order."""
        events: list[FeedEvent] = []
        if self._first_poll:
            self._first_poll = False
            self._sync(events)
        if self._socket.poll(timeout_ms, zmq.POLLIN):
            for _ in range(MAX_BATCH):
                try:
                    frames = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    message = msg.Message.from_frames(frames)
                except ProtocolError as exc:
                    logger.warning("ignored an undecodable feed message: %s", exc)
                    continue
                self._on_message(message, events)
        self._check_liveness(events)
        return events

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    def _on_message(self, message: msg.Message, events: list[FeedEvent]) -> None:
        self._last_contact = self._clock()
        was_down, self._down = self._down, False
        if not self._synced or message.session != self.session:
            restarted = self.session is not None and message.session != self.session
            status = self._sync(events)
            if status is None:
                self._down = was_down
                return  # not in step with the trainer yet: history will bring this message
            if was_down:
                events.append(TrainerBack(status, restarted=restarted))
        elif was_down:
            events.append(TrainerBack(self._status() or {}, restarted=False))
        if message.type == msg.HEARTBEAT:
            self._on_heartbeat(message, events)
        elif message.type == msg.DATA and message.seq is not None:
            if message.seq > self.last_seq + 1:
                self._backfill(events, message.seq - 1)
            if message.seq == self.last_seq + 1:
                self._deliver(message, events, catching_up=False)

    def _on_heartbeat(self, message: msg.Message, events: list[FeedEvent]) -> None:
        body = message.body
        interval = body.get("interval_s")
        if isinstance(interval, (int, float)) and interval > 0:
            self._interval_s = float(interval)
        if message.seq is not None and message.seq > self.last_seq:
            self._backfill(events, message.seq)  # the tail was dropped
        age = body.get("loop_age_s")
        stalled = body.get("state") == "running" and isinstance(age, (int, float))
        stalled = stalled and age > self._stall_after_s  # type: ignore[operator]
        if stalled and not self._stalled:
            events.append(Stalled(float(age)))  # type: ignore[arg-type]
        elif self._stalled and not stalled:
            events.append(Unstalled())
        self._stalled = stalled

    def _sync(self, events: list[FeedEvent]) -> dict[str, Any] | None:
        """Take a snapshot and line up with the trainer's current session."""
        status = self._status()
        if status is None or not isinstance(status.get("session"), str):
            return None
        session, last_seq = status["session"], status.get("last_seq", 0)
        if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0:
            logger.warning("ignored a status whose last_seq is %s", msg.received(last_seq))
            return None
        previous = self.session
        self.session, self._synced = session, True
        if previous is None:
            resume_seq = self._resume[1] if self._resume and self._resume[0] == session else None
            self.last_seq = last_seq if resume_seq is None else min(resume_seq, last_seq)
            events.append(Snapshot(status))
            self._backfill(events, last_seq, catching_up=True)
        elif previous != session:
            self.last_seq = 0  # a new process: follow it from its first message
            events.append(SessionChanged(previous, session, status))
            self._backfill(events, last_seq)
        return status

    def _backfill(self, events: list[FeedEvent], up_to: int, *, catching_up: bool = False) -> None:
        """Fetch seqs last_seq+1..up_to from `history`; report what is gone for good as a Gap."""
        while self.last_seq < up_to:
            try:
                page = self._control.history(since=self.last_seq)
            except RemoteError as exc:
                oldest = exc.details.get("oldest_seq") if exc.code == ErrorCode.TOO_OLD else None
                if not isinstance(oldest, int) or oldest <= self.last_seq + 1:
                    break
                lost_to = min(oldest - 1, up_to)
                events.append(Gap(self.last_seq + 1, lost_to))
                self.last_seq = lost_to
                continue
            except TrainerUnavailable:
                return  # history may still hold them: the next message or heartbeat retries
            if page.get("session") != self.session:
                self._synced = False  # restarted meanwhile: the next message re-syncs
                return
            delivered = False
            for message in _page_messages(page):
                if message.seq == self.last_seq + 1:
                    self._deliver(message, events, catching_up=catching_up)
                    delivered = True
            if not delivered:
                break
        if self.last_seq < up_to:
            events.append(Gap(self.last_seq + 1, up_to))
            self.last_seq = up_to

    def _deliver(self, message: msg.Message, events: list[FeedEvent], *, catching_up: bool) -> None:
        self.last_seq = message.seq or self.last_seq
        topic = message.topic or ""
        if any(topic.startswith(prefix) for prefix in self._topics):
            events.append(Data(message, catching_up=catching_up))

    def _check_liveness(self, events: list[FeedEvent]) -> None:
        silent_s = self._clock() - self._last_contact
        if not self._down and silent_s > self._missed * self._interval_s:
            self._down = True
            events.append(TrainerDown(silent_s))

    def _status(self) -> dict[str, Any] | None:
        try:
            return self._control.status()
        except (TrainerUnavailable, RemoteError) as exc:
            logger.info("no status from the trainer: %s", exc)
            return None


def _page_messages(page: dict[str, Any]) -> list[msg.Message]:
    """The decodable messages of a `history` page; anything else is logged and skipped."""
    items = page.get("messages")
    if not isinstance(items, list):
        logger.warning("ignored a history page whose messages are %s", msg.received(items))
        return []
    messages = []
    for item in items:
        try:
            messages.append(msg.Message.from_map(item))
        except ProtocolError as exc:
            logger.warning("ignored an undecodable history message: %s", exc)
    return messages
