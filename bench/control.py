"""The control plane while the trainer trains the seed CNN flat out: ``control`` latency and ``flood``.

Both start ``python -m trainer --autostart`` and wait past ``WARMUP_STEP`` with a ``FeedReader``
following its feed; clients are other processes than the trainer, as the sidecar is. ``latency``:
each repetition its own trainer; ``status`` and ``set_params`` alternately, one every ``PACE_S``,
then ``stop`` (steps run after it, from the feed). ``flood``: one trainer throughout, windows in ABBA
order per repetition, without and with ``STATUS_CLIENTS`` + 1 clients sending back to back.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    READY,
    START_TIMEOUT_S,
    Child,
    event_body,
    feed_reader,
    percentiles,
    stamped_steps,
    step_rate,
    summaries,
    summary,
    trainer_process,
)
from fakes.processes import TrainerProcess, scratch_dir
from fakes.recorder import FeedRecorder

WARMUP_STEP = 20
PACE_S = 0.02
MAX_STEPS = "1000000"
STOP_TIMEOUT_S = 60.0
STATUS_CLIENTS = 20
LEARNING_RATES = (0.001, 0.0011)
CLIENT_TIMEOUT_MS = 10_000


@contextlib.contextmanager
def training(data: str, *extra: str) -> Iterator[tuple[TrainerProcess, FeedRecorder]]:
    """A trainer training past its warm-up, and a feed reader following it."""
    with (
        scratch_dir("ctl-") as work,
        trainer_process(work, data, ["--autostart", *extra]) as trainer,
        feed_reader(trainer.start().connection) as feed,
    ):
        warm = lambda events: max(stamped_steps(events), default=-1) >= WARMUP_STEP  # noqa: E731
        feed.wait_for(warm, START_TIMEOUT_S, f"step {WARMUP_STEP}")
        yield trainer, feed


def _latency_once(data: str, requests: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"status": [], "set_params": []}
    with training(data, "--exit-when-done", "--max-steps", MAX_STEPS) as (trainer, feed):
        with trainer.connection.control_client(timeout_ms=5000, retries=0) as client:
            for index in range(requests):
                for op, args in (("status", ()), ("set_params", ({"display_step": 10 + index % 2},))):
                    began = time.perf_counter()
                    getattr(client, op)(*args)
                    samples[op].append(time.perf_counter() - began)
                    time.sleep(PACE_S)  # the pace of the requests, not a wait for an event
            seen_step, sent = max(stamped_steps(feed.events())), time.time()
            reply = client.stop()
            replied = time.time()
        ended = lambda events: event_body(events, "stopped") or event_body(events, "finished")  # noqa: E731
        final = feed.wait_for(ended, STOP_TIMEOUT_S, "event.stopped or event.finished")
        final_step = int(final["step"])
        try:
            last_step_end = feed.wait_for(lambda events: stamped_steps(events).get(final_step), 5)
        except AssertionError:
            last_step_end = None  # its metrics.steps message did not arrive: no figure for this run
        trainer.wait(120)
    return {
        "status_ms": percentiles(samples["status"], 1e3),
        "set_params_ms": percentiles(samples["set_params"], 1e3),
        "stop": {
            "at_step": reply["at_step"], "final_step": final_step, "step_seen_at_request": seen_step,
            "steps_after_request": final_step - seen_step,
            "final_minus_at_step": final_step - int(reply["at_step"]),
            "reply_ms": (replied - sent) * 1e3, "final_event": final.get("event"),
            "to_last_step_end_ms": None if last_step_end is None else (last_step_end - sent) * 1e3,
        },
    }  # fmt: skip


def latency(data: str, requests: int, repeats: int) -> dict[str, Any]:
    runs = [_latency_once(data, requests) for _ in range(repeats)]
    figures: dict[str, Any] = {"requests_per_op_per_run": requests, "pace_s": PACE_S, "repeats": repeats}
    for op in ("status_ms", "set_params_ms"):
        figures[op] = summaries([r[op] for r in runs], ("p50", "p99", "max"))
    for key in ("steps_after_request", "final_minus_at_step", "reply_ms", "to_last_step_end_ms"):
        values = [r["stop"][key] for r in runs if r["stop"][key] is not None]
        figures[f"stop_{key}"] = summary(values) if values else None
    return {**figures, "runs": runs}


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
    counts, stop = {"status": 0, "set_params": 0}, threading.Event()
    threads = [threading.Thread(target=_flood_client, args=(connection, op, counts, stop), daemon=True)
               for op in ["status"] * STATUS_CLIENTS + ["set_params"]]  # fmt: skip
    began = time.monotonic()
    for thread in threads:
        thread.start()
    print(READY, flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_MS / 1000 + 5)
    elapsed = time.monotonic() - began
    answered = counts["status"] + counts["set_params"]
    return {**counts, "seconds": elapsed, "requests_per_s": answered / elapsed}


def _window(trainer: TrainerProcess, feed: FeedRecorder, variant: str, window_s: float) -> dict[str, Any]:
    child = None
    if variant == "flood":
        child = Child("control:flood_clients", control=trainer.control, metrics=trainer.metrics,
                      connection_file=str(trainer.connection_file))  # fmt: skip
        child.wait_ready()
    began = time.time()
    time.sleep(window_s)  # a benchmark window, not a wait for an event
    result: dict[str, Any] = {"variant": variant, "steps_per_s": step_rate(feed.events(), began, time.time())}
    return {**result, "flood": child.result(60)} if child else result


def flood(data: str, window_s: float, repeats: int) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    with training(data, "--max-steps", MAX_STEPS, "--param", "ti=1000000000") as (trainer, feed):
        for repeat in range(repeats):
            for variant in ("none", "flood") if repeat % 2 == 0 else ("flood", "none"):
                windows.append(_window(trainer, feed, variant, window_s))
    none, flooded = ([w["steps_per_s"] for w in windows if w["variant"] == v] for v in ("none", "flood"))
    return {
        "window_s": window_s, "status_clients": STATUS_CLIENTS, "set_params_clients": 1,
        "steps_per_s_none": summary(none), "steps_per_s_flood": summary(flooded),
        "ratio_flood_over_none": summary([f / n if n else 0.0 for n, f in zip(none, flooded, strict=True)]),
        "flood_requests_per_s": summary([w["flood"]["requests_per_s"] for w in windows if "flood" in w]),
        "windows": windows,
    }  # fmt: skip
