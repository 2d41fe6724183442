"""The bridge between the ``Controller`` (handlers, server thread) and the loop (main thread).

At each step boundary it publishes progress into the controller's snapshot, drains the pending
commands (params, checkpoint-now, evaluate-now) and reads the state: ``stopping`` asks the trainer
to stop (``request_stop``); ``paused`` holds here, at the boundary, still draining commands and
checking in so heartbeats show the loop alive (``trainer.hold()`` at every poll), until resumed or
stopped. The run's end and its
failure are state-machine events (``finish``, ``end_early``, ``fail``) fired here; the loop's
activity (``on_activity``) goes to the heartbeat.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView
from trainer.commands import Command
from trainer.control import Controller, Publish
from trainer.lifecycle import ACTIVITY_IDLE, END_EARLY, FAIL, FINISH, PAUSED, RUNNING, STOP, STOPPING

logger = logging.getLogger(__name__)

HOLD_POLL_S = 0.25


def apply_commands(trainer: TrainerView, commands: list[Command], at_step: int) -> None:
    """Hand commands to the trainer: changed params now, checkpoint / evaluate as requests (served
    at the boundary, or by ``hold`` while paused).

    A value equal to the one in use is no change (no event, no log line)."""
    for command in commands:
        if command.kind == "set_params":
            changed = {k: v for k, v in command.params.items() if trainer.params.get(k) != v}
            if changed:
                trainer.set_params(changed, at_step=at_step)
        elif command.kind == "checkpoint":
            trainer.request_checkpoint()
        elif command.kind == "evaluate":
            trainer.request_evaluation()


class ControlBridge(Callback):
    def __init__(self, controller: Controller, publish: Publish) -> None:
        self._controller = controller
        self._publish = publish
        self._last_loss = float("nan")

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.gate = trainer.gate  # handlers close it: the graph ends its call
        self._push_progress(trainer, {})
        self._boundary(trainer)

    def on_epoch_start(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.update_progress(epoch=trainer.epoch, next_epoch_step=trainer.next_epoch_step)

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._last_loss = logs.get("loss", float("nan"))

    def on_boundary(self, trainer: TrainerView, logs: Logs) -> None:
        self._push_progress(trainer, {"loss": self._last_loss})
        self._boundary(trainer)

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self._push_progress(trainer, logs)

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._push_progress(trainer, {f"val_{k}": v for k, v in logs.items()})

    def on_test_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._push_progress(trainer, {f"test_{k}": v for k, v in logs.items()})

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.update_progress(last_checkpoint_step=trainer.last_checkpoint_step)

    def on_params_changed(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.sync_params({c["name"]: c["new"] for c in trainer.param_changes})
        self._controller.update_progress(total_steps=trainer.total_steps())

    def on_activity(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.set_activity(trainer.activity)

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._controller.fire(FINISH if trainer.ending() == "finished" else END_EARLY)

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self._push_progress(trainer, {})  # the steps of a failed call ran, unreplayed
        error = trainer.error_info
        self._controller.fire(FAIL, error=dict(error) if error is not None else None)

    def _push_progress(self, trainer: TrainerView, metrics: Logs) -> None:
        merged = {**self._controller.progress().metrics, **metrics}
        steps_per_s = trainer.steps_per_s
        total = trainer.total_steps()
        self._controller.update_progress(
            step=trainer.step,
            epoch=trainer.epoch,
            samples_seen=trainer.samples_seen,
            total_steps=total,
            steps_per_s=steps_per_s,
            eta_s=(total - trainer.step) / steps_per_s if steps_per_s else None,
            metrics=merged,
        )

    def _boundary(self, trainer: TrainerView) -> None:
        """Between step ``trainer.step`` and the next one."""
        upcoming = trainer.step + 1
        apply_commands(trainer, self._controller.take_commands(upcoming + 1), upcoming)
        if self._controller.signal_stop and self._controller.state in (RUNNING, PAUSED):
            self._controller.fire(STOP)
        state = self._controller.state
        if state == PAUSED:
            state = self._hold(trainer)
        if state == STOPPING:
            trainer.request_stop()

    def _hold(self, trainer: TrainerView) -> str:
        upcoming = trainer.step + 1
        self._event(trainer, "paused")
        # Idle while held: the heartbeat says so, and callbacks that batch their writes (TensorBoard)
        # write them now rather than when the run resumes.
        with trainer.doing(ACTIVITY_IDLE):
            while True:
                commands = self._controller.take_commands(upcoming, timeout_s=HOLD_POLL_S)
                apply_commands(trainer, commands, upcoming)
                # Every poll, not only after a command: a background save that completed meanwhile
                # is announced (last_checkpoint_step) while the run stays paused, and the other
                # workers of a multi-worker job exchange with the chief (``trainer.peers``).
                trainer.hold()
                if self._controller.signal_stop and self._controller.state == PAUSED:
                    self._controller.fire(STOP)
                state = self._controller.state
                if state != PAUSED:
                    break
        # Commands that came in since the last drain apply to the upcoming step too.
        apply_commands(trainer, self._controller.take_commands(upcoming + 1), upcoming)
        if state == RUNNING:
            self._event(trainer, "resumed")
        return state

    def _event(self, trainer: TrainerView, name: str, **extra: Any) -> None:
        body = {"event": name, "step": trainer.step, "state": self._controller.state, **extra}
        self._publish(f"event.{name}", body)
