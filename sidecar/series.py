"""A bounded, thread-safe record of the metrics the sidecar has seen, for `plot`.

The feed thread appends (from metrics.steps / metrics.report / metrics.val / metrics.test, the
parameter changes from event.param_changed, and from `history` when it starts); the message
thread takes a snapshot to draw.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.steps import METRICS_STEPS, step_losses

MAX_POINTS = 5000
MAX_MARKERS = 200

Point = tuple[int, float]
Marker = tuple[int, str]  # (step, 'learning_rate 0.001 → 0.01')
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
WANTED = {  # metrics.steps holds a loss per step: step_losses
    "metrics.report": (("loss", "loss"), ("accuracy", "accuracy")),
    "metrics.val": (("val_loss", "loss"), ("val_accuracy", "accuracy")),
    "metrics.test": (("test_loss", "loss"), ("test_accuracy", "accuracy")),
}


@dataclass(frozen=True)
class SeriesSnapshot:
    """Copies of the curves: (step, value) pairs in arrival order, and the parameter changes."""

    loss: list[Point] = field(default_factory=list)
    accuracy: list[Point] = field(default_factory=list)
    val_loss: list[Point] = field(default_factory=list)
    val_accuracy: list[Point] = field(default_factory=list)
    test_loss: list[Point] = field(default_factory=list)
    test_accuracy: list[Point] = field(default_factory=list)
    changes: list[Marker] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(getattr(self, name) for name in CURVES)


class MetricSeries:
    """Bounded curves fed from metric message bodies."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._lock = threading.Lock()
        self._max_points = max_points
        self._curves: dict[str, deque[Point]] = {}
        self._changes: deque[Marker] = deque(maxlen=MAX_MARKERS)
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._curves = {name: deque(maxlen=self._max_points) for name in CURVES}
            self._changes.clear()

    def add(self, topic: str, body: Mapping[str, Any]) -> None:
        """Record one metrics.* body or a parameter change (other topics are ignored)."""
        step = body.get("step")
        if not isinstance(step, int):
            return
        with self._lock:
            if topic == METRICS_STEPS:
                self._append("loss", step_losses(body))
            if topic == "event.param_changed":
                self._changes.append((step, f"{body.get('name')} {body.get('old')} → {body.get('new')}"))
            for curve, key in WANTED.get(topic, ()):
                v = body.get(key)
                if isinstance(v, (int, float)):
                    self._append(curve, [(step, float(v))])

    def _append(self, curve: str, new: list[Point]) -> None:
        """Under the lock; a step already at the end (a report after its step's loss) is not doubled."""
        points = self._curves[curve]
        for step, value in new:
            if not (points and points[-1][0] == step):
                points.append((step, value))

    def snapshot(self) -> SeriesSnapshot:
        with self._lock:
            curves = {name: list(points) for name, points in self._curves.items()}
            return SeriesSnapshot(**curves, changes=list(self._changes))
