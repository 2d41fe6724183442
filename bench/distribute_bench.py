"""Throughput of the seed CNN on 1 device, on 2 mirrored devices and on 2 workers, and whether the
workers' step counts agree.

    .venv/bin/python bench/distribute_bench.py [--data PATH] [--steps 60] [--warmup 10] [--repeats 1]

Variants (each its own process or processes, ``python -m trainer --autostart --exit-when-done``,
batch 128 global, ``display_step`` 10, checkpoints only at the end; the clock runs from the report
at step ``warmup`` to the one at ``warmup + steps``, read from the chief's ``metrics.jsonl``):

- ``one_device``: the default strategy.
- ``mirrored_2``: ``--strategy mirrored --logical-devices 2`` (two replicas in one process).
- ``workers_2``: ``--strategy multiworker``, two processes on 127.0.0.1 (``TF_CONFIG``), with the
  control plane on the chief; ``steps_agree`` says whether both workers ended at the same step with
  the same weights (their ``final weights digest`` lines).

On a machine with 2 shared cores no speed-up is expected: the replicas split the same cores. What
this measures is the cost of the strategy (the collectives and the per-step vote) and that the
workers stay in step.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    BATCH_SIZE,
    CHILD_TIMEOUT_S,
    DEFAULT_DATA,
    REPO,
    RESULTS_DIR,
    jsonl_records,
    jsonl_times,
    machine,
    python_env,
    scratch_dir,
    summary,
)

VARIANTS = ("one_device", "mirrored_2", "workers_2")
DIGEST = re.compile(r"final weights digest ([0-9a-f]{64}) at step (\d+)")


def _free_port() -> int:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


def _argv(work: Path, run_dir: Path, data: str, last: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "trainer", "--data", data, "--run-dir", str(run_dir), "--quiet",
        "--control", f"ipc://{work}/control", "--metrics", f"ipc://{work}/metrics",
        "--connection-file", str(work / "connection.json"), "--autostart", "--exit-when-done",
        "--max-steps", str(last), "--param", f"bs={BATCH_SIZE}", "--param", "ds=10",
        "--checkpoint-every-s", "0", "--checkpoint-every-steps", "0", *extra,
    ]  # fmt: skip


def run_variant(variant: str, data: str, warmup: int, steps: int) -> dict[str, Any]:
    last = warmup + steps
    with scratch_dir("ctd-") as work:
        run_dir = work / "run"
        extra = {"one_device": [], "mirrored_2": ["--strategy", "mirrored", "--logical-devices", "2"]}
        if variant == "workers_2":
            ports = [_free_port(), _free_port()]
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            procs = []
            for index in (0, 1):
                env = {
                    **python_env(),
                    "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                }
                argv = _argv(work, run_dir, data, last, ["--strategy", "multiworker"])
                log = (work / f"w{index}.log").open("w")
                procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
            codes = [p.wait(CHILD_TIMEOUT_S) for p in procs]
            logs = [(work / f"w{i}.log").read_text() for i in (0, 1)]
        else:
            argv = _argv(work, run_dir, data, last, extra[variant])
            done = subprocess.run(
                argv, cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
            )
            codes, logs = [done.returncode], [done.stderr]
        if any(codes):
            raise RuntimeError(f"{variant} exited {codes}:\n" + logs[0][-2000:])
        times = jsonl_times(run_dir)
        seconds = times[last] - times[warmup]
        result: dict[str, Any] = {"samples_per_s": steps * BATCH_SIZE / seconds, "steps": steps}
        if variant == "workers_2":
            ends = [jsonl_records(d, "finished")[-1]["step"] for d in (run_dir, run_dir / "workers" / "1")]
            digests = [DIGEST.search(text) for text in logs]
            same = all(digests) and digests[0].groups() == digests[1].groups()  # type: ignore[union-attr]
            result["final_steps"] = ends
            result["steps_agree"] = ends[0] == ends[1] == last and same
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:  # interleaved: drift hits every variant alike
            runs[variant].append(run_variant(variant, args.data, args.warmup, args.steps))
    report = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": args.steps,
        "warmup": args.warmup,
        "variants": {
            v: {"samples_per_s": summary([r["samples_per_s"] for r in rs]), "runs": rs}
            for v, rs in runs.items()
        },
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "distribute.json").write_text(json.dumps(report, indent=2))
    for variant, entry in report["variants"].items():
        extra = entry["runs"][-1].get("steps_agree")
        agree = "" if extra is None else f"  steps agree: {extra}"
        print(f"{variant:12s} {entry['samples_per_s']['median']:8.1f} samples/s{agree}")
    print(json.dumps({v: e["samples_per_s"]["median"] for v, e in report["variants"].items()}))


if __name__ == "__main__":
    main()
