"""Throughput of the seed CNN on 1 device, 2 mirrored devices and 2 workers, and whether the workers
stay in step.

Variants, interleaved per repetition: ``one_device`` (the default strategy), ``mirrored_2`` (two
replicas in one process) and ``workers_2`` (``--strategy multiworker``, two processes on 127.0.0.1
via ``TF_CONFIG``; ``in_step``: both ended at the same step with the same ``final weights digest``).
Each is ``python -m trainer --autostart --exit-when-done``, timed by the chief's ``report`` records.
On 2 shared cores no speed-up is expected: this measures what the strategy costs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bench.harness import (
    BATCH_SIZE,
    CHILD_TIMEOUT_S,
    compare,
    interleaved,
    jsonl,
    report_times,
    trainer_process,
)
from fakes.processes import free_ports, scratch_dir

STRATEGY_ARGS = {
    "one_device": [],
    "mirrored_2": ["--strategy", "mirrored", "--logical-devices", "2"],
    "workers_2": ["--strategy", "multiworker"],
}
DIGEST = re.compile(r"final weights digest ([0-9a-f]{64}) at step (\d+)")


def run_variant(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    last, workers = warmup + steps, 2 if variant == "workers_2" else 1
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}
    argv = ["--autostart", "--exit-when-done", "--max-steps", str(last), "--param", f"bs={BATCH_SIZE}",
            "--param", "ds=10", "--checkpoint-every-s", "0", "--checkpoint-every-steps", "0",
            "--log-level", "INFO", *STRATEGY_ARGS[variant]]  # fmt: skip
    with scratch_dir("ctd-") as work:
        trainers, logs = [], [work / f"w{index}.log" for index in range(workers)]
        for index in range(workers):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            trainer = trainer_process(work, data, argv, **({"TF_CONFIG": config} if workers > 1 else {}))
            trainers.append(trainer.start(log=logs[index].open("w"), bound=False))
        codes = [trainer.wait(CHILD_TIMEOUT_S) for trainer in trainers]
        texts = [log.read_text() for log in logs]
        if any(codes):
            raise RuntimeError(f"{variant} exited {codes}:\n" + texts[0][-2000:])
        times = report_times(work / "run")
        result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / (times[last] - times[warmup])}
        if workers > 1:
            ends = [jsonl(d, "finished")[-1]["step"] for d in (work / "run", work / "run" / "workers" / "1")]
            digests = [m.groups() if (m := DIGEST.search(text)) else None for text in texts]
            result["in_step"] = ends == [last, last] and digests[0] is not None and digests[0] == digests[1]
        return result


def run(data: str, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    runs = interleaved(
        list(STRATEGY_ARGS), repeats, lambda v: run_variant(v, data, warmup, steps), "samples_per_s"
    )
    return {"steps": steps, "warmup_steps": warmup, "repeats": repeats, **compare(runs, {}, "samples_per_s"),
            "workers_in_step": all(r["in_step"] for r in runs["workers_2"])}  # fmt: skip
