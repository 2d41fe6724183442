"""A complete module of your own: two interleaved spirals, a small MLP, one parameter of its own.

Run it under chat control (from the repository root)::

    python -m trainer --module examples.my_module:Spirals --max-steps 2000

or as a plain script, which trains 3 epochs and prints the history::

    python examples/my_module.py

It declares its live parameters itself: ``learning_rate`` and ``batch_size`` from the seed's
set, and ``label_noise`` of its own (``noise 0.1`` in chat flips 10% of the training labels
from the next step on: a way to watch the loss react). ``training_iters`` and ``display_step``
are not declared, so the budget is ``--max-steps`` / ``max_epochs`` and reports come every 10
steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from protocol import ParamSpec
from trainer import Module
from trainer.params import BATCH_SIZE, LEARNING_RATE, PARAM_SPECS

LABEL_NOISE = "label_noise"
SAMPLES = 2000


def spirals(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in the plane: x (samples, 2) float32, y (samples,) int64."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, samples)
    turn = rng.random(samples) * 3 * np.pi
    x = np.stack([turn * np.cos(turn + np.pi * label), turn * np.sin(turn + np.pi * label)], axis=1)
    return (x / (3 * np.pi) + rng.normal(0, 0.02, x.shape)).astype(np.float32), label.astype(np.int64)


class Spirals(Module):
    def __init__(self, samples: int = SAMPLES, synthetic: int | None = None) -> None:
        # `synthetic` is one of the options `python -m trainer` passes (--synthetic-data).
        self.samples = synthetic or samples

    def param_specs(self) -> Sequence[ParamSpec]:
        seed = tuple(s for s in PARAM_SPECS if s.name in (LEARNING_RATE, BATCH_SIZE))
        noise = ParamSpec(
            name=LABEL_NOISE,
            type="float",
            default=0.0,
            aliases=("noise",),
            minimum=0.0,
            maximum=0.5,
            applies="next_step",
            help="Share of training labels flipped at random.",
        )
        return (*seed, noise)

    def default_params(self) -> Mapping[str, Any]:
        return {LEARNING_RATE: 0.01, BATCH_SIZE: 64}

    def setup(self) -> None:
        x, y = spirals(self.samples)
        split = self.samples * 4 // 5
        self.train, self.val = (x[:split], y[:split]), (x[split:], y[split:])
        self.model = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2)]
        )
        self.loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.noise = tf.Variable(0.0, trainable=False)

    def params_changed(self, params: Mapping[str, Any]) -> None:
        self.noise.assign(float(params[LABEL_NOISE]))  # read inside the traced step

    def configure_optimizers(self, params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(learning_rate=float(params[LEARNING_RATE]))

    def train_dataset(self, batch_size: int) -> tf.data.Dataset:
        data = tf.data.Dataset.from_tensor_slices(self.train).shuffle(len(self.train[1]), seed=1)
        return data.batch(batch_size, drop_remainder=True).prefetch(2)

    def val_dataset(self, batch_size: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self.val).batch(batch_size)

    def test_dataset(self, batch_size: int) -> tf.data.Dataset:
        return self.val_dataset(batch_size)  # a small example: the held-out fifth serves for both

    def training_step(self, batch: Any) -> dict[str, tf.Tensor]:
        x, y = batch
        flip = tf.random.uniform(tf.shape(y)) < self.noise
        y = tf.where(flip, 1 - y, y)
        logits = self.model(x, training=True)
        return {"loss": self.loss(y, logits), "accuracy": _accuracy(y, logits)}

    def validation_step(self, batch: Any) -> dict[str, tf.Tensor]:
        x, y = batch
        logits = self.model(x, training=False)
        return {"loss": self.loss(y, logits), "accuracy": _accuracy(y, logits)}


def _accuracy(y: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    predicted = tf.argmax(logits, axis=-1, output_type=y.dtype)
    return tf.reduce_mean(tf.cast(predicted == y, tf.float32))


if __name__ == "__main__":
    from trainer import Trainer

    history = Trainer(Spirals(), max_epochs=3, run_dir="runs/spirals").fit()
    print(f"{history.outcome}: test {history.test}, last loss {history.history['loss'][-1]:.4f}")
