"""Every message type survives Message -> to_frames -> from_frames unchanged, and shapes are checked."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ErrorCode, Message, ProtocolError
from protocol import message as msg

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
FLOATS = st.floats(allow_nan=False)
SCALARS = st.none() | st.booleans() | INT64 | FLOATS | st.text(max_size=20) | st.binary(max_size=20)
PLAIN = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.dictionaries(st.text(max_size=12), PLAIN, max_size=6)
IDS = st.text(min_size=1, max_size=msg.MAX_ID_CHARS)
NAMES = st.text(min_size=1, max_size=30)
TIMES = st.floats(min_value=0, max_value=4e9)
SEQS = st.integers(min_value=0, max_value=msg.MAX_SEQ)
TOPICS = st.text(max_size=40)


def requests() -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        type=st.just(msg.REQUEST),
        id=IDS,
        op=NAMES,
        body=BODIES,
        expires=st.none() | TIMES,
        ts=TIMES,
    )


def ok_replies() -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        type=st.just(msg.REPLY),
        id=IDS,
        op=NAMES,
        ok=st.just(True),
        session=NAMES,
        body=BODIES,
        ts=TIMES,
    )


def error_replies() -> st.SearchStrategy[Message]:
    errors = st.fixed_dictionaries(
        {"code": st.sampled_from(ErrorCode.ALL), "message": st.text(max_size=80)},
        optional={"details": BODIES},
    )
    return st.builds(
        Message,
        type=st.just(msg.REPLY),
        id=st.none() | IDS,
        op=st.none() | NAMES,
        ok=st.just(False),
        error=errors,
        session=NAMES,
        ts=TIMES,
    )


def data_messages() -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        type=st.just(msg.DATA),
        topic=TOPICS,
        session=NAMES,
        seq=SEQS,
        body=BODIES,
        ts=TIMES,
    )


def heartbeats() -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        type=st.just(msg.HEARTBEAT),
        topic=st.just("heartbeat"),
        session=NAMES,
        seq=SEQS,
        body=BODIES,
        ts=TIMES,
    )


@settings(max_examples=150)
@given(requests() | ok_replies() | error_replies() | data_messages() | heartbeats())
def test_every_message_type_round_trips_through_frames(message: Message) -> None:
    assert Message.from_frames(message.to_frames()) == message


@given(data_messages() | heartbeats())
def test_feed_messages_are_two_frames_with_the_topic_first(message: Message) -> None:
    frames = message.to_frames()
    assert len(frames) == 2
    assert frames[0] == (message.topic or "").encode()


@given(requests() | ok_replies() | error_replies())
def test_control_messages_are_one_frame(message: Message) -> None:
    assert len(message.to_frames()) == 1


def test_absent_fields_read_as_none_and_unknown_keys_are_ignored() -> None:
    frame = msgpack.packb({"v": 1, "type": "request", "id": "a", "op": "status", "future_field": [1]})
    message = Message.from_frames([frame])
    assert (message.op, message.body, message.session, message.seq, message.expires) == (
        "status",
        {},
        None,
        None,
        None,
    )


def _frame(**fields: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "type": "request", "id": "abc", "op": "status", "body": {}}
    base.update(fields)
    frame: bytes = msgpack.packb({key: value for key, value in base.items() if value is not ...})
    return frame


@pytest.mark.parametrize(
    "frame",
    [
        msgpack.packb([1, 2]),
        msgpack.packb("request"),
        msgpack.packb(None),
        _frame(v="1"),
        _frame(v=True),
        _frame(v=1.0),
        _frame(v=...),
        _frame(type=1),
        _frame(type=...),
        _frame(id=7),
        _frame(id="x" * (msg.MAX_ID_CHARS + 1)),
        _frame(op=["status"]),
        _frame(body=[]),
        _frame(body="x"),
        _frame(ok=1),
        _frame(error="boom"),
        _frame(session=b"s"),
        _frame(seq=1.0),
        _frame(seq=True),
        _frame(seq=-1),
        _frame(seq=2**63),
        _frame(expires="soon"),
        _frame(expires=False),
        _frame(ts="now"),
        _frame(ts=float("nan")),
        _frame(expires=float("inf")),
        _frame(v=None),
        _frame(type=None),
        _frame(topic=5),
    ],
)
def test_wrong_shapes_are_refused_naming_the_field(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        Message.from_frames([frame])


def test_wrong_frame_counts_are_refused() -> None:
    payload = Message(type=msg.DATA, topic="t", seq=1).to_frames()[1]
    with pytest.raises(ProtocolError, match="1 or 2 frames"):
        Message.from_frames([b"t", payload, b"extra"])
    with pytest.raises(ProtocolError, match="1 or 2 frames"):
        Message.from_frames([])
    with pytest.raises(ProtocolError, match="topic frame"):
        Message.from_frames([b"t" * (msg.MAX_TOPIC_BYTES + 1), payload])


ENVELOPE_KEYS = ("v", "type", "id", "op", "ok", "error", "session", "seq", "topic", "expires", "ts", "body")


def test_null_fields_read_as_absent() -> None:
    """PROTOCOL.md section 2: null is absent (a null `ts` once raised TypeError in the server thread)."""
    nulls = {key: None for key in ENVELOPE_KEYS if key not in ("v", "type", "id", "op")}
    frame = msgpack.packb({"v": 1, "type": "request", "id": "a", "op": "status", **nulls})
    message = Message.from_frames([frame])
    assert (message.id, message.op, message.ts, message.body, message.expires) == (
        "a",
        "status",
        0.0,
        {},
        None,
    )


def test_a_wrong_type_names_the_field_and_what_was_received_truncated() -> None:
    with pytest.raises(ProtocolError) as raised:
        Message.from_frames([_frame(ts="x" * 5000)])
    text = str(raised.value)
    assert text.startswith("field 'ts' must be a number, received str 'xxx")
    assert len(text) < 120


# Every msgpack value our codec lets through, nulls included, in every envelope field.
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats() | st.text(max_size=300) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ENVELOPES = st.dictionaries(st.sampled_from(ENVELOPE_KEYS), ANY_VALUE) | ANY_VALUE


@settings(max_examples=400, deadline=None, derandomize=True)
@given(ENVELOPES)
def test_decoding_is_total_a_message_or_a_protocol_error(value: Any) -> None:
    frame = msgpack.packb(value, use_bin_type=True)
    try:
        message = Message.from_frames([frame])
    except ProtocolError as exc:
        assert len(str(exc)) < 200
        return
    assert isinstance(message.ts, float) and isinstance(message.body, dict)
    assert Message.from_frames(message.to_frames()[-1:]) == message
