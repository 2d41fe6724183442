"""TensorBoard scalars under ``<run_dir>/tensorboard``, at report time and after evaluations.

Each record keeps its own step, but they are written in batches: held in memory and written in
one compiled call at most about once a second (``WRITE_EVERY_S``; at once after an evaluation,
at the end and on a failure). A write per report cost ~0.5 ms of host time on a quiet CPU and
~2 ms while the feed was busy, against 0.4 ms for a step of a small model (``python -m bench
overhead``); the writer buffers its events in memory for far longer anyway (``flush_millis``).

Written with ``tf.summary.write`` and the scalars plugin's metadata, so the ``tensorboard`` package
is not needed to write (``tensorflow-cpu`` does not bring it). A failing write warns once and turns
the callback off: a side channel never stops training.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView
from trainer.lifecycle import ACTIVITY_IDLE

logger = logging.getLogger(__name__)

Key = tuple[str, tuple[str, ...]]  # (prefix, the names of a record's scalars)

SKIPPED = ("eta_s",)
WRITE_EVERY_S = 1.0


def _scalar_metadata() -> bytes:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata.SerializeToString()  # type: ignore[no-any-return]


class TensorBoard(Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer: Any = None
        self._metadata = _scalar_metadata()
        self._writes: dict[Key, Any] = {}
        self._pending: dict[Key, tuple[list[list[float]], list[int]]] = {}  # rows, steps
        self._written_at = float("-inf")  # the first batch goes at once: its trace is in the warm-up
        self.enabled = True

    def _scalars(self, trainer: TrainerView, prefix: str, logs: Logs) -> None:
        names = tuple(name for name in logs if name not in SKIPPED)
        rows, steps = self._pending.setdefault((prefix, names), ([], []))
        rows.append([logs[name] for name in names])  # converted in the write, which may fail safely
        steps.append(trainer.step)

    def _write_pending(self) -> None:
        """Every held record, one compiled call per set of names."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        self._written_at = time.monotonic()
        if not self.enabled:
            return
        try:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            for key, (rows, steps) in pending.items():
                self._write_fn(key)(tf.constant(rows, tf.float32), tf.constant(steps, tf.int64))
        except Exception as exc:  # noqa: BLE001 (a side channel must not fail the run)
            logger.warning("TensorBoard logging disabled: %s: %s", type(exc).__name__, exc)
            self.enabled = False

    def _write_fn(self, key: Key) -> Any:
        """One compiled write per set of names: eager writes cost ~4 ms a report (a scalar each)."""
        if key not in self._writes:
            prefix, names = key
            tags = [f"{prefix}/{name}" for name in names]

            def write(rows: tf.Tensor, steps: tf.Tensor) -> None:
                with self._writer.as_default():
                    for index in tf.range(tf.shape(rows)[0]):
                        for column, tag in enumerate(tags):
                            value = rows[index, column]
                            tf.summary.write(tag, value, step=steps[index], metadata=self._metadata)

            signature = [tf.TensorSpec([None, len(names)], tf.float32), tf.TensorSpec([None], tf.int64)]
            self._writes[key] = tf.function(write, input_signature=signature)
        return self._writes[key]

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "train", logs)

    def on_call_end(self, trainer: TrainerView, logs: Logs) -> None:
        if time.monotonic() - self._written_at >= WRITE_EVERY_S:
            self._write_pending()

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "val", logs)
        self._write_pending()

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "test", logs)
        self.flush()

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.flush()

    def on_activity(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.activity == ACTIVITY_IDLE:  # held at a boundary (a pause): show what is held now
            self.flush()

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is held and flush the writer's events to disk."""
        self._write_pending()
        if self._writer is not None:
            self._writer.flush()
