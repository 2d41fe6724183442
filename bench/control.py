"""The control plane while the trainer trains flat out (seed CNN, batch 128): latency and floods.

    python -m bench control [--control-requests 300] [--repeats 3]
    python -m bench flood [--flood-window-s 20] [--repeats 3]

Both start ``python -m trainer --autostart`` and wait until it is past ``WARMUP_STEP`` (tracing
done), with a ``FeedReader`` (a real ``Subscriber`` thread) following its feed; clients are other
processes than the trainer, as the sidecar is.

- ``control`` (``latency``): each repetition its own trainer. ``status`` and ``set_params``
  (display_step 10 <-> 11) alternately, one every ``PACE_S``, each round trip timed; then ``stop``:
  the final ``event.stopped`` step against the last ``metrics.step`` seen when the stop was sent
  and against the reply's ``at_step``, and the time from sending the stop to the end of the last
  step executed (that step's ``metrics.step`` stamp, the trainer's clock; same machine).
- ``flood``: one trainer throughout, alternating windows of ``window_s`` seconds in ABBA order per
  repetition: ``none`` (no control traffic) and ``flood`` (a child process with ``STATUS_CLIENTS``
  clients sending ``status`` back to back and one sending ``set_params`` back to back, the learning
  rate alternating). Speed is steps/s from the trainer's ``metrics.step`` stamps inside the window;
  the paired ratio flood / none (target >= 0.90).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import Child, percentiles, scratch_dir, summaries, summary
from bench.processes import FeedReader, TrainerProcess

WARMUP_STEP = 20
PACE_S = 0.02
MAX_STEPS = 1_000_000
STOP_TIMEOUT_S = 60.0
STATUS_CLIENTS = 20
LEARNING_RATES = (0.001, 0.0011)
CLIENT_TIMEOUT_MS = 10_000


@contextlib.contextmanager
def training(data: str, *extra: str) -> Iterator[tuple[TrainerProcess, FeedReader]]:
    """A trainer training past its warm-up, and a feed reader following it."""
    with scratch_dir("ctl-") as work, TrainerProcess(work, data, ["--autostart", *extra]) as trainer:
        trainer.start()
        with FeedReader(trainer.connection()) as feed:
            feed.wait_for_step(WARMUP_STEP)
            yield trainer, feed


def _round_trips(connection: Any, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"status": [], "set_params": []}
    with connection.control_client(timeout_ms=5000, retries=0) as client:
        for index in range(requests):
            for op, call in (("status", client.status), ("set_params", client.set_params)):
                args = ({"display_step": 10 + index % 2},) if op == "set_params" else ()
                began = time.perf_counter()
                call(*args)
                samples[op].append(time.perf_counter() - began)
                time.sleep(PACE_S)  # the pace of the requests, not a wait for an event
    return samples


def _stop(connection: Any, feed: FeedReader) -> dict[str, Any]:
    with connection.control_client(timeout_ms=5000, retries=0) as client:
        seen_step = feed.latest_step()
        sent = time.time()
        reply = client.stop()
        replied = time.time()
    final = feed.wait_for_event(("stopped", "finished"), STOP_TIMEOUT_S)
    final_step = int(final["step"])
    last_step_end = feed.step_time(final_step, timeout_s=5)
    return {
        "at_step": reply["at_step"],
        "final_step": final_step,
        "step_seen_at_request": seen_step,
        "steps_after_request": final_step - seen_step,
        "final_minus_at_step": final_step - int(reply["at_step"]),
        "reply_ms": (replied - sent) * 1e3,
        "to_last_step_end_ms": None if last_step_end is None else (last_step_end - sent) * 1e3,
        "final_event": final.get("event"),
    }


def _latency_once(data: str, requests: int) -> dict[str, Any]:
    with training(data, "--exit-when-done", "--max-steps", str(MAX_STEPS)) as (trainer, feed):
        step_before = feed.latest_step()
        samples = _round_trips(trainer.connection(), requests)
        steps_during = feed.latest_step() - step_before
        stop = _stop(trainer.connection(), feed)
        trainer.wait(120)
    return {
        "status_ms": percentiles(samples["status"], 1e3),
        "set_params_ms": percentiles(samples["set_params"], 1e3),
        "steps_trained_while_measuring": steps_during,
        "stop": stop,
    }


def latency(data: str, requests: int, repeats: int) -> dict[str, Any]:
    runs = [_latency_once(data, requests) for _ in range(repeats)]
    figures: dict[str, Any] = {"requests_per_op_per_run": requests, "pace_s": PACE_S, "repeats": repeats}
    for op in ("status_ms", "set_params_ms"):
        figures[op] = summaries([r[op] for r in runs], ("p50", "p99", "max"))
    stops = [r["stop"] for r in runs]
    for key in ("steps_after_request", "final_minus_at_step", "reply_ms", "to_last_step_end_ms"):
        values = [s[key] for s in stops if s[key] is not None]
        figures[f"stop_{key}"] = summary(values) if values else None
    figures["runs"] = runs
    return figures


def _flood_client(connection: Any, op: str, counts: dict[str, int], stop: threading.Event) -> None:
    from protocol import RemoteError, TrainerUnavailable

    with connection.control_client(timeout_ms=CLIENT_TIMEOUT_MS, retries=0) as client:
        index = 0
        while not stop.is_set():
            try:
                if op == "status":
                    client.status()
                else:
                    client.set_params({"learning_rate": LEARNING_RATES[index % 2]})
                counts[op] += 1
            except RemoteError as exc:
                counts[f"error_{exc.code}"] = counts.get(f"error_{exc.code}", 0) + 1
            except TrainerUnavailable:
                counts["timeouts"] = counts.get("timeouts", 0) + 1
            index += 1


def flood_clients(control: str, metrics: str, connection_file: str) -> dict[str, Any]:
    """The flood process: floods until stdin closes; answered requests by op (and errors)."""
    from protocol import resolve_connection

    connection = resolve_connection(control=control, metrics=metrics, connection_file=Path(connection_file))
    counts: dict[str, int] = {"status": 0, "set_params": 0}
    stop = threading.Event()
    ops = ["status"] * STATUS_CLIENTS + ["set_params"]
    threads = [
        threading.Thread(target=_flood_client, args=(connection, op, counts, stop), daemon=True) for op in ops
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    print("READY", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_MS / 1000 + 5)
    elapsed = time.monotonic() - began
    return {
        **counts,
        "seconds": elapsed,
        "requests_per_s": (counts["status"] + counts["set_params"]) / elapsed,
    }


def _window(trainer: TrainerProcess, feed: FeedReader, variant: str, window_s: float) -> dict[str, Any]:
    child = None
    if variant == "flood":
        child = Child("control:flood_clients", control=trainer.control, metrics=trainer.metrics,
                      connection_file=str(trainer.connection_file))  # fmt: skip
        child.wait_ready()
    began = time.time()
    time.sleep(window_s)  # a benchmark window, not a wait for an event
    result: dict[str, Any] = {"variant": variant, "steps_per_s": feed.rate(began, time.time())}
    if child is not None:
        result["flood"] = child.result(60)
    return result


def flood(data: str, window_s: float, repeats: int) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    with training(data, "--max-steps", str(MAX_STEPS), "--param", "ti=1000000000") as (trainer, feed):
        for repeat in range(repeats):
            for variant in ("none", "flood") if repeat % 2 == 0 else ("flood", "none"):
                windows.append(_window(trainer, feed, variant, window_s))
        metrics_bytes = (trainer.run_dir / "metrics.jsonl").stat().st_size
    none = [w["steps_per_s"] for w in windows if w["variant"] == "none"]
    flooded = [w["steps_per_s"] for w in windows if w["variant"] == "flood"]
    floods = [w["flood"] for w in windows if "flood" in w]
    return {
        "window_s": window_s,
        "status_clients": STATUS_CLIENTS,
        "set_params_clients": 1,
        "steps_per_s_none": summary(none),
        "steps_per_s_flood": summary(flooded),
        "ratio_flood_over_none": summary([f / n if n else 0.0 for n, f in zip(none, flooded, strict=True)]),
        "ratio_of_medians": statistics.median(flooded) / statistics.median(none),
        "flood_requests_per_s": summary([f["requests_per_s"] for f in floods]),
        "flood_counts": floods,
        "metrics_jsonl_bytes": metrics_bytes,
        "windows": windows,
    }
