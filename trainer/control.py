"""The control plane inside the trainer process: handlers, pending commands, snapshot, heartbeat.

No TensorFlow here: ``__main__`` builds a ``Controller`` and binds the sockets before TensorFlow is
imported, so ``status`` answers ``loading`` while the heavy imports run.

Threads: the protocol's server thread calls the handlers (``Controller.handlers()``); they are quick,
take one lock, validate, fire a state-machine event (``trainer.lifecycle``) or record a pending
command, and read the ``Progress`` snapshot the training loop replaces at each step. The training
loop (main thread) drains the pending commands (coalesced: ``trainer.commands``) at step
boundaries with ``take_commands``. Because a command recorded after a drain is seen at the next one,
the controller knows at which step it applies, and says so in the reply. When the loop runs
several steps per compiled call it sets ``gate``: a handler closes it, which ends the call after
the step in flight and tells which step that is (``trainer.multistep``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import OPERATIONS, PROTOCOL_VERSION, STATES, TOPICS, ErrorCode, ParamSpec, RequestError
from trainer.commands import Command, PendingCommands
from trainer.lifecycle import (
    ACTIVITY_IDLE,
    ACTIVITY_LOADING,
    FAIL,
    FAILED,
    LOADED,
    LOADED_PAUSED,
    LOADING,
    PAUSE,
    PAUSED,
    RESUME,
    RUNNING,
    START,
    STARTABLE_STATES,
    STOP,
    InvalidTransition,
    budget_refusal,
    next_state,
)
from trainer.params import BATCH_SIZE, TRAINING_ITERS, validate_updates

logger = logging.getLogger(__name__)

NOT_CHECKPOINTED_WHEN_FAILED = (
    "cannot checkpoint while failed: a failed state is never saved; start restores the last good checkpoint"
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
    samples_seen: int = 0


class Controller:
    """One per process: the state machine's only writer, and the handlers' side of the commands."""

    def __init__(
        self,
        specs: Sequence[ParamSpec],
        params: Mapping[str, Any],
        *,
        run_id: str,
        session: str,
        publish: Publish,
        heartbeat_interval_s: float = 1.0,
        max_steps: int | None = None,
        starts_when_loaded: bool = False,
    ) -> None:
        """``starts_when_loaded``: the run starts once loaded whatever is asked meanwhile (a
        multi-worker job: its other workers start without asking), so a stop waits until then."""
        self._cond = threading.Condition()  # an RLock inside: state listeners may read the state
        # Called (under the lock, in whichever thread changed it) after every state change: the
        # run's intent is recorded the moment a pause or stop is accepted, not at a later step.
        self.on_state_change: Callable[[str], None] | None = None
        self._specs = tuple(specs)
        self._params = dict(params)
        self._state = LOADING
        self._progress = Progress()
        self._pending = PendingCommands()
        self._apply_step = 1  # the first step that sees a command recorded now
        # What the owner asked for while loading (START or STOP): it wins over --autostart and
        # the run's recorded intent once loaded (a stop then means "do not start it").
        self._on_load: str | None = None
        self._starts_when_loaded = starts_when_loaded
        self._error: dict[str, Any] | None = None
        self._setup_error: dict[str, Any] | None = None  # the trainer could not be built at all
        self._started_at: float | None = None
        self._activity = ACTIVITY_LOADING
        self._activity_progress = time.monotonic()
        self._publish = publish
        self._max_steps = max_steps
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
        return {op: getattr(self, op) for op in OPERATIONS if op != "history"}

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
        with self._cond:  # references to immutable snapshots: the copies happen outside the lock
            p, state, params, error = self._progress, self._state, self._params, self._error
        return {
            "state": state,
            "step": p.step,
            "epoch": p.epoch,
            "total_steps": p.total_steps,
            "steps_per_s": p.steps_per_s,
            "eta_s": p.eta_s,
            "metrics": dict(p.metrics),
            "params": dict(params),
            "run_id": self.run_id,
            "session": self.session,
            "last_seq": self.last_seq(),
            "started_at": self._started_at,
            "error": error,
            "last_checkpoint_step": p.last_checkpoint_step,
        }

    def start(self, args: dict[str, Any]) -> dict[str, Any]:
        updates = args.get("params")
        # Absent, null or {}: no params. Any other value is checked, so a 0 or "" is refused, not ignored.
        no_params = updates is None or (isinstance(updates, Mapping) and not updates)
        values = {} if no_params else validate_updates(self._specs, updates)
        with self._cond:
            if self._state in (RUNNING, PAUSED) and not values:
                return {"state": self._state, "step": self._progress.step, "already": True}
            if self._state not in (LOADING, *STARTABLE_STATES):
                hint = "; change params with set_params" if values else ""
                raise RequestError(ErrorCode.INVALID_STATE, f"cannot start while {self._state}{hint}")
            if self._setup_error is not None:
                raise RequestError(ErrorCode.INVALID_STATE, _setup_refusal(self._setup_error, "start"))
            if self._state != LOADING:
                self._check_budget_locked({**self._params, **values})
            if values:
                self._record_params_locked(values)
            if self._state == LOADING:
                self._on_load = START
            else:
                self._error = None
                self._fire_locked(START)
            return {"state": self._state, "step": self._progress.step, "already": False}

    def stop(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            at_step = self._last_step_locked()
            if self._state in (RUNNING, PAUSED):
                self._fire_locked(STOP)
                return {"state": self._state, "at_step": at_step, "already": False}
            if self._state == LOADING and self._starts_when_loaded:
                text = "a multi-worker job starts once loaded (its workers do not wait): stop it then"
                raise RequestError(ErrorCode.NOT_READY, text)
            if self._state == LOADING and self._on_load != STOP:
                # Whatever would start it once loaded (a queued start, --autostart, the intent of a
                # run that was running when its process died) does not: it stays idle.
                self._on_load = STOP
                return {"state": self._state, "at_step": at_step, "already": False}
            return {"state": self._state, "at_step": at_step, "already": True}

    def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle(PAUSE, target=PAUSED)

    def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._toggle(RESUME, target=RUNNING)

    def get_params(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            return {"params": dict(self._params)}

    def set_params(self, args: dict[str, Any]) -> dict[str, Any]:
        """``applies_at_step`` is null while loading: the step is known once the run is restored."""
        values = validate_updates(self._specs, args.get("params"))
        with self._cond:
            self._record_params_locked(values)
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

    @property
    def setup_error(self) -> dict[str, Any] | None:
        """Why the trainer could not be set up (``setup_failed``), or None."""
        with self._cond:
            return self._setup_error

    def params(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._params)

    def take_commands(self, next_step: int, timeout_s: float = 0.0) -> list[Command]:
        """Drain the pending commands (waiting up to ``timeout_s`` for something to happen).

        The caller applies what it gets before its next step; commands recorded after this call
        apply from ``next_step``. Also counts as progress of the loop's current activity (the
        heartbeat's ``loop_age_s``).
        """
        with self._cond:
            if not self._pending and timeout_s > 0:
                self._cond.wait(timeout_s)
            taken = self._pending.drain()
            self._apply_step = next_step
            if self.gate is not None:
                self.gate.reopen()  # under the lock: a command is drained here or closes the next call
            self._activity_progress = time.monotonic()
            return taken

    def loaded(
        self,
        specs: Sequence[ParamSpec],
        params: Mapping[str, Any],
        progress: Progress,
        *,
        autostart: bool,
        paused: bool = False,
    ) -> None:
        """TensorFlow and the module are ready: leave ``loading`` (for ``running`` if asked to, or
        straight for ``paused`` when ``paused``: a restarted run its owner had paused). A start or
        a stop sent while loading wins over ``autostart``; a stop that kept it from starting
        leaves the run ``stopped``, which records the owner's stop as the run's intent."""
        with self._cond:
            self._specs = tuple(specs)
            # The restored values, then those set while loading (pending: the loop applies them).
            kept = {k: v for k, v in self._params.items() if k not in params}
            self._params = {**kept, **dict(params), **self._pending.params}
            self._progress = progress
            self._apply_step = progress.step + 1
            on_load, self._on_load = self._on_load, None
            go = on_load == START or (autostart and on_load != STOP)
            self._set_activity_locked(ACTIVITY_IDLE)
            if self._state != LOADING:
                return  # rebuilt for a start after a failed build: the start already happened
            refusal = self._budget_refusal_locked(self._params) if go else None
            if refusal is not None:
                logger.warning("not starting: %s", refusal)
                self._publish("log", {"level": "warning", "message": f"not starting: {refusal}"})
            if on_load == STOP and autostart:
                self._fire_locked(STOP)
            elif not go or refusal is not None:
                self._fire_locked(LOADED)
            else:
                self._fire_locked(LOADED_PAUSED if paused else START)

    def setup_failed(self, error: dict[str, Any]) -> None:
        """The module, data or model could not be built: ``failed``, and ``start`` is refused with
        the reason (starting again would only fail again)."""
        with self._cond:
            self._setup_error = error
            self._error = error
            self._fire_locked(FAIL)

    def fire(self, event: str, error: dict[str, Any] | None = None) -> str:
        """Apply a state-machine event from the loop or the build path; returns the new state."""
        with self._cond:
            if error is not None:
                self._error = error
            return self._fire_locked(event)

    def set_activity(self, activity: str) -> None:
        with self._cond:
            self._set_activity_locked(activity)

    def sync_params(self, values: Mapping[str, Any]) -> None:
        with self._cond:
            self._params = {**self._params, **values}

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
                "activity": self._activity,
                "loop_age_s": round(time.monotonic() - self._activity_progress, 3),
            }

    # ----- internals -----

    def _toggle(self, event: str, *, target: str) -> dict[str, Any]:
        with self._cond:
            at_step = self._last_step_locked()
            if self._state == target:
                return {"state": self._state, "at_step": at_step, "already": True}
            try:
                self._fire_locked(event)
            except InvalidTransition as exc:
                raise RequestError(ErrorCode.INVALID_STATE, str(exc), {"state": self._state}) from None
            return {"state": self._state, "at_step": at_step, "already": False}

    def _schedule(self, kind: str) -> dict[str, Any]:
        with self._cond:
            if self._state == LOADING:
                raise RequestError(ErrorCode.NOT_READY, f"cannot {kind} while loading")
            if self._setup_error is not None:  # no model to save or to evaluate
                raise RequestError(ErrorCode.INVALID_STATE, _setup_refusal(self._setup_error, kind))
            if kind == "checkpoint" and self._state == FAILED:
                raise RequestError(ErrorCode.INVALID_STATE, NOT_CHECKPOINTED_WHEN_FAILED)
            self._pending.schedule(kind)
            self._cond.notify_all()
            return {"scheduled_at_step": self._last_step_locked()}

    def _record_params_locked(self, values: Mapping[str, Any]) -> None:
        self._pending.set_params(values)
        self._params = {**self._params, **values}
        self._cond.notify_all()

    def _last_step_locked(self) -> int:
        """The last step that runs before the loop sees a command recorded now."""
        return self.gate.close() if self.gate is not None else self._apply_step - 1

    def _check_budget_locked(self, params: Mapping[str, Any]) -> None:
        reason = self._budget_refusal_locked(params)
        if reason is not None:
            raise RequestError(ErrorCode.INVALID_STATE, reason, {"state": self._state})

    def _budget_refusal_locked(self, params: Mapping[str, Any]) -> str | None:
        if TRAINING_ITERS not in params or BATCH_SIZE not in params:
            return None  # a module without a sample budget: only the loop knows
        p = self._progress
        return budget_refusal(
            training_iters=int(params[TRAINING_ITERS]),
            samples_seen=p.samples_seen,
            batch_size=int(params[BATCH_SIZE]),
            step=p.step,
            max_steps=self._max_steps,
        )

    def _applies_at_locked(self, applies: str) -> int | None:
        if self._state == LOADING:
            return None  # applies when loaded: a restored run resumes at a step not known yet
        first = self._last_step_locked() + 1
        # Idle too: the next start goes on with an epoch under way. Not after a failure: that start
        # restores a checkpoint, whose place in its epoch is not known here.
        if applies == "next_epoch" and self._state != FAILED:
            nxt = self._progress.next_epoch_step
            return max(first, nxt) if nxt is not None else first
        return first

    def _spec(self, name: str) -> ParamSpec:
        return next(s for s in self._specs if s.name == name)

    def _set_activity_locked(self, activity: str) -> None:
        self._activity = activity
        self._activity_progress = time.monotonic()

    def _fire_locked(self, event: str) -> str:
        previous = self._state
        state = next_state(previous, event)
        self._state = state
        if (state, event) in ((RUNNING, START), (PAUSED, LOADED_PAUSED)):
            self._started_at = time.time()
        if state == FAILED:
            self._pending.cancel("checkpoint")  # a failed state is never checkpointed
            self._set_activity_locked(ACTIVITY_IDLE)  # whatever failed has ended
        self._cond.notify_all()
        if previous != state:
            logger.info("state %s -> %s (%s)", previous, state, event)
            self._publish(
                "event.state",
                {"event": "state", "step": self._progress.step, "state": state, "previous": previous},
            )
            if self.on_state_change is not None:
                self.on_state_change(state)
        return state


def _setup_refusal(error: dict[str, Any], op: str) -> str:
    cause = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return f"cannot {op}: the trainer could not be set up ({cause:.300}); fix that and restart the trainer"
