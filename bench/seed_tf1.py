"""The seed's own loop style, for comparison: a TF1 graph fed through feed_dict (tf.compat.v1).

This mirrors the original script's CNN and training loop (placeholders, `sess.run(optimizer,
feed_dict=...)`, numpy batches sliced on the host). Run in its own process: it disables eager
execution for the whole interpreter.

    python bench/seed_tf1.py --data ../shared/data/mnist.npz --steps 200 --batch-size 128
prints one JSON line: {"variant": "seed_tf1", "samples_per_s": ..., "steps": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.001)
    args = parser.parse_args()

    v1.disable_eager_execution()
    with np.load(args.data) as data:
        x_train = data["x_train"].reshape(-1, 784).astype(np.float32) / 255.0
        y_train = np.eye(10, dtype=np.float32)[data["y_train"]]
    images = v1.placeholder(tf.float32, [None, 784])
    labels = v1.placeholder(tf.float32, [None, 10])
    keep = v1.placeholder(tf.float32)
    logits = conv_net(images, keep)
    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    optimizer = v1.train.AdamOptimizer(learning_rate=args.lr).minimize(cost)
    correct = tf.equal(tf.argmax(logits, 1), tf.argmax(labels, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    rng = np.random.default_rng(0)
    with v1.Session() as session:
        session.run(v1.global_variables_initializer())
        started = 0.0
        for step in range(args.warmup_steps + args.steps):
            if step == args.warmup_steps:
                started = time.perf_counter()
            index = rng.integers(0, len(x_train), args.batch_size)
            feed = {images: x_train[index], labels: y_train[index], keep: 0.75}
            session.run(optimizer, feed_dict=feed)
            if step % 10 == 0:  # the seed's display_step: loss and accuracy on the batch
                session.run([cost, accuracy], feed_dict={**feed, keep: 1.0})
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "variant": "seed_tf1",
                "steps": args.steps,
                "batch_size": args.batch_size,
                "seconds": elapsed,
                "samples_per_s": args.steps * args.batch_size / elapsed,
            }
        )
    )


if __name__ == "__main__":
    main()
