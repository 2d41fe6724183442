"""A console progress bar with ETA (rich), on stderr; ``--quiet`` leaves it out.

The bar is drawn once per compiled call (``on_boundary``), from the last step's logs: rich
redraws ten times a second anyway, and a per-step update cost more host time than a step of a
small model (``python -m bench overhead``).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from protocol.durations import format_duration
from trainer.callbacks.base import Callback, Logs
from trainer.callbacks.view import TrainerView


class ProgressBar(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._last: Logs = {}

    def on_train_start(self, trainer: TrainerView, logs: Logs) -> None:
        self._last = {}
        self._progress = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            console=self._console,
            transient=False,
        )
        self._task = self._progress.add_task(
            "train", total=trainer.total_steps(), completed=trainer.step, info=""
        )
        self._progress.start()
        self._console.print(f"chattrain: checkpoints go to {trainer.run_dir / 'checkpoints'}", soft_wrap=True)

    def on_step_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._last = logs

    def on_boundary(self, trainer: TrainerView, logs: Logs) -> None:
        self._draw(trainer)

    def _draw(self, trainer: TrainerView) -> None:
        if self._progress is None:
            return
        logs = self._last
        info = (
            f"loss {logs.get('loss', float('nan')):.4f}  {logs.get('steps_per_s', 0):.1f} "
            f"steps/s  ETA {format_duration(logs.get('eta_s', 0.0))}"
        )
        self._progress.update(self._task, completed=trainer.step, total=trainer.total_steps(), info=info)

    def on_report(self, trainer: TrainerView, logs: Logs) -> None:
        if self._progress is not None and "accuracy" in logs:
            self._progress.console.print(
                f"step {trainer.step}: loss {logs['loss']:.4f} accuracy {logs['accuracy']:.4f}"
                f" lr {logs.get('lr', float('nan')):.3g}"
            )

    def on_train_end(self, trainer: TrainerView, logs: Logs) -> None:
        self._draw(trainer)
        self._close()

    def on_exception(self, trainer: TrainerView, logs: Logs) -> None:
        self._close()

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
