"""Training throughput of the seed CNN, variant by variant in one run, and the cost of the control plane.

Each repetition runs every variant once, in ``VARIANTS`` order, each its own process; the clock runs
from the end of step ``warmup`` to the end of step ``warmup + steps`` (batch 128). The trainer
processes are timed by their own ``report`` records, ``fit`` and the in-process trainer in
``bench.tf_roles``, ``seed_tf1`` by itself. Ratios are paired within a repetition (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness import (
    BATCH_SIZE,
    FEED_READERS,
    FeedReader,
    Runs,
    TrainerProcess,
    compare,
    interleaved,
    jsonl,
    paired,
    percentiles,
    report_times,
    run_child,
    scratch_dir,
    summary,
)

VARIANTS = (
    "fit", "fit_fused", "trainer", "trainer_no_subscriber", "trainer_idle_sub", "inproc_bare",
    "inproc_control", "seed_tf1", "trainer_ckpt_off", "trainer_ckpt_every_25",
)  # fmt: skip
CKPT_EVERY = ("--checkpoint-every-s", "0", "--checkpoint-every-steps")
DEFAULT_CKPT_EVERY_S, DEFAULT_CKPT_EVERY_STEPS = 60.0, 1000  # trainer.config's defaults
PROCESSES = {  # trainer process variants: (feed readers, an idle SUB, extra flags)
    "trainer": (FEED_READERS, False, ()),
    "trainer_no_subscriber": (0, False, ()),
    "trainer_idle_sub": (0, True, ()),
    "trainer_ckpt_off": (0, False, (*CKPT_EVERY, "0")),
    "trainer_ckpt_every_25": (0, False, (*CKPT_EVERY, "25")),
}
RATIOS = {  # name: (variant, against)
    "trainer_vs_inproc_bare": ("trainer", "inproc_bare"),
    "trainer_no_subscriber_vs_inproc_bare": ("trainer_no_subscriber", "inproc_bare"),
    "inproc_control_vs_inproc_bare": ("inproc_control", "inproc_bare"),
    "trainer_vs_trainer_no_subscriber": ("trainer", "trainer_no_subscriber"),
    "idle_sub_vs_trainer_no_subscriber": ("trainer_idle_sub", "trainer_no_subscriber"),
    "ckpt_default_vs_off": ("trainer_no_subscriber", "trainer_ckpt_off"),
    "ckpt_every_25_vs_off": ("trainer_ckpt_every_25", "trainer_ckpt_off"),
}


def trainer_process(data: str, warmup: int, steps: int, variant: str) -> dict[str, Any]:
    import zmq

    readers, idle_sub, extra = PROCESSES[variant]
    last = warmup + steps
    with scratch_dir("ctb-") as work, zmq.Context() as context:
        argv = ["--autostart", "--exit-when-done", "--max-steps", str(last), *extra]
        with TrainerProcess(work, data, argv) as trainer, context.socket(zmq.SUB) as idle:
            idle.linger = 0
            trainer.start()
            feeds = [FeedReader(trainer.connection()).start() for _ in range(readers)]
            if idle_sub:
                idle.subscribe(b"")
                idle.connect(trainer.metrics)
            try:
                if code := trainer.wait():
                    raise RuntimeError(f"trainer exited {code}")
            finally:
                for feed in feeds:
                    feed.close()
        times = report_times(trainer.run_dir)
        saves = [r["step"] for r in jsonl(trainer.run_dir, "checkpoint") if warmup < r["step"] < last]
    seconds = times[last] - times[warmup]
    # the final save is outside the window
    result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds,
                              "checkpoints_in_window": len(saves)}  # fmt: skip
    if feeds:
        result["feed"] = {
            "data_messages_per_reader": [feed.data_messages for feed in feeds],
            "gaps": sum(feed.gaps for feed in feeds),
            "publish_to_receive_ms": percentiles([v for feed in feeds for v in feed.latencies_s], 1e3),
        }
    return result


def measure(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    """One run of one variant."""
    if variant in PROCESSES:
        return trainer_process(data, warmup, steps, variant)
    sizes = {"data": data, "warmup": warmup, "steps": steps}
    if variant == "seed_tf1":
        return run_child("seed_tf1:run", **sizes, batch_size=BATCH_SIZE)
    if variant.startswith("fit"):
        return run_child("tf_roles:fit_cnn", **sizes, fused=variant == "fit_fused")
    return run_child("tf_roles:inproc_cnn", **sizes, control=variant == "inproc_control")


def checkpoint_cost(runs: Runs) -> dict[str, Any] | None:
    """Seconds one save costs the loop (every-25 run against none, paired) and what that makes per
    step at the default cadence: one save per min(1000 steps, 60 s)."""
    per_save, per_step = [], []
    for dense, off in zip(
        runs.get("trainer_ckpt_every_25", []), runs.get("trainer_ckpt_off", []), strict=False
    ):
        if dense["checkpoints_in_window"]:
            per_save.append((dense["seconds"] - off["seconds"]) / dense["checkpoints_in_window"])
            period_s = min(DEFAULT_CKPT_EVERY_STEPS * BATCH_SIZE / off["samples_per_s"], DEFAULT_CKPT_EVERY_S)
            per_step.append(per_save[-1] / period_s)
    if not per_save:
        return None
    return {"seconds_per_save": summary(per_save), "default_cadence_fraction_per_step": summary(per_step)}


def run(
    data: str, steps: int, warmup: int, repeats: int, variants: Sequence[str] = VARIANTS
) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    if warmup % 10 or steps % 10:
        raise ValueError("warmup and steps must be multiples of 10 (the trainer reports every 10 steps)")
    runs = interleaved(variants, repeats, lambda v: measure(v, data, warmup, steps), "samples_per_s")
    figures = compare(runs, RATIOS, "samples_per_s")
    figures["ratios"]["vs_fit"] = {v: paired(runs, v, "fit", "samples_per_s") for v in variants if v != "fit"}
    return {"batch_size": BATCH_SIZE, "warmup_steps": warmup, "timed_steps": steps, "repeats": repeats,
            **figures, "checkpoint_cost": checkpoint_cost(runs)}  # fmt: skip
