"""Callbacks: control, publishing, checkpoints, non-finite policy, progress bar, TensorBoard, JSONL.

Import them from their modules; this package's import stays free of TensorFlow.
"""

from __future__ import annotations

from trainer.callbacks.base import HOOKS, Callback, Logs, dispatch

__all__ = ["HOOKS", "Callback", "Logs", "dispatch"]
