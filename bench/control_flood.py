"""Training speed while clients flood the control plane, against no clients, interleaved.

    .venv/bin/python bench/control_flood.py [--data PATH] [--window-s 20] [--repeats 3]

One ``python -m trainer --autostart`` (seed CNN, batch 128) trains throughout. After the warm-up
(tracing done) the benchmark alternates windows of ``--window-s`` seconds, in ABBA order per
repetition: ``none`` (no control traffic) and ``flood`` (another process with ``STATUS_CLIENTS``
clients sending ``status`` back to back and one sending ``set_params`` back to back, the learning
rate alternating between two values). Speed is steps per second from the trainer's own
``metrics.step`` stamps inside the window. Prints each window, the flood's request counts and the
ratio flood / none (target >= 0.90).

``--flood CONTROL`` is the flood process itself: it floods until its stdin closes, then prints
its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    DEFAULT_DATA,
    REPO,
    FeedReader,
    TrainerProcess,
    python_env,
    scratch_dir,
    summary,
)

STATUS_CLIENTS = 20
WARMUP_STEP = 20
MAX_STEPS = 1_000_000
LEARNING_RATES = (0.001, 0.0011)
CLIENT_TIMEOUT_MS = 10_000


def _flood_client(control: str, op: str, counts: dict[str, int], stop: threading.Event) -> None:
    from protocol import ControlClient, RemoteError, TrainerUnavailable

    with ControlClient(control, timeout_ms=CLIENT_TIMEOUT_MS, retries=0) as client:
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


def flood(control: str) -> dict[str, Any]:
    """Flood until stdin closes; the counts of answered requests by op (and errors)."""
    counts: dict[str, int] = {"status": 0, "set_params": 0}
    stop = threading.Event()
    ops = ["status"] * STATUS_CLIENTS + ["set_params"]
    threads = [
        threading.Thread(target=_flood_client, args=(control, op, counts, stop), daemon=True) for op in ops
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    print("ready", flush=True)
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


def _rate(feed: FeedReader, began: float, ended: float) -> float:
    """Steps per second between the first and last steps stamped inside [began, ended]."""
    with feed._progress:
        inside = sorted((ts, step) for step, ts in feed.steps.items() if began <= ts <= ended)
    if len(inside) < 2:
        return 0.0
    (t0, s0), (t1, s1) = inside[0], inside[-1]
    return (s1 - s0) / (t1 - t0)


def _window(trainer: TrainerProcess, feed: FeedReader, variant: str, window_s: float) -> dict[str, Any]:
    child = None
    if variant == "flood":
        argv = [sys.executable, __file__, "--flood", trainer.control]
        child = subprocess.Popen(
            argv, cwd=REPO, env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdin is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the flood process did not start")
    began = time.time()
    time.sleep(window_s)  # a benchmark window, not a wait for an event
    ended = time.time()
    result: dict[str, Any] = {"variant": variant, "steps_per_s": _rate(feed, began, ended)}
    if child is not None:
        out, _ = child.communicate("", timeout=60)
        result["flood"] = json.loads(out.strip().splitlines()[-1])
    return result


def run(data: str = str(DEFAULT_DATA), window_s: float = 20.0, repeats: int = 3) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    with scratch_dir("flood-") as work:
        extra = ["--autostart", "--max-steps", str(MAX_STEPS), "--param", "ti=1000000000"]
        trainer = TrainerProcess(work, data, extra)
        feed: FeedReader | None = None
        try:
            trainer.start()
            feed = FeedReader(trainer.metrics, trainer.control).start()
            feed.wait_for_step(WARMUP_STEP)
            for repeat in range(repeats):
                order = ("none", "flood") if repeat % 2 == 0 else ("flood", "none")
                for variant in order:
                    windows.append(_window(trainer, feed, variant, window_s))
                    print(json.dumps(windows[-1]), file=sys.stderr, flush=True)
            metrics_bytes = (trainer.run_dir / "metrics.jsonl").stat().st_size
        finally:
            if feed is not None:
                feed.close()
            trainer.close()
    return _figures(windows, window_s, metrics_bytes)


def _figures(windows: list[dict[str, Any]], window_s: float, metrics_bytes: int) -> dict[str, Any]:
    none = [w["steps_per_s"] for w in windows if w["variant"] == "none"]
    flooded = [w["steps_per_s"] for w in windows if w["variant"] == "flood"]
    ratios = [f / n if n else 0.0 for n, f in zip(none, flooded, strict=True)]
    floods = [w["flood"] for w in windows if "flood" in w]
    return {
        "window_s": window_s,
        "status_clients": STATUS_CLIENTS,
        "set_params_clients": 1,
        "steps_per_s_none": summary(none),
        "steps_per_s_flood": summary(flooded),
        "ratio_flood_over_none_per_pair": ratios,
        "ratio_of_medians": statistics.median(flooded) / statistics.median(none),
        "flood_requests_per_s": summary([f["requests_per_s"] for f in floods]),
        "flood_counts": floods,
        "metrics_jsonl_bytes": metrics_bytes,
        "windows": windows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flood", metavar="CONTROL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        print(json.dumps(flood(args.flood)), flush=True)
        return
    print(json.dumps(run(args.data, args.window_s, args.repeats), indent=2))


if __name__ == "__main__":
    main()
