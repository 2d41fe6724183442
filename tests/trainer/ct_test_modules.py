"""Small modules for the trainer's tests: a tiny network that can fail or go non-finite on cue.

Importable by the trainer process as ``--module tests.trainer.ct_test_modules:TinyModule`` (run
from the repository root). ``CT_FAIL_AT_CALL`` / ``CT_NAN_AT_CALLS`` (comma-separated) set the cues
for processes; in-process tests pass them as arguments. ``CT_SETUP_WAITS_FOR=PATH`` holds ``setup``
(so the trainer stays ``loading``) until that file exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from trainer.data import MnistArrays, eval_dataset, load_mnist, synthetic_mnist, train_dataset
from trainer.module import Module, StepOutputs, sparse_accuracy

SYNTHETIC_SAMPLES = 256
GATE_TIMEOUT_S = 120.0


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


class TinyModule(Module):
    def __init__(
        self,
        data: str | None = None,
        data_limit: int | None = None,
        synthetic: int | None = None,
        fail_at_call: int | None = None,
        nan_at_calls: tuple[int, ...] | None = None,
        **_: Any,
    ) -> None:
        env_fail = os.environ.get("CT_FAIL_AT_CALL")
        env_nan = os.environ.get("CT_NAN_AT_CALLS")
        self.fail_at_call = fail_at_call or (int(env_fail) if env_fail else 0)
        self.nan_at_calls = nan_at_calls or tuple(int(c) for c in (env_nan or "").split(",") if c)
        self._source, self._limit, self._synthetic = data, data_limit, synthetic
        self._loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.data: MnistArrays | None = None

    def setup(self) -> None:
        if gate := os.environ.get("CT_SETUP_WAITS_FOR"):  # held in `loading` until the test says
            _wait_for_file(Path(gate))
        if self._source and not self._synthetic:
            self.data = load_mnist(self._source, self._limit)
        else:
            self.data = synthetic_mnist(self._synthetic or SYNTHETIC_SAMPLES)
        self.model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(10),
            ]
        )
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def train_dataset(self, batch_size: int) -> tf.data.Dataset:
        assert self.data is not None
        return train_dataset(self.data.train, batch_size, epoch=self.epoch)

    def val_dataset(self, batch_size: int) -> tf.data.Dataset:
        assert self.data is not None
        return eval_dataset(self.data.test, batch_size)

    def test_dataset(self, batch_size: int) -> tf.data.Dataset:
        return self.val_dataset(batch_size)

    def training_step(self, batch: Any) -> StepOutputs:
        x, y = batch
        calls = self.calls.assign_add(1)
        if self.fail_at_call:
            tf.debugging.assert_less(
                calls, tf.constant(self.fail_at_call, tf.int64), message="user code failed on purpose"
            )
        logits = self.model(x, training=True)
        loss = self._loss(y, logits)
        if self.nan_at_calls:
            poisoned = tf.reduce_any(tf.equal(calls, tf.constant(self.nan_at_calls, tf.int64)))
            loss = tf.where(poisoned, tf.constant(float("nan")), loss)
        return {"loss": loss, "accuracy": sparse_accuracy(y, logits)}

    def validation_step(self, batch: Any) -> StepOutputs:
        x, y = batch
        logits = self.model(x, training=False)
        return {"loss": self._loss(y, logits), "accuracy": sparse_accuracy(y, logits)}
