"""Built-in tasks by name, and loading a user module from ``pkg.mod:Class``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.module import Module

TASKS = {"mnist_cnn": "trainer.tasks.mnist_cnn:MnistCnn"}


def load_module(task: str | None, module: str | None, **options: Any) -> Module:
    """Instantiate ``--task NAME`` or ``--module pkg.mod:Class`` with ``options`` (data, limit)."""
    if module is None:
        name = task or "mnist_cnn"
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
        module = TASKS[name]
    path, sep, attr = module.partition(":")
    if not sep or not attr:
        raise ValueError(f"--module must look like pkg.mod:Class, got {module!r}")
    factory = getattr(importlib.import_module(path), attr)
    return factory(**options)  # type: ignore[no-any-return]
