"""Periodic checkpoints: asks the trainer for one every N steps or every N seconds, whichever
comes first (saves are asynchronous: ``trainer.checkpointing``).

It also keeps params changed outside a run (idle, failed) beside the latest checkpoint, so that a
restart restores them without a new checkpoint; within a run the next checkpoint holds them.
"""

from __future__ import annotations

import time

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView


class PeriodicCheckpoint(Callback):
    def __init__(self, every_steps: int = 0, every_s: float = 0.0) -> None:
        if every_steps < 0 or every_s < 0:
            raise ValueError(f"checkpoint periods must be >= 0, got {every_steps!r}, {every_s!r}")
        self.every_steps = every_steps
        self.every_s = every_s
        self._last_time = time.monotonic()

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self._last_time = time.monotonic()

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        self._last_time = time.monotonic()

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        if self.due(trainer.step, time.monotonic()):
            trainer.request_checkpoint()
            self._last_time = time.monotonic()  # asked for: the next period starts now

    def on_params_changed(self, trainer: TrainerView, logs: Logs) -> None:
        acknowledged = any(change["reason"] != "restored" for change in trainer.param_changes)
        if acknowledged and not trainer.in_fit:
            trainer.persist_params()

    def next_boundary(self, trainer: TrainerView) -> int | None:
        if self.every_steps <= 0:
            return None
        return (trainer.step // self.every_steps + 1) * self.every_steps

    def due(self, step: int, now: float) -> bool:
        by_steps = self.every_steps > 0 and step % self.every_steps == 0
        by_time = self.every_s > 0 and now - self._last_time >= self.every_s
        return by_steps or by_time
