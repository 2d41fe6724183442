"""The callback base: every hook a no-op with one signature ``(self, trainer, logs)``.

``logs`` holds plain Python floats only (converted once by the trainer before any callback sees it);
step, epoch, params and error details are read from the trainer. Callbacks act by setting flags on
the trainer (``should_stop``, ``checkpoint_requested``, ``evaluate_requested``,
``rollback_requested``, ``failure``), never by raising. The hook order is written in
``trainer.trainer``'s docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.trainer import Trainer

logger = logging.getLogger(__name__)

Logs = Mapping[str, float]

HOOKS = (
    "on_train_start",
    "on_train_end",
    "on_epoch_start",
    "on_epoch_end",
    "on_step_end",
    "on_report",
    "on_validation_end",
    "on_test_end",
    "on_checkpoint",
    "on_params_changed",
    "on_activity",
    "on_exception",
)


class Callback:
    """Base class; override the hooks you need."""

    def on_train_start(self, trainer: Trainer, logs: Logs) -> None:
        """Before the first step of a ``fit`` (after a restore, if any)."""

    def on_train_end(self, trainer: Trainer, logs: Logs) -> None:
        """After the final checkpoint and test; ``logs`` holds the test metrics."""

    def on_epoch_start(self, trainer: Trainer, logs: Logs) -> None:
        """Before the first step of an epoch (the batch size for it is fixed by now)."""

    def on_epoch_end(self, trainer: Trainer, logs: Logs) -> None:
        """After the last step of an epoch (also when a stop ends it early)."""

    def on_step_end(self, trainer: Trainer, logs: Logs) -> None:
        """After every step: loss, finite, steps_per_s, eta_s (a step boundary)."""

    def on_report(self, trainer: Trainer, logs: Logs) -> None:
        """Every ``display_step`` steps: the step logs plus accuracy etc and lr."""

    def on_validation_end(self, trainer: Trainer, logs: Logs) -> None:
        """After an evaluation on the validation set; ``logs`` holds its metrics."""

    def on_test_end(self, trainer: Trainer, logs: Logs) -> None:
        """After an evaluation on the test set; ``logs`` holds its metrics."""

    def on_checkpoint(self, trainer: Trainer, logs: Logs) -> None:
        """After a checkpoint was written (``trainer.last_checkpoint_path``)."""

    def on_params_changed(self, trainer: Trainer, logs: Logs) -> None:
        """After params changed; details in ``trainer.param_changes``."""

    def on_activity(self, trainer: Trainer, logs: Logs) -> None:
        """The loop began or ended something long: ``trainer.activity`` says what it does now."""

    def on_exception(self, trainer: Trainer, logs: Logs) -> None:
        """The run failed; ``trainer.error_info`` says why (the checkpoint on disk is kept)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def dispatch(callbacks: Sequence[Callback], hook: str, trainer: Trainer, logs: Logs) -> None:
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
