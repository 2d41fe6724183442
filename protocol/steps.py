"""The per-step metrics on the feed: one ``metrics.steps`` message per compiled call (PROTOCOL.md §4).

Why one message for several steps: a trainer running many steps per call (thousands of steps a
second for a small model, or on a GPU) spent more host time on one message per step (the
publisher's thread, and every subscriber's decode, competing with training for the CPU) than on
the steps themselves. The body is the last step's fields, as a message per step had them, plus
every step's loss from ``first_step`` on::

    {step: 64, epoch: 0, loss: 0.21, steps_per_s: 2400.0, eta_s: 31.0, first_step: 1, losses: [...]}

A reader that wants only the latest values reads the body as before; one that wants a curve
reads ``step_losses``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

METRICS_STEPS = "metrics.steps"


def steps_body(
    first_step: int, epoch: int, losses: Sequence[float], last: Mapping[str, Any]
) -> dict[str, Any]:
    """The body for steps ``first_step`` .. ``first_step + len(losses) - 1``; ``last``: the last
    step's fields (loss, steps_per_s, eta_s)."""
    step = first_step + len(losses) - 1
    return {"step": step, "epoch": epoch, **last, "first_step": first_step, "losses": list(losses)}


def step_losses(body: Mapping[str, Any]) -> list[tuple[int, float]]:
    """(step, loss) for every step a ``metrics.steps`` body holds; [] for a body of the wrong shape
    (a reader skips what it cannot read rather than fail on it)."""
    step, first, losses = body.get("step"), body.get("first_step"), body.get("losses")
    if not (_is_int(step) and _is_int(first) and isinstance(losses, list)):
        return []
    if step - first + 1 != len(losses) or not all(_is_number(v) for v in losses):
        return []
    return [(first + index, float(value)) for index, value in enumerate(losses)]


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
