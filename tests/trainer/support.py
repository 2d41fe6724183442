"""Helpers for the trainer's tests: a real trainer process on private sockets, and its feed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes import processes
from fakes.recorder import FeedRecorder
from protocol import (
    Connection,
    Data,
    FeedEvent,
    Message,
    RemoteError,
    Snapshot,
    TrainerUnavailable,
)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
WAIT_S = 60.0
TEST_MODULE = "tests.trainer.ct_test_modules:TinyModule"


class TrainerProcess(processes.TrainerProcess):
    """``python -m trainer`` started at once (``fakes.processes``), its output in a log file in
    ``workdir``, with a control client; heartbeats every 0.2 s so that clients notice changes soon."""

    popen: subprocess.Popen[bytes]

    def __init__(
        self, workdir: Path, run_dir: Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        super().__init__(workdir, ["--heartbeat-interval", "0.2", *args], run_dir=run_dir, env=env)
        self.log_path = workdir / f"trainer-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.start(self._log, bound=False)
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
        return Feed(self.connection)

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
        self.stop(grace_s=0)  # SIGKILL: no test relies on a clean exit unless it asks for one
        self._log.close()


class Feed:
    """Data messages from the metrics feed, recorded from their own thread (``FeedRecorder``) and
    awaited by topic and predicate."""

    def __init__(self, connection: Connection) -> None:
        self.recorder = FeedRecorder(connection, timeout_ms=1000, retries=2).start()

    @property
    def messages(self) -> list[Message]:
        return [e.message for e in self.recorder.events() if isinstance(e, Data)]

    def attached(self) -> None:
        """Wait for first contact (the Subscriber's snapshot): from here on nothing published is missed."""
        snapshot = lambda events: any(isinstance(e, Snapshot) for e in events)  # noqa: E731
        self.recorder.wait_for(snapshot, WAIT_S, "the first snapshot")

    def wait(
        self,
        topic: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda b: True,
        timeout_s: float = WAIT_S,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first ``topic`` message (from index ``since`` of ``messages`` on) that satisfies
        ``predicate``, as it arrives."""

        looked = {"events": 0, "data": 0}  # each event is looked at once, however long the wait

        def probe(events: list[FeedEvent]) -> list[dict[str, Any]]:
            for event in events[looked["events"] :]:
                looked["events"] += 1
                if isinstance(event, Data):
                    looked["data"] += 1
                    message = event.message
                    if looked["data"] > since and message.topic == topic and predicate(message.body):
                        return [dict(message.body)]
            return []

        try:
            return self.recorder.wait_for(probe, timeout_s, f"a matching {topic}")[0]
        except AssertionError as error:
            topics = [m.topic for m in self.messages[-20:]]
            failures = [m.body.get("error") for m in self.messages if m.topic == "event.failed"][-2:]
            raise AssertionError(f"{error}; recent: {topics}; failures: {failures}") from error

    def bodies(self, topic: str) -> list[dict[str, Any]]:
        return [dict(m.body) for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.recorder.stop()


def expect_remote_error(code: str, call: Callable[[], Any]) -> RemoteError:
    try:
        call()
    except RemoteError as exc:
        assert exc.code == code, exc
        return exc
    raise AssertionError(f"expected RemoteError {code}")
