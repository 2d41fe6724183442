"""Throughput of the seed CNN on 1 device, 2 mirrored devices and 2 workers, and whether the
workers stay in step (``python -m bench distribute``).

Variants (each its own process or processes, ``python -m trainer --autostart --exit-when-done``,
batch 128 global, ``display_step`` 10, no periodic checkpoints; the clock runs from the report at
step ``warmup`` to the one at ``warmup + steps``, read from the chief's ``metrics.jsonl``):

- ``one_device``: the default strategy.
- ``mirrored_2``: ``--strategy mirrored --logical-devices 2`` (two replicas in one process).
- ``workers_2``: ``--strategy multiworker``, two processes on 127.0.0.1 (``TF_CONFIG``), the
  control plane on the chief; ``in_step`` says whether both workers ended at the same step with
  the same weights (their ``final weights digest`` log lines).

On 2 shared cores no speed-up is expected: the replicas split the same cores. What this measures
is what the strategy costs (collectives, the per-step vote) and that the workers agree.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import BATCH_SIZE, CHILD_TIMEOUT_S, REPO, python_env, scratch_dir, summary
from bench.processes import jsonl, report_times
from bench.report_sections import Result, fig, table

VARIANTS = ("one_device", "mirrored_2", "workers_2")
STRATEGY_ARGS = {
    "one_device": [],
    "mirrored_2": ["--strategy", "mirrored", "--logical-devices", "2"],
    "workers_2": ["--strategy", "multiworker"],
}
DIGEST = re.compile(r"final weights digest ([0-9a-f]{64}) at step (\d+)")


def _free_port() -> int:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


def _argv(work: Path, data: str, last: int, variant: str) -> list[str]:
    return [
        sys.executable, "-m", "trainer", "--data", data, "--run-dir", str(work / "run"), "--quiet",
        "--control", f"ipc://{work}/control", "--metrics", f"ipc://{work}/metrics",
        "--connection-file", str(work / "connection.json"), "--autostart", "--exit-when-done",
        "--max-steps", str(last), "--param", f"bs={BATCH_SIZE}", "--param", "ds=10",
        "--checkpoint-every-s", "0", "--checkpoint-every-steps", "0", *STRATEGY_ARGS[variant],
    ]  # fmt: skip


def _tf_configs(variant: str) -> list[str | None]:
    if variant != "workers_2":
        return [None]
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in (0, 1)]


def run_variant(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    last = warmup + steps
    with scratch_dir("ctd-") as work:
        processes = []
        for index, config in enumerate(_tf_configs(variant)):
            env = {**python_env(), **({"TF_CONFIG": config} if config else {})}
            log = (work / f"w{index}.log").open("w")
            argv = _argv(work, data, last, variant)
            processes.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        codes = [p.wait(CHILD_TIMEOUT_S) for p in processes]
        logs = [(work / f"w{i}.log").read_text() for i in range(len(processes))]
        if any(codes):
            raise RuntimeError(f"{variant} exited {codes}:\n" + logs[0][-2000:])
        times = report_times(work / "run")
        result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / (times[last] - times[warmup])}
        if variant == "workers_2":
            dirs = (work / "run", work / "run" / "workers" / "1")
            ends = [jsonl(d, "finished")[-1]["step"] for d in dirs]
            digests = [m.groups() if (m := DIGEST.search(text)) else None for text in logs]
            result["in_step"] = ends == [last, last] and digests[0] is not None and digests[0] == digests[1]
        return result


def run(data: str, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:  # interleaved: drift hits every variant alike
            runs[variant].append(run_variant(variant, data, warmup, steps))
    return {
        "steps": steps,
        "samples_per_s": {v: summary([r["samples_per_s"] for r in rs]) for v, rs in runs.items()},
        "workers_in_step": all(r["in_step"] for r in runs["workers_2"]),
    }


def markdown(s: Result) -> list[str]:
    rows = [[variant, f"{fig(s['samples_per_s'][variant])} samples/s"] for variant in VARIANTS]
    agree = "yes" if s["workers_in_step"] else "NO"
    return [
        "## Several devices and workers (tf.distribute)",
        "",
        *table(["variant", "throughput"], rows),
        f"The two workers ended at the same step with identical weights: {agree}. On 2 shared CPU "
        "cores no speed-up is expected (the replicas split the same cores).",
        "",
    ]
