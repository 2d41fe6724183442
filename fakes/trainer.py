"""A fake trainer for the protocol, sidecar and trainctl tests: the real ControlServer and Publisher,
with small handlers in place of a training loop.

Every op of `protocol.OPERATIONS` is served by an `op_<name>` method; state, step and params are
plain attributes the handlers read and write under `lock`, so tests may also set them directly.
Tests play training with `advance()` (metrics.steps) or `report()` (metrics.report), publish bursts
with `publish_many()` and announce anything else with `event()`; `requests` lists the ops asked
for, in order, and `history_calls` records the `history` requests (its `handler` may be replaced).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from protocol import (
    METRICS_STEPS,
    OPERATIONS,
    STATES,
    TOPICS,
    ControlServer,
    ErrorCode,
    ParamSpec,
    Publisher,
    RequestError,
    ServerCurve,
    coerce_params,
    new_session_id,
    steps_body,
)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
T = TypeVar("T")

HEARTBEAT_INTERVAL_S = 0.1
WAIT_TIMEOUT_S = 10.0
WAIT_POLL_S = 0.005
HISTORY_SIZE = 10_000
SEND_HWM = 10_000
QUEUE_SIZE = 100_000  # tests publish bursts faster than a real loop: keep them all
TOTAL_STEPS = 1000
STEPS_PER_S = 50.0
STARTED_AT = 1_700_000_000.0  # fixed, so two status replies compare equal
STARTABLE = ("idle", "finished", "failed")
ACTIVE = ("running", "paused")

SEED_SPECS = (  # the seed project's four parameters
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


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float = WAIT_TIMEOUT_S,
    what: str = "",
    poll_s: float = WAIT_POLL_S,
) -> T:
    """The first truthy `predicate()`, checked until `timeout_s`; AssertionError naming `what`.

    For states only a probe can see (a file, a pid in /proc, a fake's attribute); what arrives as
    an event is awaited on a condition instead (`fakes.recorder`, the fake servers' `wait_until`)."""
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(poll_s)
    return found


class CallLog:
    """A handler wrapper that records every call, so tests can assert what ran and what did not."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.called = threading.Event()
        self.handler = handler or (lambda args: {"n": len(self.calls)})

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(args)
        self.called.set()
        return self.handler(args)

    @property
    def count(self) -> int:
        return len(self.calls)


class FakeTrainer:
    """State, params and steps behind a real control server and publisher.

    `stopped_state` is where `stop` leaves a run; `announce` publishes an event on every state
    change, as the real trainer does. `broken_status` makes `status` answer a malformed body.
    `heartbeat_body` replaces the heartbeat's (state, step, loop age); `extra_handlers` add or
    replace ops; the publisher's sizes are Publisher's options.
    """

    def __init__(
        self,
        control: str,
        metrics: str,
        *,
        specs: tuple[ParamSpec, ...] = SEED_SPECS,
        step: int = 0,
        state: str = "idle",
        session: str | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        stopped_state: str = "stopped",
        announce: bool = True,
        curve: ServerCurve | None = None,
        heartbeat_body: Callable[[], dict[str, Any]] | None = None,
        history_size: int = HISTORY_SIZE,
        send_hwm: int = SEND_HWM,
        queue_size: int = QUEUE_SIZE,
        extra_handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.session = session or new_session_id()
        self.specs = specs
        self.lock = threading.Lock()
        self.state = state
        self.step = step
        self.params = {spec.name: spec.default for spec in specs}
        self.stopped_state = stopped_state
        self.announce = announce
        self.broken_status = False
        self.requests: list[str] = []
        self.publisher = Publisher(
            metrics,
            session=self.session,
            heartbeat_interval_s=heartbeat_interval_s,
            heartbeat_body=heartbeat_body or self._heartbeat,
            curve=curve,
            history_size=history_size,
            send_hwm=send_hwm,
            queue_size=queue_size,
        )
        self.history_calls = CallLog(self.publisher.history_handler)
        handlers = {op: self._recorded(op, getattr(self, f"op_{op}")) for op in OPERATIONS}
        handlers.update(extra_handlers or {})
        self.server = ControlServer(control, handlers, session=self.session, curve=curve)

    def start(self) -> FakeTrainer:
        self.publisher.start()
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close()
        self.publisher.close()

    # -- what tests play ----------------------------------------------------------------------
    def advance(self, steps: int) -> None:
        """Play `steps` training steps, one call of one step each (as a trainer at one step per call:
        a metrics.steps message per step); wait until all are numbered."""
        first = self.publisher.last_seq
        for _ in range(steps):
            with self.lock:
                self.step += 1
                last = {"loss": 1.0 / self.step, "steps_per_s": STEPS_PER_S, "eta_s": self._eta_s()}
                body = steps_body(self.step, 0, [last["loss"]], last)
            self.publisher.publish(METRICS_STEPS, body)
        wait_until(lambda: self.publisher.last_seq >= first + steps, what=f"{steps} messages numbered")

    def publish_many(self, count: int, topic: str = METRICS_STEPS, pad: str = "") -> None:
        """Publish `count` messages `{i, pad}` back to back; wait until all are numbered."""
        first = self.publisher.last_seq
        for index in range(count):
            self.publisher.publish(topic, {"i": index, "pad": pad})
        wait_until(lambda: self.publisher.last_seq >= first + count, what=f"{count} messages published")

    def report(self, step: int, loss: float = 0.5, accuracy: float = 0.8) -> None:
        """Publish one metrics.report at `step` (publish only queues: nothing is awaited)."""
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
                "lr": self.params.get("learning_rate"),
            },
        )

    def event(self, name: str, **extra: Any) -> None:
        with self.lock:
            body = {"event": name, "step": self.step, "state": self.state, **extra}
        self.publisher.publish(f"event.{name}", body)

    # -- control ops ----------------------------------------------------------------------------
    def op_describe(self, args: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            params = [{**spec.to_dict(), "value": self.params[spec.name]} for spec in self.specs]
        return {"ops": list(OPERATIONS), "params": params, "states": list(STATES), "topics": list(TOPICS),
                "version": 1}  # fmt: skip

    def op_status(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.broken_status:
            return {"surprise": True}
        with self.lock:
            return {
                "state": self.state, "step": self.step, "epoch": 0, "total_steps": TOTAL_STEPS,
                "steps_per_s": STEPS_PER_S, "eta_s": self._eta_s(),
                "metrics": {"loss": 0.5, "accuracy": 0.9}, "params": dict(self.params), "run_id": "run-1",
                "session": self.session, "last_seq": self.publisher.last_seq, "started_at": STARTED_AT,
                "error": None, "last_checkpoint_step": None,
            }  # fmt: skip

    def op_start(self, args: dict[str, Any]) -> dict[str, Any]:
        changes = self._coerce(args.get("params") or {})
        with self.lock:
            self.params.update(changes)
            already = self.state in ACTIVE
            if not already:
                self.state = "running"
            reply = {"state": self.state, "step": self.step, "already": already}
        if not already:
            self._announce("started")
        return reply

    def op_stop(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stopping a run that is not active answers `already`, as the contract says."""
        with self.lock:
            already = self.state not in ACTIVE
            if not already:
                self.state = self.stopped_state
            reply = {"state": self.state, "at_step": self.step, "already": already}
        if not already:
            self._announce("stopped")
        return reply

    def op_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle("pause", "running", "paused", "paused")

    def op_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle("resume", "paused", "running", "resumed")

    def op_get_params(self, args: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return {"params": dict(self.params)}

    def op_set_params(self, args: dict[str, Any]) -> dict[str, Any]:
        changes = self._coerce(args.get("params") or {})
        applies = {spec.name: spec.applies for spec in self.specs}
        with self.lock:
            self.params.update(changes)
            at = self.step + 1
        return {
            "params": changes,
            "applies_at_step": {name: at for name in changes},
            "applies": {name: applies[name] for name in changes},
        }

    def op_history(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.history_calls(args)

    def op_checkpoint(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}

    def op_evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"scheduled_at_step": self.step + 1}

    # -- internals ------------------------------------------------------------------------------
    def _recorded(self, op: str, handler: Handler) -> Handler:
        def handle(args: dict[str, Any]) -> dict[str, Any]:
            self.requests.append(op)
            return handler(args)

        return handle

    def _heartbeat(self) -> dict[str, Any]:
        with self.lock:
            return {"state": self.state, "step": self.step, "loop_age_s": 0.0}

    def _eta_s(self) -> float:
        return (TOTAL_STEPS - self.step) / STEPS_PER_S

    def _toggle(self, op: str, source: str, target: str, event: str) -> dict[str, Any]:
        with self.lock:
            already = self.state == target
            if not already and self.state != source:
                raise RequestError(ErrorCode.INVALID_STATE, f"cannot {op} while {self.state}")
            self.state = target
            reply = {"state": target, "at_step": self.step, "already": already}
        if not already:
            self._announce(event)
        return reply

    def _announce(self, event: str) -> None:
        if self.announce:
            self.event(event)

    def _coerce(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            return coerce_params(self.specs, values)
        except (KeyError, ValueError) as exc:
            raise RequestError(ErrorCode.INVALID_PARAMS, str(exc).strip("'\"")) from None
