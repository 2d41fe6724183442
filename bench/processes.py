"""The processes the benchmarks measure: a trainer, a feed reader that follows it, a sidecar."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import CHILD_TIMEOUT_S, REPO, START_TIMEOUT_S, python_env

POLL_MS = 100
FEED_READERS = 2  # the trainer with "two subscribers attached": a sidecar and a trainctl watch
SIDECAR_READY_MARK = "sidecar ready"


def jsonl(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    """The trainer's ``metrics.jsonl`` records of one ``kind`` (``report``, ``checkpoint``), in order."""
    path = run_dir / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("kind") == kind:
                records.append(record)
    return records


def report_times(run_dir: Path) -> dict[int, float]:
    """step -> wall time of the trainer's own ``report`` records (every display_step steps)."""
    return {int(r["step"]): float(r["ts"]) for r in jsonl(run_dir, "report")}


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
        stop(self.process)

    def __enter__(self) -> TrainerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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

    def rate(self, began: float, ended: float) -> float:
        """Steps per second between the first and last steps stamped inside [began, ended]."""
        with self._progress:
            inside = sorted((ts, step) for step, ts in self.steps.items() if began <= ts <= ended)
        if len(inside) < 2:
            return 0.0
        (t0, s0), (t1, s1) = inside[0], inside[-1]
        return (s1 - s0) / (t1 - t0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FeedReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class SidecarProcess:
    """``python -m sidecar ARGV`` with its stderr watched for the ready line."""

    def __init__(self, argv: list[str]) -> None:
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *argv], cwd=REPO, env=python_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.ready_at: float | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip())
            if SIDECAR_READY_MARK in line and not self._ready.is_set():
                self.ready_at = time.monotonic()
                self._ready.set()

    def wait_ready(self) -> float:
        """Seconds from the spawn to the ready line."""
        if not self._ready.wait(START_TIMEOUT_S):
            tail = "\n".join(self.lines[-15:])
            raise TimeoutError(f"sidecar not ready within {START_TIMEOUT_S} s:\n{tail}")
        assert self.ready_at is not None
        return self.ready_at - self.spawned

    def close(self) -> None:
        stop(self.process)


def stop(process: subprocess.Popen[Any] | None) -> None:
    """SIGTERM, then SIGKILL past 30 s; reaped."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
