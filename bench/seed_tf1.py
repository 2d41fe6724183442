"""The seed's own loop style, for comparison: a TF1 graph fed through feed_dict (tf.compat.v1).

This mirrors the original script's CNN and training loop (placeholders, `sess.run(optimizer,
feed_dict=...)`, numpy batches sliced on the host). Only ever imported in its own process (the
``seed_tf1`` variant of ``bench.throughput``): it disables eager execution for the whole interpreter.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1


def conv_net(images, dropout_keep):
    """The seed's network: conv5x5x32, pool, conv5x5x64, pool, fc1024 + dropout, 10 logits."""
    init = v1.initializers.truncated_normal(stddev=0.1)
    x = tf.reshape(images, [-1, 28, 28, 1])
    for index, (inputs, outputs) in enumerate(((1, 32), (32, 64))):
        weights = v1.get_variable(f"wc{index}", [5, 5, inputs, outputs], initializer=init)
        bias = v1.get_variable(f"bc{index}", [outputs], initializer=v1.zeros_initializer())
        x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, weights, [1, 1, 1, 1], "SAME"), bias))
        x = tf.nn.max_pool2d(x, 2, 2, "SAME")
    x = tf.reshape(x, [-1, 7 * 7 * 64])
    wd = v1.get_variable("wd1", [7 * 7 * 64, 1024], initializer=init)
    bd = v1.get_variable("bd1", [1024], initializer=v1.zeros_initializer())
    x = tf.nn.dropout(tf.nn.relu(tf.matmul(x, wd) + bd), rate=1 - dropout_keep)
    wo = v1.get_variable("wout", [1024, 10], initializer=init)
    bo = v1.get_variable("bout", [10], initializer=v1.zeros_initializer())
    return tf.matmul(x, wo) + bo


def run(data: str, warmup: int, steps: int, batch_size: int, lr: float = 0.001) -> dict[str, Any]:
    """Train ``warmup + steps`` steps; the rate over the last ``steps``."""
    v1.disable_eager_execution()
    with np.load(data) as arrays:
        x_train = arrays["x_train"].reshape(-1, 784).astype(np.float32) / 255.0
        y_train = np.eye(10, dtype=np.float32)[arrays["y_train"]]
    images = v1.placeholder(tf.float32, [None, 784])
    labels = v1.placeholder(tf.float32, [None, 10])
    keep = v1.placeholder(tf.float32)
    logits = conv_net(images, keep)
    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    optimizer = v1.train.AdamOptimizer(learning_rate=lr).minimize(cost)
    correct = tf.equal(tf.argmax(logits, 1), tf.argmax(labels, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    rng = np.random.default_rng(0)
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        started = 0.0
        for step in range(warmup + steps):
            if step == warmup:
                started = time.perf_counter()
            index = rng.integers(0, len(x_train), batch_size)
            feed = {images: x_train[index], labels: y_train[index], keep: 0.75}
            session.run(optimizer, feed_dict=feed)
            if step % 10 == 0:  # the seed's display_step: loss and accuracy on the batch
                session.run([cost, accuracy], feed_dict={**feed, keep: 1.0})
        elapsed = time.perf_counter() - started
    return {"variant": "seed_tf1", "steps": steps, "batch_size": batch_size, "seconds": elapsed,
            "samples_per_s": steps * batch_size / elapsed}  # fmt: skip
