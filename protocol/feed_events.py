"""What a `Subscriber` reports: data in order, and everything it learns about the trainer's life."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.message import Message


@dataclass(frozen=True)
class Snapshot:
    """First contact: the trainer's `status`; data follows from its `last_seq` on."""

    status: dict[str, Any]


@dataclass(frozen=True)
class Data:
    """One data message, delivered once, in seq order. `catching_up`: replayed from history at start."""

    message: Message
    catching_up: bool = False


@dataclass(frozen=True)
class Gap:
    """Messages `first_seq`..`last_seq` are lost for good (history no longer held them)."""

    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class SessionChanged:
    """The trainer process restarted: a new session (process epoch), seq starts again from 1."""

    old: str | None
    new: str
    status: dict[str, Any]


@dataclass(frozen=True)
class TrainerDown:
    """The trainer is gone: its connection closed (`reason` "disconnected": the process ended, or
    its host or process stopped answering transport heartbeats), or nothing was ever reachable
    (`reason` "unreachable"). `silent_s`: time since its last message."""

    silent_s: float
    reason: str = "disconnected"


@dataclass(frozen=True)
class NotResponding:
    """The connection is up, but no message for `silent_s` seconds: alive but busy or hung."""

    silent_s: float


@dataclass(frozen=True)
class Responding:
    """Messages arrive again after `NotResponding`, after `silent_s` seconds of silence."""

    silent_s: float


@dataclass(frozen=True)
class TrainerBack:
    """Messages arrive again after `TrainerDown`; `restarted` when it is a new process."""

    status: dict[str, Any]
    restarted: bool


@dataclass(frozen=True)
class Stalled:
    """Heartbeats arrive, but the training loop has not moved for `loop_age_s` seconds while
    stepping (`activity` as the heartbeat says; a long evaluation or checkpoint is not a stall)."""

    loop_age_s: float
    activity: str | None = None


@dataclass(frozen=True)
class Unstalled:
    """The training loop moves again after `Stalled`."""


FeedEvent = (
    Snapshot
    | Data
    | Gap
    | SessionChanged
    | TrainerDown
    | TrainerBack
    | NotResponding
    | Responding
    | Stalled
    | Unstalled
)
