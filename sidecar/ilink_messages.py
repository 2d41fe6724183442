"""Reading what iLink's getupdates answers say (Tencent/openclaw-weixin docs/protocol.md),
trusting none of the server's types: the suggested long-poll hold, a message's id, its text.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

ITEM_TEXT, ITEM_VOICE = 1, 3
MIN_LONG_POLL_S, MAX_LONG_POLL_S = 1.0, 120.0  # the documented hold is ~35 s: beyond these, a server fault


class MalformedMessage(ValueError):
    """A message in getupdates that is not shaped as the protocol says; the text names the field."""


def suggested_hold_s(answer: dict[str, Any]) -> float | None:
    """The server's `longpolling_timeout_ms` in seconds, clamped to MIN/MAX_LONG_POLL_S (huge,
    infinite, negative); None when absent or not a number (NaN, a string, a bool)."""
    value = answer.get("longpolling_timeout_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and math.isnan(value):  # an int is never NaN (and may not fit a float)
        return None
    # Compared before dividing, for the same reason: an integer of 400 digits overflows a float.
    return min(max(value, MIN_LONG_POLL_S * 1000), MAX_LONG_POLL_S * 1000) / 1000


def message_id(message: dict[str, Any]) -> str:
    """A WeixinMessage's id: message_id, else who, seq and time together; with none of them, a
    digest of the whole message (its text and context_token): one shared id would make every
    such message after the first look handled already."""
    if message.get("message_id"):
        return str(message["message_id"])
    if message.get("seq") is not None or message.get("create_time_ms") is not None:
        return f"{message.get('from_user_id')}:{message.get('seq')}:{message.get('create_time_ms')}"
    content = json.dumps(message, sort_keys=True, default=repr).encode()
    return "sha256:" + hashlib.sha256(content).hexdigest()[:32]


def message_text(items: Any) -> str | None:
    """The message's text (a voice message's transcript counts); None when it has none.

    Raises MalformedMessage, naming the field, when `item_list` (or an item in it) is not
    shaped as the protocol says.
    """
    if items is None:
        return None
    if not isinstance(items, list):
        raise MalformedMessage(f"item_list is {json_kind(items)}, not a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedMessage(f"item_list[{index}] is {json_kind(item)}, not an object")
        kind = item.get("type")
        field = "text_item" if kind == ITEM_TEXT else "voice_item" if kind == ITEM_VOICE else None
        content = item.get(field) if field else None
        if content is None:
            continue
        if not isinstance(content, dict):
            raise MalformedMessage(f"item_list[{index}].{field} is {json_kind(content)}, not an object")
        if content.get("text"):
            return str(content["text"])
    return None


def json_kind(value: Any) -> str:
    """A received value's JSON kind, for a message naming what was wrong."""
    return "null" if value is None else type(value).__name__
