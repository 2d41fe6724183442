"""What ``Trainer.fit`` returns: the reported metrics, the evaluations and the outcome.

Like Keras' ``History``: ``history.history["loss"]`` is the list of reported losses, with
``history.steps`` the step of each entry; validation and test results are kept apart. The
recorder is a callback the trainer always adds; its state is reset when a fit starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView

NOT_RECORDED = frozenset({"steps_per_s", "eta_s"})  # speed, not results


@dataclass
class History:
    outcome: str | None = None
    steps: list[int] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    validation: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


class HistoryRecorder(Callback):
    def __init__(self) -> None:
        self.history = History()

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self.history = History(run_dir=trainer.run_dir)

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        self.history.steps.append(trainer.step)
        for name, value in logs.items():
            if name not in NOT_RECORDED:
                self.history.history.setdefault(name, []).append(float(value))

    def on_validation_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.history.validation.append((trainer.step, dict(logs)))

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        self.history.outcome, self.history.test = trainer.ending(), dict(logs)
