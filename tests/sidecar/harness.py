"""Test doubles for the sidecar: an in-process fake trainer on real protocol sockets, and a
MemoryBackend whose sends can be awaited (no sleeps).

`FakeTrainer` serves the contract's control ops with a real ControlServer and publishes on a
real Publisher; its state is a few attributes the handlers read and write under a lock.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocol import (
    ControlServer,
    ErrorCode,
    ParamSpec,
    Publisher,
    RequestError,
    coerce_params,
    new_session_id,
)
from sidecar.app import Sidecar
from sidecar.backend import MemoryBackend, SentMessage
from sidecar.config import Config

WAIT_S = 10.0
HEARTBEAT_INTERVAL_S = 0.1

SEED_SPECS = (
    ParamSpec(
        "learning_rate",
        "float",
        0.001,
        aliases=("lr",),
        minimum=1e-6,
        maximum=1.0,
        help="optimizer learning rate",
    ),
    ParamSpec("training_iters", "int", 200000, aliases=("ti",), minimum=1, help="samples to train on"),
    ParamSpec(
        "batch_size",
        "int",
        128,
        aliases=("bs",),
        minimum=1,
        maximum=4096,
        applies="next_epoch",
        help="minibatch size",
    ),
    ParamSpec("display_step", "int", 10, aliases=("ds",), minimum=1, help="steps between reports"),
)


class FakeTrainer:
    """ControlServer + Publisher with simple, thread-safe fake handlers."""

    def __init__(
        self,
        control: str,
        metrics: str,
        specs: tuple[ParamSpec, ...] = SEED_SPECS,
        step: int = 0,
        state: str = "idle",
    ) -> None:
        self.session = new_session_id()
        self.specs = specs
        self.lock = threading.Lock()
        self.state = state
        self.step = step
        self.params = {spec.name: spec.default for spec in specs}
        self.broken_status = False
        self.requests: list[str] = []
        self.publisher = Publisher(
            metrics,
            session=self.session,
            heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
            heartbeat_body=self._heartbeat,
        )
        handlers = {
            op: getattr(self, f"op_{op}")
            for op in (
                "describe",
                "status",
                "start",
                "stop",
                "pause",
                "resume",
                "get_params",
                "set_params",
                "checkpoint",
                "evaluate",
            )
        }
        handlers["history"] = self._history
        self.server = ControlServer(control, handlers, session=self.session)

    def start(self) -> FakeTrainer:
        self.publisher.start()
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close()
        self.publisher.close()

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        self.requests.append("history")
        return self.publisher.history_handler(args)

    def _heartbeat(self) -> dict[str, Any]:
        with self.lock:
            return {"state": self.state, "step": self.step, "loop_age_s": 0.0}

    def event(self, name: str, **extra: Any) -> None:
        with self.lock:
            body = {"event": name, "step": self.step, "state": self.state, **extra}
        self.publisher.publish(f"event.{name}", body)

    def report(self, step: int, loss: float = 0.5, accuracy: float = 0.8) -> None:
        with self.lock:
            self.step = step
        self.publisher.publish(
            "metrics.report",
            {
                "step": step,
                "epoch": 0,
                "loss": loss,
                "accuracy": accuracy,
                "steps_per_s": 10.0,
                "eta_s": 100.0,
                "lr": self.params["learning_rate"],
            },
        )

    # -- control ops ------------------------------------------------------------------------
    def op_describe(self, args: dict[str, Any]) -> dict[str, Any]:
        self.requests.append("describe")
        with self.lock:
            params = [{**s.to_dict(), "value": self.params[s.name]} for s in self.specs]
        return {
            "ops": [
                "describe",
                "status",
                "start",
                "stop",
                "pause",
                "resume",
                "get_params",
                "set_params",
                "history",
                "checkpoint",
                "evaluate",
            ],
            "params": params,
            "states": [],
            "topics": [],
            "version": 1,
        }

    def op_status(self, args: dict[str, Any]) -> dict[str, Any]:
        self.requests.append("status")
        if self.broken_status:
            return {"surprise": True}
        with self.lock:
            return {
                "state": self.state,
                "step": self.step,
                "epoch": 0,
                "total_steps": 1000,
                "steps_per_s": 10.0,
                "eta_s": 60.0,
                "metrics": {"loss": 0.5},
                "params": dict(self.params),
                "run_id": "run-1",
                "session": self.session,
                "last_seq": self.publisher.last_seq,
                "started_at": time.time(),
                "error": None,
                "last_checkpoint_step": None,
            }

    def _transition(self, op: str, allowed: tuple[str, ...], new: str) -> dict[str, Any]:
        self.requests.append(op)
        with self.lock:
            if self.state == new:
                return {"state": self.state, "step": self.step, "at_step": self.step, "already": True}
            if self.state not in allowed:
                raise RequestError(ErrorCode.INVALID_STATE, f"cannot {op} while {self.state}")
            self.state = new
            return {"state": new, "step": self.step, "at_step": self.step, "already": False}

    def op_start(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("params"):
            self.op_set_params({"params": args["params"]})
        return self._transition("start", ("idle", "finished", "failed"), "running")

    def op_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._transition("stop", ("running", "paused"), "finished")

    def op_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._transition("pause", ("running",), "paused")

    def op_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._transition("resume", ("paused",), "running")

    def op_get_params(self, args: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"params": dict(self.params)}

    def op_set_params(self, args: dict[str, Any]) -> dict[str, Any]:
        self.requests.append("set_params")
        try:
            changes = coerce_params(self.specs, args.get("params") or {})
        except (KeyError, ValueError) as error:
            raise RequestError(ErrorCode.INVALID_PARAMS, str(error)) from error
        with self.lock:
            self.params.update(changes)
            at = self.step + 1
        return {
            "params": changes,
            "applies_at_step": {k: at for k in changes},
            "applies": {k: "next_step" for k in changes},
        }

    def op_checkpoint(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}

    def op_evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}


class WaitingBackend(MemoryBackend):
    """MemoryBackend whose sends can be awaited."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def send_text(self, text: str, to: str | None = None) -> None:
        super().send_text(text, to)
        with self.changed:
            self.changed.notify_all()

    def send_image(self, path: Path, to: str | None = None) -> None:
        super().send_image(path, to)
        with self.changed:
            self.changed.notify_all()

    def snapshot(self) -> list[SentMessage]:
        with self._lock:
            return list(self.sent)

    def wait_for(
        self, predicate: Callable[[SentMessage], bool], timeout_s: float = WAIT_S, after: int = 0
    ) -> SentMessage:
        """The first sent message (from index `after` on) matching `predicate`."""

        def found() -> SentMessage | None:
            return next((m for m in self.snapshot()[after:] if predicate(m)), None)

        with self.changed:
            ok = self.changed.wait_for(lambda: found() is not None, timeout_s)
        assert ok, f"nothing matching within {timeout_s} s; sent: {self.snapshot()!r}"
        message = found()
        assert message is not None
        return message

    def wait_text(self, fragment: str, timeout_s: float = WAIT_S, after: int = 0) -> str:
        return self.wait_for(lambda m: fragment in m.text, timeout_s, after).text

    def count(self, fragment: str) -> int:
        return sum(fragment in m.text for m in self.snapshot())


@contextmanager
def endpoints() -> Iterator[tuple[str, str]]:
    """Short ipc endpoints in a fresh private directory (ipc paths have a ~100 byte limit)."""
    directory = tempfile.mkdtemp(prefix="ct-")
    try:
        yield f"ipc://{directory}/c", f"ipc://{directory}/m"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def make_config(control: str, metrics: str, state_dir: Path, **overrides: Any) -> Config:
    options: dict[str, Any] = {
        "backend": "memory",
        "control": control,
        "metrics": metrics,
        "state_dir": state_dir,
        "request_timeout_ms": 500,
        "request_retries": 1,
        "progress_interval_s": 60.0,
    }
    options.update(overrides)
    return Config(**options)


@contextmanager
def running_sidecar(config: Config) -> Iterator[tuple[Sidecar, WaitingBackend]]:
    backend = WaitingBackend()
    app = Sidecar(config, backend)
    backend.connect(app.on_message)
    app.start()
    try:
        yield app, backend
    finally:
        app.close()
