"""Callbacks: control, publishing, checkpoints, non-finite policy, progress bar, TensorBoard, JSONL.

Import them from their modules; this package's import stays free of TensorFlow.
"""

from __future__ import annotations

from trainer.callbacks.base import HOOKS, Callback, Logs, dispatch
from trainer.callbacks.view import Requests, TrainerView

__all__ = ["HOOKS", "Callback", "Logs", "Requests", "TrainerView", "dispatch"]
