"""Compiling a module's steps into ``tf.function``s, and running an evaluation.

The train step applies the update only when the loss and the gradients are finite (a ``tf.cond``
inside the graph), so a non-finite step never touches the weights whatever the policy; the
policy (stop / skip / rollback) is then the host's decision. The input signature has an unknown
batch dimension, so a new batch size never retraces; the learning rate is an optimizer variable,
so changing it never retraces either. ``trainer.multistep`` runs several of these train steps per
call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from trainer.module import Module

StepFn = Callable[[Any], dict[str, tf.Tensor]]
FINITE_OUTPUT = "finite"  # the train step's flag: False when the update was skipped


def relaxed_signature(element_spec: Any) -> Any:
    """The dataset's element spec with the batch dimension unknown."""

    def relax(spec: tf.TensorSpec) -> tf.TensorSpec:
        shape = spec.shape
        if shape.rank:
            shape = tf.TensorShape([None]).concatenate(shape[1:])
        return tf.TensorSpec(shape, spec.dtype)

    return tf.nest.map_structure(relax, element_spec)


def compile_train_step(
    module: Module, optimizer: keras.optimizers.Optimizer, element_spec: Any, *, jit_compile: bool = False
) -> StepFn:
    """One update; ``jit_compile`` compiles it with XLA (the loop around it, ``MultiStep``, is not:
    the gate's critical section and the iterator stay outside the cluster, as in Keras)."""

    def train_step(batch: Any) -> dict[str, tf.Tensor]:
        variables = module.trainable_variables
        with tf.GradientTape() as tape:
            outputs = dict(module.training_step(batch))
            loss = outputs["loss"]
        gradients = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        finite = tf.math.is_finite(loss) & tf.math.is_finite(tf.linalg.global_norm([g for g, _ in pairs]))

        def apply() -> tf.Tensor:
            optimizer.apply_gradients(pairs)
            return tf.constant(True)

        outputs[FINITE_OUTPUT] = tf.cond(finite, apply, lambda: tf.constant(False))
        return outputs

    signature = [relaxed_signature(element_spec)]
    compiled: StepFn = tf.function(train_step, input_signature=signature, jit_compile=jit_compile)
    return compiled


def compile_eval_step(step: Callable[[Any], Any], element_spec: Any) -> StepFn:
    def eval_step(batch: Any) -> dict[str, tf.Tensor]:
        outputs = {k: tf.cast(v, tf.float32) for k, v in dict(step(batch)).items()}
        outputs["count"] = tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)
        return outputs

    compiled: StepFn = tf.function(eval_step, input_signature=[relaxed_signature(element_spec)])
    return compiled


def run_evaluation(fn: StepFn, dataset: tf.data.Dataset) -> dict[str, float]:
    """Sample-weighted means over ``dataset``; one host read at the end."""
    totals: dict[str, tf.Tensor] = {}
    count = tf.constant(0.0)
    for batch in dataset:
        outputs = fn(batch)
        n = outputs.pop("count")
        count += n
        for name, value in outputs.items():
            totals[name] = totals.get(name, 0.0) + value * n
    denominator = float(count.numpy())
    if denominator == 0:
        return {}
    return {name: float(total.numpy()) / denominator for name, total in totals.items()}
