"""MNIST arrays (from ``keras.datasets`` or a local ``mnist.npz``) and the tf.data pipelines.

Images stay uint8 in the pipeline and are scaled per batch (one vectorized op, four times less
memory than float32 slices); every pipeline ends in ``prefetch`` so input overlaps the step.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

ArrayPair = tuple[np.ndarray, np.ndarray]
SHUFFLE_SEED = 1234


@dataclass(frozen=True)
class MnistArrays:
    train: ArrayPair
    test: ArrayPair


def load_mnist(path: str | Path | None = None, limit: int | None = None) -> MnistArrays:
    """Load MNIST from ``path`` (Keras npz layout) or ``keras.datasets`` (which downloads).

    ``limit`` keeps the first N train and N test samples (tests use a few hundred).
    """
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"no MNIST file at {path}: set CHATTRAIN_DATA (or --data) to a Keras-layout mnist.npz"
            )
        with np.load(Path(path)) as npz:
            train, test = (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])
    else:
        import keras

        try:
            train, test = keras.datasets.mnist.load_data()
        except Exception as exc:  # no network, a proxy, a corrupt cache
            raise OSError(
                f"cannot download MNIST ({type(exc).__name__}: {_shorten(str(exc))}); "
                "set CHATTRAIN_DATA (or --data) to a Keras-layout mnist.npz"
            ) from exc
    if limit is not None:
        if limit < 1:
            raise ValueError(f"data limit must be >= 1, got {limit!r}")
        train, test = (train[0][:limit], train[1][:limit]), (test[0][:limit], test[1][:limit])
    return MnistArrays(train=_prepare(train), test=_prepare(test))


def _shorten(text: str, width: int = 300) -> str:
    """An error's text on one line, cut at a word if long (keras' text ends with the cause)."""
    return textwrap.shorten(text, width, placeholder=" …")


def synthetic_mnist(samples: int, seed: int = 0) -> MnistArrays:
    """Random MNIST-shaped data (for tests when no npz is available)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(2 * samples, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=(2 * samples,), dtype=np.int64)
    return MnistArrays(train=_prepare((x[:samples], y[:samples])), test=_prepare((x[samples:], y[samples:])))


def _prepare(pair: ArrayPair) -> ArrayPair:
    x, y = pair
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return np.ascontiguousarray(x), y.astype(np.int64)


def _scale(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32) / 255.0
    return x, y


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: a new order every epoch, the same one for a resumed run."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def train_dataset(
    pair: ArrayPair, batch_size: int, *, seed: int = SHUFFLE_SEED, epoch: int = 0
) -> tf.data.Dataset:
    """Shuffled full batches (a last partial one only if there is no full one), in the order of
    ``epoch``: the trainer builds the dataset anew every epoch, so the epoch picks the order (as
    Keras reshuffles each epoch)."""
    samples = len(pair[0])
    shuffle_seed = epoch_seed(seed, epoch)
    dataset = tf.data.Dataset.from_tensor_slices(pair).shuffle(samples, seed=shuffle_seed)
    dataset = dataset.batch(batch_size, drop_remainder=samples >= batch_size)
    return dataset.map(_scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_dataset(pair: ArrayPair, batch_size: int) -> tf.data.Dataset:
    """Every sample once, in order."""
    dataset = tf.data.Dataset.from_tensor_slices(pair).batch(batch_size)
    return dataset.map(_scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
