"""The one message type of the protocol, and its wire form.

A control message travels as one frame: a msgpack map. A feed message travels as two frames: the
topic (UTF-8, for SUB prefix filtering) and the same kind of map. Building a message is separate from
its wire form: `Message(...)` holds plain values, `to_frames()` / `from_frames()` convert.

Map keys (absent keys mean None): v, type, id, op, ok, error, session, seq, topic, expires, ts, body.
Unknown keys are ignored, so newer peers can add fields without breaking older ones.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from protocol import codec
from protocol.errors import ProtocolError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

REQUEST = "request"
REPLY = "reply"
DATA = "data"
HEARTBEAT = "heartbeat"
MESSAGE_TYPES = (REQUEST, REPLY, DATA, HEARTBEAT)

MAX_ID_CHARS = 128
MAX_TOPIC_BYTES = 256
MAX_SEQ = 2**63 - 1  # a signed 64-bit integer in every language
# The deadline a request built without one gets: the server refuses requests without `expires`.
REQUEST_TTL_S = 10.0

# key -> (accepted Python types after decoding, what the error message calls them); checked so that
# handlers never see a wrong shape. bool is an int subclass in Python, so it is accepted only where named.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "v": ((int,), "an integer"),
    "type": ((str,), "a string"),
    "id": ((str,), "a string"),
    "op": ((str,), "a string"),
    "ok": ((bool,), "a boolean"),
    "error": ((dict,), "a map"),
    "session": ((str,), "a string"),
    "seq": ((int,), "an integer"),
    "topic": ((str,), "a string"),
    "expires": ((int, float), "a number"),
    "ts": ((int, float), "a number"),
    "body": ((dict,), "a map"),
}
_REQUIRED = ("v", "type")
_TIMES = ("expires", "ts")
RECEIVED_CHARS = 40


def received(value: Any) -> str:
    """How an error message shows a received value: its type and a truncated repr."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int past Python's digit limit
        text = "<unprintable>"
    if len(text) > RECEIVED_CHARS:
        text = text[: RECEIVED_CHARS - 3] + "..."
    return f"{type(value).__name__} {text}"


def _checked_fields(value: dict[str, Any]) -> dict[str, Any]:
    """The envelope fields of a decoded map, type-checked; null (None) counts as absent."""
    fields: dict[str, Any] = {}
    for key, (types, expected) in _FIELD_TYPES.items():
        item = value.get(key)
        if item is None:
            if key in _REQUIRED:
                raise ProtocolError(f"field {key!r} is required ({expected})")
            continue
        if not isinstance(item, types) or (isinstance(item, bool) and bool not in types):
            raise ProtocolError(f"field {key!r} must be {expected}, received {received(item)}")
        if key in _TIMES and isinstance(item, float) and not math.isfinite(item):
            raise ProtocolError(f"field {key!r} must be a finite number, received {received(item)}")
        if key == "seq" and isinstance(item, int) and not 0 <= item <= MAX_SEQ:
            raise ProtocolError(f"field 'seq' must be from 0 to {MAX_SEQ}, received {received(item)}")
        fields[key] = item
    message_id = fields.get("id")
    if message_id is not None and len(message_id) > MAX_ID_CHARS:
        raise ProtocolError(f"field 'id' is longer than {MAX_ID_CHARS} characters ({len(message_id)})")
    return fields


def new_id() -> str:
    """A unique id for a request."""
    return uuid.uuid4().hex


def new_session_id() -> str:
    """The process epoch: a new value every time a trainer process starts."""
    return uuid.uuid4().hex[:16]


@dataclass
class Message:
    """A protocol message; see PROTOCOL.md for which fields each type uses."""

    type: str
    body: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION
    id: str | None = None
    op: str | None = None
    ok: bool | None = None
    error: dict[str, Any] | None = None
    session: str | None = None
    seq: int | None = None
    topic: str | None = None
    expires: float | None = None
    ts: float = field(default_factory=time.time)

    def to_map(self) -> dict[str, Any]:
        """The msgpack map, without the keys whose value is None."""
        fields = {
            "v": self.v,
            "type": self.type,
            "id": self.id,
            "op": self.op,
            "ok": self.ok,
            "error": self.error,
            "session": self.session,
            "seq": self.seq,
            "topic": self.topic,
            "expires": self.expires,
            "ts": self.ts,
            "body": self.body,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_map(cls, value: Any) -> Message:
        """Validate a decoded map's shape; raises `ProtocolError` naming the first bad field.

        Total: any decoded value either becomes a Message or raises ProtocolError, nothing else.
        """
        if not isinstance(value, dict):
            raise ProtocolError(f"expected a map, received {received(value)}")
        fields = _checked_fields(value)
        ts = fields.pop("ts", 0.0)
        return cls(body=fields.pop("body", {}), ts=float(ts), **fields)

    def to_frames(self) -> list[bytes]:
        """Feed messages: [topic, map]; control messages: [map]."""
        payload = codec.pack(self.to_map())
        if self.type in (DATA, HEARTBEAT):
            return [(self.topic or "").encode(), payload]
        return [payload]

    @classmethod
    def from_frames(cls, frames: list[bytes]) -> Message:
        """Decode untrusted frames; raises `ProtocolError`."""
        if len(frames) == 1:
            return cls.from_map(codec.unpack(frames[0]))
        if len(frames) == 2:
            if len(frames[0]) > MAX_TOPIC_BYTES:
                raise ProtocolError(f"topic frame of {len(frames[0])} bytes")
            return cls.from_map(codec.unpack(frames[1]))
        raise ProtocolError(f"expected 1 or 2 frames, received {len(frames)}")


def request(op: str, body: dict[str, Any] | None = None, *, expires: float | None = None) -> Message:
    """A new control request with a fresh id; it always carries a deadline (`REQUEST_TTL_S` unless given)."""
    deadline = time.time() + REQUEST_TTL_S if expires is None else expires
    return Message(type=REQUEST, id=new_id(), op=op, body=body or {}, expires=deadline)


def reply(request_id: str | None, op: str | None, session: str, body: dict[str, Any]) -> Message:
    """A successful reply echoing the request's id."""
    return Message(type=REPLY, id=request_id, op=op, ok=True, session=session, body=body)


def error_reply(
    request_id: str | None,
    op: str | None,
    session: str,
    code: str,
    text: str,
    details: dict[str, Any] | None = None,
) -> Message:
    """An error reply: `ok: false` and `error: {code, message, details}`."""
    error: dict[str, Any] = {"code": code, "message": text}
    if details:
        error["details"] = details
    return Message(type=REPLY, id=request_id, op=op, ok=False, session=session, error=error)
