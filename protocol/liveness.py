"""Dead or busy: what a subscriber may conclude about the trainer, and when.

Silence alone does not tell a dead trainer from a busy one: the heartbeat is sent from a Python
thread, and importing TensorFlow, tracing a step or writing a checkpoint can hold the GIL for
seconds on a loaded machine (NOTES.md measured gaps of 2.3 s). What libzmq does in its own I/O
thread needs no GIL: when the trainer's process ends (exit, crash, kill -9) its connections close
at once, and ZMTP heartbeats (`HEARTBEAT_IVL`/`HEARTBEAT_TIMEOUT`) close a connection whose peer
host or process no longer answers at all. So:

- **down**: the transport says so (the connection closed), or nothing has ever been reachable for
  `unreachable_after_s`. Reported at once: a few seconds at most after the process died.
- **not responding**: the connection is up, but no message (not even a heartbeat) for
  `not_responding_after_s`. Calmer, and only after a much longer silence than any busy spell.

`Liveness` is the pure decision (an injectable clock, no sockets); the Subscriber feeds it the
monitor's connect/disconnect events and the arrival of every message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol.feed_events import NotResponding, TrainerDown

NOT_RESPONDING_AFTER_S = 30.0
UNREACHABLE_AFTER_S = 30.0
# ZMTP heartbeats on the subscriber's connection: a peer that answers no PING for this long is
# gone (host down, process frozen); libzmq then closes the connection and the monitor tells us.
TRANSPORT_HEARTBEAT_IVL_MS = 1000
TRANSPORT_HEARTBEAT_TIMEOUT_MS = 4000

DOWN = "down"
NOT_RESPONDING = "not_responding"


class Liveness:
    """Tracks one trainer connection; `check()` says when it went down or silent."""

    def __init__(
        self,
        *,
        not_responding_after_s: float = NOT_RESPONDING_AFTER_S,
        unreachable_after_s: float = UNREACHABLE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not_responding_after_s <= 0 or unreachable_after_s <= 0:
            raise ValueError("liveness thresholds must be positive")
        self._not_responding_after_s = not_responding_after_s
        self._unreachable_after_s = unreachable_after_s
        self._clock = clock
        self._connected = False
        self._last_contact = clock()
        self._condition: str | None = None  # DOWN, NOT_RESPONDING or None (alive)

    @property
    def condition(self) -> str | None:
        return self._condition

    @property
    def connected(self) -> bool:
        return self._connected

    def silent_s(self) -> float:
        return max(0.0, self._clock() - self._last_contact)

    def on_connected(self) -> None:
        """The transport handshake succeeded (a trainer process is there). Not yet 'back':
        that takes a message."""
        self._connected = True

    def on_disconnected(self) -> TrainerDown | None:
        """The connection closed: the process ended, or stopped answering ZMTP heartbeats."""
        was_connected, self._connected = self._connected, False
        if self._condition == DOWN or not was_connected:
            return None  # no handshake ever succeeded on it: nothing was up to go down
        self._condition = DOWN
        return TrainerDown(self.silent_s(), reason="disconnected")

    def on_message(self) -> tuple[str | None, float]:
        """A message arrived: the trainer is alive. Returns the condition it was in (DOWN,
        NOT_RESPONDING or None) and how long it had been silent."""
        silent, previous = self.silent_s(), self._condition
        self._last_contact = self._clock()
        self._connected = True  # a message proves the transport, whatever the monitor said last
        self._condition = None
        return previous, silent

    def restore(self, condition: str | None) -> None:
        """Undo `on_message`'s verdict: the message could not be followed yet (no snapshot)."""
        self._condition = condition

    def check(self) -> TrainerDown | NotResponding | None:
        """Call after every poll: the event to report, if the silence just crossed a threshold."""
        if self._condition is not None:
            return None
        silent = self.silent_s()
        if self._connected:
            if silent > self._not_responding_after_s:
                self._condition = NOT_RESPONDING
                return NotResponding(silent)
        elif silent > self._unreachable_after_s:
            self._condition = DOWN
            return TrainerDown(silent, reason="unreachable")
        return None
