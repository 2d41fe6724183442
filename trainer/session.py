"""The TensorFlow half of the process: build the trainer, restore, then serve runs until told to exit.

Imported by ``__main__`` only after the sockets are bound (this import pulls in TensorFlow).

On restart with a run directory that holds a checkpoint, the step, epoch, weights, optimizer and
params are restored at once (``status`` shows them while ``idle``); ``start`` continues from that
step, and ``--autostart`` continues immediately. ``--param`` flags given on the restart override
the restored params. A ``start`` after ``failed`` first restores the last good checkpoint.
Between runs the main thread waits on the command queue (with a short timeout, so it checks in
for the heartbeat's ``loop_age_s`` and notices signals) and serves params, checkpoint-now and
evaluate-now itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from trainer.callbacks.base import Callback
from trainer.callbacks.checkpoint import PeriodicCheckpoint
from trainer.callbacks.control import ControlBridge
from trainer.callbacks.jsonl import JsonlLog
from trainer.callbacks.nonfinite import NonFinitePolicy
from trainer.callbacks.progress import ProgressBar
from trainer.callbacks.publish import PublishMetrics
from trainer.callbacks.tensorboard import TensorBoard
from trainer.config import Config
from trainer.control import FAILED, RUNNING, Command, Controller, Progress
from trainer.errors import describe_error
from trainer.params import parse_assignments, validate_updates
from trainer.tasks import load_module
from trainer.trainer import Trainer

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.25
Publish = Callable[[str, dict[str, Any]], None]


def build_callbacks(config: Config, controller: Controller, publish: Publish) -> list[Callback]:
    """Order matters: the policy decides before control reads flags; control sets the state
    before events stamp it."""
    callbacks: list[Callback] = [
        NonFinitePolicy(config.on_nonfinite, publish=publish),
        ControlBridge(controller, publish),
        PublishMetrics(publish, state=lambda: controller.state),
        PeriodicCheckpoint(config.checkpoint_every_steps, config.checkpoint_every_s),
        JsonlLog(config.run_dir),
        TensorBoard(config.run_dir),
    ]
    if not config.quiet:
        callbacks.append(ProgressBar())
    return callbacks


class Session:
    def __init__(self, config: Config, controller: Controller, publish: Publish) -> None:
        self.config = config
        self.controller = controller
        self.publish = publish
        self.trainer: Trainer | None = None

    def run(self) -> int:
        """Serve until a signal (or ``--exit-when-done``); returns the exit status."""
        self._try_build()
        outcome = None if self.trainer is not None else "failed"
        if outcome == "failed" and self.config.exit_when_done:
            return 1
        while not self.controller.signal_stop:
            if self.controller.state == RUNNING:
                outcome = self._run_once()
                if self.config.exit_when_done:
                    break
                continue
            step = self.trainer.step if self.trainer else 0
            commands = self.controller.take_commands(step + 1, timeout_s=IDLE_POLL_S)
            self._serve_idle(commands)
        trainer = self.trainer
        if (
            trainer is not None
            and trainer.outcome != "failed"
            and (trainer.last_checkpoint_step != trainer.step)
        ):
            trainer.save_checkpoint()
        return 1 if outcome == "failed" else 0

    def _try_build(self) -> None:
        try:
            self.trainer = self._build()
        except Exception as exc:
            self._fail(exc)

    def _build(self) -> Trainer:
        config = self.config
        module = load_module(
            config.task,
            config.module,
            data=config.data,
            data_limit=config.data_limit,
            synthetic=config.synthetic_data,
        )
        trainer = Trainer(
            module,
            callbacks=build_callbacks(config, self.controller, self.publish),
            run_dir=config.run_dir,
            max_steps=config.max_steps,
            progress=False,  # build_callbacks adds the bar unless --quiet
        )
        trainer.restore()
        if config.params:
            wanted = validate_updates(trainer.specs, parse_assignments(config.params))
            # After a restart the flags usually repeat what the checkpoint restored: no news.
            changed = {name: value for name, value in wanted.items() if trainer.params.get(name) != value}
            if changed:
                trainer.set_params(changed)
        progress = Progress(
            step=trainer.step,
            epoch=trainer.epoch,
            total_steps=trainer.total_steps(),
            last_checkpoint_step=trainer.last_checkpoint_step,
        )
        self.controller.loaded(trainer.specs, trainer.params, progress, autostart=config.autostart)
        if self.controller.state != RUNNING:  # said once: what to do next
            logger.info("idle at step %d: send 开始 / start in chat, or run: trainctl start", trainer.step)
        return trainer

    def _run_once(self) -> str:
        if self.trainer is None:
            self._try_build()
            if self.trainer is None:
                return "failed"
        trainer = self.trainer
        try:
            if trainer.outcome == "failed":
                trainer.restore()
            return str(trainer.fit().outcome)
        except Exception as exc:
            if self.controller.state != FAILED:  # failed outside fit's own handling
                self._fail(exc)
            return "failed"

    def _serve_idle(self, commands: list[Command]) -> None:
        trainer = self.trainer
        for command in commands:
            if trainer is None:
                continue
            try:
                if command.kind == "set_params":
                    trainer.set_params(command.params, at_step=trainer.step + 1)
                elif command.kind == "checkpoint":
                    trainer.save_checkpoint()
                elif command.kind == "evaluate":
                    trainer.validate()
            except Exception as exc:
                logger.exception("%s failed while idle", command.kind)
                self.publish("log", {"level": "error", "message": f"{command.kind} failed: {exc}"})

    def _fail(self, exc: BaseException) -> None:
        error = describe_error(exc)
        logger.error("trainer setup failed: %s: %s", error["type"], error["message"])
        self.controller.set_state(FAILED, error=error)
        step = self.trainer.step if self.trainer else 0
        self.publish("event.failed", {"event": "failed", "step": step, "state": FAILED, "error": error})
