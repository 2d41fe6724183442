"""One line for an existing ``model.fit`` script: ``callbacks=[chattrain.keras.Remote()]``.

The callback binds the trainer's sockets (the same default ipc endpoints and connection file as
``python -m trainer``), speaks the same protocol and publishes the same feed, so the sidecar and
trainctl work unchanged. It reuses the trainer's control plane: ``trainer.control.Controller``
behind a ``protocol.ControlServer`` and ``protocol.Publisher``, driven by the trainer's own
``ControlBridge`` and ``PublishMetrics`` callbacks through `FitRun`, a view of the running fit
that looks to them like ``trainer.Trainer`` (``chattrain.fit_run``).

What it obeys, at the next batch boundary: stop (``model.stop_training``; fit ends after the
batch), pause / resume (held between batches), ``lr`` (assigned to the optimizer's learning rate;
with a ``LearningRateSchedule`` the schedule owns the rate and ``lr`` is refused), ``display_step``,
checkpoint (``model.save_weights`` into ``run_dir``) and eval (``model.evaluate`` on
``validation_data``). ``batch_size`` and the budget belong to ``fit``'s arguments and are not live.
The sockets close when fit ends (the sidecar then says the trainer is down).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from chattrain.fit_run import FitRun
from protocol import (
    default_connection_file,
    default_endpoints,
    new_session_id,
    server_curve,
)
from trainer.callbacks.control import ControlBridge
from trainer.callbacks.publish import PublishMetrics
from trainer.control import Controller, Progress
from trainer.control_plane import ControlPlane, bind_control_plane
from trainer.params import DISPLAY_STEP

logger = logging.getLogger(__name__)

DEFAULT_RUN_DIR = Path("runs/fit")


class Remote(keras.callbacks.Callback):  # type: ignore[misc]
    """Chat and trainctl control of a plain ``model.fit`` (see the module docstring).

    ``validation_data`` is what ``eval`` evaluates (pass the same as to fit); ``run_dir`` where
    checkpoints go; ``instance`` picks the endpoints like ``--instance`` (or give ``control`` and
    ``metrics`` endpoints); ``insecure_no_curve`` turns CurveZMQ off as ``--insecure-no-curve`` does.
    """

    def __init__(
        self,
        *,
        validation_data: Any = None,
        run_dir: str | Path = DEFAULT_RUN_DIR,
        display_step: int = 10,
        instance: str | None = None,
        control: str | None = None,
        metrics: str | None = None,
        insecure_no_curve: bool = False,
    ) -> None:
        super().__init__()
        if display_step < 1:
            raise ValueError(f"display_step must be >= 1, got {display_step!r}")
        self._validation_data, self._run_dir, self._display_step = (
            validation_data,
            Path(run_dir),
            display_step,
        )
        default_control, default_metrics = default_endpoints(instance)
        self._control, self._metrics = control or default_control, metrics or default_metrics
        self._connection_file = default_connection_file(instance)
        self._insecure = insecure_no_curve
        self._plane: ControlPlane | None = None
        self._publish: Callable[[str, dict[str, Any]], None] = lambda topic, body: None  # until bound
        self.run: FitRun | None = None
        self._step_started = 0.0

    # -- keras hooks --------------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = self.run = FitRun(self.model, self._run_dir, self._validation_data, self._display_step)
        run.epochs, run.steps_per_epoch = int(self.params.get("epochs") or 1), self.params.get("steps")
        controller = self._bind(run)
        run.callbacks = [
            ControlBridge(controller, self._publish),
            PublishMetrics(self._publish, lambda: controller.state),
        ]
        controller.loaded(
            run.specs, run.params, Progress(step=0, epoch=0, total_steps=run.total_steps()), autostart=True
        )
        run.dispatch("on_train_start", {})
        self._step_started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.run is not None:
            self.run.epoch = epoch
            self.run.next_epoch_step = self.run.step + (self.run.steps_per_epoch or 0) + 1
            self.run.dispatch("on_epoch_start", {})

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        run = self.run
        if run is None:
            return
        values = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        run.step += 1
        now = time.perf_counter()
        rate = 1.0 / max(now - self._step_started, 1e-9)
        run.steps_per_s = rate if run.steps_per_s == 0 else 0.8 * run.steps_per_s + 0.2 * rate
        remaining = max(0, run.total_steps() - run.step)
        step_logs = {"loss": values.get("loss", float("nan")), "steps_per_s": run.steps_per_s,
                     "eta_s": remaining / run.steps_per_s}  # fmt: skip
        run.last_step_finite = math.isfinite(step_logs["loss"])
        run.dispatch("on_step_end", step_logs)
        run.raise_failure()
        if run.step % int(run.params[DISPLAY_STEP]) == 0:
            run.dispatch("on_report", {**values, **step_logs, "lr": run.learning_rate()})
        run.dispatch("on_call_end", {})
        run.dispatch("on_boundary", {})  # control: commands applied, pause held here
        run.raise_failure()
        run.service_requests()
        if run.stop_requested:
            self.model.stop_training = True
        self._step_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        run = self.run
        if run is None:
            return
        run.epoch = epoch + 1
        val = {k[4:]: float(v) for k, v in (logs or {}).items() if k.startswith("val_") and _is_number(v)}
        if val:
            run.dispatch("on_validation_end", val)  # fit's own validation: a point per epoch
        run.dispatch("on_epoch_end", {})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        run = self.run
        if run is None:
            return
        try:
            if self._plane is not None and self._plane.watch.error is not None:
                logger.error("chattrain: %s", self._plane.watch.error["message"])  # and the fit stopped
            run.outcome = run.ending()
            run.save_checkpoint()
            test = run.evaluate()
            run.dispatch("on_test_end", test)
            run.dispatch("on_train_end", test)
        finally:
            self.close()

    # -- sockets ------------------------------------------------------------------------

    def _bind(self, run: FitRun) -> Controller:
        # CurveZMQ from the instance's keys, as `python -m trainer`: clients read them from the file.
        curve, client = (None, None) if self._insecure else server_curve(self._connection_file)
        # The user's process is not ours to exit: a dead serving thread stops the fit (exit_after_s).
        plane = bind_control_plane(
            self._control,
            self._metrics,
            run.specs,
            run.params,
            run_id=run.run_dir.resolve().name,
            session=new_session_id(),
            curve=curve,
            exit_after_s=None,
        )
        self._plane, self._publish = plane, plane.publish
        plane.write_connection_file(self._connection_file, client)
        logger.info("chattrain: control on %s, metrics on %s", self._control, self._metrics)
        return plane.controller

    def close(self) -> None:
        """Close the sockets (fit's end does it); idempotent."""
        if self._plane is not None:
            plane, self._plane = self._plane, None
            plane.close()
            self._connection_file.unlink(missing_ok=True)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
