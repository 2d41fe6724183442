"""Describing a failure for ``status`` and ``event.failed`` (no TensorFlow import here)."""

from __future__ import annotations

import traceback
from typing import Any

TRACEBACK_TAIL_LINES = 15
MESSAGE_MAX_CHARS = 2000


def describe_error(exc: BaseException) -> dict[str, Any]:
    """``{type, message, traceback_tail}`` for ``status`` and ``event.failed``."""
    lines = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).splitlines()
    return {
        "type": type(exc).__name__,
        "message": short_message(exc),
        "traceback_tail": "\n".join(lines[-TRACEBACK_TAIL_LINES:]),
    }


def short_message(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Detected at node" in text:
        # A TensorFlow runtime error lists the op's Python stack first; the cause is at the end.
        lines = [line for line in text.splitlines() if line.strip()]
        text = "\n".join(lines[-2:])
    return text[:MESSAGE_MAX_CHARS]
