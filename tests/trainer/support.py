"""Helpers for the trainer's tests: a real trainer process on private sockets, and its feed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import Connection, ControlClient, Data, RemoteError, TrainerUnavailable, resolve_connection

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
WAIT_S = 60.0
TEST_MODULE = "tests.trainer.ct_test_modules:TinyModule"


class TrainerProcess:
    """``python -m trainer`` in a subprocess, with ipc sockets in a private temp directory."""

    def __init__(
        self, workdir: Path, run_dir: Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.control = f"ipc://{workdir}/control"
        self.metrics = f"ipc://{workdir}/metrics"
        self.run_dir = run_dir
        self.log_path = workdir / f"trainer-{time.monotonic_ns()}.log"
        command = [
            sys.executable,
            "-m",
            "trainer",
            "--control",
            self.control,
            "--metrics",
            self.metrics,
            "--connection-file",
            str(workdir / "connection.json"),
            "--run-dir",
            str(run_dir),
            "--quiet",
            "--heartbeat-interval",
            "0.2",
            *args,
        ]
        environment = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(env or {}),
        }
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=self._log, stderr=subprocess.STDOUT
        )
        # As every client: keys by protocol's connection factory (the instance's, beside the file).
        self.connection = resolve_connection(
            control=self.control, metrics=self.metrics, connection_file=workdir / "connection.json"
        )
        self.client = self.connection.control_client(timeout_ms=1000, retries=1)
        self.first_state = self._first_reply_state()

    def _first_reply_state(self) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                return str(self.client.status()["state"])
            except TrainerUnavailable:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"trainer exited: {self.log()}") from None
        self.close()  # the caller gets no object to close: never leave the process running
        raise TimeoutError(f"trainer never answered: {self.log_path.read_text()[-4000:]}")

    def subscribe(self) -> Feed:
        return Feed(self.connection, self.connection.control_client(timeout_ms=1000, retries=2))

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status = self.client.status()
            except TrainerUnavailable:  # busy (importing TensorFlow, tracing) on a loaded machine
                if self.popen.poll() is not None:
                    raise RuntimeError(f"trainer exited: {self.log()}") from None
                continue
            if predicate(status):
                return status
            time.sleep(0.05)
        raise TimeoutError(f"status never matched; last {status}\n{self.log()}")

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        return self.client.request(op, **args)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def close(self) -> None:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)
        self._log.close()


class Feed:
    """Data messages from the metrics feed, awaited by topic and predicate."""

    def __init__(self, connection: Connection, control: ControlClient) -> None:
        self.subscriber = connection.subscriber(control)
        self.control = control
        self.messages: list[Any] = []

    def wait(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda b: True,
        timeout_s: float = WAIT_S,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first ``topic`` message (from index ``since`` on) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        seen = since
        while time.monotonic() < deadline:
            for message in self.messages[seen:]:
                if message.topic == topic and predicate(message.body):
                    return dict(message.body)
            seen = len(self.messages)
            for event in self.subscriber.poll(100):
                if isinstance(event, Data):
                    self.messages.append(event.message)
        topics = [m.topic for m in self.messages[-20:]]
        failures = [m.body.get("error") for m in self.messages if m.topic == "event.failed"][-2:]
        raise TimeoutError(f"no {topic} matched within {timeout_s} s; recent: {topics}; failures: {failures}")

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        return [dict(m.body) for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.subscriber.close()
        self.control.close()


def expect_remote_error(code: str, call: Callable[[], Any]) -> RemoteError:
    try:
        call()
    except RemoteError as exc:
        assert exc.code == code, exc
        return exc
    raise AssertionError(f"expected RemoteError {code}")
