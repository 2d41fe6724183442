"""A fake trainer process whose Python threads can be frozen on request, as a busy trainer's are.

Run as `python -m tests.protocol.gil_holder CONTROL METRICS`: prints `ready`, then for each stdin
line `hold N` calls libc `sleep(N)` through `ctypes.PyDLL`, which keeps the GIL for the whole call
(the way a long C call in TensorFlow's import or a trace can), then prints `released`; `burst N`
publishes N data messages, then prints `sent`. Every Python thread (the heartbeat's too) stands
still meanwhile; libzmq's I/O thread does not.
"""

from __future__ import annotations

import ctypes
import sys

from tests.protocol.support import FakeTrainer


def main() -> None:
    control, metrics = sys.argv[1], sys.argv[2]
    trainer = FakeTrainer(control, metrics, heartbeat_interval_s=0.1).start()
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL is held during calls
    print("ready", flush=True)
    for line in sys.stdin:
        word, _, value = line.partition(" ")
        if word == "hold":
            libc.sleep(int(value))
            print("released", flush=True)
        elif word == "burst":  # publish N messages; `sent` once the publisher has sent them all
            trainer.publish_many(int(value))
            print("sent", flush=True)
    trainer.close()


if __name__ == "__main__":
    main()
