"""A bounded, thread-safe record of the metrics the sidecar has seen, for `plot`.

The feed thread appends (from metrics.step / metrics.report / metrics.val / metrics.test, and
from `history` when it starts); the message thread takes a snapshot to draw.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 5000

Point = tuple[int, float]


@dataclass(frozen=True)
class SeriesSnapshot:
    """Copies of the curves: (step, value) pairs in arrival order."""

    loss: list[Point] = field(default_factory=list)
    accuracy: list[Point] = field(default_factory=list)
    val_accuracy: list[Point] = field(default_factory=list)
    test_accuracy: list[Point] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.loss or self.accuracy or self.val_accuracy or self.test_accuracy)


class MetricSeries:
    """Bounded curves fed from metric message bodies."""

    def __init__(self, max_points: int = MAX_POINTS) -> None:
        self._lock = threading.Lock()
        self._max_points = max_points
        self._curves: dict[str, deque[Point]] = {}
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._curves = {
                name: deque(maxlen=self._max_points)
                for name in ("loss", "accuracy", "val_accuracy", "test_accuracy")
            }

    def add(self, topic: str, body: Mapping[str, Any]) -> None:
        """Record one metrics.* body (other topics are ignored)."""
        step = body.get("step")
        if not isinstance(step, int):
            return
        wanted = {
            "metrics.step": (("loss", "loss"),),
            "metrics.report": (("loss", "loss"), ("accuracy", "accuracy")),
            "metrics.val": (("val_accuracy", "accuracy"),),
            "metrics.test": (("test_accuracy", "accuracy"),),
        }.get(topic, ())
        with self._lock:
            for curve, key in wanted:
                v = body.get(key)
                points = self._curves[curve]
                if isinstance(v, (int, float)) and not (points and points[-1][0] == step):
                    points.append((step, float(v)))

    def snapshot(self) -> SeriesSnapshot:
        with self._lock:
            return SeriesSnapshot(**{name: list(points) for name, points in self._curves.items()})
