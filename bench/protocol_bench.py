"""How fast the protocol is on loopback, against raw pyzmq + msgpack doing the same exchange.

    python -m bench protocol [--repeats 3]

Figures (each a median over `--repeats` runs, with the min..max spread):
- control round trip of `status` (a contract-sized reply), ipc and tcp, p50/p99: ours is
  `ControlClient` -> `ControlServer`; the baseline is a bare REQ -> REP thread exchanging msgpack maps.
  Measured with the serving process idle, and with its main thread busy: a pure-Python loop (holds
  the GIL, so the server thread waits for the interpreter's switch interval, 5 ms by default) and a
  numpy matmul loop (BLAS releases the GIL, much like TensorFlow ops do).
- metrics feed: `publish()` calls/s in the caller, messages/s the publisher thread sends, and
  messages/s one `Subscriber` in another process delivers (decoded, ordered, backfilled); baseline: a
  bare PUB send loop to a bare SUB.
- publish-to-receive latency p50/p99 (a monotonic timestamp in the body; paced, so no queueing).

Servers and subscribers run as child processes (`bench.harness.Child`), so client and server never
share a GIL.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import zmq

from bench.harness import READY, Child, percentiles, scratch_dir, summaries
from protocol import ControlClient, ControlServer, Data, Publisher, Subscriber, new_session_id

RTT_REQUESTS_IDLE = 2000
RTT_REQUESTS_LOADED = 300
RTT_WARMUP = 50
FEED_MESSAGES = 50_000
LATENCY_MESSAGES = 2000
LATENCY_PACE_S = 0.001
CHILD_TIMEOUT_S = 60.0
LOADS = ("idle", "python_load", "numpy_load")
STATUS_BODY: dict[str, Any] = {
    "state": "running", "step": 12345, "epoch": 3, "total_steps": 100000, "steps_per_s": 5.1,
    "eta_s": 17000.0, "metrics": {"loss": 0.0312, "accuracy": 0.991}, "run_id": "run-20240611-1",
    "params": {"learning_rate": 0.001, "batch_size": 128, "display_step": 100, "max_steps": 100000},
    "session": "0123456789abcdef", "last_seq": 123456, "started_at": 1718000000.0, "error": None,
    "last_checkpoint_step": 12000,
}  # fmt: skip


def serve_control(impl: str, endpoint: str, load: str) -> None:
    """Serve `status` from a thread while the main thread runs `load`, until killed."""
    if impl == "ours":
        ControlServer(endpoint, {"status": lambda args: STATUS_BODY}, session="bench").start()
    else:
        threading.Thread(target=_raw_rep, args=(endpoint,), daemon=True).start()
        time.sleep(0.05)  # the bind happens in the thread; a connect before it simply waits
    print(READY, flush=True)
    if load == "python_load":
        while True:
            total = 0
            for index in range(100_000):
                total += index * index
    elif load == "numpy_load":
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
    receive = _our_feed(metrics, control) if impl == "ours" else _raw_feed(metrics)
    ready, latencies_s, received, first_s = False, [], 0, 0.0
    for topic, body, now in receive:
        if topic == "warmup":
            if not ready:
                ready = True
                print(READY, flush=True)
            continue
        received += 1
        first_s = first_s or now
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


@contextmanager
def endpoints(transport: str) -> Iterator[Callable[[str], str]]:
    """Endpoint factory: ipc paths in a private temp dir, or free tcp ports on 127.0.0.1."""
    with scratch_dir("ctb-") as directory:

        def make(name: str) -> str:
            if transport == "ipc":
                return f"ipc://{directory}/{name}"
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                return f"tcp://127.0.0.1:{probe.getsockname()[1]}"

        yield make


def _our_rtt(endpoint: str, requests: int) -> list[float]:
    with ControlClient(endpoint, timeout_ms=10_000, retries=0) as client:
        for _ in range(RTT_WARMUP):
            client.status()
        samples = []
        for _ in range(requests):
            began = time.perf_counter()
            client.status()
            samples.append(time.perf_counter() - began)
    return samples


def _raw_rtt(endpoint: str, requests: int) -> list[float]:
    context = zmq.Context()
    req = context.socket(zmq.REQ)
    req.linger = 0
    req.connect(endpoint)
    samples = []
    for index in range(RTT_WARMUP + requests):
        began = time.perf_counter()
        req.send(
            msgpack.packb(
                {
                    "v": 1,
                    "type": "request",
                    "id": f"{index:032x}",
                    "op": "status",
                    "body": {},
                    "expires": time.time() + 60,  # required: a request without it is refused
                }
            )
        )
        msgpack.unpackb(req.recv(), raw=False)
        samples.append(time.perf_counter() - began)
    req.close()
    context.term()
    return samples[RTT_WARMUP:]


def control_rtt(transport: str, load: str, repeats: int) -> dict[str, Any]:
    """p50/p99 of `status` round trips, ours and raw, against a server process under `load`."""
    requests = RTT_REQUESTS_IDLE if load == "idle" else RTT_REQUESTS_LOADED
    figures: dict[str, Any] = {}
    for impl, measure in (("ours", _our_rtt), ("raw", _raw_rtt)):
        with endpoints(transport) as make:
            endpoint = make("control")
            child = Child("protocol_bench:serve_control", impl=impl, endpoint=endpoint, load=load)
            try:
                child.wait_ready()
                runs = [percentiles(measure(endpoint, requests), 1e6) for _ in range(repeats)]
            finally:
                child.stop()
        figures[impl] = summaries(runs, ("p50", "p99"))
    figures["ratio_p50"] = figures["ours"]["p50"]["median"] / figures["raw"]["p50"]["median"]
    figures["ratio_p99"] = figures["ours"]["p99"]["median"] / figures["raw"]["p99"]["median"]
    return figures


def _feed_once(impl: str, count: int, pace_s: float) -> dict[str, float]:
    """Publish `count` messages (paced or flat out) to a subscriber process; its figures."""
    with endpoints("ipc") as make:
        control, metrics = make("control"), make("metrics")
        session = new_session_id()
        publisher: Publisher | None = None
        server: ControlServer | None = None
        raw: zmq.Socket[bytes] | None = None
        if impl == "ours":
            # A queue that holds the whole burst: the figure is the sending thread's rate, and a message
            # dropped by a full queue would never be numbered, so the wait below would never end.
            publisher = Publisher(
                metrics, session=session, history_size=count + 1000, queue_size=count + 1000
            )
            server = ControlServer(
                control,
                {"status": lambda args: {"session": session, "last_seq": publisher.last_seq},
                 "history": publisher.history_handler},
                session=session,
            )  # fmt: skip
            server.start()
            publisher.start()
            send = publisher.publish  # noqa: F811
        else:
            pub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
            pub.sndhwm = 0
            pub.linger = 0
            pub.bind(metrics)
            raw = pub

            def send(topic: str, body: dict[str, Any]) -> None:
                pub.send_multipart([topic.encode(), msgpack.packb({"body": body})])

        child = Child("protocol_bench:receive_feed", impl=impl, metrics=metrics, control=control, count=count)
        try:
            child.wait_ready(nudge=lambda: send("warmup", {}))
            first_seq = publisher.last_seq if publisher else 0
            began = time.monotonic()
            for index in range(count):
                send("bench", {"i": index, "t": time.monotonic(), "step": index, "loss": 0.25})
                if pace_s:
                    time.sleep(pace_s)
            called_s = time.monotonic() - began
            if publisher is not None:
                while publisher.last_seq < first_seq + count:
                    time.sleep(0.001)
            sent_s = time.monotonic() - began
            outcome = child.result(CHILD_TIMEOUT_S)
        finally:
            child.stop()
            for item in (publisher, server, raw):
                if item is not None:
                    item.close()
    return {
        "publish_calls_per_s": count / called_s,
        "sent_per_s": count / sent_s,
        "delivered_per_s": outcome["received"] / (outcome["last_s"] - began),
        "delivered_fraction": outcome["received"] / count,
        **percentiles(outcome["latencies_s"], 1e6),
    }


def feed(repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"throughput": {}, "latency_us": {}}
    for impl in ("ours", "raw"):
        runs = [_feed_once(impl, FEED_MESSAGES, 0.0) for _ in range(repeats)]
        keys = ("publish_calls_per_s", "sent_per_s", "delivered_per_s", "delivered_fraction")
        figures["throughput"][impl] = summaries(runs, keys)
        runs = [_feed_once(impl, LATENCY_MESSAGES, LATENCY_PACE_S) for _ in range(repeats)]
        figures["latency_us"][impl] = summaries(runs, ("p50", "p99"))
    throughput, latency = figures["throughput"], figures["latency_us"]
    throughput["ratio_delivered"] = (
        throughput["ours"]["delivered_per_s"]["median"] / throughput["raw"]["delivered_per_s"]["median"]
    )
    latency["ratio_p50"] = latency["ours"]["p50"]["median"] / latency["raw"]["p50"]["median"]
    return figures


def run(repeats: int = 3) -> dict[str, Any]:
    """Every figure, as a JSON-able dict (the entry point for a bench runner)."""
    results: dict[str, Any] = {"repeats": repeats, "control_rtt_us": {}}
    for transport in ("ipc", "tcp"):
        results["control_rtt_us"][transport] = {load: control_rtt(transport, load, repeats) for load in LOADS}
    results["feed"] = feed(repeats)
    return results
