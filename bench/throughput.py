"""Training throughput of the seed CNN, side by side in one run, and the cost of the control plane.

    python -m bench throughput [--timed-steps 200] [--warmup-steps 20] [--repeats 3] [--variants ...]

Variants (each repetition runs every variant once, in this order, so drift hits all alike; each
variant is its own process; the clock runs from the end of step ``warmup`` to the end of step
``warmup + steps``, batch 128):

- ``fit`` / ``fit_fused``: ``keras.Model.fit`` on the same model and pipeline (``bench.tf_roles``),
  with Keras' Adam / with the trainer's ``FusedAdam``.
- ``trainer``: ``python -m trainer --autostart`` with two real ``Subscriber``s polling its feed
  (threads here, one ``ControlClient`` each, as a sidecar and a ``trainctl watch`` would).
- ``trainer_no_subscriber``: the same process, nobody connected.
- ``trainer_idle_sub``: the same process with a SUB socket connected and subscribed, never read.
- ``inproc_bare`` / ``inproc_control``: ``trainer.Trainer`` in-process without / with the control
  plane (and two subscribers in another process), counting the control plane's CPU time.
- ``seed_tf1``: the seed's TF1 ``feed_dict`` loop (``bench.seed_tf1``).
- ``trainer_ckpt_off``: ``trainer_no_subscriber`` with periodic checkpoints off; against it,
  ``trainer_no_subscriber`` (the default cadence: 60 s or 1000 steps) is the cost of checkpointing
  per step, and ``trainer_ckpt_every_25`` (a save every 25 steps) the cost of one save, from which
  ``checkpoint_cost`` projects the default cadence's cost per step.

The trainer processes are timed by their own ``report`` records (metrics.jsonl); ``fit`` by a Keras
callback at batch begins; ``seed_tf1`` times itself. Ratios are paired: variant / fit within the
same repetition, then the median (min..max) over repetitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.harness import BATCH_SIZE, Runs, interleaved, paired, percentiles, run_child, scratch_dir, summary
from bench.processes import FEED_READERS, FeedReader, TrainerProcess, jsonl, report_times

VARIANTS = (
    "fit", "fit_fused", "trainer", "trainer_no_subscriber", "trainer_idle_sub", "inproc_bare",
    "inproc_control", "seed_tf1", "trainer_ckpt_off", "trainer_ckpt_every_25",
)  # fmt: skip
CKPT_OFF = ("--checkpoint-every-s", "0", "--checkpoint-every-steps", "0")
CKPT_EVERY_25 = ("--checkpoint-every-s", "0", "--checkpoint-every-steps", "25")
DEFAULT_CKPT_EVERY_S, DEFAULT_CKPT_EVERY_STEPS = 60.0, 1000  # trainer.config's defaults
# trainer process variants: (feed readers, an idle SUB, extra flags)
PROCESSES = {
    "trainer": (FEED_READERS, False, ()),
    "trainer_no_subscriber": (0, False, ()),
    "trainer_idle_sub": (0, True, ()),
    "trainer_ckpt_off": (0, False, CKPT_OFF),
    "trainer_ckpt_every_25": (0, False, CKPT_EVERY_25),
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


def _trainer_process(data: str, warmup: int, steps: int, variant: str) -> dict[str, Any]:
    import zmq

    readers, idle_sub, extra = PROCESSES[variant]
    last = warmup + steps
    with scratch_dir("ctb-") as work:
        argv = ["--autostart", "--exit-when-done", "--max-steps", str(last), *extra]
        context = zmq.Context()
        with TrainerProcess(work, data, argv) as trainer, context.socket(zmq.SUB) as idle:
            idle.linger = 0
            trainer.start()
            feeds = [FeedReader(trainer.connection()).start() for _ in range(readers)]
            if idle_sub:
                idle.subscribe(b"")
                idle.connect(trainer.metrics)
            try:
                code = trainer.wait()
            finally:
                for feed in feeds:
                    feed.close()
        context.term()
        if code != 0:
            raise RuntimeError(f"trainer exited {code}")
        times = report_times(trainer.run_dir)
        saves = [r["step"] for r in jsonl(trainer.run_dir, "checkpoint") if warmup < r["step"] < last]
    seconds = times[last] - times[warmup]
    result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "seconds": seconds}
    result["checkpoints_in_window"] = len(saves)  # the final save is outside the window
    if feeds:
        latencies = [value for feed in feeds for value in feed.latencies_s]
        result["feed"] = {
            "data_messages_per_reader": [feed.data_messages for feed in feeds],
            "gaps": sum(feed.gaps for feed in feeds),
            "publish_to_receive_ms": percentiles(latencies, 1e3),
        }
    return result


def measure(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    """One run of one variant."""
    if variant in PROCESSES:
        return _trainer_process(data, warmup, steps, variant)
    sizes = {"data": data, "warmup": warmup, "steps": steps}
    if variant == "seed_tf1":
        return run_child("seed_tf1:run", **sizes, batch_size=BATCH_SIZE)
    if variant.startswith("fit"):
        return run_child("tf_roles:fit_cnn", **sizes, fused=variant == "fit_fused")
    return run_child("tf_roles:inproc_cnn", **sizes, control=variant == "inproc_control")


def checkpoint_cost(runs: Runs) -> dict[str, Any] | None:
    """Seconds one save costs the loop (every-25 run against none, paired) and what that makes
    per step at the default cadence: one save per min(1000 steps, 60 s)."""
    per_save, per_step = [], []
    pairs = zip(runs.get("trainer_ckpt_every_25", []), runs.get("trainer_ckpt_off", []), strict=False)
    for dense, off in pairs:
        if not dense["checkpoints_in_window"]:
            continue
        cost_s = (dense["seconds"] - off["seconds"]) / dense["checkpoints_in_window"]
        period_s = min(DEFAULT_CKPT_EVERY_STEPS * BATCH_SIZE / off["samples_per_s"], DEFAULT_CKPT_EVERY_S)
        per_save.append(cost_s)
        per_step.append(cost_s / period_s)
    if not per_save:
        return None
    return {"seconds_per_save": summary(per_save), "default_cadence_fraction_per_step": summary(per_step)}


def run(
    data: str, steps: int, warmup: int, repeats: int, variants: Sequence[str] = VARIANTS
) -> dict[str, Any]:
    """Every variant ``repeats`` times, interleaved; figures as a JSON-able dict."""
    if warmup % 10 or steps % 10:
        raise ValueError("warmup and steps must be multiples of 10 (the trainer reports every 10 steps)")
    key = "samples_per_s"
    runs = interleaved(variants, repeats, lambda v: measure(v, data, warmup, steps), key)
    ratios: dict[str, Any] = {"vs_fit": {v: paired(runs, v, "fit", key) for v in variants if v != "fit"}}
    ratios.update({name: paired(runs, top, bottom, key) for name, (top, bottom) in RATIOS.items()})
    return {
        "batch_size": BATCH_SIZE,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "repeats": repeats,
        "order": list(variants),
        "samples_per_s": {v: summary([r[key] for r in rs]) for v, rs in runs.items() if rs},
        "ratios": ratios,
        "checkpoint_cost": checkpoint_cost(runs),
        "runs": runs,
    }
