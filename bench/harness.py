"""What every benchmark shares: figures over repetitions, child processes, a trainer and its feed, machine.

Nothing here imports TensorFlow: every TensorFlow variant runs in its own child process (``Child``:
``python -m bench --child MODULE:FUNCTION KWARGS``, whose last stdout line is its JSON result), so
eager and graph state, thread pools and allocator caches never leak from one variant to the next.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fakes.processes import REPO, TrainerProcess, python_env
from fakes.recorder import FeedRecorder
from protocol import METRICS_STEPS, Data, FeedEvent, Gap, step_losses

DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist.npz"
RESULTS_DIR = REPO / "bench" / "results"
BATCH_SIZE = 128
CHILD_TIMEOUT_S = 1800.0
START_TIMEOUT_S = 120.0
READY = "READY"  # the line a child prints once it serves
FEED_READERS = 2  # "two subscribers attached": a sidecar and a trainctl watch

logger = logging.getLogger("bench")
Runs = dict[str, list[dict[str, Any]]]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread of one figure over repetitions."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def summaries(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``summary`` of each of ``keys`` over ``runs`` (one dict of figures per repetition)."""
    return {key: summary([run[key] for run in runs]) for key in keys}


def percentiles(samples: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "count": 0}
    pick = lambda q: float(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * scale)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1] * scale, "count": len(ordered)}


def interleaved(
    variants: Sequence[str], repeats: int, measure: Callable[[str], dict[str, Any]], key: str
) -> Runs:
    """Each repetition runs every variant once, in order, so drift hits all of them alike."""
    runs: Runs = {variant: [] for variant in variants}
    for repeat in range(repeats):
        for variant in variants:
            runs[variant].append(measure(variant))
            logger.info("repeat %d %-22s %10.1f %s", repeat + 1, variant, runs[variant][-1][key], key)
    return runs


def paired(runs: Runs, top: str, bottom: str, key: str) -> dict[str, Any] | None:
    """``top / bottom`` within each repetition, then median (min..max) over the repetitions."""
    pairs = [a[key] / b[key] for a, b in zip(runs.get(top, []), runs.get(bottom, []), strict=False)]
    return summary(pairs) if pairs else None


def compare(runs: Runs, ratios: Mapping[str, Sequence[Any]], key: str) -> dict[str, Any]:
    """The rates of ``interleaved`` runs and their named paired ratios (name: (variant, against, ...))."""
    return {
        "order": list(runs),
        key: {v: summary([r[key] for r in rs]) for v, rs in runs.items() if rs},
        "ratios": {name: paired(runs, top, bottom, key) for name, (top, bottom, *_) in ratios.items()},
        "runs": runs,
    }


