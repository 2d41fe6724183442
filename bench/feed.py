"""The metrics feed and the control round trip on loopback, each against raw pyzmq + msgpack (``feed``).

What one ``publish()`` costs the training loop; the publisher thread's rate with nobody connected and
with a SUB that never reads (past its high-water mark the PUB side must drop, not wait); what one
``Subscriber`` in another process receives flat out, and the publish-to-receive latency paced; and
``status`` round trips (ipc and tcp; the serving process idle, or its main thread busy in a GIL-holding
Python loop or a GIL-releasing numpy loop). The baselines are a bare PUB/SUB and REQ/REP with msgpack,
run in the same section; servers and subscribers are child processes, so the two never share a GIL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import zmq

from bench.harness import READY, Child, percentiles, summaries, summary
from fakes.processes import free_ports, scratch_dir
from protocol import ControlClient, ControlServer, Data, Publisher, Subscriber, new_session_id

RTT_REQUESTS = {"idle": 2000, "python_load": 300, "numpy_load": 300}
RTT_WARMUP = 50
FEED_MESSAGES, LATENCY_MESSAGES, LATENCY_PACE_S = 50_000, 2000, 0.001
PUBLISH_CALLS, IDLE_MESSAGES = 20_000, 50_000
CONNECT_SETTLE_S = 0.3
STEP_BODY = {"step": 1234, "epoch": 2, "loss": 0.0421, "steps_per_s": 5.1, "eta_s": 300.0, "first_step": 1234,
             "losses": [0.0421]}  # fmt: skip
STATUS_BODY: dict[str, Any] = {
    "state": "running", "step": 12345, "epoch": 3, "total_steps": 100000, "steps_per_s": 5.1, "eta_s": 1.7e4,
    "metrics": {"loss": 0.0312, "accuracy": 0.991}, "run_id": "run-20240611-1", "session": "0123456789abcdef",
    "params": {"learning_rate": 0.001, "batch_size": 128, "display_step": 100, "max_steps": 100000},
    "last_seq": 123456, "started_at": 1718000000.0, "error": None, "last_checkpoint_step": 12000,
}  # fmt: skip


def serve_control(impl: str, endpoint: str, load: str) -> None:
    """Serve `status` from a thread while the main thread runs `load`, until killed."""
    if impl == "ours":
        ControlServer(endpoint, {"status": lambda args: STATUS_BODY}, session="bench").start()
    else:
        threading.Thread(target=_raw_rep, args=(endpoint,), daemon=True).start()
        time.sleep(0.05)  # the bind happens in the thread; a connect before it simply waits
    print(READY, flush=True)
    while load == "python_load":
        sum(index * index for index in range(100_000))
    if load == "numpy_load":
        import numpy

        matrix = numpy.random.default_rng(0).random((512, 512), dtype=numpy.float32)
        while True:
            matrix @ matrix  # noqa: B018 (the work is the point)
    threading.Event().wait()


def _raw_rep(endpoint: str) -> None:
    rep: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REP)
    rep.bind(endpoint)
    while True:
        request = msgpack.unpackb(rep.recv(), raw=False)
        rep.send(
            msgpack.packb({"v": 1, "type": "reply", "id": request["id"], "ok": True, "body": STATUS_BODY})
        )


def receive_feed(impl: str, metrics: str, control: str, count: int) -> dict[str, Any]:
    """Print READY on the first warm-up message, then a JSON line once message `count - 1` arrived."""
    ready, latencies_s, received, first_s = False, [], 0, 0.0
    for topic, body, now in _our_feed(metrics, control) if impl == "ours" else _raw_feed(metrics):
        if topic == "warmup":
            if not ready:
                ready = True
                print(READY, flush=True)
            continue
        received, first_s = received + 1, first_s or now
        latencies_s.append(now - body["t"])
        if body["i"] == count - 1:
            break
    return {"received": received, "first_s": first_s, "last_s": now, "latencies_s": latencies_s}


def _our_feed(metrics: str, control: str) -> Iterator[tuple[str, dict[str, Any], float]]:
    subscriber = Subscriber(metrics, ControlClient(control, timeout_ms=5000))
    while True:
        for event in subscriber.poll(100):
            if isinstance(event, Data):
                yield event.message.topic or "", event.message.body, time.monotonic()


def _raw_feed(metrics: str) -> Iterator[tuple[str, dict[str, Any], float]]:
    sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sub.rcvhwm = 0
    sub.subscribe(b"")
    sub.connect(metrics)
    while True:
        topic, payload = sub.recv_multipart()
        yield topic.decode(), msgpack.unpackb(payload, raw=False)["body"], time.monotonic()


def _our_rtt(endpoint: str, requests: int) -> list[float]:
    with ControlClient(endpoint, timeout_ms=10_000, retries=0) as client:
        return _timed(lambda _: client.status(), requests)


def _raw_rtt(endpoint: str, requests: int) -> list[float]:
    with zmq.Context() as context, context.socket(zmq.REQ) as req:
        req.linger = 0
        req.connect(endpoint)
        # "expires" is required: a request without it is refused
        request = {"v": 1, "type": "request", "op": "status", "body": {}}

        def call(index: int) -> Any:
            req.send(msgpack.packb({**request, "id": f"{index:032x}", "expires": time.time() + 60}))
            return msgpack.unpackb(req.recv(), raw=False)

        return _timed(call, requests)


def _timed(call: Callable[[int], Any], requests: int) -> list[float]:
    """Seconds each of ``requests`` calls took, after ``RTT_WARMUP`` untimed ones."""
    samples = []
    for index in range(RTT_WARMUP + requests):
        began = time.perf_counter()
        call(index)
        samples.append(time.perf_counter() - began)
    return samples[RTT_WARMUP:]


def endpoint(transport: str, directory: Any, name: str) -> str:
    return f"ipc://{directory}/{name}" if transport == "ipc" else f"tcp://127.0.0.1:{free_ports()[0]}"


def control_rtt(transport: str, load: str, repeats: int) -> dict[str, Any]:
    """p50/p99 of `status` round trips, ours and raw, against a server process under `load`."""
    figures: dict[str, Any] = {}
    for impl, measure in (("ours", _our_rtt), ("raw", _raw_rtt)):
        with scratch_dir("ctb-") as work:
            ep = endpoint(transport, work, "c")
            child = Child("feed:serve_control", impl=impl, endpoint=ep, load=load)
            try:
                child.wait_ready()
                runs = [percentiles(measure(ep, RTT_REQUESTS[load]), 1e6) for _ in range(repeats)]
            finally:
                child.stop()
        figures[impl] = summaries(runs, ("p50", "p99"))
    for key in ("p50", "p99"):
        figures[f"ratio_{key}"] = figures["ours"][key]["median"] / figures["raw"][key]["median"]
    return figures


def _publisher(endpoint: str, count: int, session: str = "") -> Publisher:
    """A started Publisher whose queue holds a whole burst of ``count`` (a message dropped by a full
    queue is never numbered, so a wait for its number would never end)."""
    publisher = Publisher(endpoint, session=session or new_session_id(), history_size=count, queue_size=count)
    publisher.start()
    return publisher


def _wait_sent(publisher: Publisher, seq: int) -> None:
    while publisher.last_seq < seq:
        time.sleep(0.001)


def _feed_once(impl: str, count: int, pace_s: float) -> dict[str, float]:
    """Publish `count` messages (paced or flat out) to a subscriber process; its figures."""
    with scratch_dir("ctb-") as work, zmq.Context() as context:
        control, metrics, session = f"ipc://{work}/control", f"ipc://{work}/metrics", new_session_id()
        if impl == "ours":
            publisher = _publisher(metrics, count + 1000, session)
            handlers = {"status": lambda args: {"session": session, "last_seq": publisher.last_seq},
                        "history": publisher.history_handler}  # fmt: skip
            closers = [publisher, ControlServer(control, handlers, session=session)]
            closers[1].start()
            send, first_seq = publisher.publish, lambda: publisher.last_seq
        else:
            pub = context.socket(zmq.PUB)
            pub.sndhwm, pub.linger = 0, 0
            pub.bind(metrics)
            closers, first_seq = [pub], lambda: 0
            send = lambda topic, body: pub.send_multipart([topic.encode(), msgpack.packb({"body": body})])  # noqa: E731
        child = Child("feed:receive_feed", impl=impl, metrics=metrics, control=control, count=count)
        try:
            child.wait_ready(nudge=lambda: send("warmup", {}))
            seq, began = first_seq(), time.monotonic()
            for index in range(count):
                send("bench", {"i": index, "t": time.monotonic(), "step": index, "loss": 0.25})
                if pace_s:
                    time.sleep(pace_s)
            called_s = time.monotonic() - began
            if impl == "ours":
                _wait_sent(closers[0], seq + count)
            sent_s, outcome = time.monotonic() - began, child.result(60)
        finally:
            child.stop()
            for item in closers:
                item.close()
    return {
        "publish_calls_per_s": count / called_s, "sent_per_s": count / sent_s,
        "delivered_per_s": outcome["received"] / (outcome["last_s"] - began),
        "delivered_fraction": outcome["received"] / count, **percentiles(outcome["latencies_s"], 1e6),
    }  # fmt: skip


def feed(repeats: int) -> dict[str, Any]:
    throughput, latency = {}, {}
    for impl in ("ours", "raw"):
        runs = [_feed_once(impl, FEED_MESSAGES, 0.0) for _ in range(repeats)]
        keys = ("publish_calls_per_s", "sent_per_s", "delivered_per_s", "delivered_fraction")
        throughput[impl] = summaries(runs, keys)
        runs = [_feed_once(impl, LATENCY_MESSAGES, LATENCY_PACE_S) for _ in range(repeats)]
        latency[impl] = summaries(runs, ("p50", "p99"))
    throughput["ratio_delivered"] = (
        throughput["ours"]["delivered_per_s"]["median"] / throughput["raw"]["delivered_per_s"]["median"]
    )
    latency["ratio_p50"] = latency["ours"]["p50"]["median"] / latency["raw"]["p50"]["median"]
    return {"throughput": throughput, "latency_us": latency}


def publish_call_cost() -> dict[str, float]:
    """Microseconds per ``publish()`` call with a one-step ``metrics.steps`` body, each call timed alone."""
    with scratch_dir("ctf-") as work:
        publisher, samples = _publisher(f"ipc://{work}/m", PUBLISH_CALLS), []
        try:
            for step in range(PUBLISH_CALLS):
                began = time.perf_counter()
                publisher.publish("metrics.steps", {**STEP_BODY, "step": step})
                samples.append(time.perf_counter() - began)
                if step % 100 == 99:
                    time.sleep(0.001)  # let the publisher thread drain, as between real steps
        finally:
            publisher.close()
    return percentiles(samples, 1e6)


def publisher_rate(idle_subscriber: bool) -> float:
    """Messages/s the publisher thread sends, ``IDLE_MESSAGES`` flat out."""
    with scratch_dir("ctf-") as work, zmq.Context() as context, context.socket(zmq.SUB) as idle:
        publisher, idle.linger = _publisher(f"ipc://{work}/m", IDLE_MESSAGES), 0
        try:
            if idle_subscriber:
                idle.subscribe(b"")
                idle.connect(f"ipc://{work}/m")
            time.sleep(CONNECT_SETTLE_S)
            first, began = publisher.last_seq, time.perf_counter()
            for step in range(IDLE_MESSAGES):
                publisher.publish("metrics.steps", {**STEP_BODY, "step": step})
            _wait_sent(publisher, first + IDLE_MESSAGES)
            return IDLE_MESSAGES / (time.perf_counter() - began)
        finally:
            publisher.close()


def run(repeats: int = 3) -> dict[str, Any]:
    """The ``feed`` section: every figure, as a JSON-able dict."""
    calls = [publish_call_cost() for _ in range(repeats)]
    without, with_idle = zip(
        *[(publisher_rate(False), publisher_rate(True)) for _ in range(repeats)], strict=True
    )
    return {
        "repeats": repeats, "publish_call_us": summaries(calls, ("p50", "p99", "max")),
        "publisher_sent_per_s": {"messages": IDLE_MESSAGES, "nobody_connected": summary(without),
                                 "idle_subscriber": summary(with_idle),
                                 "ratio": summary([w / n for w, n in zip(with_idle, without, strict=True)])},
        "feed": feed(repeats),
        "control_rtt_us": {t: {load: control_rtt(t, load, repeats) for load in RTT_REQUESTS}
                           for t in ("ipc", "tcp")},
    }  # fmt: skip
