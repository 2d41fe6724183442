"""The seed's example: the MNIST CNN of the original TF1 script, as a ``Module``.

conv 5x5x32 + relu, maxpool 2x2, conv 5x5x64 + relu, maxpool 2x2, dense 1024 + relu, dropout
(keep 0.75), 10 logits; Adam. The seed reported the accuracy of the current batch every
``display_step`` steps and tested on the test set: validation here is the first
``VAL_SAMPLES`` test images (quick), the final test is the whole test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from trainer.data import MnistArrays, eval_dataset, load_mnist, synthetic_mnist, train_dataset
from trainer.module import Module, StepOutputs, sparse_accuracy

VAL_SAMPLES = 1000
DROPOUT_RATE = 0.25  # the seed's keep_prob 0.75


def build_cnn() -> keras.Model:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(1024, activation="relu"),
            layers.Dropout(DROPOUT_RATE),
            layers.Dense(10),
        ],
        name="mnist_cnn",
    )


class MnistCnn(Module):
    """``data``: a Keras-layout mnist.npz (None: keras.datasets); ``data_limit``: first N samples;
    ``synthetic``: random data of that many samples (no file needed)."""

    def __init__(
        self,
        data: str | Path | None = None,
        data_limit: int | None = None,
        synthetic: int | None = None,
        **_: Any,
    ) -> None:
        self._source, self._limit, self._synthetic = data, data_limit, synthetic
        self.data: MnistArrays | None = None
        self._loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def setup(self) -> None:
        if self._synthetic:
            self.data = synthetic_mnist(self._synthetic)
        else:
            self.data = load_mnist(self._source, self._limit)
        self.model = build_cnn()

    def _arrays(self) -> MnistArrays:
        if self.data is None:
            raise RuntimeError("MnistCnn.setup() was not called")
        return self.data

    def train_dataset(self, batch_size: int) -> tf.data.Dataset:
        return train_dataset(self._arrays().train, batch_size, epoch=self.epoch)

    def val_dataset(self, batch_size: int) -> tf.data.Dataset:
        x, y = self._arrays().test
        return eval_dataset((x[:VAL_SAMPLES], y[:VAL_SAMPLES]), batch_size)

    def test_dataset(self, batch_size: int) -> tf.data.Dataset:
        return eval_dataset(self._arrays().test, batch_size)

    def _outputs(self, batch: Any, *, training: bool) -> StepOutputs:
        x, y = batch
        logits = self.model(x, training=training)
        return {"loss": self._loss(y, logits), "accuracy": sparse_accuracy(y, logits)}

    def training_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=True)

    def validation_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=False)
