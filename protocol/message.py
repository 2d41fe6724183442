"""The one message type of the protocol, and its wire form.

A control message travels as one frame: a msgpack map. A feed message travels as two frames: the
topic (UTF-8, for SUB prefix filtering) and the same kind of map. Building a message is separate from
its wire form: `Message(...)` holds plain values, `to_frames()` / `from_frames()` convert.

Map keys (absent keys mean None): v, type, id, op, ok, error, session, seq, topic, expires, ts, body.
Unknown keys are ignored, so newer peers can add fields without breaking older ones.
"""

from __future__ import annotations

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

# key -> accepted Python types after decoding; checked so that handlers never see a wrong shape.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "op": (str,),
    "ok": (bool,),
    "error": (dict,),
    "session": (str,),
    "seq": (int,),
    "topic": (str,),
    "expires": (int, float),
    "ts": (int, float),
    "body": (dict,),
}


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
        """Validate a decoded map's shape; raises `ProtocolError` naming the first bad field."""
        if not isinstance(value, dict):
            raise ProtocolError(f"expected a map, received {type(value).__name__}")
        version, kind = value.get("v"), value.get("type")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ProtocolError(f"field 'v' must be an integer, received {version!r:.40}")
        if not isinstance(kind, str):
            raise ProtocolError(f"field 'type' must be a string, received {kind!r:.40}")
        for key, types in _FIELD_TYPES.items():
            item = value.get(key)
            bad_bool = isinstance(item, bool) and bool not in types
            if item is not None and (not isinstance(item, types) or bad_bool):
                raise ProtocolError(f"field {key!r} has the wrong type {type(item).__name__}")
        message_id = value.get("id")
        if message_id is not None and len(message_id) > MAX_ID_CHARS:
            raise ProtocolError(f"field 'id' is longer than {MAX_ID_CHARS} characters")
        return cls(
            type=kind,
            v=version,
            body=value.get("body") or {},
            id=message_id,
            op=value.get("op"),
            ok=value.get("ok"),
            error=value.get("error"),
            session=value.get("session"),
            seq=value.get("seq"),
            topic=value.get("topic"),
            expires=value.get("expires"),
            ts=float(value.get("ts", 0.0)),
        )

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
    """A new control request with a fresh id."""
    return Message(type=REQUEST, id=new_id(), op=op, body=body or {}, expires=expires)


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
