"""FusedAdam is Keras' Adam, only faster: same math, slots and config."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from trainer.optimizers import FusedAdam  # noqa: E402

STEPS = 60


def _dense_model() -> keras.Model:
    return keras.Sequential([keras.Input(shape=(16,)), keras.layers.Dense(32), keras.layers.Dense(4)])


def pairs(grads: list, model: keras.Model) -> list:
    return list(zip(grads, model.trainable_variables, strict=True))


def test_fused_adam_follows_keras_adam_step_for_step_through_a_learning_rate_change() -> None:
    keras.utils.set_random_seed(0)
    reference, fused = _dense_model(), _dense_model()
    fused.set_weights(reference.get_weights())
    keras_adam, fused_adam = keras.optimizers.Adam(1e-3), FusedAdam(1e-3)
    apply_reference = tf.function(lambda g: keras_adam.apply_gradients(pairs(g, reference)))
    apply_fused = tf.function(lambda g: fused_adam.apply_gradients(pairs(g, fused)))
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        if step == STEPS // 2:  # a live change, as set_params makes it: no retrace, same result
            keras_adam.learning_rate.assign(3e-4)
            fused_adam.learning_rate.assign(3e-4)
        shapes = [v.shape for v in reference.trainable_variables]
        grads = [tf.constant(rng.normal(size=shape).astype(np.float32)) for shape in shapes]
        apply_reference(grads)
        apply_fused(grads)
    for expected, actual in zip(reference.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
    assert not np.allclose(reference.get_weights()[0], _dense_model().get_weights()[0])  # it did train
    for expected, actual in zip(keras_adam.variables, fused_adam.variables, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fused_adam.iterations) == STEPS
    config = {k: v for k, v in fused_adam.get_config().items() if k != "name"}
    assert config == {k: v for k, v in keras_adam.get_config().items() if k != "name"}


def test_amsgrad_falls_back_to_keras_own_update() -> None:
    model = _dense_model()
    optimizer = FusedAdam(1e-3, amsgrad=True)
    before = [w.copy() for w in model.get_weights()]
    optimizer.apply_gradients(pairs([tf.ones_like(v) for v in model.trainable_variables], model))
    assert all(not np.array_equal(b, a) for b, a in zip(before, model.get_weights(), strict=True))
