"""The trainer's live parameters, declared once as protocol ``ParamSpec``s.

These declarations drive validation (``validate_updates``), the ``describe`` reply, the chat help
text and the CLI's ``--param``. The seed script's short names are aliases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from protocol import ErrorCode, ParamSpec, RequestError, coerce_params
from protocol.message import received
from protocol.params import split_assignment

LEARNING_RATE = "learning_rate"
TRAINING_ITERS = "training_iters"
BATCH_SIZE = "batch_size"
DISPLAY_STEP = "display_step"

PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        name=LEARNING_RATE,
        type="float",
        default=0.001,
        aliases=("lr",),
        minimum=1e-9,  # PROTOCOL.md: (0, 1]
        maximum=1.0,
        applies="next_step",
        help="Optimizer learning rate; applies from the next step.",
    ),
    ParamSpec(
        name=TRAINING_ITERS,
        type="int",
        default=200_000,
        aliases=("ti",),
        minimum=1,
        maximum=10**12,
        applies="now",
        help="Training budget in samples (steps = training_iters // batch_size).",
    ),
    ParamSpec(
        name=BATCH_SIZE,
        type="int",
        default=128,
        aliases=("bs",),
        minimum=1,
        maximum=65_536,
        applies="next_epoch",
        help="Samples per step; applies at the next epoch (or the next start).",
    ),
    ParamSpec(
        name=DISPLAY_STEP,
        type="int",
        default=10,
        aliases=("ds",),
        minimum=1,
        maximum=10**9,
        applies="now",
        help="Steps between reports (accuracy, lr, ...).",
    ),
)


def defaults(specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Canonical name -> default value."""
    return {spec.name: spec.default for spec in specs}


def validate_updates(specs: Sequence[ParamSpec], updates: Any) -> dict[str, Any]:
    """Resolve aliases, coerce and range-check every update, all or nothing.

    Returns ``{canonical_name: coerced_value}``; raises ``RequestError(INVALID_PARAMS)`` naming the
    bad entries (``coerce_params``, the one validator) and changes nothing.
    """
    if not isinstance(updates, Mapping) or not updates:
        shown = received(updates)
        raise RequestError(ErrorCode.INVALID_PARAMS, f"params must be a non-empty map, received {shown}")
    return coerce_params(specs, updates)


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["lr=0.01", "bs=64"]`` -> ``{"lr": "0.01", "bs": "64"}`` (values checked later)."""
    return dict(split_assignment(item) for item in items)


def change_record(
    specs: Sequence[ParamSpec],
    name: str,
    old: Any,
    new: Any,
    at_step: int,
    next_epoch_step: int | None,
    reason: str = "set",
) -> dict[str, Any]:
    """What ``on_params_changed`` says of one change (``trainer.param_changes``): a ``next_epoch``
    param applies from ``next_epoch_step`` when that is known and later than ``at_step``."""
    applies = next(s.applies for s in specs if s.name == name)
    step = at_step
    if applies == "next_epoch" and next_epoch_step is not None:
        step = max(at_step, next_epoch_step)
    return {
        "name": name,
        "old": old,
        "new": new,
        "applies": applies,
        "applies_at_step": step,
        "reason": reason,
    }
