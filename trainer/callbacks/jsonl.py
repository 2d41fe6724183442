"""A JSONL metrics log in the run directory: reports, evaluations, param changes, lifecycle.

One line per record, appended and flushed (a crash loses at most the line being written); a
failing write warns and never stops training.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.publish import with_metrics
from trainer.callbacks.view import TrainerView

logger = logging.getLogger(__name__)

FILE_NAME = "metrics.jsonl"


class JsonlLog(Callback):
    def __init__(self, run_dir: str | Path, *, every_step: bool = False) -> None:
        self.path = Path(run_dir) / FILE_NAME
        self.every_step = every_step
        self._file: IO[str] | None = None

    def write(
        self,
        trainer: TrainerView,
        kind: str,
        fields: Mapping[str, Any] | None = None,
        *,
        step: int | None = None,
    ) -> None:
        """One record (at ``step``, the trainer's by default); a field named like the record's own
        keys is renamed (``with_metrics``)."""
        at = trainer.step if step is None else step
        head = {"ts": round(time.time(), 3), "kind": kind, "step": at, "epoch": trainer.epoch}
        record = with_metrics(head, fields or {})
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.path, exc)

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, "start", {"params": dict(trainer.params)})

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        if self.every_step:
            self.write(trainer, "step", logs)

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, "report", logs)

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, "val", logs)

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, "test", logs)

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        # Announced once complete, maybe a few steps later: the step is the checkpoint's.
        fields = {"path": trainer.last_checkpoint_path}
        self.write(trainer, "checkpoint", fields, step=trainer.last_checkpoint_step)

    def on_checkpoint_failed(self, trainer: TrainerView, logs: Logs) -> None:
        failure = trainer.checkpoint_error or {}
        self.write(trainer, "checkpoint_failed", {"error": failure.get("error")}, step=failure.get("step"))

    def on_params_changed(self, trainer: TrainerView, logs: Logs) -> None:
        for change in trainer.param_changes:
            self.write(trainer, "param_changed", change)

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, trainer.ending(), {"params": dict(trainer.params), **logs})
        self.close()

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self.write(trainer, "failed", {"error": trainer.error_info})
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
