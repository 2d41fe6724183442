"""How fast the protocol is on loopback, against raw pyzmq + msgpack doing the same exchange.

    .venv/bin/python bench/protocol_bench.py [--repeats 3] [--json out.json]

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

Servers and subscribers run as child processes (this file with `--role`), so client and server never
share a GIL. A top-level runner can `import` this file and call `run(repeats) -> dict`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import zmq

from protocol import ControlClient, ControlServer, Data, Publisher, Subscriber, new_session_id

RTT_REQUESTS_IDLE = 2000
RTT_REQUESTS_LOADED = 300
RTT_WARMUP = 50
FEED_MESSAGES = 50_000
LATENCY_MESSAGES = 2000
LATENCY_PACE_S = 0.001
CHILD_TIMEOUT_S = 60.0
WARMUP_INTERVAL_S = 0.02
LOADS = ("idle", "python_load", "numpy_load")
STATUS_BODY: dict[str, Any] = {
    "state": "running", "step": 12345, "epoch": 3, "total_steps": 100000, "steps_per_s": 5.1,
    "eta_s": 17000.0, "metrics": {"loss": 0.0312, "accuracy": 0.991}, "run_id": "run-20240611-1",
    "params": {"learning_rate": 0.001, "batch_size": 128, "display_step": 100, "max_steps": 100000},
    "session": "0123456789abcdef", "last_seq": 123456, "started_at": 1718000000.0, "error": None,
    "last_checkpoint_step": 12000,
}  # fmt: skip


# ---------------------------------------------------------------- child processes (--role)


def _serve_control(impl: str, endpoint: str, load: str) -> None:
    """Serve `status` from a thread while the main thread runs `load`, until killed."""
    if impl == "ours":
        ControlServer(endpoint, {"status": lambda args: STATUS_BODY}, session="bench").start()
    else:
        threading.Thread(target=_raw_rep, args=(endpoint,), daemon=True).start()
        time.sleep(0.05)  # the bind happens in the thread; a connect before it simply waits
    print("READY", flush=True)
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


def _receive_feed(impl: str, metrics: str, control: str, count: int) -> None:
    """Print READY on the first warm-up message, then a JSON line once message `count - 1` arrived."""
    receive = _our_feed(metrics, control) if impl == "ours" else _raw_feed(metrics)
    ready, latencies_s, received, first_s = False, [], 0, 0.0
    for topic, body, now in receive:
        if topic == "warmup":
            if not ready:
                ready = True
                print("READY", flush=True)
            continue
        received += 1
        first_s = first_s or now
        latencies_s.append(now - body["t"])
        if body["i"] == count - 1:
            break
    print(json.dumps({"received": received, "first_s": first_s, "last_s": now, "latencies_s": latencies_s}))


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


# ---------------------------------------------------------------- parent side


class Child:
    """This file run with `--role ...` as a separate process; READY on stdout once it serves."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", *args],
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, nudge: Callable[[], None] | None = None) -> None:
        """Wait for READY, calling `nudge` (a warm-up send) between looks."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while time.monotonic() < deadline:
            if nudge is not None:
                nudge()
            readable, _, _ = select.select([self.process.stdout], [], [], WARMUP_INTERVAL_S)
            if readable:
                line = self.process.stdout.readline()
                if line.strip() == "READY":
                    return
                raise RuntimeError(f"child said {line!r} instead of READY")
        raise TimeoutError("child never became ready")

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], CHILD_TIMEOUT_S)
        if not readable:
            raise TimeoutError("child gave no result")
        value: dict[str, Any] = json.loads(self.process.stdout.readline())
        return value

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@contextmanager
def endpoints(transport: str) -> Iterator[Callable[[str], str]]:
    """Endpoint factory: ipc paths in a private temp dir, or free tcp ports on 127.0.0.1."""
    directory = tempfile.mkdtemp(prefix="ctb-", dir="/tmp")

    def make(name: str) -> str:
        if transport == "ipc":
            return f"ipc://{directory}/{name}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{probe.getsockname()[1]}"

    try:
        yield make
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def percentiles_us(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "p50": ordered[len(ordered) // 2] * 1e6,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


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
            child = Child("control", impl, endpoint, load)
            try:
                child.wait_ready()
                runs = [percentiles_us(measure(endpoint, requests)) for _ in range(repeats)]
            finally:
                child.stop()
        figures[impl] = {key: summary([run[key] for run in runs]) for key in ("p50", "p99")}
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
            publisher = Publisher(metrics, session=session, history_size=count + 1000)
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

        child = Child("feed", impl, metrics, control, str(count))
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
            outcome = child.result()
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
        **percentiles_us(outcome["latencies_s"]),
    }


def feed(repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"throughput": {}, "latency_us": {}}
    for impl in ("ours", "raw"):
        runs = [_feed_once(impl, FEED_MESSAGES, 0.0) for _ in range(repeats)]
        keys = ("publish_calls_per_s", "sent_per_s", "delivered_per_s", "delivered_fraction")
        figures["throughput"][impl] = {key: summary([run[key] for run in runs]) for key in keys}
        runs = [_feed_once(impl, LATENCY_MESSAGES, LATENCY_PACE_S) for _ in range(repeats)]
        figures["latency_us"][impl] = {key: summary([run[key] for run in runs]) for key in ("p50", "p99")}
    throughput, latency = figures["throughput"], figures["latency_us"]
    throughput["ratio_delivered"] = (
        throughput["ours"]["delivered_per_s"]["median"] / throughput["raw"]["delivered_per_s"]["median"]
    )
    latency["ratio_p50"] = latency["ours"]["p50"]["median"] / latency["raw"]["p50"]["median"]
    return figures


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def run(repeats: int = 3) -> dict[str, Any]:
    """Every figure, as a JSON-able dict (the entry point for a bench runner)."""
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "msgpack": ".".join(map(str, msgpack.version)),
            "switch_interval_s": sys.getswitchinterval(),
        },
        "repeats": repeats,
        "control_rtt_us": {},
    }
    for transport in ("ipc", "tcp"):
        results["control_rtt_us"][transport] = {load: control_rtt(transport, load, repeats) for load in LOADS}
    results["feed"] = feed(repeats)
    return results


def report(results: dict[str, Any]) -> str:
    def fig(value: dict[str, Any], fmt: str = "{:,.0f}") -> str:
        return f"{fmt.format(value['median'])} ({fmt.format(value['min'])}..{fmt.format(value['max'])})"

    lines = [f"protocol bench, {results['repeats']} repeats; median (min..max)", "", "control status RTT, us"]
    for transport, loads in results["control_rtt_us"].items():
        for load, figures in loads.items():
            ours, raw = figures["ours"], figures["raw"]
            lines.append(
                f"  {transport} {load:<11} ours p50 {fig(ours['p50'])}  p99 {fig(ours['p99'])} | "
                f"raw p50 {fig(raw['p50'])}  p99 {fig(raw['p99'])} | ours/raw p50 {figures['ratio_p50']:.2f}"
            )
    throughput, latency = results["feed"]["throughput"], results["feed"]["latency_us"]
    ours, raw = throughput["ours"], throughput["raw"]
    lines += [
        "",
        f"metrics feed, {FEED_MESSAGES:,} messages flat out (ipc), msgs/s",
        f"  ours publish() calls/s {fig(ours['publish_calls_per_s'])}, sent/s {fig(ours['sent_per_s'])}, "
        f"delivered/s {fig(ours['delivered_per_s'])}, "
        f"delivered fraction {fig(ours['delivered_fraction'], '{:.3f}')}",
        f"  raw  send calls/s {fig(raw['sent_per_s'])}, delivered/s {fig(raw['delivered_per_s'])}, "
        f"delivered fraction {fig(raw['delivered_fraction'], '{:.3f}')}",
        f"  ours/raw delivered {throughput['ratio_delivered']:.2f}",
        "",
        f"publish-to-receive latency, {LATENCY_MESSAGES} messages at {1 / LATENCY_PACE_S:.0f}/s (ipc), us",
        f"  ours p50 {fig(latency['ours']['p50'])}  p99 {fig(latency['ours']['p99'])}",
        f"  raw  p50 {fig(latency['raw']['p50'])}  p99 {fig(latency['raw']['p99'])}",
        f"  ours/raw p50 {latency['ratio_p50']:.2f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "control":
            _serve_control(*rest)
        else:
            _receive_feed(rest[0], rest[1], rest[2], int(rest[3]))
        return
    results = run(args.repeats)
    print(report(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
