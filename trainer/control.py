"""The control plane inside the trainer process: state machine, params view, command queue, snapshot.

No TensorFlow here: ``__main__`` builds a ``Controller`` and binds the sockets before TensorFlow is
imported, so ``status`` answers ``loading`` while the heavy imports run.

Threads: the protocol's server thread calls the handlers (``Controller.handlers()``); they are quick,
take one lock, validate, change the state or enqueue a ``Command``, and read the ``Progress`` snapshot
the training loop replaces at each step. The training loop (main thread) drains commands at step
boundaries with ``take_commands``. Because a command enqueued after a drain is seen at the next one,
the controller knows exactly at which step it applies, and says so in the reply. When the loop
runs several steps per compiled call it sets ``gate``: a handler closes it, which ends the call
after the step in flight and tells which step that is (``trainer.multistep``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import OPERATIONS, PROTOCOL_VERSION, STATES, ErrorCode, ParamSpec, RequestError
from trainer.params import validate_updates

logger = logging.getLogger(__name__)

# The states are the protocol's (PROTOCOL.md); named here for the state machine.
LOADING, IDLE, RUNNING, PAUSED, STOPPING, FINISHED, FAILED = STATES
STARTABLE_STATES = (IDLE, FINISHED, FAILED)
EVENTS = "started param_changed checkpoint_saved paused resumed stopped finished failed evaluated state"
TOPICS = ("metrics.step", "metrics.report", "metrics.val", "metrics.test", "log") + tuple(
    f"event.{name}" for name in EVENTS.split()
)

Publish = Callable[[str, dict[str, Any]], None]


class Gate(Protocol):
    """What the graph reads before every step (``trainer.multistep.StepGate``)."""

    def close(self) -> int:
        """No step is claimed after this; returns the last step that was."""
        ...

    def reopen(self) -> None: ...


@dataclass(frozen=True)
class Progress:
    """What the loop last reported; replaced as a whole, never mutated."""

    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    steps_per_s: float = 0.0
    eta_s: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    last_checkpoint_step: int | None = None
    next_epoch_step: int | None = None


@dataclass(frozen=True)
class Command:
    """Work for the loop: ``set_params`` (with ``params``), ``checkpoint`` or ``evaluate``."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


