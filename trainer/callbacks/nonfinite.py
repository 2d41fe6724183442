"""What to do when a step's loss or gradients are not finite (the update was not applied).

``stop``: fail the run (the last good checkpoint stays); ``skip``: carry on with the next batch;
``rollback``: restore the last checkpoint and carry on, failing after ``max_rollbacks`` rollbacks
with no new checkpoint in between (a run that diverges again at once would loop forever).

Its state in the checkpoint (``state_dict``): the run's totals, ``skipped`` steps and
``rollbacks``, so a resumed run counts on from what its checkpoint had seen. The guard (rollbacks
since the last progress) is not kept: a rollback restores weights and counters but no callback
state (``Trainer.rollback``), and every start of a fit is a fresh decision, so it begins at zero.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip", "rollback")
MAX_ROLLBACKS = 3


class NonFiniteLoss(FloatingPointError):
    """A step produced a non-finite loss or gradient."""


class NonFinitePolicy(Callback):
    def __init__(
        self,
        policy: str = "stop",
        *,
        max_rollbacks: int = MAX_ROLLBACKS,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"on_nonfinite must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.max_rollbacks = max_rollbacks
        self._publish = publish
        self.skipped = 0  # in the run (kept in the checkpoint)
        self.rollbacks = 0  # in the run (kept in the checkpoint)
        self.rollbacks_since_progress = 0
        self._rolled_back_to = -1

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step == 0:  # a new run; any other start continues the run its totals are from
            self.skipped = self.rollbacks = 0
        self.rollbacks_since_progress = 0
        self._rolled_back_to = -1
        if self.policy == "rollback" and trainer.last_checkpoint_step is None:
            trainer.request_checkpoint()  # something to roll back to

    def on_checkpoint(self, trainer: TrainerView, logs: Logs) -> None:
        if trainer.step > self._rolled_back_to:
            self.rollbacks_since_progress = 0

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        finite = trainer.last_step_finite and math.isfinite(logs.get("loss", 0.0))
        if finite:
            return
        action = self.decide(trainer.step)
        self._warn(trainer, f"non-finite loss at step {trainer.step}: {action}")
        if action == "skip":
            self.skipped += 1
        elif action == "rollback":
            self.rollbacks += 1
            self.rollbacks_since_progress += 1
            self._rolled_back_to = trainer.last_checkpoint_step or 0
            trainer.request_rollback()
        else:
            trainer.fail(
                NonFiniteLoss(
                    f"non-finite loss {logs.get('loss')} at step {trainer.step} "
                    f"(policy {self.policy}, {self.rollbacks_since_progress} rollbacks)"
                )
            )

    def decide(self, step: int) -> str:
        """The action for a non-finite step: ``skip``, ``rollback`` or ``stop``."""
        if self.policy == "rollback" and self.rollbacks_since_progress >= self.max_rollbacks:
            return "stop"
        return self.policy

    def _warn(self, trainer: TrainerView, message: str) -> None:
        logger.warning(message)
        if self._publish is not None:
            self._publish("log", {"level": "warning", "message": message, "step": trainer.step})

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
