"""What every benchmark shares: paths, summaries and paired ratios, child processes, the machine.

Nothing here imports TensorFlow: every TensorFlow variant runs in its own child process
(``Child`` / ``run_child``: ``python -m bench --child MODULE:FUNCTION KWARGS``, whose last stdout
line is the function's JSON result), so eager and graph state, thread pools and allocator caches
never leak from one variant to the next.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist.npz"
RESULTS_DIR = REPO / "bench" / "results"
BATCH_SIZE = 128
CHILD_TIMEOUT_S = 1800.0
START_TIMEOUT_S = 120.0
READY = "READY"  # the line a child prints once it serves

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

    def pick(quantile: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * scale)

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


def python_env() -> dict[str, str]:
    """The environment for children: quiet TensorFlow, the repo importable, no proxy for loopback."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = ",".join(filter(None, ["127.0.0.1,localhost", env.get("NO_PROXY")]))
    return env


class Child:
    """``python -m bench --child TARGET KWARGS``: ``bench.MODULE.FUNCTION(**kwargs)`` in its own
    process. It may print READY once it serves (``wait_ready``); a closed stdin tells the ones
    that run until told to stop; its last stdout line is its JSON result (``result``)."""

    def __init__(self, target: str, stderr: int | None = None, **kwargs: Any) -> None:
        self.target = target
        argv = [sys.executable, "-m", "bench", "--child", target, json.dumps(kwargs)]
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, text=True,
        )  # fmt: skip

    def wait_ready(self, nudge: Callable[[], None] | None = None, poll_s: float = 0.02) -> None:
        """Wait for READY, calling ``nudge`` (say a warm-up send) between looks."""
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if nudge is not None:
                nudge()
            if select.select([stdout], [], [], poll_s)[0]:
                line = stdout.readline().strip()
                if line == READY:
                    return
                raise RuntimeError(f"{self.target} said {line!r} instead of {READY}")
        raise TimeoutError(f"{self.target} never became ready")

    def result(self, timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
        """Close its stdin, wait for it to exit, and decode its last stdout line."""
        out, err = self.process.communicate("", timeout=timeout_s)
        lines = out.strip().splitlines()
        if self.process.returncode != 0 or not lines:
            tail = "\n".join((err or "").strip().splitlines()[-15:])
            raise RuntimeError(f"{self.target} exited {self.process.returncode}:\n{tail}")
        value: dict[str, Any] = json.loads(lines[-1])
        return value

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def run_child(target: str, timeout_s: float = CHILD_TIMEOUT_S, **kwargs: Any) -> dict[str, Any]:
    """Run ``target`` to completion in a child process; its result."""
    return Child(target, stderr=subprocess.PIPE, **kwargs).result(timeout_s)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A private temp dir under /tmp (short paths: ipc endpoints have a ~100 byte limit)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _version(*names: str) -> str:
    """The installed version of the first distribution found (TensorFlow ships under several)."""
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{importlib.metadata.version(name)}" + ("" if name == names[0] else f" ({name})")
    return "not installed"


def _proc_field(path: str, key: str) -> str | None:
    """The value after ``key`` in a ``key: value`` file of /proc, or None."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        return [line.strip() for line in listing.splitlines() if line.strip()]
    return []


def machine() -> dict[str, Any]:
    """The machine and the versions that matter, read without importing TensorFlow."""
    import zmq

    memory = _proc_field("/proc/meminfo", "MemTotal:")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "gpus": _gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "switch_interval_s": sys.getswitchinterval(),
        "tensorflow": _version("tensorflow", "tensorflow-cpu", "tensorflow_cpu", "tf-nightly"),
        "keras": _version("keras"),
        "numpy": _version("numpy"),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": _version("msgpack"),
        "itchat": _version("itchat"),
    }


def rss_kib(pid: int) -> dict[str, int]:
    """Resident (VmRSS) and peak resident (VmHWM) memory of a live process, KiB."""
    status = f"/proc/{pid}/status"
    values = {key: _proc_field(status, f"{key}:") for key in ("VmRSS", "VmHWM")}
    return {key: int(value.split()[0]) for key, value in values.items() if value}
