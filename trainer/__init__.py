"""chattrain's trainer: train TensorFlow modules under remote control, in the style of Lightning.

    from trainer import Trainer, Module, KerasModule
    Trainer(KerasModule(compiled_model, train=(x, y))).fit()

Importing this package does not import TensorFlow (the process binds its sockets first); the
names below are loaded on first use. ``python -m trainer --help`` runs the controlled process.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Trainer": "trainer.trainer",
    "Module": "trainer.module",
    "KerasModule": "trainer.module",
    "Callback": "trainer.callbacks.base",
    "PARAM_SPECS": "trainer.params",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
