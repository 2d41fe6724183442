"""Control latency while the trainer trains flat out: request-to-reply of ``status`` and
``set_params``, and how soon a ``stop`` takes effect.

    .venv/bin/python bench/control_latency.py [--data PATH] [--requests 300] [--repeats 3]

Each repetition starts ``python -m trainer --autostart`` (seed CNN, batch 128), waits until it is
past ``WARMUP_STEP`` (tracing done), then from this process (a separate client process, as the
sidecar is) sends ``status`` and ``set_params`` (display_step 10 <-> 11) alternately, one every
``PACE_S``, timing each round trip; a ``Subscriber`` thread follows the feed meanwhile. Then it
sends ``stop``: the final ``event.stopped`` step against the last ``metrics.step`` seen when the
stop was sent and against the reply's ``at_step``, and the time
from sending the stop to the end of the last step executed (that step's ``metrics.step`` stamp,
the trainer's clock; same machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    DEFAULT_DATA,
    FeedReader,
    TrainerProcess,
    percentiles,
    scratch_dir,
    summary,
)

WARMUP_STEP = 20
PACE_S = 0.02
MAX_STEPS = 1_000_000
STOP_TIMEOUT_S = 60.0


def _round_trips(connection: Any, requests: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"status": [], "set_params": []}
    with connection.control_client(timeout_ms=5000, retries=0) as client:
        for index in range(requests):
            began = time.perf_counter()
            client.status()
            samples["status"].append(time.perf_counter() - began)
            time.sleep(PACE_S)
            began = time.perf_counter()
            client.set_params({"display_step": 10 + index % 2})
            samples["set_params"].append(time.perf_counter() - began)
            time.sleep(PACE_S)
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


def run_once(data: str, requests: int) -> dict[str, Any]:
    with scratch_dir("ctl-") as work:
        trainer = TrainerProcess(
            work, data, ["--autostart", "--exit-when-done", "--max-steps", str(MAX_STEPS)]
        )
        feed: FeedReader | None = None
        try:
            trainer.start()
            feed = FeedReader(trainer.connection()).start()
            feed.wait_for_step(WARMUP_STEP)
            step_before = feed.latest_step()
            samples = _round_trips(trainer.connection(), requests)
            steps_during = feed.latest_step() - step_before
            stop = _stop(trainer.connection(), feed)
            trainer.wait(120)
        finally:
            if feed is not None:
                feed.close()
            trainer.close()
    return {
        "status_ms": percentiles(samples["status"], 1e3),
        "set_params_ms": percentiles(samples["set_params"], 1e3),
        "steps_trained_while_measuring": steps_during,
        "stop": stop,
    }


def run(data: str = str(DEFAULT_DATA), requests: int = 300, repeats: int = 3) -> dict[str, Any]:
    runs = [run_once(data, requests) for _ in range(repeats)]
    figures: dict[str, Any] = {"requests_per_op_per_run": requests, "pace_s": PACE_S, "repeats": repeats}
    for op in ("status_ms", "set_params_ms"):
        figures[op] = {q: summary([r[op][q] for r in runs]) for q in ("p50", "p99", "max")}
    stops = [r["stop"] for r in runs]
    figures["stop_steps_after_request"] = summary([s["steps_after_request"] for s in stops])
    figures["stop_final_minus_at_step"] = summary([s["final_minus_at_step"] for s in stops])
    ends = [s["to_last_step_end_ms"] for s in stops if s["to_last_step_end_ms"] is not None]
    figures["stop_to_last_step_end_ms"] = summary(ends) if ends else None
    figures["stop_reply_ms"] = summary([s["reply_ms"] for s in stops])
    figures["runs"] = runs
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.data, args.requests, args.repeats), indent=2))


if __name__ == "__main__":
    main()
