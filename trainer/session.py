"""The TensorFlow half of the process: build the trainer, restore, then serve runs until told to exit.

Imported by ``__main__`` only after the sockets are bound (this import pulls in TensorFlow).

On restart with a run directory that holds a checkpoint, the step, epoch, weights, optimizer and
params are restored at once (``status`` shows them while ``idle``); ``start`` continues from that
step, and ``--autostart`` continues immediately. The run's intent (``trainer.intent``) overrides
``--autostart``: a run that was running when its process died carries on, one the owner paused
is paused again, one the owner stopped waits for ``start``. ``--param`` flags given on the
restart override the restored params. A ``start`` after ``failed`` first restores the last good
checkpoint's weights, optimizer and counters, but keeps the params as they are now: a fix sent
after the failure (``lr 0.0005`` then ``start``, or ``start lr=0.0005``) is what the new run uses.
Between runs the main thread waits on the command queue (with a short timeout, so it checks in
for the heartbeat's ``loop_age_s`` and notices signals) and serves params, checkpoint-now and
evaluate-now itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.callbacks.base import Callback
from trainer.callbacks.checkpoint import PeriodicCheckpoint
from trainer.callbacks.control import ControlBridge, apply_commands
from trainer.callbacks.jsonl import JsonlLog
from trainer.callbacks.nonfinite import NonFinitePolicy
from trainer.callbacks.progress import ProgressBar
from trainer.callbacks.publish import PublishMetrics
from trainer.callbacks.tensorboard import TensorBoard
from trainer.cluster import CHIEF, WorkerRole
from trainer.commands import Command
from trainer.config import Config
from trainer.control import Controller, Progress
from trainer.distribute import make_strategy
from trainer.errors import describe_error
from trainer.intent import PAUSED_INTENT, IntentRecorder, start_on_load
from trainer.lifecycle import ACTIVITY_LOADING, FAIL, FAILED, FINISH, RUNNING
from trainer.params import parse_assignments, validate_updates
from trainer.peers import PeerSync
from trainer.tasks import load_module
from trainer.trainer import Trainer

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.25
Publish = Callable[[str, dict[str, Any]], None]


def build_callbacks(
    config: Config, controller: Controller, publish: Publish, role: WorkerRole = CHIEF
) -> list[Callback]:
    """``python -m trainer``'s callbacks. Their requests are acted on once every hook has run, so
    only one order is left that matters: ``ControlBridge`` before ``PublishMetrics``, because
    control fires the state change (``stopped``, ``finished``, ``failed``) in ``on_train_end`` /
    ``on_exception`` that the final event then stamps. A non-chief worker logs to its own
    directory and writes no TensorBoard."""
    callbacks: list[Callback] = [
        NonFinitePolicy(config.on_nonfinite, publish=publish),
        ControlBridge(controller, publish),
        PublishMetrics(publish, state=lambda: controller.state),
        PeriodicCheckpoint(config.checkpoint_every_steps, config.checkpoint_every_s),
        JsonlLog(role.log_dir(config.run_dir)),
    ]
    if role.is_chief:
        callbacks.append(TensorBoard(config.run_dir))
    if not config.quiet:
        callbacks.append(ProgressBar())
    return callbacks


class Session:
    def __init__(
        self, config: Config, controller: Controller, publish: Publish, role: WorkerRole = CHIEF
    ) -> None:
        """``role``: this process's place in a multi-worker job (``trainer.cluster``): a launched
        job runs at once and ends with its run; a non-chief worker keeps its records in its own
        directory and restores the chief's checkpoints."""
        self.config = config
        self.controller = controller
        self.publish = publish
        self.role = role
        self.multiworker = config.strategy == "multiworker"
        self.trainer: Trainer | None = None
        self._restore_before_run = False  # the last run failed: start from its last good checkpoint
        self.intent = IntentRecorder(controller, role.log_dir(config.run_dir))
        controller.on_state_change = self.intent.observe

    def run(self) -> int:
        """Serve until a signal (or ``--exit-when-done``); returns the exit status."""
        self._try_build()
        outcome = None if self.trainer is not None else "failed"
        if outcome == "failed" and (self.config.exit_when_done or self.multiworker):
            return 1
        while not self.controller.signal_stop:
            if self.controller.state == RUNNING:
                outcome = self._run_once()
                if self.config.exit_when_done or self.multiworker:  # the workers leave with the run
                    break
                continue
            step = self.trainer.step if self.trainer else 0
            commands = self.controller.take_commands(step + 1, timeout_s=IDLE_POLL_S)
            self._serve_idle(commands)
        trainer = self.trainer
        if (
            trainer is not None
            and self.controller.state != FAILED
            and (trainer.last_checkpoint_step != trainer.step)
        ):
            trainer.save_checkpoint()
        return 1 if outcome == "failed" else 0

    def _try_build(self) -> None:
        self.controller.set_activity(ACTIVITY_LOADING)
        try:
            self.trainer = self._build()
        except Exception as exc:
            self._fail(exc)

    def _build(self) -> Trainer:
        config = self.config
        strategy = make_strategy(
            config.strategy,
            logical_devices=config.logical_devices,
            collective_timeout_s=config.collective_timeout_s,
        )
        module = load_module(
            config.task,
            config.module,
            data=config.data,
            data_limit=config.data_limit,
            synthetic=config.synthetic_data,
        )
        peers = PeerSync(strategy, self.role) if self.multiworker and strategy is not None else None
        chief = self.role.is_chief
        trainer = Trainer(
            module,
            callbacks=build_callbacks(config, self.controller, self.publish, self.role),
            peers=peers,
            run_dir=self.role.log_dir(config.run_dir),  # a non-chief worker writes its own copies
            restore_dir=None if chief else Path(config.run_dir) / "checkpoints",
            strategy=strategy,
            worker_index=self.role.index,
            max_steps=config.max_steps,
            steps_per_execution=config.steps_per_execution,
            jit_compile=config.jit_compile,
            progress=False,  # build_callbacks adds the bar unless --quiet
        )
        trainer.setup()  # the build: the heartbeat says "loading" meanwhile (_try_build)
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
            samples_seen=trainer.samples_seen,
            next_epoch_step=trainer.next_epoch_step,  # known when the checkpoint is mid-epoch
        )
        intent = self.intent.intent
        # A multi-worker job runs once launched: its workers cannot wait for a start.
        go = start_on_load(intent, autostart=config.autostart) or self.multiworker
        paused = intent == PAUSED_INTENT
        self.controller.loaded(trainer.specs, trainer.params, progress, autostart=go, paused=paused)
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
            if self._restore_before_run:
                self._restore_keeping_params(trainer)
            # What came with the start (or just before it) applies before the budget is judged.
            apply_commands(trainer, self.controller.take_commands(trainer.step + 1), trainer.step + 1)
            if trainer.target_reached():  # the controller refuses such a start; a user module may not
                logger.warning("nothing to run: the budget is used up at step %d", trainer.step)
                self.controller.fire(FINISH)
                return "finished"
            self._restore_before_run = True  # until fit returns
            try:
                outcome = str(trainer.fit().outcome)
            except Exception:
                if trainer.error_info is None:  # not fit's own failure handling: report it here
                    raise
                # fit reported it (on_exception failed the run and published event.failed). Never
                # judge by the controller's state here: a start sent the instant after that
                # failure is already `running`, and failing it again with the old error lost
                # the restart (seen under load: state, state, failed, and no event.started).
                return "failed"
            self._restore_before_run = False
            return outcome
        except Exception as exc:
            self._fail(exc)
            return "failed"

    def _restore_keeping_params(self, trainer: Trainer) -> None:
        """The last good checkpoint, with the params in use now (a fix sent after the failure)."""
        self.controller.set_activity(ACTIVITY_LOADING)
        wanted = dict(trainer.params)
        trainer.restore()
        kept = {name: value for name, value in wanted.items() if trainer.params.get(name) != value}
        if kept:  # announced when they were set: not news again
            trainer.set_params(kept, reason="restored")
        self.controller.update_progress(
            step=trainer.step,
            samples_seen=trainer.samples_seen,
            total_steps=trainer.total_steps(),
            last_checkpoint_step=trainer.last_checkpoint_step,
            next_epoch_step=trainer.next_epoch_step,
        )

    def _serve_idle(self, commands: list[Command]) -> None:
        trainer = self.trainer
        if trainer is None or not commands:
            return
        if self.controller.state == FAILED:  # a failed state is never checkpointed
            commands = [c for c in commands if c.kind != "checkpoint"]
        try:
            apply_commands(trainer, commands, trainer.step + 1)
            trainer.service_requests(wait=True)  # no step boundary will come to announce a save
        except Exception as exc:  # the requests were taken: nothing is left pending
            kinds = ", ".join(c.kind for c in commands)
            logger.exception("%s failed while idle", kinds)
            self.controller.sync_params(trainer.params)  # status shows what is in use, not what failed
            self.publish("log", {"level": "error", "message": f"{kinds} failed: {exc}"})

    def _fail(self, exc: BaseException) -> None:
        error = describe_error(exc)
        logger.error("trainer setup failed: %s: %s", error["type"], error["message"])
        if self.trainer is None:  # nothing was built: a start could only fail the same way
            self.controller.setup_failed(error)
        else:
            self.controller.fire(FAIL, error=error)
        step = self.trainer.step if self.trainer else 0
        self.publish("event.failed", {"event": "failed", "step": step, "state": FAILED, "error": error})
