"""``FitRun``: a running ``model.fit`` as the trainer's callbacks see a ``Trainer`` (a
``TrainerView``), so that ``chattrain.keras.Remote`` drives the trainer's own ``ControlBridge`` and
``PublishMetrics``: counters, params, the requests the callbacks make (stop, checkpoint, evaluate)
served at a batch boundary."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import keras

from trainer.callbacks.base import Callback as TrainerCallback
from trainer.callbacks.base import dispatch
from trainer.callbacks.view import Requests, doing
from trainer.lifecycle import ACTIVITY_STEP
from trainer.params import DISPLAY_STEP, LEARNING_RATE, PARAM_SPECS, change_record

logger = logging.getLogger(__name__)


class FitRun:
    """The running fit as the trainer's callbacks see a ``Trainer``: a ``TrainerView`` (``dispatch``
    takes one, so mypy checks that it is)."""

    def __init__(self, model: keras.Model, run_dir: Path, validation_data: Any, display_step: int) -> None:
        self.model, self.run_dir, self.validation_data = model, run_dir, validation_data
        schedule = isinstance(model.optimizer.learning_rate, keras.optimizers.schedules.LearningRateSchedule)
        names = (DISPLAY_STEP,) if schedule else (LEARNING_RATE, DISPLAY_STEP)
        self.specs = tuple(s for s in PARAM_SPECS if s.name in names)
        self.params: dict[str, Any] = {DISPLAY_STEP: display_step}
        if not schedule:
            self.params[LEARNING_RATE] = self.learning_rate()
        self.step = self.epoch = self.samples_seen = 0
        self.activity = ACTIVITY_STEP
        self.in_fit = True
        self.steps_per_s = 0.0
        self.last_step_finite = True
        self.steps_per_epoch: int | None = None
        self.epochs = 1
        self.next_epoch_step: int | None = None
        self.last_checkpoint_step: int | None = None
        self.last_checkpoint_path: str | None = None
        self.checkpoint_error: dict[str, Any] | None = None  # a failed save raises here instead
        self.param_changes: list[dict[str, Any]] = []
        self.error_info: dict[str, Any] | None = None
        self.outcome: str | None = None
        self.callbacks: list[TrainerCallback] = []
        self.gate = None  # one batch per callback: no compiled multi-step call to end early
        self._requests = Requests()

    def dispatch(self, hook: str, logs: dict[str, float]) -> None:
        dispatch(self.callbacks, hook, self, logs)

    @property
    def stop_requested(self) -> bool:
        return self._requests.stop

    def ending(self) -> str:
        return "stopped" if self._requests.stop else "finished"

    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch if self.steps_per_epoch else self.step

    def learning_rate(self) -> float:
        rate = self.model.optimizer.learning_rate
        return float(
            rate(self.model.optimizer.iterations) if callable(rate) else keras.ops.convert_to_numpy(rate)
        )

    def request_stop(self) -> None:
        self._requests.stop = True  # Remote sets model.stop_training: fit ends after this batch

    def request_checkpoint(self) -> None:
        self._requests.checkpoint = True

    def request_evaluation(self) -> None:
        self._requests.evaluate = True

    def request_rollback(self) -> None:
        self.fail(RuntimeError("a rollback needs the trainer's checkpoints: not available in model.fit"))

    def fail(self, exc: BaseException) -> None:
        if self._requests.failure is None:
            self._requests.failure = exc

    def raise_failure(self) -> None:
        """After a round of hooks: a failure a callback asked for ends fit with it."""
        failure, self._requests.failure = self._requests.failure, None
        if failure is not None:
            raise failure

    def hold(self) -> None:
        self.service_requests()

    def doing(self, activity: str) -> AbstractContextManager[None]:
        return doing(self, activity)

    def persist_params(self) -> None:
        """Nothing to keep: a fit's params are not restored (its checkpoints are weights only)."""

    def set_params(self, values: Mapping[str, Any], *, at_step: int | None = None) -> None:
        """Apply validated values (the Controller validated them) and tell the callbacks."""
        at_step = self.step + 1 if at_step is None else at_step
        self.param_changes = []
        for name, new in values.items():
            if name == LEARNING_RATE:
                self.model.optimizer.learning_rate.assign(float(new))
            self.param_changes.append(
                change_record(self.specs, name, self.params.get(name), new, at_step, None)
            )
            self.params[name] = new
        self.dispatch("on_params_changed", {k: float(v) for k, v in values.items()})

    def service_requests(self) -> None:
        """Checkpoint and evaluation asked for from chat or trainctl, at a batch boundary."""
        checkpoint, evaluate = self._requests.checkpoint, self._requests.evaluate
        self._requests.checkpoint = self._requests.evaluate = False
        if checkpoint:
            self.save_checkpoint()
        if evaluate:
            self.validate()

    def save_checkpoint(self) -> str:
        path = self.run_dir / "checkpoints" / f"step-{self.step}.weights.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(path)
        self.last_checkpoint_step, self.last_checkpoint_path = self.step, str(path)
        self.dispatch("on_checkpoint", {})
        return str(path)

    def validate(self) -> dict[str, float]:
        logs = self.evaluate()
        self.dispatch("on_validation_end", logs)
        return logs

    def evaluate(self) -> dict[str, float]:
        if self.validation_data is None:
            logger.warning("evaluate asked for, but fit has no validation_data")
            return {}
        x, y = self.validation_data[:2]
        results = self.model.evaluate(x, y, verbose=0, return_dict=True)
        return {name: float(value) for name, value in results.items()}
