"""Fuzzing a live control server and publisher with hypothesis: any frames get exactly one reply.

Every envelope field takes arbitrary msgpack values (nulls, wrong types, huge ints, NaN, ext types,
deep nesting) or a valid one, and raw garbage frames and wrong frame counts are mixed in. After
each frame: exactly one reply, a well-formed one, echoing a usable request id; only requests that
were answered `ok` ran a handler; the server and publisher threads are alive; and at the end a
normal request is answered correctly. Examples are bounded and derandomized, so CI runs the same
cases every time in a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ControlClient, ControlServer, ErrorCode, Message
from protocol import message as msg
from protocol.codec import MAX_DEPTH, MAX_MESSAGE_BYTES
from tests.protocol.support import CallLog, FakeTrainer

REPLY_TIMEOUT_MS = 5000
FUZZ = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAR_FUTURE = time.time() + 3600

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=16)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 10**9 - 1))
)
ANY_VALUE = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "v": st.just(1),
    "type": st.just("request") | st.sampled_from(msg.MESSAGE_TYPES),
    "id": st.text(min_size=1, max_size=12) | st.just("i" * (msg.MAX_ID_CHARS + 1)),
    "op": st.sampled_from(["incr", "status", "history", "nope", ""]),
    "expires": st.just(FAR_FUTURE) | st.floats(0, 2e9),
    "body": st.fixed_dictionaries({}, optional={"since": ANY_VALUE, "limit": ANY_VALUE, "x": ANY_VALUE}),
}
ENVELOPE_KEYS = ("v", "type", "id", "op", "ok", "error", "session", "seq", "topic", "expires", "ts", "body")
# Each field: absent, valid, or any msgpack value at all; unknown keys ride along.
ENVELOPES = st.fixed_dictionaries(
    {},
    optional={key: VALID.get(key, ANY_VALUE) | ANY_VALUE for key in ENVELOPE_KEYS} | {"future": ANY_VALUE},
)

# A valid request with at most one field replaced by any value (or dropped): reaches the handlers.
GOOD_REQUESTS = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "type": st.just("request"),
        "id": st.text(min_size=1, max_size=12),
        "op": st.sampled_from(["incr", "history", "status", "nope"]),
        "expires": st.sampled_from([FAR_FUTURE, FAR_FUTURE, 1.0]),
        "body": VALID["body"],
    }
)


def _replaced(request: dict[str, Any], key: str | None, value: Any) -> dict[str, Any]:
    if key is None:
        return request
    if value is ...:
        return {name: item for name, item in request.items() if name != key}
    return {**request, key: value}


ONE_FIELD_WRONG = st.builds(
    _replaced, GOOD_REQUESTS, st.none() | st.sampled_from(ENVELOPE_KEYS), st.just(...) | ANY_VALUE
)


def _deep(depth: int) -> bytes:
    """A request map whose body nests `depth` one-key maps (the packer itself stops at 512)."""
    head: bytes = msgpack.packb(
        {"v": 1, "type": "request", "id": "deep", "op": "incr", "expires": FAR_FUTURE}
    )
    return bytes([head[0] + 1]) + head[1:] + b"\xa4body" + b"\x81\xa1k" * depth + b"\x00"


def _packed(value: Any) -> bytes:
    frame: bytes = msgpack.packb(value, use_bin_type=True)
    return frame


MAPS = ENVELOPES.map(_packed)
FRAMES: st.SearchStrategy[list[bytes]] = st.one_of(
    ONE_FIELD_WRONG.map(lambda request: [_packed(request)]),
    MAPS.map(lambda frame: [frame]),
    ANY_VALUE.map(lambda value: [_packed(value)]),
    st.binary(max_size=64).map(lambda frame: [frame]),
    st.tuples(MAPS, st.binary(min_size=1, max_size=8)).map(lambda pair: [pair[0] + pair[1]]),
    st.tuples(MAPS, st.integers(0, 64)).map(lambda pair: [pair[0][: pair[1]]]),
    st.lists(st.binary(max_size=16) | MAPS, min_size=1, max_size=4),  # zero frames is not a message
    st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 5, 3000]).map(lambda depth: [_deep(depth)]),
)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code}")


def _usable_id(frames: list[bytes]) -> str | None:
    """The id a reply must echo: a decodable one-frame map's string id of allowed length.

    Decodable as PROTOCOL.md section 2 reads it: msgpack with string (or bin) keys and no ext
    type anywhere (Timestamp included); nesting depth and the other fields do not matter for the id.
    """
    if len(frames) != 1:
        return None
    try:
        value = msgpack.unpackb(
            frames[0], raw=False, strict_map_key=True, max_ext_len=0, ext_hook=_refuse_ext
        )
    except Exception:
        return None
    rid = value.get("id") if isinstance(value, dict) else None
    return rid if isinstance(rid, str) and len(rid) <= msg.MAX_ID_CHARS else None


class Target:
    """A fake trainer whose `incr` counts how often a handler really ran."""

    def __init__(self, trainer: Callable[..., FakeTrainer]) -> None:
        self.value = 0
        self.incr = CallLog(self._incr)
        self.fake = trainer(extra_handlers={"incr": self.incr})
        self.fake.publish_many(50)
        self.ok_incr_ids: set[str] = set()
        self.codes: set[str] = set()

    def _incr(self, args: dict[str, Any]) -> dict[str, Any]:
        self.value += 1
        return {"value": self.value}

    @property
    def server(self) -> ControlServer:
        return self.fake.server


def exchange(dealer: zmq.Socket[bytes], frames: list[bytes]) -> Message:
    dealer.send_multipart([b"", *frames])
    assert dealer.poll(REPLY_TIMEOUT_MS, zmq.POLLIN), f"no reply to {frames!r:.200}"
    empty, *reply = dealer.recv_multipart()
    assert empty == b"" and len(reply) == 1, f"malformed reply envelope {reply!r:.200}"
    assert not dealer.poll(0, zmq.POLLIN), f"a second reply to {frames!r:.200}"
    return Message.from_frames(reply)


def check_reply(target: Target, frames: list[bytes], answer: Message) -> None:
    assert answer.type == msg.REPLY and answer.session == target.fake.session
    assert isinstance(answer.ok, bool)
    if not answer.ok:
        assert answer.error is not None and answer.error["code"] in ErrorCode.ALL, answer.error
        assert len(answer.to_frames()[0]) < 20_000
        target.codes.add(answer.error["code"])
    rid = _usable_id(frames)
    if rid is not None:
        assert answer.id == rid, f"{frames!r:.200} -> {answer}"
    if answer.ok and answer.op == "incr":
        assert answer.id is not None
        target.ok_incr_ids.add(answer.id)


def test_any_frames_get_exactly_one_reply_and_both_threads_live_on(
    trainer: Callable[..., FakeTrainer], client: Callable[..., ControlClient]
) -> None:
    target = Target(trainer)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(target.fake.server.endpoint)

        @FUZZ
        @given(FRAMES)
        def one_reply(frames: list[bytes]) -> None:
            check_reply(target, frames, exchange(dealer, frames))
            assert target.server.alive and target.fake.publisher.alive

        one_reply()
    # Only requests answered ok ran, once per id (a retried id is answered from the cache).
    assert target.incr.count == len(target.ok_incr_ids) > 0
    assert target.fake.history_calls.count > 0
    assert {ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP, ErrorCode.EXPIRED} <= target.codes
    assert client(target.fake.server.endpoint).request("incr") == {"value": target.incr.count}
    status = client(target.fake.server.endpoint).status()
    assert status["last_seq"] == 50
    assert target.server.alive and target.fake.publisher.alive


def test_an_oversized_frame_disconnects_that_peer_only(
    trainer: Callable[..., FakeTrainer], client: Callable[..., ControlClient]
) -> None:
    target = Target(trainer)
    control = target.fake.server.endpoint
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.REQ) as greedy:
        greedy.linger = 0
        greedy.connect(control)
        greedy.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        well_behaved = client(control, timeout_ms=2000, retries=0)
        assert well_behaved.request("incr") == {"value": 1}
        assert greedy.poll(1000, zmq.POLLIN) == 0, "the oversized request was answered"
    assert target.incr.count == 1