class Child:
    """``bench.MODULE.FUNCTION(**kwargs)`` in its own process. It may print READY once it serves
    (``wait_ready``); a closed stdin stops the ones that run until told; its last stdout line is its
    JSON result (``result``)."""

    def __init__(self, target: str, stderr: int | None = None, **kwargs: Any) -> None:
        self.target = target
        argv = [sys.executable, "-m", "bench", "--child", target, json.dumps(kwargs)]
        self.process = subprocess.Popen(argv, cwd=REPO, env=python_env(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip

    def wait_ready(self, nudge: Callable[[], None] = lambda: None) -> None:
        """Wait for READY, calling ``nudge`` (say a warm-up send) between looks."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            nudge()
            if select.select([self.process.stdout], [], [], 0.02)[0]:
                if (line := self.process.stdout.readline().strip()) == READY:
                    return
                raise RuntimeError(f"{self.target} said {line!r} instead of {READY}")
        raise TimeoutError(f"{self.target} never became ready")

    def result(self, timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
        """Close its stdin, wait for it to exit, and decode its last stdout line."""
        out, err = self.process.communicate("", timeout=timeout_s)
        if self.process.returncode != 0 or not out.strip():
            tail = "\n".join((err or "").strip().splitlines()[-15:])
            raise RuntimeError(f"{self.target} exited {self.process.returncode}:\n{tail}")
        value: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return value

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def run_child(target: str, timeout_s: float = CHILD_TIMEOUT_S, **kwargs: Any) -> dict[str, Any]:
    """Run ``target`` to completion in a child process; its result."""
    return Child(target, stderr=subprocess.PIPE, **kwargs).result(timeout_s)


def jsonl(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The trainer's ``metrics.jsonl`` records of one ``kind`` (``report``, ``checkpoint``), in order."""
    path, records = run_dir / "metrics.jsonl", []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            records += [record] if (record := json.loads(line)).get("kind") == kind else []
    return records


def report_times(run_dir: Path) -> dict[int, float]:
    """step -> wall time of the trainer's own ``report`` records (every display_step steps)."""
    return {int(r["step"]): float(r["ts"]) for r in jsonl(run_dir, "report")}


def trainer_process(workdir: Path, data: str, extra: Sequence[str] = (), **env: str) -> TrainerProcess:
    """``python -m trainer`` training the seed CNN on ``data``, quiet but for warnings (not started)."""
    args = ["--task", "mnist_cnn", "--data", data, "--log-level", "WARNING", *extra]
    return TrainerProcess(workdir, args, env=env)


def feed_reader(connection: Any) -> FeedRecorder:
    """A ``FeedRecorder`` (not started) that follows the feed as a sidecar or trainctl does."""
    return FeedRecorder(connection, timeout_ms=3000, retries=3)


def stamped_steps(events: list[FeedEvent]) -> dict[int, float]:
    """step -> the ``ts`` of the ``metrics.steps`` message that held it."""
    return {step: e.message.ts for e in events if isinstance(e, Data) and e.message.topic == METRICS_STEPS
            for step, _ in step_losses(e.message.body)}  # fmt: skip


def event_body(events: list[FeedEvent], name: str) -> dict[str, Any] | None:
    """The body of the first ``event.NAME`` message, or None."""
    for e in events:
        if isinstance(e, Data) and e.message.topic == f"event.{name}":
            return dict(e.message.body)
    return None


def step_rate(events: list[FeedEvent], began: float, ended: float) -> float:
    """Steps per second between the first and last steps stamped inside [began, ended]."""
    inside = sorted((ts, step) for step, ts in stamped_steps(events).items() if began <= ts <= ended)
    if len(inside) < 2:
        return 0.0
    (t0, s0), (t1, s1) = inside[0], inside[-1]
    return (s1 - s0) / (t1 - t0)


def feed_figures(readers: Sequence[FeedRecorder]) -> dict[str, Any]:
    """What ``readers`` received live: data messages each, gaps, publish-to-receive latency."""
    live = [reader.live_data() for reader in readers]
    latencies = [at - event.message.ts for data in live for event, at in data]
    return {
        "data_messages_per_reader": [len(data) for data in live],
        "gaps": sum(isinstance(e, Gap) for reader in readers for e in reader.events()),
        "publish_to_receive_ms": percentiles(latencies, 1e3),
    }


def _version(name: str) -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(name)
    return "not installed"


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key`` in a ``key: value`` file of /proc, or None."""
    with contextlib.suppress(OSError):
        lines = Path(path).read_text().splitlines()
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)
    return None


def _gpus() -> list[str]:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        return [line.strip() for line in listing.splitlines() if line.strip()]
    return []


def machine() -> dict[str, Any]:
    """The machine and the versions that matter, read without importing TensorFlow."""
    import zmq

    memory = _proc_field("/proc/meminfo", "MemTotal:")
    tensorflow = next((f"{v} ({n})" for n in ("tensorflow", "tensorflow-cpu", "tf-nightly")
                       if (v := _version(n)) != "not installed"), "not installed")  # fmt: skip
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_cores": os.cpu_count(), "cpu_cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None, "gpus": _gpus(),
        "os": f"{platform.system()} {platform.release()}", "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(), "switch_interval_s": sys.getswitchinterval(),
        "tensorflow": tensorflow.replace(" (tensorflow)", ""), "keras": _version("keras"),
        "numpy": _version("numpy"), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
        "msgpack": _version("msgpack"), "itchat": _version("itchat"),
    }  # fmt: skip


def rss_kib(pid: int) -> dict[str, int]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a live process, KiB."""
    values = {key: _proc_field(f"/proc/{pid}/status", f"{key}:") for key in ("VmRSS", "VmHWM")}
    return {key: int(value.split()[0]) for key, value in values.items() if value}
