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
- ``trainer_ckpt_off``: ``trainer_no_subscriber`` with periodic checkpoints off; against it,
  ``trainer_no_subscriber`` (the default cadence: 60 s or 1000 steps) is the cost of checkpointing
  per step, and ``trainer_ckpt_every_25`` (a save every 25 steps) the cost of one save, from which
  ``checkpoint_cost`` projects the default cadence's cost per step.

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
    jsonl_steps,
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
    "trainer_ckpt_off",
    "trainer_ckpt_every_25",
)
CKPT_OFF = ("--checkpoint-every-s", "0", "--checkpoint-every-steps", "0")
CKPT_EVERY_25 = ("--checkpoint-every-s", "0", "--checkpoint-every-steps", "25")
DEFAULT_CKPT_EVERY_S, DEFAULT_CKPT_EVERY_STEPS = 60.0, 1000  # trainer.config's defaults


def _trainer_process(
    data: str, warmup: int, steps: int, readers: int, idle_sub: bool, extra: Sequence[str] = ()
) -> dict[str, Any]:
    import zmq

    last = warmup + steps
    with scratch_dir("ctb-") as work:
        argv = ["--autostart", "--exit-when-done", "--max-steps", str(last), *extra]
        trainer = TrainerProcess(work, data, argv)
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
        saves = [
            s for s in jsonl_steps(trainer.run_dir, "checkpoint") if warmup < s < last
        ]  # not the final save
    seconds = times[last] - times[warmup]
    result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds}
    result["checkpoints_in_window"] = len(saves)
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
        "trainer_ckpt_off": lambda: _trainer_process(data, warmup, steps, 0, False, CKPT_OFF),
        "trainer_ckpt_every_25": lambda: _trainer_process(data, warmup, steps, 0, False, CKPT_EVERY_25),
    }
    return runners[variant]()


def _paired(runs: dict[str, list[dict[str, Any]]], top: str, bottom: str) -> dict[str, Any] | None:
    pairs = [
        a["samples_per_s"] / b["samples_per_s"]
        for a, b in zip(runs.get(top, []), runs.get(bottom, []), strict=False)
    ]
    return summary(pairs) if pairs else None


def checkpoint_cost(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Seconds one save costs the loop (every-25 run against none, paired) and what that makes
    per step at the default cadence: one save per min(1000 steps, 60 s)."""
    per_save, per_step = [], []
    for dense, off in zip(
        runs.get("trainer_ckpt_every_25", []), runs.get("trainer_ckpt_off", []), strict=False
    ):
        if not dense["checkpoints_in_window"]:
            continue
        cost_s = (dense["seconds"] - off["seconds"]) / dense["checkpoints_in_window"]
        step_s = BATCH_SIZE / off["samples_per_s"]
        period_s = min(DEFAULT_CKPT_EVERY_STEPS * step_s, DEFAULT_CKPT_EVERY_S)
        per_save.append(cost_s)
        per_step.append(cost_s / period_s)
    if not per_save:
        return None
    return {"seconds_per_save": summary(per_save), "default_cadence_fraction_per_step": summary(per_step)}


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
        "ckpt_default_vs_off": _paired(runs, "trainer_no_subscriber", "trainer_ckpt_off"),
        "ckpt_every_25_vs_off": _paired(runs, "trainer_ckpt_every_25", "trainer_ckpt_off"),
    }
    return {
        "batch_size": BATCH_SIZE,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "order": list(variants),
        "samples_per_s": rates,
        "ratios": ratios,
        "checkpoint_cost": checkpoint_cost(runs),
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
    for key in ("ckpt_default_vs_off", "ckpt_every_25_vs_off"):
        if result["ratios"][key]:
            ratio = result["ratios"][key]
            logger.info("%s: %.4f (%.4f..%.4f)", key, ratio["median"], ratio["min"], ratio["max"])
    if result["checkpoint_cost"]:
        cost = result["checkpoint_cost"]
        logger.info(
            "one save costs the loop %.3f s (median); at the default cadence %.3f%% per step",
            cost["seconds_per_save"]["median"],
            100 * cost["default_cadence_fraction_per_step"]["median"],
        )


if __name__ == "__main__":
    main()
