"""Publishing metrics and lifecycle events on the metrics feed (``publish`` is a queue put)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainer.callbacks.base import Callback, Logs

if TYPE_CHECKING:
    from trainer.trainer import Trainer

logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]
STEP_FIELDS = ("loss", "steps_per_s", "eta_s")


class PublishMetrics(Callback):
    """``metrics.*`` and ``event.*`` messages; ``state`` says the state to stamp on events."""

    def __init__(self, publish: Publish, state: Callable[[], str] = lambda: "running") -> None:
        self._publish = publish
        self._state = state

    def _event(self, trainer: Trainer, event: str, **extra: Any) -> None:
        body = {"event": event, "step": trainer.step, "state": self._state(), **extra}
        self._publish(f"event.{event}", body)

    def _metrics(self, trainer: Trainer, topic: str, logs: Logs, **extra: Any) -> None:
        self._publish(topic, {"step": trainer.step, "epoch": trainer.epoch, **logs, **extra})

    def on_train_start(self, trainer: Trainer, logs: Logs) -> None:
        self._event(trainer, "started", params=dict(trainer.params), total_steps=trainer.total_steps())

    def on_step_end(self, trainer: Trainer, logs: Logs) -> None:
        self._metrics(trainer, "metrics.step", {k: logs[k] for k in STEP_FIELDS if k in logs})

    def on_report(self, trainer: Trainer, logs: Logs) -> None:
        self._metrics(trainer, "metrics.report", logs, total_steps=trainer.total_steps())

    def on_validation_end(self, trainer: Trainer, logs: Logs) -> None:
        self._metrics(trainer, "metrics.val", logs)
        self._event(trainer, "evaluated", split="val", **logs)

    def on_test_end(self, trainer: Trainer, logs: Logs) -> None:
        self._metrics(trainer, "metrics.test", logs)

    def on_checkpoint(self, trainer: Trainer, logs: Logs) -> None:
        # Announced once complete, maybe a few steps later: the step is the checkpoint's.
        step = trainer.last_checkpoint_step
        self._event(trainer, "checkpoint_saved", path=trainer.last_checkpoint_path, step=step)

    def on_params_changed(self, trainer: Trainer, logs: Logs) -> None:
        for change in trainer.param_changes:
            if change["reason"] != "restored":  # a restart restoring its own values is no change
                self._event(trainer, "param_changed", **change)

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None:
        name = "finished" if trainer.outcome == "finished" else "stopped"
        self._event(
            trainer, name, test_accuracy=logs.get("accuracy"), test_loss=logs.get("loss"), test=dict(logs)
        )

    def on_exception(self, trainer: Trainer, logs: Logs) -> None:
        self._event(trainer, "failed", error=trainer.error_info)
