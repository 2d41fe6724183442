"""Shared plumbing for the benchmarks: paths, summaries, the machine, and processes to measure.

Nothing here imports TensorFlow: every TensorFlow variant runs in its own child process, so
eager and graph state, thread pools and allocator caches never leak from one variant to the next.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist.npz"
RESULTS_DIR = REPO / "bench" / "results"
BATCH_SIZE = 128
CHILD_TIMEOUT_S = 1800.0
START_TIMEOUT_S = 120.0
POLL_MS = 100
FEED_READERS = 2  # the trainer with "two subscribers attached": a sidecar and a trainctl watch


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread of one figure over repetitions."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def percentiles(samples: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "count": 0}

    def pick(quantile: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(len(ordered) * quantile))] * scale)

    return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1] * scale, "count": len(ordered)}


def python_env() -> dict[str, str]:
    """The environment for children: quiet TensorFlow, the repo importable, no proxy for loopback."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["NO_PROXY"] = ",".join(filter(None, ["127.0.0.1,localhost", env.get("NO_PROXY")]))
    return env


def run_json_child(args: Sequence[str], timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    """Run ``python ARGS`` from the repo root; its last stdout line is a JSON object."""
    completed = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = completed.stderr.strip().splitlines()[-15:]
        raise RuntimeError(f"{' '.join(args)} exited {completed.returncode}:\n" + "\n".join(tail))
    value: dict[str, Any] = json.loads(lines[-1])
    return value


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
        try:
            return f"{importlib.metadata.version(name)}" + ("" if name == names[0] else f" ({name})")
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
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

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": affinity,
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
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
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


# ---------------------------------------------------------------- the trainer as a process


def jsonl_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The trainer's ``metrics.jsonl`` records of one ``kind``, in order."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("kind") == kind:
                records.append(record)
    return records


def jsonl_times(run_dir: Path) -> dict[int, float]:
    """step -> wall time of the trainer's own ``report`` records (every display_step steps)."""
    return {int(r["step"]): float(r["ts"]) for r in jsonl_records(run_dir, "report")}


def jsonl_steps(run_dir: Path, kind: str) -> list[int]:
    """The steps of the ``kind`` records (``checkpoint``: the steps saved)."""
    return [int(r["step"]) for r in jsonl_records(run_dir, kind)]


@dataclass
class TrainerProcess:
    """``python -m trainer`` on private ipc endpoints in ``workdir``; ``start()`` waits for the bind."""

    workdir: Path
    data: str
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    @property
    def control(self) -> str:
        return f"ipc://{self.workdir}/control"

    @property
    def metrics(self) -> str:
        return f"ipc://{self.workdir}/metrics"

    @property
    def run_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def connection_file(self) -> Path:
        return self.workdir / "connection.json"

    def connection(self) -> Any:
        """Endpoints and CurveZMQ keys as every client gets them (``protocol.connect``)."""
        from protocol import resolve_connection

        return resolve_connection(
            control=self.control, metrics=self.metrics, connection_file=self.connection_file
        )

    def start(self) -> TrainerProcess:
        connection = self.connection_file
        argv = [
            sys.executable, "-m", "trainer", "--task", "mnist_cnn", "--data", self.data,
            "--control", self.control, "--metrics", self.metrics, "--connection-file", str(connection),
            "--run-dir", str(self.run_dir), "--quiet", "--log-level", "WARNING", *self.extra,
        ]  # fmt: skip
        self.started_at = time.time()
        self.process = subprocess.Popen(argv, cwd=REPO, env=python_env(), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not connection.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trainer did not bind (exit {self.process.poll()})")
            time.sleep(0.02)
        return self

    def wait(self, timeout_s: float = CHILD_TIMEOUT_S) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class FeedReader:
    """A real ``Subscriber`` polling the feed from its own thread (as a sidecar or trainctl does)."""

    connection: Any  # protocol.Connection: endpoints and keys
    data_messages: int = 0
    gaps: int = 0
    latencies_s: list[float] = field(default_factory=list)
    steps: dict[int, float] = field(default_factory=dict)  # metrics.step: step -> trainer's ts
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _progress: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> FeedReader:
        self._thread = threading.Thread(target=self._run, name="feed-reader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from protocol import Data, Gap

        client = self.connection.control_client(timeout_ms=3000, retries=3)
        subscriber = self.connection.subscriber(client)
        try:
            while not self._stop.is_set():
                for event in subscriber.poll(POLL_MS):
                    now = time.time()
                    if isinstance(event, Gap):
                        self.gaps += 1
                    if not isinstance(event, Data) or getattr(event, "catching_up", False):
                        continue
                    message = event.message
                    self.data_messages += 1
                    self.latencies_s.append(now - message.ts)
                    if message.topic == "metrics.step":
                        with self._progress:
                            self.steps[int(message.body["step"])] = message.ts
                            self._progress.notify_all()
                    elif (message.topic or "").startswith("event."):
                        with self._progress:
                            self.events.append((message.topic or "", dict(message.body)))
                            self._progress.notify_all()
        finally:
            subscriber.close()
            client.close()

    def wait_for_step(self, step: int, timeout_s: float = START_TIMEOUT_S) -> None:
        with self._progress:
            if not self._progress.wait_for(lambda: bool(self.steps) and max(self.steps) >= step, timeout_s):
                raise TimeoutError(f"no metrics.step >= {step} within {timeout_s} s")

    def latest_step(self) -> int:
        with self._progress:
            return max(self.steps)

    def step_time(self, step: int, timeout_s: float) -> float | None:
        """The trainer's timestamp of `step`'s metrics, waiting up to `timeout_s` for it."""
        with self._progress:
            self._progress.wait_for(lambda: step in self.steps, timeout_s)
            return self.steps.get(step)

    def wait_for_event(self, names: Sequence[str], timeout_s: float) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((body for topic, body in self.events if topic.removeprefix("event.") in names), None)

        with self._progress:
            body = self._progress.wait_for(found, timeout_s)
        if body is None:
            raise TimeoutError(f"no event {names} within {timeout_s} s")
        return body

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