class Controller:
    """One per process: the state machine and the handlers' side of the command queue."""

    def __init__(
        self,
        specs: Sequence[ParamSpec],
        params: Mapping[str, Any],
        *,
        run_id: str,
        session: str,
        publish: Publish,
        heartbeat_interval_s: float = 1.0,
    ) -> None:
        self._cond = threading.Condition()
        self._specs = tuple(specs)
        self._params = dict(params)
        self._state = LOADING
        self._progress = Progress()
        self._commands: deque[Command] = deque()
        self._apply_step = 1  # the first step that sees a command enqueued now
        self._start_queued = False
        self._error: dict[str, Any] | None = None
        self._started_at: float | None = None
        self._last_check_in = time.monotonic()
        self._publish = publish
        self.run_id = run_id
        self.session = session
        self.heartbeat_interval_s = heartbeat_interval_s
        # Set from a signal handler, so a plain attribute: taking the lock there could deadlock.
        self.signal_stop = False
        self.last_seq: Callable[[], int] = lambda: 0
        # Set by the loop when it runs several steps per call: where a command applies comes from it.
        self.gate: Gate | None = None

    # ----- handlers (server thread) -----

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "describe": self.describe,
            "status": self.status,
            "start": self.start,
            "stop": self.stop,
            "pause": self.pause,
            "resume": self.resume,
            "get_params": self.get_params,
            "set_params": self.set_params,
            "checkpoint": self.checkpoint,
            "evaluate": self.evaluate,
        }

    def describe(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            params = [{**s.to_dict(), "value": self._params.get(s.name)} for s in self._specs]
        return {
            "ops": list(OPERATIONS),
            "params": params,
            "states": list(STATES),
            "topics": list(TOPICS),
            "version": PROTOCOL_VERSION,
        }

    def status(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            p, state = self._progress, self._state
            return {
                "state": state,
                "step": p.step,
                "epoch": p.epoch,
                "total_steps": p.total_steps,
                "steps_per_s": p.steps_per_s,
                "eta_s": p.eta_s,
                "metrics": dict(p.metrics),
                "params": dict(self._params),
                "run_id": self.run_id,
                "session": self.session,
                "last_seq": self.last_seq(),
                "started_at": self._started_at,
                "error": self._error,
                "last_checkpoint_step": p.last_checkpoint_step,
            }

    def start(self, args: dict[str, Any]) -> dict[str, Any]:
        updates = args.get("params")
        values = validate_updates(self._specs, updates) if updates else {}
        with self._cond:
            if self._state in (RUNNING, PAUSED) and not values:
                return {"state": self._state, "step": self._progress.step, "already": True}
            if self._state not in (LOADING, *STARTABLE_STATES):
                raise RequestError(
                    ErrorCode.INVALID_STATE,
                    f"cannot start while {self._state}"
                    + ("; change params with set_params" if values else ""),
                )
            if values:
                self._enqueue_locked(Command("set_params", values))
                self._params.update(values)
            if self._state == LOADING:
                self._start_queued = True
            else:
                self._error = None
                self._transition_locked(RUNNING)
            return {"state": self._state, "step": self._progress.step, "already": False}

    def stop(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            at_step = self._last_step_locked()
            if self._state in (RUNNING, PAUSED):
                self._transition_locked(STOPPING)
                return {"state": self._state, "at_step": at_step, "already": False}
            if self._state == LOADING and self._start_queued:
                self._start_queued = False
                return {"state": self._state, "at_step": at_step, "already": False}
            return {"state": self._state, "at_step": at_step, "already": True}

    def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle(PAUSED, from_state=RUNNING)

    def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle(RUNNING, from_state=PAUSED)

    def get_params(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            return {"params": dict(self._params)}

    def set_params(self, args: dict[str, Any]) -> dict[str, Any]:
        values = validate_updates(self._specs, args.get("params"))
        with self._cond:
            self._enqueue_locked(Command("set_params", values))
            self._params.update(values)
            applies = {name: self._spec(name).applies for name in values}
            at_step = {name: self._applies_at_locked(how) for name, how in applies.items()}
        return {"params": values, "applies_at_step": at_step, "applies": applies}

    def checkpoint(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._schedule("checkpoint")

    def evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._schedule("evaluate")

    # ----- loop side (main thread) -----

    @property
    def state(self) -> str:
        with self._cond:
            return self._state

    @property
    def specs(self) -> tuple[ParamSpec, ...]:
        return self._specs

    def params(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._params)

    def take_commands(self, next_step: int, timeout_s: float = 0.0) -> list[Command]:
        """Drain the queue (waiting up to ``timeout_s`` for something to happen).

        The caller applies what it gets before its next step; commands enqueued after this call
        apply from ``next_step``. Also counts as the loop checking in (heartbeat ``loop_age_s``).
        """
        with self._cond:
            if not self._commands and timeout_s > 0:
                self._cond.wait(timeout_s)
            taken = list(self._commands)
            self._commands.clear()
            self._apply_step = next_step
            if self.gate is not None:
                self.gate.reopen()  # under the lock: a command is drained here or closes the next call
            self._last_check_in = time.monotonic()
            return taken

    def loaded(
        self, specs: Sequence[ParamSpec], params: Mapping[str, Any], progress: Progress, *, autostart: bool
    ) -> None:
        """TensorFlow and the module are ready: leave ``loading``."""
        with self._cond:
            self._specs = tuple(specs)
            self._params = {**dict(params), **{k: v for k, v in self._params.items() if k not in params}}
            self._progress = progress
            self._apply_step = progress.step + 1
            go = autostart or self._start_queued
            self._start_queued = False
            self._transition_locked(RUNNING if go else IDLE)

    def set_state(self, state: str, error: dict[str, Any] | None = None) -> None:
        with self._cond:
            if error is not None:
                self._error = error
            self._transition_locked(state)

    def sync_params(self, values: Mapping[str, Any]) -> None:
        with self._cond:
            self._params.update(values)

    def update_progress(self, **changes: Any) -> None:
        with self._cond:
            self._progress = dataclasses.replace(self._progress, **changes)

    def progress(self) -> Progress:
        with self._cond:
            return self._progress

    def heartbeat_body(self) -> dict[str, Any]:
        with self._cond:
            return {
                "state": self._state,
                "step": self._progress.step,
                "interval_s": self.heartbeat_interval_s,
                "loop_age_s": round(time.monotonic() - self._last_check_in, 3),
            }

    # ----- internals -----

    def _toggle(self, target: str, *, from_state: str) -> dict[str, Any]:
        with self._cond:
            at_step = self._last_step_locked()
            if self._state == target:
                return {"state": self._state, "at_step": at_step, "already": True}
            if self._state != from_state:
                verb = "pause" if target == PAUSED else "resume"
                raise RequestError(
                    ErrorCode.INVALID_STATE, f"cannot {verb} while {self._state}", {"state": self._state}
                )
            self._transition_locked(target)
            return {"state": self._state, "at_step": at_step, "already": False}

    def _schedule(self, kind: str) -> dict[str, Any]:
        with self._cond:
            if self._state == LOADING:
                raise RequestError(ErrorCode.NOT_READY, f"cannot {kind} while loading")
            self._enqueue_locked(Command(kind))
            return {"scheduled_at_step": self._last_step_locked()}

    def _enqueue_locked(self, command: Command) -> None:
        self._commands.append(command)
        self._cond.notify_all()

    def _last_step_locked(self) -> int:
        """The last step that runs before the loop sees a command enqueued now."""
        return self.gate.close() if self.gate is not None else self._apply_step - 1

    def _applies_at_locked(self, applies: str) -> int:
        first = self._last_step_locked() + 1
        if applies == "next_epoch" and self._state in (RUNNING, PAUSED, STOPPING):
            nxt = self._progress.next_epoch_step
            return max(first, nxt) if nxt is not None else first
        return first

    def _spec(self, name: str) -> ParamSpec:
        return next(s for s in self._specs if s.name == name)

    def _transition_locked(self, state: str) -> None:
        previous, self._state = self._state, state
        if state == RUNNING and previous in (LOADING, *STARTABLE_STATES):
            self._started_at = time.time()
        self._cond.notify_all()
        if previous != state:
            logger.info("state %s -> %s", previous, state)
            self._publish(
                "event.state",
                {"event": "state", "step": self._progress.step, "state": state, "previous": previous},
            )
