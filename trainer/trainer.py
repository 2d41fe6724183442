"""The training loop: ``Trainer(module, callbacks=...).fit()`` and ``.test()``.

Hook order (pseudocode)::

    Trainer(module, ...)                  # stores its arguments; nothing is built yet
    setup():                              # once, by fit / restore / test / validate / set_params
        module.setup(), configure_optimizers, optimizer.build (under the strategy's scope),
        the learning rate assigned, the CheckpointStore and the step gate made
    fit():
        setup()
        on_train_start                    # control drains commands for the first step
        act on requests: failure, peers, service_requests()   # as after on_boundary, below
        while not done:                   # done: a stop requested, training_iters or max_steps reached
            batch_size = params.batch_size    # a new batch size takes effect here (not when the
                                              # epoch is under way: begun before a stop or restart)
            on_epoch_start                    # also for an epoch under way: it goes on after
                                              # its trained batches (``epoch_batches``), skipped
            while the epoch has batches and not done:   # trainer.loop
                rows = K steps in one compiled call   # trainer.multistep: stops early at a closed
                                                      # gate, a non-finite step, a step limit
                                                      # (the first call traces: on_activity "tracing")
                for each step in rows:
                    on_step_end(logs)             # one point per step, from the call's one read
                    fail(exc) asked -> raise it   # -> on_exception
                    request_rollback() asked -> restore the last checkpoint (no callback state)
                    if step % display_step == 0: on_report(logs + accuracy, lr)
                on_call_end                       # the call's steps in one feed message
                on_boundary                       # control drains commands here (and holds on pause)
                fail(exc) asked -> raise it
                peers.sync                        # multi-worker: every worker takes the chief's
                                                  # requests of this boundary (trainer.peers)
                service_requests():               # each at most once per boundary
                    on_checkpoint for each save whose files are now complete,
                    on_checkpoint_failed for each that failed (trainer.checkpoint_error)
                    request_checkpoint() -> snapshot (with every callback's state_dict),
                                            written in the background
                    request_evaluation() -> validate -> on_validation_end
                if done: break
            on_epoch_end
        save, wait until written -> on_checkpoint
        test -> on_test_end
        on_train_end(test logs)           # trainer.ending() is "finished" or "stopped"
        peers.finished
    any exception in fit: on_exception (trainer.error_info), then it propagates
    restore(): weights, optimizer, counters, params, the position in the epoch; then each
        callback's load_state_dict
    set_params(...) at any time: on_params_changed (details in trainer.param_changes)
    on_activity whenever trainer.activity changes: "step" during fit; "tracing" around the first
    train step, "evaluating" around validate/test, "checkpointing" around a save, then back

Callbacks see the trainer as a ``TrainerView`` (``trainer.callbacks.view``) and ask through its
methods; a request made in a hook is acted on at the points above, once that hook has run on every
callback, so no request depends on the callbacks' order. A stop asked in ``on_step_end`` takes
effect after the call's last step (those steps have run): a callback that must stop at an exact
step names it in ``Callback.next_boundary``, and the call ends there.

``training_iters`` counts samples, as in the seed: a run ends when another full batch would exceed
it, so with a constant batch size it runs ``training_iters // batch_size`` steps. The budget is
also ``max_steps`` and ``max_epochs`` (whichever ends first); a module that declares no
``training_iters`` needs one of them (``max_epochs=1`` when none is given). The seed's four
parameters are the loop's settings only when the module declares them (``Module.param_specs``);
undeclared ones keep fixed values (``LOOP_SETTINGS``) and are not live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.callbacks.base import Callback, Logs, callback_states, dispatch, load_callback_states
from trainer.callbacks.history import History, HistoryRecorder
from trainer.callbacks.progress import ProgressBar
from trainer.callbacks.view import Requests, doing
from trainer.checkpointing import CheckpointStore, Restored
from trainer.compiled import CompiledSteps
from trainer.distribute import scope
from trainer.errors import describe_error
from trainer.lifecycle import (
    ACTIVITY_CHECKPOINTING,
    ACTIVITY_EVALUATING,
    ACTIVITY_IDLE,
    ACTIVITY_STEP,
    steps_left,
)
from trainer.loop import epoch_end, run_epoch
from trainer.module import Module
from trainer.multistep import CallSizer, StepGate, resolve_jit
from trainer.params import (
    BATCH_SIZE,
    LEARNING_RATE,
    PARAM_SPECS,
    TRAINING_ITERS,
    change_record,
    defaults,
    validate_updates,
)
from trainer.steps import StepFn

if TYPE_CHECKING:
    from trainer.peers import Peers

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 500
DEFAULT_RUN_DIR = Path("runs/default")
LOOP_SETTINGS = {k: v for k, v in defaults(PARAM_SPECS).items() if k != TRAINING_ITERS}


@dataclasses.dataclass(frozen=True)
class _Built:
    """What ``setup`` makes."""

    optimizer: Any
    store: CheckpointStore
    gate: StepGate
    compiled: CompiledSteps


class Trainer:
    """Runs a ``Module``'s steps; everything else (control, reporting, saving) is a callback."""

    def __init__(
        self,
        module: Module,
        *,
        params: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path = DEFAULT_RUN_DIR,
        max_steps: int | None = None,
        steps_per_execution: int | None = 1,
        jit_compile: str = "auto",
        max_epochs: int | None = None,
        progress: bool = True,
        strategy: Any = None,
        worker_index: int = 0,
        restore_dir: str | Path | None = None,
        peers: Peers | None = None,
    ) -> None:
        """``steps_per_execution``: steps per compiled call, None for auto (``trainer.multistep``);
        ``jit_compile``: ``auto`` (XLA when a GPU is visible), ``on`` or ``off``; ``strategy``: a
        ``tf.distribute.Strategy`` to train under (``trainer.distribute``; ``worker_index`` names
        this worker in its errors); ``restore_dir``: checkpoints to restore from when they are
        not the ones this trainer writes (a non-chief worker restores the chief's); ``peers``: the
        other workers' exchange (``trainer.peers.PeerSync``).

        Only stores: ``setup`` builds (Lightning's order). The params are checked here, against the
        module's declarations (which the module contract has before ``setup``), so a wrong value
        fails at once, naming it."""
        self.module = module
        self.sizer = CallSizer(steps_per_execution)
        self.strategy = strategy
        self.worker_index = worker_index
        self.jit_compile = resolve_jit(jit_compile) and strategy is None
        self.specs = tuple(module.param_specs())
        declared = {spec.name for spec in self.specs}
        self.params: dict[str, Any] = {
            **defaults(self.specs),
            **{k: v for k, v in module.default_params().items() if k in declared},
        }
        if params:
            self.params.update(validate_updates(self.specs, params))
        self.max_steps = max_steps
        if max_epochs is None and max_steps is None and TRAINING_ITERS not in declared:
            max_epochs = 1  # as keras' fit: no budget given, one pass over the data
        self.max_epochs = max_epochs
        self.callbacks = list(callbacks)
        if progress and not any(isinstance(c, ProgressBar) for c in self.callbacks):
            self.callbacks.append(ProgressBar())
        self.callbacks.append(HistoryRecorder())
        self.run_dir = Path(run_dir)
        self.restore_dir = restore_dir
        self.peers = peers
        self.step = self.epoch = self.samples_seen = 0
        self.epoch_batches = 0  # of the current epoch, trained: a resumed epoch goes on after them
        self.batch_size = int(self.setting(BATCH_SIZE))
        self.steps_per_epoch: int | None = None
        self.steps_per_s = 0.0
        self.last_step_finite = True
        self.next_epoch_step: int | None = None
        self.last_checkpoint_step: int | None = None
        self.last_checkpoint_path: str | None = None
        self.checkpoint_error: dict[str, Any] | None = None
        self.param_changes: list[dict[str, Any]] = []
        self.error_info: dict[str, Any] | None = None
        self.activity = ACTIVITY_IDLE
        self.in_fit = False
        self._built: _Built | None = None
        self._requests = Requests()

    # ----- setup -----

    def setup(self) -> None:
        """Build the module, the optimizer, the checkpoint store and the step gate; once (every
        later call returns at once). ``fit``, ``restore``, ``test``, ``validate`` call it first."""
        self._setup()

    def _setup(self) -> _Built:
        if self._built is not None:
            return self._built
        module = self.module
        module.trainer_params = self.params
        with scope(self.strategy):  # the model's and the optimizer's variables: one copy per replica
            module.setup()
            optimizer = module.configure_optimizers(self.setting_values())
            optimizer.build(module.trainable_variables)
        if LEARNING_RATE in self.params:  # else the module's optimizer keeps its own
            optimizer.learning_rate.assign(float(self.params[LEARNING_RATE]))
        store = CheckpointStore(
            self.run_dir / "checkpoints",
            {"optimizer": optimizer, **module.checkpoint_objects()},
            restore_dir=self.restore_dir,
        )
        gate = StepGate()  # closed by the control handlers (``Controller.gate``)
        jit, index = self.jit_compile, self.worker_index
        compiled = CompiledSteps(module, optimizer, gate, self.strategy, jit_compile=jit, worker_index=index)
        self._built = _Built(optimizer=optimizer, store=store, gate=gate, compiled=compiled)
        return self._built

    @property
    def optimizer(self) -> Any:
        return self._setup().optimizer

    @property
    def store(self) -> CheckpointStore:
        return self._setup().store

    @property
    def gate(self) -> StepGate:
        return self._setup().gate

    @property
    def compiled(self) -> CompiledSteps:
        return self._setup().compiled

    @property
    def _compiled(self) -> dict[str, StepFn]:
        """The traced steps by kind (tests and bench/ count their traces)."""
        return self.compiled.compiled

    # ----- what callbacks ask for (``TrainerView``) -----

    def request_stop(self) -> None:
        self._requests.stop = True

    def request_checkpoint(self) -> None:
        self._requests.checkpoint = True

    def request_evaluation(self) -> None:
        self._requests.evaluate = True

    def request_rollback(self) -> None:
        self._requests.rollback = True

    def fail(self, exc: BaseException) -> None:
        if self._requests.failure is None:  # the first is the cause; later ones follow from it
            self._requests.failure = exc

    def hold(self) -> None:
        if self.peers is not None:
            self.peers.hold_tick(self)
        self.service_requests()

    def persist_params(self) -> None:
        self.store.save_params(self.params)

    def pending_requests(self) -> Requests:
        """A copy of what the callbacks asked for and the loop has not yet acted on (the chief's
        are what ``trainer.peers`` sends to the other workers)."""
        return dataclasses.replace(self._requests)

    def replace_requests(self, requests: Requests) -> None:
        """Take ``requests`` as this worker's own (a worker adopts the chief's decision)."""
        self._requests = dataclasses.replace(requests)

    def after_step_hooks(self) -> None:
        """The loop, after ``on_step_end``: a failure asked for is raised, a rollback done."""
        self._raise_failure()
        if self._requests.rollback:
            self._requests.rollback = False
            self.rollback()

    def after_boundary_hooks(self) -> None:
        """The loop, after ``on_train_start`` and ``on_boundary``: a failure asked for is raised,
        the peers take the chief's requests, the requests are served."""
        self._raise_failure()
        if self.peers is not None:
            self.peers.sync(self)
        self.service_requests()

    def _raise_failure(self) -> None:
        failure, self._requests.failure = self._requests.failure, None
        if failure is not None:
            raise failure

    # ----- public -----

    def setting(self, name: str) -> Any:
        """A loop setting: the live param when the module declares it, else its fixed value."""
        return self.params[name] if name in self.params else LOOP_SETTINGS.get(name)

    def setting_values(self) -> dict[str, Any]:
        return {**LOOP_SETTINGS, **self.params}

    def _assign_learning_rate(self) -> None:
        if LEARNING_RATE in self.params:  # else the module's optimizer keeps its own
            self.optimizer.learning_rate.assign(float(self.params[LEARNING_RATE]))

    def fit(self) -> History:
        """Train until done or stopped; returns the ``History`` (its ``outcome`` is ``"finished"``
        or ``"stopped"``)."""
        self.setup()
        self._requests = Requests()
        self.error_info, self.in_fit = None, True
        try:
            self.gate.sync(self.step)
            with self.doing(ACTIVITY_STEP):
                self.dispatch("on_train_start", {})
                self.after_boundary_hooks()
                while not self.done():
                    self._run_epoch()
                self.save_checkpoint()
                test_logs = self.test()
                self.dispatch("on_train_end", test_logs)
                if self.peers is not None:
                    self.peers.finished(self)
            return self.history
        except Exception as exc:
            self.error_info = describe_error(exc)
            self.store.sync()  # a save queued before the failure still counts
            self._announce_checkpoints()
            error = self.error_info
            logger.error("run failed at step %d: %s: %s", self.step, error["type"], error["message"])
            self.dispatch("on_exception", {})
            raise
        finally:
            self.in_fit = False

    def ending(self) -> str:
        """How a run that ends now ends: ``finished`` (budget used up) or ``stopped`` (before)."""
        return "finished" if self.target_reached() else "stopped"

    def doing(self, activity: str) -> contextlib.AbstractContextManager[None]:
        """``trainer.activity`` is ``activity`` inside, the previous one after (``on_activity``)."""
        return doing(self, activity)

    def test(self) -> dict[str, float]:
        self.setup()
        logs = self._evaluate("test")
        self.dispatch("on_test_end", logs)
        return logs

    def validate(self) -> dict[str, float]:
        self.setup()
        logs = self._evaluate("val")
        self.dispatch("on_validation_end", logs)
        return logs

    def save_checkpoint(self, *, wait: bool = True) -> str:
        """Save (asynchronously) unless this step is saved; ``wait``: until it is on disk.

        ``on_checkpoint`` follows once the files are complete: here when waiting, else at a later
        step boundary (``service_requests``)."""
        states = callback_states(self.callbacks)  # before the snapshot: one that cannot be saved fails
        with self.doing(ACTIVITY_CHECKPOINTING):  # the snapshot; the write goes on in the background
            path = self.store.save(
                step=self.step,
                epoch=self.epoch,
                samples_seen=self.samples_seen,
                params=self.params,
                callbacks=states,
                epoch_position=(self.epoch_batches, self.batch_size),
            )
        if not wait:
            return path
        with self.doing(ACTIVITY_CHECKPOINTING):
            self.store.sync()
        if not self._announce_checkpoints() and self.store.saved_step == self.step:
            self.last_checkpoint_step, self.last_checkpoint_path = self.step, path
            self.dispatch("on_checkpoint", {})  # on disk before: said again, for who asked now
        return path

    def _announce_checkpoints(self) -> bool:
        """``on_checkpoint`` for each save now complete, ``on_checkpoint_failed`` for each that
        failed (``last_checkpoint_step`` stays the last good one); whether there was any."""
        done, failed = self.store.take_completed(), self.store.take_failed()
        for self.last_checkpoint_step, self.last_checkpoint_path in done:
            self.dispatch("on_checkpoint", {})
        for step, why in failed:
            self.checkpoint_error = {"step": step, "error": why}
            self.dispatch("on_checkpoint_failed", {})
        return bool(done or failed)

    def restore(self) -> Restored | None:
        """Load the latest checkpoint: weights, optimizer, counters and params, then hand each
        callback its state from it (``load_state_dict``; one with none saved keeps its own)."""
        restored = self._restore()
        if restored is not None:
            self._resume_epoch(*restored.epoch_position)
            load_callback_states(self.callbacks, restored.callbacks)
        return restored

    def _resume_epoch(self, batches: int, batch_size: int) -> None:
        """The restored step's place in its epoch, where the next fit goes on (``trainer.loop``).

        Not on a rollback: its loop goes on with the epoch's iterator, already past the batch that
        went non-finite."""
        self.epoch_batches = batches if batch_size > 0 else 0  # (0, 0): an epoch's start
        self.next_epoch_step = None
        if self.epoch_batches > 0:
            self.batch_size = batch_size  # the epoch's, even if a later one was set meanwhile
            self.next_epoch_step = epoch_end(self.step - batches, self._epoch_length(batch_size) or 0)
            logger.info("epoch %d goes on after its %d batches trained", self.epoch, batches)

    def _restore(self) -> Restored | None:
        restored = self.store.restore()
        if restored is None:
            fresh = self.store.fresh_params()  # acknowledged before the first checkpoint
            known = {s.name for s in self.specs}
            if changed := {k: v for k, v in fresh.items() if k in known and self.params.get(k) != v}:
                self.set_params(changed, at_step=self.step + 1, reason="restored")
            return None
        self.step, self.epoch = restored.step, restored.epoch
        self.samples_seen = restored.samples_seen
        self.last_checkpoint_step, self.last_checkpoint_path = restored.step, restored.path
        known = {s.name for s in self.specs}
        changed = {k: v for k, v in restored.params.items() if k in known and self.params.get(k) != v}
        if changed:
            self.set_params(changed, at_step=self.step + 1, reason="restored")
        self._assign_learning_rate()
        self.gate.sync(self.step)
        return restored

    def set_params(
        self, values: Mapping[str, Any], *, at_step: int | None = None, reason: str = "set"
    ) -> None:
        """Apply already validated ``values`` (``validate_updates``) and tell the callbacks.

        ``reason`` is "set" for a change someone asked for, "restored" for values read back from a
        checkpoint (not news to anyone: publishers do not announce them). A module whose
        ``params_changed`` raises keeps the values it had (the exception propagates)."""
        self.setup()  # the optimizer takes the learning rate, the module's variables the rest
        at_step = self.step + 1 if at_step is None else at_step
        # Else the next fit begins an epoch (after a failure: restores a checkpoint first, as the
        # controller's reply assumes).
        under_way = self.in_fit or (self.epoch_batches > 0 and self.error_info is None)
        next_epoch = self.next_epoch_step if under_way else None
        before = dict(self.params)
        changes = [
            change_record(self.specs, name, before.get(name), new, at_step, next_epoch, reason)
            for name, new in values.items()
        ]
        self.params.update(values)
        try:
            self.module.params_changed(self.params)
        except Exception:
            self.params.clear()
            self.params.update(before)
            raise
        self.param_changes = changes
        self._assign_learning_rate()
        numeric = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
        self.dispatch("on_params_changed", numeric)

    def service_requests(self, *, wait: bool = False) -> None:
        """Run the checkpoint / evaluation a callback asked for (at a step boundary); ``wait``:
        until the checkpoint is written (idle: no boundary will come to announce it).

        Both are taken first, so one that fails is not asked again."""
        self._announce_checkpoints()
        checkpoint, evaluate = self._requests.checkpoint, self._requests.evaluate
        self._requests.checkpoint = self._requests.evaluate = False
        if checkpoint:
            self.save_checkpoint(wait=wait)
        if evaluate:
            self.validate()

    def total_steps(self) -> int:
        """The step the run ends at, as far as known (an epoch budget counts whole epochs)."""
        bounds = self._step_bounds()
        if self.max_epochs is not None:
            if self.steps_per_epoch is None:
                self.setup()  # the module's data
                self.steps_per_epoch = self._epoch_length(int(self.setting(BATCH_SIZE)))
            if self.steps_per_epoch:
                bounds.append(self.max_epochs * self.steps_per_epoch)
        return min(bounds) if bounds else self.step

    def target_reached(self) -> bool:
        if self.max_epochs is not None and self.epoch >= self.max_epochs:
            return True
        bounds = self._step_bounds()
        return bool(bounds) and min(bounds) <= self.step

    def _step_bounds(self) -> list[int]:
        if TRAINING_ITERS not in self.params:
            return [] if self.max_steps is None else [self.max_steps]
        left = steps_left(
            training_iters=int(self.params[TRAINING_ITERS]),
            samples_seen=self.samples_seen,
            batch_size=self.batch_size,
            step=self.step,
            max_steps=self.max_steps,
        )
        return [self.step + left]

    def _epoch_length(self, batch_size: int) -> int | None:
        cardinality = int(self.module.train_dataset(batch_size).cardinality().numpy())
        return cardinality if cardinality > 0 else None

    @property
    def history(self) -> History:
        """What ``fit`` recorded: reported metrics per step, evaluations, the outcome."""
        return next(c for c in self.callbacks if isinstance(c, HistoryRecorder)).history

    def done(self) -> bool:
        return self._requests.stop or self.target_reached()

    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy())

    # ----- internals -----

    def dispatch(self, hook: str, logs: Logs) -> None:
        dispatch(self.callbacks, hook, self, logs)

    def _run_epoch(self) -> None:
        run_epoch(self)

    def rollback(self) -> None:
        """Restore the last checkpoint after a non-finite step (``NonFinitePolicy`` asked).

        Weights and counters only: the callbacks keep their state, which has seen the rollback
        (``NonFinitePolicy`` counts it, and would loop for ever given its old count back)."""
        restored = self._restore()
        if restored is None:
            raise FloatingPointError("non-finite loss and no checkpoint to roll back to")
        logger.warning("non-finite loss: rolled back to the checkpoint of step %d", restored.step)

    def _evaluate(self, split: str) -> dict[str, float]:
        make = self.module.val_dataset if split == "val" else self.module.test_dataset
        dataset = make(max(EVAL_BATCH_SIZE, self.batch_size))
        if dataset is None:
            return {}
        with self.doing(ACTIVITY_EVALUATING):
            return self.compiled.evaluate(split, dataset)
