"""What a callback is handed: ``TrainerView``, a typed view of the trainer (what it may read, what
it may ask for), as Lightning hands its ``Trainer`` to its callbacks.

A callback steers the loop only through the view's methods: ``request_stop()``,
``request_checkpoint()``, ``request_evaluation()``, ``request_rollback()``, ``fail(exc)``,
``set_params(...)``. A request is recorded (``Requests``) and acted on by the loop once every
callback's hook has run, at the points ``trainer.trainer``'s docstring names, so the order of the
callbacks does not decide what a request does. ``trainer.Trainer`` and ``chattrain.keras.FitRun``
both satisfy the view (mypy checks it where they are passed to ``dispatch``).

This module imports no TensorFlow (``trainer.callbacks`` stays free of it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from protocol import ParamSpec
    from trainer.control import Gate


@dataclass
class Requests:
    """What the callbacks asked of the loop since it last acted (the trainer's private state).

    ``stop`` lasts until the fit ends; the others are taken when served."""

    stop: bool = False
    checkpoint: bool = False
    evaluate: bool = False
    rollback: bool = False
    failure: BaseException | None = None


class TrainerView(Protocol):
    """The trainer as a callback sees it. The properties are read-only here."""

    @property
    def step(self) -> int:
        """Steps done (in ``on_step_end``: the step just replayed)."""

    @property
    def epoch(self) -> int:
        """Completed passes over the training data."""

    @property
    def samples_seen(self) -> int: ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The live params by name (change them with ``set_params``)."""

    @property
    def specs(self) -> Sequence[ParamSpec]:
        """The declarations of the live params."""

    @property
    def steps_per_s(self) -> float: ...

    @property
    def last_step_finite(self) -> bool:
        """Whether the last step's loss and gradients were finite (its update applied)."""

    @property
    def last_checkpoint_step(self) -> int | None: ...

    @property
    def last_checkpoint_path(self) -> str | None: ...

    @property
    def checkpoint_error(self) -> Mapping[str, Any] | None:
        """In ``on_checkpoint_failed``: the step whose save failed and why."""

    @property
    def next_epoch_step(self) -> int | None:
        """The first step of the next epoch, when the epoch's length is known."""

    @property
    def param_changes(self) -> Sequence[Mapping[str, Any]]:
        """In ``on_params_changed``: one record per changed param (name, old, new, applies_at_step,
        reason)."""

    @property
    def error_info(self) -> Mapping[str, Any] | None:
        """In ``on_exception``: why the run failed (``trainer.errors.describe_error``)."""

    @property
    def activity(self) -> str:
        """What the loop does now (``trainer.lifecycle.ACTIVITY_*``)."""

    @property
    def in_fit(self) -> bool: ...

    @property
    def run_dir(self) -> Path: ...

    @property
    def gate(self) -> Gate | None:
        """What ends a compiled call of several steps early (None: one step per call)."""

    def total_steps(self) -> int:
        """The step the run ends at, as far as known."""

    def ending(self) -> str:
        """How a run that ends now ends: ``finished`` or ``stopped``."""

    def learning_rate(self) -> float: ...

    def request_stop(self) -> None:
        """End the run at this step boundary (the steps of the current call have run)."""

    def request_checkpoint(self) -> None:
        """Save a checkpoint at this step boundary (written in the background)."""

    def request_evaluation(self) -> None:
        """Evaluate on the validation set at this step boundary (``on_validation_end``)."""

    def request_rollback(self) -> None:
        """Restore the last checkpoint after this step (a non-finite step: ``NonFinitePolicy``)."""

    def fail(self, exc: BaseException) -> None:
        """Fail the run with ``exc`` once this hook has run on every callback (``on_exception``)."""

    def set_params(self, values: Mapping[str, Any], *, at_step: int | None = None) -> None:
        """Apply already validated ``values`` now (``on_params_changed`` follows)."""

    def hold(self) -> None:
        """While a callback holds the loop at a boundary (a pause), at every poll: serve what was
        requested meanwhile (and keep the other workers of a multi-worker job holding too)."""

    def doing(self, activity: str) -> AbstractContextManager[None]:
        """``activity`` is what the loop does inside (``on_activity`` at both ends): a callback
        that holds the loop says so with ``doing(ACTIVITY_IDLE)``."""

    def persist_params(self) -> None:
        """Keep the params in use beside the latest checkpoint (a change made outside a run), so a
        restart restores them without a new checkpoint."""


@contextlib.contextmanager
def doing(run: Any, activity: str) -> Iterator[None]:
    """``run.activity`` is ``activity`` inside, the previous one after; ``on_activity`` on each change
    (``Trainer.doing`` and ``FitRun.doing``)."""
    previous, run.activity = run.activity, activity
    run.dispatch("on_activity", {})
    try:
        yield
    finally:
        run.activity = previous
        run.dispatch("on_activity", {})
