"""What `trainctl watch` shows, folded from the Subscriber's events (`WatchState.apply`).

Its own module so that the view (`render.watch_view`) and the loop (`watch.run_watch`) both depend
on it and not on each other.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    METRICS_STEPS,
    Data,
    FeedEvent,
    Message,
    SessionChanged,
    Snapshot,
    Stalled,
    TrainerBack,
    TrainerDown,
    Unstalled,
)

EVENTS_KEPT = 200
_PROGRESS_FIELDS = ("step", "epoch", "total_steps", "loss", "accuracy", "steps_per_s", "eta_s")


@dataclass
class WatchState:
    """What the live view shows, folded from feed events.

    `line_of` words an event for the events list (None: not listed); the view passes its own
    (`render.event_line`), so that this state knows nothing of how it is drawn.
    """

    endpoint: str
    line_of: Callable[[FeedEvent], str | None]
    state: str | None = None
    step: int | None = None
    epoch: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    steps_per_s: float | None = None
    eta_s: float | None = None
    run_id: str | None = None
    session: str | None = None
    attached: bool = False
    down: bool = False
    stalled: bool = False
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))

    def apply(self, event: FeedEvent) -> None:
        if isinstance(event, SessionChanged):  # a new process: what the old one said is stale
            self.metrics.clear()
            self.loss = self.accuracy = self.steps_per_s = self.eta_s = None
        if isinstance(event, (Snapshot, SessionChanged, TrainerBack)):
            self._apply_status(event.status)
            self.attached = True
        if isinstance(event, TrainerBack):
            self.down = False
        elif isinstance(event, TrainerDown):
            self.down = True
        elif isinstance(event, (Stalled, Unstalled)):
            self.stalled = isinstance(event, Stalled)
        elif isinstance(event, Data):
            self._apply_data(event.message)
        line = self.line_of(event)
        if line is not None:
            self.events.append(f"{time.strftime('%H:%M:%S')} {line}")

    def _apply_status(self, status: Mapping[str, Any]) -> None:
        self._take(status)
        self.state = status.get("state", self.state)
        self.run_id = status.get("run_id", self.run_id)
        self.session = status.get("session", self.session)
        metrics = status.get("metrics")
        if isinstance(metrics, dict) and metrics:  # shown once, on the numbers line
            self.loss = metrics.get("loss", self.loss)
            self.accuracy = metrics.get("accuracy", self.accuracy)

    def _apply_data(self, message: Message) -> None:
        topic, body = message.topic or "", message.body
        if topic in (METRICS_STEPS, "metrics.report") or topic.startswith("event."):
            self._take(body)
        if topic.startswith("event.") and isinstance(body.get("state"), str):
            self.state = body["state"]
        if topic == "event.param_changed":
            self.eta_s = None  # the budget or speed may change: wait for the next report's ETA
        elif topic in ("metrics.val", "metrics.test"):  # reports are the numbers line, not a dump
            self.metrics[topic.split(".", 1)[1]] = dict(body)

    def _take(self, values: Mapping[str, Any]) -> None:
        for name in _PROGRESS_FIELDS:
            if values.get(name) is not None:
                setattr(self, name, values[name])
