"""Keras' Adam with its update done by TensorFlow's fused kernel (``ResourceApplyAdam``).

Keras 3's ``Adam.update_step`` is written in backend-neutral ops: about ten elementwise ops per
variable, each a full pass over the variable (and a temporary) in memory. On CPU, for the seed
CNN (3.3 M parameters, 3.2 M of them in one dense kernel) that costs ~8 ms a step against ~3.5 ms
for TF's fused kernel, which does the same update in one pass: about 8% of the whole step on a
2-core machine. This is most of why the seed's TF1 graph (``AdamOptimizer`` = the fused kernel)
trained faster than ``keras.Model.fit`` and the trainer (paired same-process A/B: the
trainer step 7.7% faster with this update, median of 8 blocks of 50 steps).

The math is Keras' (and TF1's) exactly: ``alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``,
``m += (g - m) * (1 - beta_1)``, ``v += (g^2 - v) * (1 - beta_2)``,
``var -= m * alpha / (sqrt(v) + epsilon)``; the slots, config and checkpoints are Keras Adam's,
so the two are interchangeable. Anything the kernel does not cover (amsgrad, a non-TensorFlow
variable, a dtype the kernel lacks) falls back to Keras' own update.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def _handle(variable: Any) -> Any:
    """The resource handle of a model variable (a ``tf.Variable`` inside Keras' TF backend) or an
    optimizer slot (a ``keras.Variable`` wrapping one); None if there is none."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return getattr(variable, "handle", None)


@keras.saving.register_keras_serializable(package="chattrain")
class FusedAdam(keras.optimizers.Adam):  # type: ignore[misc]
    """``keras.optimizers.Adam`` (same arguments, slots and math) with a one-pass update."""

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        dtype = tf.as_dtype(variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        handles = (_handle(variable), _handle(m), _handle(v))
        if self.amsgrad or dtype not in _FUSED_DTYPES or any(h is None for h in handles):
            super().update_step(gradient, variable, learning_rate)
            return
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=handles[0],
            m=handles[1],
            v=handles[2],
            beta1_power=tf.pow(beta_1, local_step),
            beta2_power=tf.pow(beta_2, local_step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
            use_locking=False,
            use_nesterov=False,
        )
