"""Work the control handlers leave for the training loop, coalesced until the loop takes it.

A flood of requests costs the loop no more than one of each: parameter changes keep the latest
value per parameter, and a checkpoint or an evaluation asked for twice before a step boundary runs
once. So the pending work is bounded by the number of parameters, whatever the clients send. Not
thread-safe on its own: the ``Controller``'s lock guards it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WORK_KINDS = ("checkpoint", "evaluate")


@dataclass(frozen=True)
class Command:
    """Work for the loop: ``set_params`` (with ``params``), ``checkpoint`` or ``evaluate``."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


class PendingCommands:
    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._work = dict.fromkeys(WORK_KINDS, False)

    def set_params(self, values: Mapping[str, Any]) -> None:
        self._params = {**self._params, **values}  # the latest value per parameter

    @property
    def params(self) -> Mapping[str, Any]:
        """The parameter values recorded and not taken yet."""
        return dict(self._params)

    def schedule(self, kind: str) -> None:
        self._work[kind] = True

    def cancel(self, kind: str) -> None:
        self._work[kind] = False

    def __bool__(self) -> bool:
        return bool(self._params) or any(self._work.values())

    def drain(self) -> list[Command]:
        """Everything pending, params first; nothing is pending afterwards."""
        taken = [Command("set_params", self._params)] if self._params else []
        taken += [Command(kind) for kind, wanted in self._work.items() if wanted]
        self._params = {}
        self._work = dict.fromkeys(WORK_KINDS, False)
        return taken
