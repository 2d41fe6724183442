"""The run's state machine in one table, the loop's activities, and the training budget.

Every writer of the state (the request handlers, the loop's callbacks, the build and import paths
of the process) goes through ``next_state`` via ``Controller.fire``; nothing else assigns a state.
No TensorFlow here.

    (state, event) -> state
    loading  --loaded-->  idle
    loading  --start-->  running      (once loaded: --autostart, or a start queued while loading)
    loading  --stop-->  stopped       (once loaded: a stop sent while loading kept it from starting)
    idle | stopped | finished | failed  --start-->  running
    running  --pause-->  paused  --resume-->  running
    running | paused  --stop-->  stopping
    running | stopping  --finish-->  finished     (the budget is used up)
    running | paused | stopping  --end_early-->  stopped   (the loop ended before its budget)
    any  --fail-->  failed

A ``start`` from ``finished`` (or any startable state) whose budget is used up is refused by the
controller ("budget used up: ..."), so a finished run never re-runs its test.
"""

from __future__ import annotations

from protocol import STATES

# The states are the protocol's (PROTOCOL.md); named here for the table.
LOADING, IDLE, RUNNING, PAUSED, STOPPING, STOPPED, FINISHED, FAILED = STATES

LOADED, START, PAUSE, RESUME, STOP, FINISH, END_EARLY, FAIL = (
    "loaded",
    "start",
    "pause",
    "resume",
    "stop",
    "finish",
    "end_early",
    "fail",
)
# Only the load path fires this one: a run that was paused when its process died comes back
# paused, in one step (through `running` it would show a start that never happens).
LOADED_PAUSED = "loaded_paused"
STARTABLE_STATES = (IDLE, STOPPED, FINISHED, FAILED)

TRANSITIONS: dict[tuple[str, str], str] = {
    (LOADING, LOADED): IDLE,
    (LOADING, START): RUNNING,
    (LOADING, LOADED_PAUSED): PAUSED,
    (LOADING, STOP): STOPPED,
    **{(state, START): RUNNING for state in STARTABLE_STATES},
    (RUNNING, PAUSE): PAUSED,
    (PAUSED, RESUME): RUNNING,
    (RUNNING, STOP): STOPPING,
    (PAUSED, STOP): STOPPING,
    (RUNNING, FINISH): FINISHED,
    (STOPPING, FINISH): FINISHED,
    (RUNNING, END_EARLY): STOPPED,
    (PAUSED, END_EARLY): STOPPED,
    (STOPPING, END_EARLY): STOPPED,
    **{(state, FAIL): FAILED for state in STATES},
}

# What the loop is doing, for the heartbeat (``activity``; ``loop_age_s`` is the age of its last
# progress). Holding on pause and waiting between runs are both ``idle``.
ACTIVITY_LOADING, ACTIVITY_IDLE, ACTIVITY_STEP = "loading", "idle", "step"
ACTIVITY_TRACING, ACTIVITY_EVALUATING, ACTIVITY_CHECKPOINTING = "tracing", "evaluating", "checkpointing"
ACTIVITIES = (
    ACTIVITY_LOADING,
    ACTIVITY_IDLE,
    ACTIVITY_STEP,
    ACTIVITY_TRACING,
    ACTIVITY_EVALUATING,
    ACTIVITY_CHECKPOINTING,
)


class InvalidTransition(ValueError):
    """``event`` does not apply in ``state``."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"cannot {event.replace('_', ' ')} while {state}")
        self.state = state
        self.event = event


def next_state(state: str, event: str) -> str:
    """The state after ``event`` in ``state``; raises ``InvalidTransition`` if it does not apply."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def steps_left(
    *, training_iters: int, samples_seen: int, batch_size: int, step: int, max_steps: int | None
) -> int:
    """Steps the budget still allows: whole batches left of ``training_iters`` samples, capped by
    the global ``max_steps``."""
    left = max(0, training_iters - samples_seen) // max(1, batch_size)
    if max_steps is not None:
        left = min(left, max_steps - step)
    return max(0, left)


def budget_refusal(
    *, training_iters: int, samples_seen: int, batch_size: int, step: int, max_steps: int | None
) -> str | None:
    """Why a ``start`` would have nothing to run (the budget is used up), or None."""
    left = steps_left(
        training_iters=training_iters,
        samples_seen=samples_seen,
        batch_size=batch_size,
        step=step,
        max_steps=max_steps,
    )
    if left > 0:
        return None
    limit = f"max_steps {max_steps}" if max_steps is not None and step >= max_steps else ""
    limit = limit or f"training_iters {training_iters}, {samples_seen} samples seen"
    return f"budget used up at step {step} ({limit}): raise ti or start a new run dir"
