"""Checkpoints: model, optimizer, the trainer's counters and the params, via ``CheckpointManager``.

Params travel as a JSON string in a ``tf.Variable`` so that one checkpoint is the whole truth of a
run; the learning rate also lives in the optimizer's own variable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

logger = logging.getLogger(__name__)

MAX_TO_KEEP = 3


@dataclass(frozen=True)
class Restored:
    path: str
    step: int
    epoch: int
    samples_seen: int
    params: dict[str, Any]


class CheckpointStore:
    """Save and restore ``objects`` plus the counters under ``directory``."""

    def __init__(
        self, directory: str | Path, objects: Mapping[str, Any], *, max_to_keep: int = MAX_TO_KEEP
    ) -> None:
        self.directory = Path(directory)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_step")
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_epoch")
        self._samples = tf.Variable(0, dtype=tf.int64, trainable=False, name="ct_samples")
        self._params = tf.Variable("{}", dtype=tf.string, trainable=False, name="ct_params")
        self._checkpoint = tf.train.Checkpoint(
            step=self._step,
            epoch=self._epoch,
            samples_seen=self._samples,
            params=self._params,
            **objects,
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, str(self.directory), max_to_keep=max_to_keep
        )

    @property
    def latest_path(self) -> str | None:
        return self._manager.latest_checkpoint  # type: ignore[no-any-return]

    def save(self, *, step: int, epoch: int, samples_seen: int, params: Mapping[str, Any]) -> str:
        self._step.assign(step)
        self._epoch.assign(epoch)
        self._samples.assign(samples_seen)
        self._params.assign(json.dumps(dict(params), sort_keys=True))
        path = self._manager.save(checkpoint_number=step)
        logger.info("checkpoint saved at step %d: %s", step, path)
        return str(path)

    def restore(self, path: str | None = None) -> Restored | None:
        """Restore ``path`` (default: the latest); None when there is none."""
        path = path or self.latest_path
        if path is None:
            return None
        self._checkpoint.restore(path).expect_partial()
        restored = Restored(
            path=path,
            step=int(self._step.numpy()),
            epoch=int(self._epoch.numpy()),
            samples_seen=int(self._samples.numpy()),
            params=json.loads(self._params.numpy().decode("utf-8")),
        )
        logger.info("restored step %d from %s", restored.step, path)
        return restored
