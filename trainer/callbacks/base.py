"""The callback base: every hook a no-op with one signature ``(self, trainer, logs)``.

``logs`` holds plain Python floats only (read once per compiled call before any callback sees it);
step, epoch, params and error details are read from the trainer, which a hook sees as a
``TrainerView`` (``trainer.callbacks.view``). Callbacks act through the view's methods
(``request_stop()``, ``request_checkpoint()``, ``fail(exc)``, ...), never by raising; the loop acts
on the requests once the hook has run on every callback. The hook order is written in
``trainer.trainer``'s docstring.

A callback's ``state_dict()`` is saved in every checkpoint (``callback_states``, keyed by class
name) and handed back to its ``load_state_dict`` when the trainer restores one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from trainer.callbacks.view import TrainerView

logger = logging.getLogger(__name__)

Logs = Mapping[str, float]

HOOKS = (
    "on_train_start",
    "on_train_end",
    "on_epoch_start",
    "on_epoch_end",
    "on_step_end",
    "on_call_end",
    "on_boundary",
    "on_report",
    "on_validation_end",
    "on_test_end",
    "on_checkpoint",
    "on_checkpoint_failed",
    "on_params_changed",
    "on_activity",
    "on_exception",
)


class Callback:
    """Base class; override the hooks you need."""

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        """Before the first step of a ``fit`` (after a restore, if any)."""

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After the final checkpoint and test; ``logs`` holds the test metrics."""

    def on_epoch_start(self, trainer: TrainerView, logs: Logs) -> None:
        """Before the first step of an epoch, or of the rest of one under way (a stop or a restart
        came between); the batch size for it is fixed by now."""

    def on_epoch_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After the last step of an epoch (also when a stop ends it early)."""

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After every step: loss, finite, steps_per_s, eta_s (a step boundary)."""

    def on_call_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After the steps of one compiled call went through ``on_step_end`` and before
        ``on_boundary`` (where control may hold a pause): work batched per call is sent here."""

    def on_boundary(self, trainer: TrainerView, logs: Logs) -> None:
        """After the steps of one compiled call, the loop back on the host (``logs`` empty)."""

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        """Every ``display_step`` steps: the step logs plus accuracy etc and lr."""

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After an evaluation on the validation set; ``logs`` holds its metrics."""

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        """After an evaluation on the test set; ``logs`` holds its metrics."""

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        """After a checkpoint was written (``trainer.last_checkpoint_path``)."""

    def on_checkpoint_failed(self, trainer: TrainerView, logs: Logs) -> None:
        """A checkpoint could not be written (``trainer.checkpoint_error``: its step and why);
        ``trainer.last_checkpoint_step`` is still the last good one."""

    def on_params_changed(self, trainer: TrainerView, logs: Logs) -> None:
        """After params changed; details in ``trainer.param_changes``."""

    def on_activity(self, trainer: TrainerView, logs: Logs) -> None:
        """The loop began or ended something long: ``trainer.activity`` says what it does now."""

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        """The run failed; ``trainer.error_info`` says why (the checkpoint on disk is kept)."""

    def next_boundary(self, trainer: TrainerView) -> int | None:
        """The step after which this callback needs the loop on the host (None: no need).

        Several steps run per compiled call; ``on_step_end`` replays them afterwards, so a request
        made there is acted on at the call's end. A callback that must act at an exact step (a
        checkpoint every N steps) says which one here, and the call ends there."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What must survive a restart, JSON-encodable (saved in every checkpoint; {}: nothing)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def dispatch(callbacks: Sequence[Callback], hook: str, trainer: TrainerView, logs: Logs) -> None:
    """Call ``hook`` on every callback, in order.

    A failing ``on_exception`` is logged and skipped so that every callback hears of the failure;
    elsewhere an exception in a callback is a bug that fails the run like one in user code.
    """
    for callback in callbacks:
        method = getattr(callback, hook)
        if hook != "on_exception":
            method(trainer, logs)
            continue
        try:
            method(trainer, logs)
        except Exception:
            logger.exception("%s.on_exception failed", type(callback).__name__)


def state_keys(callbacks: Sequence[Callback]) -> list[str]:
    """One stable key per callback: its class name, ``Name[i]`` for the i-th (i >= 1) of a kind, so
    adding a second of a kind leaves the first one's key as it was."""
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        name = type(callback).__name__
        index = seen[name] = seen.get(name, -1) + 1
        keys.append(name if index == 0 else f"{name}[{index}]")
    return keys


def callback_states(callbacks: Sequence[Callback]) -> dict[str, dict[str, Any]]:
    """Every non-empty ``state_dict()`` by key; one JSON cannot encode fails naming its callback
    (found at the save, not as a checkpoint that cannot be read back)."""
    states = {}
    for key, callback in zip(state_keys(callbacks), callbacks, strict=True):
        state = callback.state_dict()
        if not state:
            continue
        try:
            json.dumps(state)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{key}.state_dict() cannot be saved in a checkpoint (not JSON): {exc}") from exc
        states[key] = state
    return states


def load_callback_states(callbacks: Sequence[Callback], states: Mapping[str, Any]) -> None:
    """Hand each callback its saved state. A callback with none saved (a checkpoint from before it
    was added, or from before callback state was saved) keeps its own; a saved state no callback
    claims (one since removed) is ignored."""
    keys = state_keys(callbacks)
    for key, callback in zip(keys, callbacks, strict=True):
        if key in states:
            callback.load_state_dict(states[key])
    unclaimed = sorted(set(states) - set(keys))
    if unclaimed:
        logger.info("checkpoint holds state of callbacks not in this run (ignored): %s", unclaimed)
