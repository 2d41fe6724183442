"""The metrics feed: what ``publish()`` costs the training loop, whether a subscriber that never
reads slows the publisher, and the protocol's own feed and control figures (``protocol_bench``).

    python -m bench feed [--repeats 3]

- ``publish()`` per call: ``PUBLISH_CALLS`` calls with a ``metrics.step``-sized body, each call
  timed on its own (the training loop's side: a queue put).
- Publisher throughput, ``IDLE_MESSAGES`` messages flat out: nobody connected, vs a SUB socket
  connected and subscribed that never reads (its queue fills past the high-water mark, so the
  PUB side must drop for it rather than wait).
- ``protocol_bench.run(repeats)``: control round trips (idle / loaded server), feed throughput and
  publish-to-receive latency against raw pyzmq + msgpack.

The trainer's per-step reporting cost under real training comes from ``throughput.py`` (the
in-process variants time every step's callback dispatch).
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from bench import protocol_bench
from bench.harness import percentiles, scratch_dir, summaries, summary
from protocol import Publisher, new_session_id

PUBLISH_CALLS = 20_000
IDLE_MESSAGES = 50_000
CONNECT_SETTLE_S = 0.3
STEP_BODY = {"step": 1234, "epoch": 2, "loss": 0.0421, "steps_per_s": 5.1, "eta_s": 300.0}


def publish_call_cost() -> dict[str, float]:
    """Microseconds per ``publish()`` call, p50 / p99 / max."""
    with scratch_dir("ctf-") as work:
        publisher = Publisher(f"ipc://{work}/m", session=new_session_id(), history_size=PUBLISH_CALLS)
        publisher.start()
        samples = []
        try:
            for step in range(PUBLISH_CALLS):
                body = {**STEP_BODY, "step": step}
                began = time.perf_counter()
                publisher.publish("metrics.step", body)
                samples.append(time.perf_counter() - began)
                if step % 100 == 99:
                    time.sleep(0.001)  # let the publisher thread drain, as between real steps
        finally:
            publisher.close()
    return percentiles(samples, 1e6)


def publisher_rate(idle_subscriber: bool) -> float:
    """Messages/s the publisher thread sends, ``IDLE_MESSAGES`` flat out."""
    with scratch_dir("ctf-") as work:
        endpoint = f"ipc://{work}/m"
        # The queue holds the whole burst (a dropped message is never numbered: the wait would not end).
        publisher = Publisher(endpoint, session=new_session_id(), history_size=1000, queue_size=IDLE_MESSAGES)
        publisher.start()
        context = zmq.Context()
        idle = context.socket(zmq.SUB)
        idle.linger = 0
        try:
            if idle_subscriber:
                idle.subscribe(b"")
                idle.connect(endpoint)
            time.sleep(CONNECT_SETTLE_S)
            first = publisher.last_seq
            began = time.perf_counter()
            for step in range(IDLE_MESSAGES):
                publisher.publish("metrics.step", {**STEP_BODY, "step": step})
            while publisher.last_seq < first + IDLE_MESSAGES:
                time.sleep(0.001)
            return IDLE_MESSAGES / (time.perf_counter() - began)
        finally:
            idle.close()
            context.term()
            publisher.close()


def run(repeats: int = 3) -> dict[str, Any]:
    calls = [publish_call_cost() for _ in range(repeats)]
    without, with_idle = [], []
    for _ in range(repeats):  # interleaved
        without.append(publisher_rate(False))
        with_idle.append(publisher_rate(True))
    return {
        "repeats": repeats,
        "publish_call_us": summaries(calls, ("p50", "p99", "max")),
        "publisher_sent_per_s": {
            "messages": IDLE_MESSAGES,
            "nobody_connected": summary(without),
            "idle_subscriber": summary(with_idle),
            "ratio": summary([w / n for w, n in zip(with_idle, without, strict=True)]),
        },
        "protocol_bench": protocol_bench.run(repeats),
    }
