"""A process that saves checkpoints of one large variable back to back, for kill -9 tests.

    python -m tests.trainer.ckpt_writer DIR

Step N's checkpoint holds the variable filled with N. It prints ``queued N`` once save N is handed
to the writer thread (the write of N is then in flight), flushing each line.
"""

from __future__ import annotations

import sys

import tensorflow as tf

from trainer.checkpointing import CheckpointStore

VALUES = 16 * 2**20  # 64 MB of float32: a write takes long enough to be killed in the middle


def main(directory: str) -> None:
    big = tf.Variable(tf.zeros([VALUES]))
    store = CheckpointStore(directory, {"big": big})
    step = 0
    while True:
        step += 1
        big.assign(tf.fill([VALUES], float(step)))
        store.save(step=step, epoch=0, samples_seen=step, params={"n": step})
        print(f"queued {step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
