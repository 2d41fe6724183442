"""Training throughput of the seed CNN, side by side in one run, and the cost of the control plane.

    .venv/bin/python bench/throughput.py [--data PATH] [--steps 200] [--warmup 20] [--repeats 3]

Variants (each repetition runs every variant once, in this order, so drift hits all alike; each
variant is its own process; the clock runs from the end of step ``warmup`` to the end of step
``warmup + steps``, batch 128):

- ``fit``: ``keras.Model.fit`` on the same model and pipeline (``throughput_roles.py``).
- ``trainer``: ``python -m trainer --autostart`` with two real ``Subscriber``s polling its feed
  (threads here, one ``ControlClient`` each, as a sidecar and a ``trainctl watch`` would).
- ``trainer_no_subscriber``: the same process, nobody connected.
- ``trainer_idle_sub``: the same process with a SUB socket connected and subscribed, never read.
- ``inproc_bare``: ``trainer.Trainer`` in-process, no Controller, no sockets, no publishing.
- ``inproc_control``: the same plus Controller, ControlServer and Publisher, with two real
  ``Subscriber``s reading the feed from another process; it also counts the CPU time of the
  control plane's threads (``thread_cpu.py``).
- ``seed_tf1``: the seed's TF1 ``feed_dict`` loop (``seed_tf1.py``).

The trainer processes are timed by their own ``report`` records (metrics.jsonl); ``fit`` by a Keras
callback at batch ends; ``seed_tf1`` times itself. Ratios are paired: variant / fit within the same
repetition, then the median (min..max) over repetitions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    BATCH_SIZE,
    DEFAULT_DATA,
    FEED_READERS,
    FeedReader,
    TrainerProcess,
    jsonl_times,
    percentiles,
    run_json_child,
    scratch_dir,
    summary,
)

logger = logging.getLogger("bench.throughput")

VARIANTS = (
    "fit",
    "fit_fused",
    "trainer",
    "trainer_no_subscriber",
    "trainer_idle_sub",
    "inproc_bare",
    "inproc_control",
    "seed_tf1",
)


def _trainer_process(data: str, warmup: int, steps: int, readers: int, idle_sub: bool) -> dict[str, Any]:
    import zmq

    last = warmup + steps
    with scratch_dir("ctb-") as work:
        trainer = TrainerProcess(work, data, ["--autostart", "--exit-when-done", "--max-steps", str(last)])
        feeds: list[FeedReader] = []
        context = zmq.Context()
        idle = context.socket(zmq.SUB)
        idle.linger = 0
        try:
            trainer.start()
            feeds = [FeedReader(trainer.connection()).start() for _ in range(readers)]
            if idle_sub:
                idle.subscribe(b"")
                idle.connect(trainer.metrics)
            code = trainer.wait()
        finally:
            for feed in feeds:
                feed.close()
            idle.close()
            context.term()
            trainer.close()
        if code != 0:
            raise RuntimeError(f"trainer exited {code}")
        times = jsonl_times(trainer.run_dir)
    seconds = times[last] - times[warmup]
    result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds}
    if feeds:
        latencies = [value for feed in feeds for value in feed.latencies_s]
        result["feed"] = {
            "data_messages_per_reader": [feed.data_messages for feed in feeds],
            "gaps": sum(feed.gaps for feed in feeds),
            "publish_to_receive_ms": percentiles(latencies, 1e3),
        }
    return result


def _child(role: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    args = ["bench/throughput_roles.py", role, "--data", data, "--warmup", str(warmup)]
    return run_json_child([*args, "--steps", str(steps)])


def _seed(data: str, warmup: int, steps: int) -> dict[str, Any]:
    args = ["bench/seed_tf1.py", "--data", data, "--warmup-steps", str(warmup), "--steps", str(steps)]
    return run_json_child([*args, "--batch-size", str(BATCH_SIZE)])


def measure(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    """One run of one variant."""
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "fit": lambda: _child("fit", data, warmup, steps),
        "fit_fused": lambda: _child("fit-fused", data, warmup, steps),
        "trainer": lambda: _trainer_process(data, warmup, steps, FEED_READERS, False),
        "trainer_no_subscriber": lambda: _trainer_process(data, warmup, steps, 0, False),
        "trainer_idle_sub": lambda: _trainer_process(data, warmup, steps, 0, True),
        "inproc_bare": lambda: _child("inproc-bare", data, warmup, steps),
        "inproc_control": lambda: _child("inproc-control", data, warmup, steps),
        "seed_tf1": lambda: _seed(data, warmup, steps),
    }
    return runners[variant]()


def _paired(runs: dict[str, list[dict[str, Any]]], top: str, bottom: str) -> dict[str, Any] | None:
    pairs = [
        a["samples_per_s"] / b["samples_per_s"]
        for a, b in zip(runs.get(top, []), runs.get(bottom, []), strict=False)
    ]
    return summary(pairs) if pairs else None


def run(
    data: str = str(DEFAULT_DATA),
    steps: int = 200,
    warmup: int = 20,
    repeats: int = 3,
    variants: Sequence[str] = VARIANTS,
) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    if warmup % 10 or steps % 10:
        raise ValueError("warmup and steps must be multiples of 10 (the trainer reports every 10 steps)")
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for repeat in range(repeats):
        for variant in variants:
            result = measure(variant, data, warmup, steps)
            logger.info("repeat %d %-22s %8.1f samples/s", repeat + 1, variant, result["samples_per_s"])
            runs[variant].append(result)
    rates = {v: summary([r["samples_per_s"] for r in rs]) for v, rs in runs.items() if rs}
    ratios = {
        "vs_fit": {v: _paired(runs, v, "fit") for v in variants if v != "fit"},
        "trainer_vs_inproc_bare": _paired(runs, "trainer", "inproc_bare"),
        "trainer_no_subscriber_vs_inproc_bare": _paired(runs, "trainer_no_subscriber", "inproc_bare"),
        "inproc_control_vs_inproc_bare": _paired(runs, "inproc_control", "inproc_bare"),
        "trainer_vs_trainer_no_subscriber": _paired(runs, "trainer", "trainer_no_subscriber"),
        "idle_sub_vs_trainer_no_subscriber": _paired(runs, "trainer_idle_sub", "trainer_no_subscriber"),
    }
    return {
        "batch_size": BATCH_SIZE,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "order": list(variants),
        "samples_per_s": rates,
        "ratios": ratios,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.data, args.steps, args.warmup, args.repeats, args.variants)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
