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


def train_both(reference_adam: keras.optimizers.Optimizer, fused_adam: FusedAdam, scales: list[float]):  # type: ignore[no-untyped-def]
    """Two copies of one model, one update per scale (random gradients of that size) with each
    optimizer; returns (reference model, fused model, the weights both started from)."""
    keras.utils.set_random_seed(0)
    reference, fused = _dense_model(), _dense_model()
    fused.set_weights(reference.get_weights())
    initial = [w.copy() for w in reference.get_weights()]
    apply_reference = tf.function(lambda g: reference_adam.apply_gradients(pairs(g, reference)))
    apply_fused = tf.function(lambda g: fused_adam.apply_gradients(pairs(g, fused)))
    rng = np.random.default_rng(1)
    for step, scale in enumerate(scales):
        if step == len(scales) // 2:  # a live change, as set_params makes it: no retrace, same result
            reference_adam.learning_rate.assign(3e-4)
            fused_adam.learning_rate.assign(3e-4)
        shapes = [v.shape for v in reference.trainable_variables]
        grads = [tf.constant(scale * rng.normal(size=shape).astype(np.float32)) for shape in shapes]
        apply_reference(grads)
        apply_fused(grads)
    return reference, fused, initial


def assert_same_weights(expected_model: keras.Model, actual_model: keras.Model) -> None:
    for expected, actual in zip(expected_model.get_weights(), actual_model.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)


def test_fused_adam_follows_keras_adam_step_for_step_through_a_learning_rate_change() -> None:
    keras_adam, fused_adam = keras.optimizers.Adam(1e-3), FusedAdam(1e-3)
    reference, fused, initial = train_both(keras_adam, fused_adam, [1.0] * STEPS)
    assert_same_weights(reference, fused)
    for start, trained in zip(initial, reference.get_weights(), strict=True):  # it did train
        assert np.abs(trained - start).max() > 10 * 3e-4, "an Adam step moves each weight by ~lr"
    for expected, actual in zip(keras_adam.variables, fused_adam.variables, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fused_adam.iterations) == STEPS
    config = {k: v for k, v in fused_adam.get_config().items() if k != "name"}
    assert config == {k: v for k, v in keras_adam.get_config().items() if k != "name"}


def test_amsgrad_falls_back_to_keras_own_update() -> None:
    # Large gradients, then small: amsgrad keeps the largest second moment, plain Adam forgets it
    # (quickly, with beta_2 0.5), so the two updates part ways; the fused kernel knows only plain Adam.
    scales = [10.0] * 10 + [0.01] * 30
    reference, fused, _ = train_both(
        keras.optimizers.Adam(1e-3, beta_2=0.5, amsgrad=True),
        FusedAdam(1e-3, beta_2=0.5, amsgrad=True),
        scales,
    )
    assert_same_weights(reference, fused)
    plain, _, _ = train_both(keras.optimizers.Adam(1e-3, beta_2=0.5), FusedAdam(1e-3, beta_2=0.5), scales)
    assert np.abs(plain.get_weights()[0] - fused.get_weights()[0]).max() > 1e-3  # amsgrad did apply
