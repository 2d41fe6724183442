"""Built-in tasks by name, and loading a user module from ``pkg.mod:Class``."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.module import Module

TASKS = {"mnist_cnn": "trainer.tasks.mnist_cnn:MnistCnn"}


def load_module(task: str | None, module: str | None, **options: Any) -> Module:
    """Instantiate ``--task NAME`` or ``--module pkg.mod:Class`` with the ``options`` (data,
    data_limit, synthetic) its constructor accepts (see trainer.module's docstring)."""
    if module is None:
        name = task or "mnist_cnn"
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
        module = TASKS[name]
    path, sep, attr = module.partition(":")
    if not sep or not attr:
        raise ValueError(f"--module must look like pkg.mod:Class, got {module!r}")
    factory = getattr(importlib.import_module(path), attr)
    return factory(**accepted(factory, options))  # type: ignore[no-any-return]


def accepted(factory: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options `factory` takes by name (all of them when it takes ``**kwargs``)."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return options
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {name: value for name, value in options.items() if name in names}
