"""What a user writes: a ``Module`` (model, optimizer, data and steps), in the style of Lightning.

The contract (what the trainer calls, in this order)::

    Module(**options)                  # your constructor; see "Constructor" below
    module.param_specs()               # the live parameters (chat/trainctl can change them)
    module.default_params()            # {name: value} overriding their defaults
    module.setup()                     # once: load data, build self.model
    module.configure_optimizers(params)  # -> a keras optimizer; params: every setting by name
    module.checkpoint_objects()        # -> {name: trackable} saved besides the optimizer
    per epoch:  module.train_dataset(batch_size)    # a tf.data.Dataset of batches (the same for
                                                # the same self.epoch: a resumed epoch skips those done)
        per batch:  module.training_step(batch)     # inside tf.GradientTape and tf.function
    on evaluate / at the end:  module.val_dataset(batch_size), module.validation_step(batch)
                               module.test_dataset(batch_size), module.test_step(batch)

``training_step(batch)`` returns a dict of scalar tensors with at least ``"loss"`` (the value the
gradients are taken of); every other key (``"accuracy"``) is reported as a metric.
``validation_step`` / ``test_step`` return per-batch means; the trainer weights them by batch
size. The steps are traced once (the batch dimension is left unknown), so use TensorFlow ops,
not Python side effects. ``trainable_variables`` defaults to ``self.model``'s.

Live parameters: ``param_specs()`` returns ``protocol.ParamSpec`` declarations (name, aliases,
type, range, when a change applies). The default is the seed's four (``learning_rate``,
``training_iters``, ``batch_size``, ``display_step``); return your own list to add or leave some
out. The loop reads those four when they are declared, and otherwise uses fixed values
(``trainer.trainer.LOOP_SETTINGS``); without ``training_iters`` the budget is the Trainer's
``max_epochs`` / ``max_steps``. Your own parameter's value is in ``self.trainer_params`` (the live
dict; ``self.trainer_params["dropout"]``). The steps are traced once, so a value used inside a
step goes through a ``tf.Variable`` that ``params_changed(params)`` assigns (the trainer calls it
after every change, at a step boundary).

Constructor: under ``python -m trainer --module pkg.mod:Class`` the class is called with the
keyword arguments it accepts among ``data`` (the ``--data`` path or None), ``data_limit``
(``--data-limit``) and ``synthetic`` (``--synthetic-data``, a sample count); a constructor with
none of them gets none. ``examples/my_module.py`` is a complete module.

``KerasModule(model, train=(x, y))`` wraps a compiled ``keras.Model`` in one line: its optimizer,
loss and compiled metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import keras
import tensorflow as tf

from protocol import ParamSpec
from trainer.data import ArrayPair, eval_dataset, train_dataset
from trainer.optimizers import FusedAdam
from trainer.params import BATCH_SIZE, DISPLAY_STEP, LEARNING_RATE, PARAM_SPECS

StepOutputs = Mapping[str, tf.Tensor]


class Module:
    """Base class. ``training_step`` must return a dict with a scalar ``"loss"``."""

    model: keras.Model
    trainer_params: Mapping[str, Any] = MappingProxyType({})  # the live params, set by the Trainer
    epoch = 0  # the epoch the next ``train_dataset`` call is for (set by the trainer)

    def param_specs(self) -> Sequence[ParamSpec]:
        """The live parameters (``trainer.params.PARAM_SPECS``; return your own list to change them)."""
        return PARAM_SPECS

    def default_params(self) -> Mapping[str, Any]:
        """Overrides of the specs' defaults (e.g. a compiled model's learning rate)."""
        return {}

    def setup(self) -> None:
        """Load data and build ``self.model`` (called once, after TensorFlow is imported)."""

    def params_changed(self, params: Mapping[str, Any]) -> None:
        """After a live change (at a step boundary, or while idle): assign your tf.Variables."""

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
    """Train a compiled ``keras.Model``: its optimizer, its loss, its compiled metrics (per batch),
    plus stateless ``metrics`` of your choice.

    ``train`` / ``val`` / ``test`` are ``(x, y)`` arrays or callables ``batch_size -> Dataset``.
    Live parameters: ``learning_rate``, ``batch_size`` (``batch_size`` here is its start value,
    32 as in ``fit``) and ``display_step``; the budget is the Trainer's ``max_epochs`` or
    ``max_steps`` (one epoch when neither is given).
    """

    def __init__(
        self,
        model: keras.Model,
        train: ArrayPair | Callable[[int], tf.data.Dataset],
        val: Any = None,
        test: Any = None,
        metrics: Mapping[str, MetricFn] | None = None,
        batch_size: int = 32,
    ) -> None:
        if getattr(model, "optimizer", None) is None:
            raise ValueError(f"KerasModule needs a compiled model; {model.name!r} has no optimizer")
        self.model = model
        self._data = {"train": train, "val": val, "test": test}
        self._metrics = dict(metrics or {})
        self._batch_size = batch_size
        self._compiled: list[keras.metrics.Metric] = []

    def param_specs(self) -> Sequence[ParamSpec]:
        return tuple(s for s in PARAM_SPECS if s.name in (LEARNING_RATE, BATCH_SIZE, DISPLAY_STEP))

    def default_params(self) -> Mapping[str, Any]:
        return {
            LEARNING_RATE: float(self.model.optimizer.learning_rate.numpy()),
            BATCH_SIZE: self._batch_size,
        }

    def setup(self) -> None:
        """Build the model's compiled metrics eagerly (on two samples), so steps can use them."""
        x, y = next(iter(self.train_dataset(2).take(1)))
        self.model.compute_metrics(x, y, self.model(x, training=False))
        groups = [m for m in self.model.metrics if hasattr(m, "metrics") and m.name != "loss"]
        # One of ``metrics`` with a compiled metric's name replaces it (its ops would be wasted).
        compiled = [inner for group in groups for inner in group.metrics]
        self._compiled = [m for m in compiled if m.name not in self._metrics]

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
        outputs = {"loss": loss, **{name: fn(y, y_pred) for name, fn in self._metrics.items()}}
        for metric in self._compiled:  # a per-batch value: reset, update, read
            metric.reset_state()
            metric.update_state(y, y_pred)
            outputs[metric.name] = metric.result()
        return outputs

    def training_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=True)

    def validation_step(self, batch: Any) -> StepOutputs:
        return self._outputs(batch, training=False)
