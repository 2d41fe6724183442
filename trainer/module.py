"""What a user writes: a ``Module`` (model, optimizer, data and steps), in the style of Lightning.

The trainer calls ``setup()`` once, then ``configure_optimizers(params)``; it compiles
``training_step`` (inside a ``tf.GradientTape``) and ``validation_step`` / ``test_step`` into
``tf.function``s, and asks for datasets by batch size (a new batch size takes effect at the next
epoch, when the trainer asks again). ``KerasModule(model, train=(x, y))`` wraps a compiled
``keras.Model`` in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from protocol import ParamSpec
from trainer.data import ArrayPair, eval_dataset, train_dataset
from trainer.optimizers import FusedAdam
from trainer.params import LEARNING_RATE, PARAM_SPECS

StepOutputs = Mapping[str, tf.Tensor]


class Module:
    """Base class. ``training_step`` must return a dict with a scalar ``"loss"``."""

    model: keras.Model
    epoch = 0  # the epoch the next ``train_dataset`` call is for (set by the trainer)

    def param_specs(self) -> Sequence[ParamSpec]:
        """The live parameters (``trainer.params.PARAM_SPECS``; extend to add your own)."""
        return PARAM_SPECS

    def default_params(self) -> Mapping[str, Any]:
        """Overrides of the specs' defaults (e.g. a compiled model's learning rate)."""
        return {}

    def setup(self) -> None:
        """Load data and build ``self.model`` (called once, after TensorFlow is imported)."""

    def configure_optimizers(self, params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
        """Adam (``trainer.optimizers.FusedAdam``: Keras' Adam, updated by TF's fused kernel)."""
        return FusedAdam(learning_rate=float(params[LEARNING_RATE]))

    def train_dataset(self, batch_size: int) -> tf.data.Dataset:
        raise NotImplementedError(f"{type(self).__name__} has no train_dataset")

    def val_dataset(self, batch_size: int) -> tf.data.Dataset | None:
        return None

    def test_dataset(self, batch_size: int) -> tf.data.Dataset | None:
        return None

    def training_step(self, batch: Any) -> StepOutputs:
        raise NotImplementedError(f"{type(self).__name__} has no training_step")

    def validation_step(self, batch: Any) -> StepOutputs:
        """Per-batch means (the trainer weights them by batch size)."""
        raise NotImplementedError(f"{type(self).__name__} has no validation_step")

    def test_step(self, batch: Any) -> StepOutputs:
        return self.validation_step(batch)

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        return list(self.model.trainable_variables)

    def checkpoint_objects(self) -> dict[str, Any]:
        """What a checkpoint holds besides the optimizer and the trainer's counters."""
        return {"model": self.model}


MetricFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def sparse_accuracy(y_true: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return tf.reduce_mean(tf.cast(tf.equal(predicted, tf.cast(y_true, tf.int64)), tf.float32))


class KerasModule(Module):
    """Train a compiled ``keras.Model``: its optimizer, its loss, stateless ``metrics`` of your choice.

    ``train`` / ``val`` / ``test`` are ``(x, y)`` arrays or callables ``batch_size -> Dataset``.
    """

    def __init__(
        self,
        model: keras.Model,
        train: ArrayPair | Callable[[int], tf.data.Dataset],
        val: Any = None,
        test: Any = None,
        metrics: Mapping[str, MetricFn] | None = None,
    ) -> None:
        if getattr(model, "optimizer", None) is None:
            raise ValueError(f"KerasModule needs a compiled model; {model.name!r} has no optimizer")
        self.model = model
        self._data = {"train": train, "val": val, "test": test}
        self._metrics = dict(metrics or {})

    def default_params(self) -> Mapping[str, Any]:
        return {LEARNING_RATE: float(self.model.optimizer.learning_rate.numpy())}

    def configure_optimizers(self, params: Mapping[str, Any]) -> keras.optimizers.Optimizer:
        return self.model.optimizer

    def _dataset(self, split: str, batch_size: int) -> tf.data.Dataset | None:
        source = self._data[split]
        if source is None or callable(source):
            return source(batch_size) if source is not None else None
        if split == "train":
            return train_dataset(source, batch_size, epoch=self.epoch)
        return eval_dataset(source, batch_size)

    def train_dataset(self, batch_size: int) -> tf.data.Dataset:
        dataset = self._dataset("train", batch_size)
        assert dataset is not None
        return dataset

    def val_dataset(self, batch_size: int) -> tf.data.Dataset | None:
        return self._dataset("val", batch_size)

    def test_dataset(self, batch_size: int) -> tf.data.Dataset | None:
        return self._dataset("test", batch_size)

    def _outputs(self, batch: Any, *, training: bool) -> StepOutputs:
        x, y = batch
        y_pred = self.model(x, training=training)
        loss = self.model.compute_loss(x=x, y=y, y_pred=y_pred, training=training)
        return {"loss": loss, **{name: fn(y, y_pred) for name, fn in self._metrics.items()}}

    def training_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=True)

    def validation_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=False)
