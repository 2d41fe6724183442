"""TensorBoard scalars under ``<run_dir>/tensorboard``, at report time and after evaluations.

Written with ``tf.summary.write`` and the scalars plugin's metadata, so the ``tensorboard`` package
is not needed to write (``tensorflow-cpu`` does not bring it). A failing write warns once and turns
the callback off: a side channel never stops training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView

logger = logging.getLogger(__name__)

SKIPPED = ("eta_s",)


def _scalar_metadata() -> bytes:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    return metadata.SerializeToString()  # type: ignore[no-any-return]


class TensorBoard(Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer: Any = None
        self._metadata = _scalar_metadata()
        self._writes: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.enabled = True

    def _scalars(self, trainer: TrainerView, prefix: str, logs: Logs) -> None:
        if not self.enabled:
            return
        try:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            names = tuple(name for name in logs if name not in SKIPPED)
            values = tf.constant([logs[name] for name in names], tf.float32)
            self._write_fn(prefix, names)(values, tf.constant(trainer.step, tf.int64))
        except Exception as exc:  # noqa: BLE001 (a side channel must not fail the run)
            logger.warning("TensorBoard logging disabled: %s: %s", type(exc).__name__, exc)
            self.enabled = False

    def _write_fn(self, prefix: str, names: tuple[str, ...]) -> Any:
        """One compiled write per set of names: eager writes cost ~4 ms a report (a scalar each)."""
        key = (prefix, names)
        if key not in self._writes:
            tags = [f"{prefix}/{name}" for name in names]

            def write(values: tf.Tensor, step: tf.Tensor) -> None:
                with self._writer.as_default(step=step):
                    for index, tag in enumerate(tags):
                        tf.summary.write(tag, values[index], metadata=self._metadata)

            self._writes[key] = tf.function(write)
        return self._writes[key]

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "train", logs)

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "val", logs)

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._scalars(trainer, "test", logs)
        self.flush()

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
