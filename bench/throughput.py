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
    CHILD_TIMEOUT_S,
    FEED_READERS,
    Runs,
    compare,
    feed_figures,
    feed_reader,
    interleaved,
    jsonl,
    paired,
    report_times,
    run_child,
    summary,
    trainer_process,
)
from fakes.processes import scratch_dir
from trainer.config import DEFAULT_CHECKPOINT_EVERY_S

VARIANTS = {  # name: what it is (its row in BENCHMARKS.md)
    "fit": "`keras.Model.fit` (same model and pipeline; `keras.optimizers.Adam`)",
    "fit_fused": "`keras.Model.fit` with the trainer's `FusedAdam` (same Adam math, one-pass kernel)",
    "trainer": "chattrain trainer process, control server + 2 subscribers polling",
    "trainer_no_subscriber": "chattrain trainer process, nobody connected",
    "trainer_idle_sub": "chattrain trainer process + 1 SUB that never reads",
    "inproc_bare": "`trainer.Trainer` in-process, no control plane, no sockets",
    "inproc_control": "`trainer.Trainer` in-process + Controller, ControlServer, Publisher, 2 subscribers",
    "seed_tf1": "the seed's TF1 `feed_dict` loop (`bench/seed_tf1.py`)",
    "trainer_ckpt_every_25": "chattrain trainer process, nobody connected, a checkpoint every 25 steps",
}
PROCESSES = {  # trainer process variants: (feed readers, an idle SUB, extra flags)
    "trainer": (FEED_READERS, False, ()),
    "trainer_no_subscriber": (0, False, ()),
    "trainer_idle_sub": (0, True, ()),
    "trainer_ckpt_every_25": (0, False, ("--checkpoint-every-s", "0", "--checkpoint-every-steps", "25")),
}
RATIOS = {  # name: (variant, against, what the ratio compares)
    "inproc_control_vs_inproc_bare": ("inproc_control", "inproc_bare",
                                      "in-process Trainer with the control plane, 2 subscribers / without"),
    "trainer_no_subscriber_vs_inproc_bare": ("trainer_no_subscriber", "inproc_bare",
                                             "trainer process, nobody connected / in-process, none"),
    "trainer_vs_inproc_bare": ("trainer", "inproc_bare",
                               "trainer process + 2 polling subscribers / in-process, no control plane"),
    "trainer_vs_trainer_no_subscriber": ("trainer", "trainer_no_subscriber",
                                         "trainer process + 2 polling subscribers / nobody connected"),
    "idle_sub_vs_trainer_no_subscriber": ("trainer_idle_sub", "trainer_no_subscriber",
                                          "trainer process + SUB that never reads / nobody connected"),
}  # fmt: skip


def process_variant(data: str, warmup: int, steps: int, variant: str) -> dict[str, Any]:
    import zmq

    readers, idle_sub, extra = PROCESSES[variant]
    last = warmup + steps
    with scratch_dir("ctb-") as work, zmq.Context() as context:
        argv = ["--autostart", "--exit-when-done", "--max-steps", str(last), *extra]
        with trainer_process(work, data, argv) as trainer, context.socket(zmq.SUB) as idle:
            idle.linger = 0
            trainer.start()
            feeds = [feed_reader(trainer.connection).start() for _ in range(readers)]
            if idle_sub:
                idle.subscribe(b"")
                idle.connect(trainer.metrics)
            try:
                if code := trainer.wait(CHILD_TIMEOUT_S):
                    raise RuntimeError(f"trainer exited {code}")
            finally:
                for feed in feeds:
                    feed.stop()
        times = report_times(trainer.run_dir)
        saves = [r["step"] for r in jsonl(trainer.run_dir, "checkpoint") if warmup < r["step"] < last]
    seconds = times[last] - times[warmup]
    # the final save is outside the window
    result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds,
                              "checkpoints_in_window": len(saves)}  # fmt: skip
    if feeds:
        result["feed"] = feed_figures(feeds)
    return result


def measure(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    """One run of one variant."""
    if variant in PROCESSES:
        return process_variant(data, warmup, steps, variant)
    sizes = {"data": data, "warmup": warmup, "steps": steps}
    if variant == "seed_tf1":
        return run_child("seed_tf1:run", **sizes, batch_size=BATCH_SIZE)
    if variant.startswith("fit"):
        return run_child("tf_roles:fit_cnn", **sizes, fused=variant == "fit_fused")
    return run_child("tf_roles:inproc_cnn", **sizes, control=variant == "inproc_control")


def checkpoint_cost(runs: Runs) -> dict[str, Any] | None:
    """Seconds one save costs the loop (the every-25 run against the default one, whose first save at
    60 s falls after this window; paired), and the share of a run's time that makes at the default cadence."""
    per_save, share = [], []
    for dense, base in zip(runs.get("trainer_ckpt_every_25", []), runs.get("trainer_no_subscriber", []),
                           strict=False):  # fmt: skip
        if saves := dense["checkpoints_in_window"] - base["checkpoints_in_window"]:
            per_save.append((dense["seconds"] - base["seconds"]) / saves)
            share.append(per_save[-1] / DEFAULT_CHECKPOINT_EVERY_S)
    return (
        {"seconds_per_save": summary(per_save), "default_cadence_share": summary(share)} if per_save else None
    )


def run(
    data: str, steps: int, warmup: int, repeats: int, variants: Sequence[str] = tuple(VARIANTS)
) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    if warmup % 10 or steps % 10:
        raise ValueError("warmup and steps must be multiples of 10 (the trainer reports every 10 steps)")
    runs = interleaved(variants, repeats, lambda v: measure(v, data, warmup, steps), "samples_per_s")
    figures = compare(runs, RATIOS, "samples_per_s")
    figures["ratios"]["vs_fit"] = {v: paired(runs, v, "fit", "samples_per_s") for v in variants if v != "fit"}
    return {"batch_size": BATCH_SIZE, "warmup_steps": warmup, "timed_steps": steps, "repeats": repeats,
            **figures, "checkpoint_cost": checkpoint_cost(runs)}  # fmt: skip
