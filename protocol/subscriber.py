"""A metrics subscriber that never misses silently: the Clone pattern of the ZeroMQ Guide.

It subscribes first and then takes a snapshot (`status`), so nothing falls between the two; it
applies data in seq order, backfills gaps (and a lost tail, which heartbeats reveal) from `history`,
follows a new session (trainer restart) from its first message. It tells a dead trainer from a busy
one (protocol/liveness.py): down when the connection closes (a socket monitor, in libzmq's own
thread, sees that at once), not responding after a long silence on a live connection, and back or
responding again when anything arrives. It subscribes to every topic, because gap detection needs
every seq, and filters what it delivers by `topics` prefixes. One thread owns a Subscriber, its
monitor socket and the ControlClient given to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from protocol import message as msg
from protocol.client import ControlClient
from protocol.errors import ErrorCode, ProtocolError, RemoteError, TrainerUnavailable
from protocol.feed_events import (
    Data,
    FeedEvent,
    Gap,
    Responding,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    Unstalled,
)
from protocol.liveness import (
    DOWN,
    NOT_RESPONDING,
    NOT_RESPONDING_AFTER_S,
    TRANSPORT_HEARTBEAT_IVL_MS,
    TRANSPORT_HEARTBEAT_TIMEOUT_MS,
    UNREACHABLE_AFTER_S,
    Liveness,
)
from protocol.security import ClientCurve

logger = logging.getLogger(__name__)

STALL_AFTER_S = 60.0
MAX_BATCH = 10_000
# Activities (the heartbeat's `activity`) during which an old `loop_age_s` is no stall.
STEPPING_ACTIVITIES = (None, "step")
MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class Subscriber:
    """Turns the raw feed into ordered `FeedEvent`s; call `poll()` from one thread."""

    def __init__(
        self,
        metrics_endpoint: str,
        control: ControlClient,
        *,
        topics: Iterable[str] = ("",),
        resume: tuple[str, int] | None = None,
        not_responding_after_s: float = NOT_RESPONDING_AFTER_S,
        unreachable_after_s: float = UNREACHABLE_AFTER_S,
        stall_after_s: float = STALL_AFTER_S,
        curve: ClientCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        receive_hwm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._control = control
        self._topics = tuple(topics)
        self._resume = resume
        self._liveness = Liveness(
            not_responding_after_s=not_responding_after_s,
            unreachable_after_s=unreachable_after_s,
            clock=clock,
        )
        self._stall_after_s = stall_after_s
        self._own_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        if receive_hwm is not None:
            self._socket.rcvhwm = receive_hwm
        if curve is not None:
            curve.apply(self._socket)
        self._socket.heartbeat_ivl = TRANSPORT_HEARTBEAT_IVL_MS
        self._socket.heartbeat_timeout = TRANSPORT_HEARTBEAT_TIMEOUT_MS
        self._monitor = self._socket.get_monitor_socket(MONITOR_EVENTS)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._socket.subscribe(b"")
        self._socket.connect(metrics_endpoint)
        self.session: str | None = None
        self.last_seq = 0
        self._synced = False
        self._first_poll = True
        self._stalled = False
        self._held: list[msg.Message] = []  # received, not yet applied (another session's)

    @property
    def connected(self) -> bool:
        """Whether a transport handshake with the trainer's PUB socket is up now."""
        return self._liveness.connected

    def poll(self, timeout_ms: int) -> list[FeedEvent]:
        """Wait up to `timeout_ms` for the feed; return what happened, in order."""
        events: list[FeedEvent] = []
        if self._first_poll:
            self._first_poll = False
            self._sync(events)
        ready = dict(self._poller.poll(timeout_ms))
        if self._monitor in ready:
            self._on_monitor(events)
        if self._held or self._socket in ready:
            self._receive(events)
        found = self._liveness.check()
        if found is not None:
            events.append(found)
        return events

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        if self._own_context:
            self._context.destroy(linger=0)  # as ControlClient.close: never wait on a stray socket

    def _receive(self, events: list[FeedEvent], *, session_only: bool = False) -> None:
        """Take what the SUB socket holds. `session_only`: stop at the first message of another
        session and hold it for later (a restarted trainer's first words come after the old one's
        death is reported)."""
        held, self._held = self._held, []
        for index in range(MAX_BATCH):
            if held:
                message = held.pop(0)
            else:
                try:
                    frames = self._socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    message = msg.Message.from_frames(frames)
                except ProtocolError as exc:
                    logger.warning("ignored an undecodable feed message: %s", exc)
                    continue
            if session_only and self.session is not None and message.session != self.session:
                self._held = [message, *held]
                return
            self._on_message(message, events)
            if index == MAX_BATCH - 1:
                self._held = held

    def _on_monitor(self, events: list[FeedEvent]) -> None:
        """Transport events, seen by libzmq's I/O thread whatever the trainer's GIL is doing."""
        for _ in range(MAX_BATCH):
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._liveness.on_connected()
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                # What the process sent before it died was read before its connection closed.
                self._receive(events, session_only=True)
                down = self._liveness.on_disconnected()
                if down is not None:
                    self._stalled = False
                    events.append(down)

    def _on_message(self, message: msg.Message, events: list[FeedEvent]) -> None:
        was, silent_s = self._liveness.on_message()
        if not self._synced or message.session != self.session:
            restarted = self.session is not None and message.session != self.session
            status = self._sync(events)
            if status is None:
                self._liveness.restore(was)
                return  # not in step with the trainer yet: history will bring this message
            if was == DOWN:
                events.append(TrainerBack(status, restarted=restarted))
            elif was == NOT_RESPONDING:
                events.append(Responding(silent_s))
        elif was == DOWN:
            events.append(TrainerBack(self._status() or {}, restarted=False))
        elif was == NOT_RESPONDING:
            events.append(Responding(silent_s))
        if message.type == msg.HEARTBEAT:
            self._on_heartbeat(message, events)
        elif message.type == msg.DATA and message.seq is not None:
            if message.seq > self.last_seq + 1:
                self._backfill(events, message.seq - 1)
            if message.seq == self.last_seq + 1:
                self._deliver(message, events, catching_up=False)

    def _on_heartbeat(self, message: msg.Message, events: list[FeedEvent]) -> None:
        body = message.body
        if message.seq is not None and message.seq > self.last_seq:
            self._backfill(events, message.seq)  # the tail was dropped
        raw_age, raw_activity = body.get("loop_age_s"), body.get("activity")
        age = float(raw_age) if isinstance(raw_age, (int, float)) and not isinstance(raw_age, bool) else 0.0
        activity = raw_activity if isinstance(raw_activity, str) else None
        stalled = body.get("state") == "running" and activity in STEPPING_ACTIVITIES
        stalled = stalled and age > self._stall_after_s
        if stalled and not self._stalled:
            events.append(Stalled(age, activity))
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
