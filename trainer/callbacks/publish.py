"""Publishing metrics and lifecycle events on the metrics feed (``publish`` is a queue put).

The steps of a compiled call go out as one ``metrics.steps`` message (``protocol.steps`` says
why) at the call's end (``on_call_end``, before control's ``on_boundary`` may hold a pause),
and before any other message, so the feed stays in step order: a
report at step 32 of a 64-step call follows the message for steps 1..32.

A metric whose name is one of the body's own keys (``step``, ``event``, ``kind``, ...) never
replaces that key nor fails the run: it is carried as ``metric_<name>`` (``with_metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from protocol.steps import METRICS_STEPS, steps_body
from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView

logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
STEP_FIELDS = ("loss", "steps_per_s", "eta_s")
RENAMED_METRIC_PREFIX = "metric_"


def with_metrics(fields: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` plus ``metrics``; a metric named like a field is renamed ``metric_<name>``."""
    body = dict(fields)
    for name, value in metrics.items():
        key = name
        while key in body:
            key = RENAMED_METRIC_PREFIX + key
        body[key] = value
    return body


class PublishMetrics(Callback):
    """``metrics.*`` and ``event.*`` messages; ``state`` says the state to stamp on events."""

    def __init__(self, publish: Publish, state: Callable[[], str] = lambda: "running") -> None:
        self._publish = publish
        self._state = state
        self._first_step = self._epoch = 0
        self._losses: list[float] = []
        self._last: dict[str, Any] = {}

    def _flush_steps(self) -> None:
        if self._losses:
            body = steps_body(self._first_step, self._epoch, self._losses, self._last)
            self._losses = []
            self._publish(METRICS_STEPS, body)

    def _event(self, trainer: TrainerView, event: str, metrics: Logs | None = None, **extra: Any) -> None:
        self._flush_steps()
        body = {"event": event, "step": trainer.step, "state": self._state(), **extra}
        self._publish(f"event.{event}", with_metrics(body, metrics or {}))

    def _metrics(self, trainer: TrainerView, topic: str, logs: Logs, **extra: Any) -> None:
        self._flush_steps()
        self._publish(topic, with_metrics({"step": trainer.step, "epoch": trainer.epoch, **extra}, logs))

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self._event(trainer, "started", params=dict(trainer.params), total_steps=trainer.total_steps())

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        if not self._losses:
            self._first_step, self._epoch = trainer.step, trainer.epoch
        self._losses.append(logs.get("loss", float("nan")))
        self._last = {k: logs[k] for k in STEP_FIELDS if k in logs}

    def on_call_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._flush_steps()

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self._metrics(trainer, "metrics.report", logs, total_steps=trainer.total_steps())

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._metrics(trainer, "metrics.val", logs)
        self._event(trainer, "evaluated", logs, split="val")

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._metrics(trainer, "metrics.test", logs)

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        # Announced once complete, maybe a few steps later: the step is the checkpoint's.
        step = trainer.last_checkpoint_step
        self._event(trainer, "checkpoint_saved", path=trainer.last_checkpoint_path, step=step)

    def on_checkpoint_failed(self, trainer: TrainerView, logs: Logs) -> None:
        failure = trainer.checkpoint_error or {}
        self._event(
            trainer,
            "checkpoint_failed",
            step=failure.get("step"),
            error=failure.get("error"),
            last_checkpoint_step=trainer.last_checkpoint_step,  # what a crash now falls back to
        )

    def on_params_changed(self, trainer: TrainerView, logs: Logs) -> None:
        for change in trainer.param_changes:
            if change["reason"] != "restored":  # a restart restoring its own values is no change
                self._event(trainer, "param_changed", **change)

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        name = trainer.ending()
        self._event(
            trainer, name, test_accuracy=logs.get("accuracy"), test_loss=logs.get("loss"), test=dict(logs)
        )

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self._event(trainer, "failed", error=trainer.error_info)
