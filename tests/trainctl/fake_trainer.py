"""A fake trainer for the trainctl tests: the real ControlServer and Publisher, with handlers in place
of a training loop. Every op of the contract is served; `advance()` plays training steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from protocol import (
    OPERATIONS,
    STATES,
    TOPICS,
    ControlServer,
    ErrorCode,
    ParamSpec,
    Publisher,
    RequestError,
    coerce_params,
    new_session_id,
)

HEARTBEAT_INTERVAL_S = 0.2
TOTAL_STEPS = 1000
WAIT_TIMEOUT_S = 10.0
SPECS = (
    ParamSpec("learning_rate", "float", 0.001, aliases=("lr",), minimum=1e-6, maximum=1.0, help="step size"),
    ParamSpec("batch_size", "int", 128, aliases=("bs",), minimum=1, maximum=4096, applies="next_epoch"),
    ParamSpec("display_step", "int", 100, applies="now"),
)


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(0.01)


class FakeTrainer:
    """State, params and steps behind a real control server and publisher."""

    def __init__(self, control: str, metrics: str, *, session: str | None = None) -> None:
        self.session = session or new_session_id()
        self.state = "idle"
        self.step = 0
        self.params = {spec.name: spec.default for spec in SPECS}
        self._lock = threading.Lock()
        self.publisher = Publisher(
            metrics,
            session=self.session,
            heartbeat_interval_s=HEARTBEAT_INTERVAL_S,
            heartbeat_body=self._heartbeat,
        )
        handlers = {op: getattr(self, f"_{op}") for op in OPERATIONS if op != "history"}
        handlers["history"] = self.publisher.history_handler
        self.server = ControlServer(control, handlers, session=self.session)

    def start(self) -> FakeTrainer:
        self.server.start()
        self.publisher.start()
        return self

    def close(self) -> None:
        self.publisher.close()
        self.server.close()

    def advance(self, steps: int) -> None:
        """Play `steps` training steps: one metrics.step message each; wait until all are numbered."""
        first = self.publisher.last_seq
        for _ in range(steps):
            with self._lock:
                self.step += 1
                body = {"step": self.step, "epoch": 0, "loss": 1.0 / self.step, "steps_per_s": 50.0,
                        "eta_s": (TOTAL_STEPS - self.step) / 50.0}  # fmt: skip
            self.publisher.publish("metrics.step", body)
        wait_until(lambda: self.publisher.last_seq >= first + steps, what=f"{steps} messages numbered")

    def _heartbeat(self) -> dict[str, Any]:
        return {"state": self.state, "step": self.step, "interval_s": HEARTBEAT_INTERVAL_S, "loop_age_s": 0.0}

    def _set_state(self, state: str, name: str) -> None:
        self.state = state
        self.publisher.publish(f"event.{name}", {"event": name, "step": self.step, "state": state})

    def _describe(self, args: dict[str, Any]) -> dict[str, Any]:
        params = [{**spec.to_dict(), "value": self.params[spec.name]} for spec in SPECS]
        return {"ops": list(OPERATIONS), "params": params, "states": list(STATES), "topics": list(TOPICS),
                "version": 1}  # fmt: skip

    def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self.state, "step": self.step, "epoch": 0, "total_steps": TOTAL_STEPS,
                "steps_per_s": 50.0, "eta_s": (TOTAL_STEPS - self.step) / 50.0,
                "metrics": {"loss": 0.5, "accuracy": 0.9}, "params": dict(self.params), "run_id": "run-1",
                "session": self.session, "last_seq": self.publisher.last_seq, "started_at": 1_700_000_000.0,
                "error": None, "last_checkpoint_step": None,
            }  # fmt: skip

    def _start(self, args: dict[str, Any]) -> dict[str, Any]:
        already = self.state == "running"
        if args.get("params"):
            self.params.update(self._coerce(args["params"]))
        if not already:
            self._set_state("running", "started")
        return {"state": self.state, "step": self.step, "already": already}

    def _stop(self, args: dict[str, Any]) -> dict[str, Any]:
        already = self.state in ("idle", "finished")
        if not already:
            self._set_state("idle", "stopped")
        return {"state": self.state, "at_step": self.step, "already": already}

    def _pause(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("running", "pause")
        self._set_state("paused", "paused")
        return {"state": self.state, "at_step": self.step, "already": False}

    def _resume(self, args: dict[str, Any]) -> dict[str, Any]:
        self._require("paused", "resume")
        self._set_state("running", "resumed")
        return {"state": self.state, "at_step": self.step, "already": False}

    def _get_params(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"params": dict(self.params)}

    def _set_params(self, args: dict[str, Any]) -> dict[str, Any]:
        changed = self._coerce(args.get("params") or {})
        self.params.update(changed)
        applies = {name: next(s.applies for s in SPECS if s.name == name) for name in changed}
        return {"params": changed, "applies_at_step": {name: self.step + 1 for name in changed},
                "applies": applies}  # fmt: skip

    def _checkpoint(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}

    def _evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}

    def _coerce(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            return coerce_params(SPECS, values)
        except (KeyError, ValueError) as exc:
            raise RequestError(ErrorCode.INVALID_PARAMS, str(exc).strip("'\"")) from None

    def _require(self, state: str, op: str) -> None:
        if self.state != state:
            raise RequestError(ErrorCode.INVALID_STATE, f"cannot {op} while {self.state}")
