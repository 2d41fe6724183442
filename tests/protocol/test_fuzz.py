"""Fuzzing a live ControlServer: every malformed request gets exactly one error reply, nothing else.

A DEALER socket pipelines many requests to the REP server (which answers them in order), so more
than ten thousand frames take seconds. Between batches a real `incr` proves that service goes on
and that only valid requests ever reach a handler.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import zmq

from protocol import ControlClient, ControlServer, ErrorCode, Message, Publisher
from protocol import message as msg
from protocol.codec import MAX_DEPTH, MAX_MESSAGE_BYTES
from tests.protocol.support import CallLog

SEED = 20240611
FUZZ_CASES = 12_000
BATCH = 400
REPLY_TIMEOUT_MS = 5000
ANY = "any error code"


@dataclass
class Case:
    frames: list[bytes]
    code: str  # the expected error code, or ANY
    request_id: str | None = None  # echoed back when the request had a usable id
    runs_history: bool = False


def _map(rng: random.Random, **fields: Any) -> dict[str, Any]:
    """A valid `incr` request map with `fields` replaced (a value of ... removes the key)."""
    base: dict[str, Any] = {
        "v": 1,
        "type": "request",
        "id": f"{rng.getrandbits(64):016x}",
        "op": "incr",
        "body": {},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def _case(code: str, fields: dict[str, Any], *, echo: bool = True, history: bool = False) -> Case:
    request_id = fields.get("id") if echo and isinstance(fields.get("id"), str) else None
    return Case([msgpack.packb(fields, use_bin_type=True)], code, request_id, history)


def _nested(depth: int, rng: random.Random) -> bytes:
    """`depth` arrays or one-key maps around a 0, as raw msgpack (the packer itself stops at 512)."""
    headers = [rng.choice([b"\x91", b"\x81\xa1k"]) for _ in range(depth)]
    return b"".join(headers) + b"\x00"


def _raw_map(fields: dict[str, Any], raw: dict[str, bytes]) -> bytes:
    """A map frame whose `raw` values are already-encoded msgpack."""
    items = [msgpack.packb(key) + msgpack.packb(value, use_bin_type=True) for key, value in fields.items()]
    items += [msgpack.packb(key) + value for key, value in raw.items()]
    return bytes([0x80 | len(items)]) + b"".join(items)


WRONG_FIELD_VALUES: dict[str, list[Any]] = {
    "v": ["1", 1.0, True, None, [1], {"v": 1}],
    "type": [1, None, b"request", ["request"]],
    "id": [1, 2.5, b"id", ["id"], {"id": 1}, "i" * (msg.MAX_ID_CHARS + 1)],
    "op": [1, b"incr", ["incr"], {"op": "incr"}, True],
    "body": [[], "args", 1, b"", True],
    "expires": ["later", b"1", [1], True],
    "ts": ["now", [0], False],
    "ok": [1, "yes"],
    "error": ["e", 1, []],
    "session": [1, b"s"],
    "seq": [1.5, "1", True],
    "topic": [1, b"t"],
}
HUGE_INTS = [2**64 - 1, -(2**63), 2**63, -1, 0]
BAD_HISTORY_ARGS: list[dict[str, Any]] = [
    {"since": -1},
    {"since": "0"},
    {"since": 1.5},
    {"since": True},
    {"since": None},
    {"since": [1]},
    {"since": {"a": 1}},
    {"since": -(2**63)},
    {"since": 0, "limit": -1},
    {"since": 0, "limit": "5"},
    {"since": 0, "limit": 2.0},
    {"since": 0, "limit": False},
]


def generate(rng: random.Random) -> Case:  # noqa: C901 (one branch per kind of garbage)
    kind = rng.randrange(16)
    if kind == 0:
        return Case([rng.randbytes(rng.randrange(0, 80))], ANY)
    if kind == 1:
        plain: list[Any] = [0, -1, 2**64 - 1, 1.5, "request", b"raw", None, True, [1, "a"], [], [{}]]
        return Case([msgpack.packb(rng.choice(plain), use_bin_type=True)], ErrorCode.BAD_REQUEST)
    if kind == 2:
        name = rng.choice(list(WRONG_FIELD_VALUES))
        return _case(
            ErrorCode.BAD_REQUEST, _map(rng, **{name: rng.choice(WRONG_FIELD_VALUES[name])}), echo=False
        )
    if kind == 3:
        return _case(
            ErrorCode.UNSUPPORTED_VERSION, _map(rng, v=rng.choice([0, 2, 3, -1, 99, *HUGE_INTS[:3]]))
        )
    if kind == 4:
        missing: dict[str, Any] = rng.choice(
            [{"op": ...}, {"op": ""}, {"type": "reply"}, {"type": "data"}, {"type": ""}]
        )
        fields = _map(rng, **missing)
        return _case(ErrorCode.BAD_REQUEST, fields)
    if kind == 5:
        fields = _map(rng, id=..., op=rng.choice(["incr", "status"]))
        return _case(ErrorCode.BAD_REQUEST, fields)
    if kind == 6:
        op = rng.choice(["Incr", "incr ", "", "stop", "\x00", "ü" * 50, "x" * 5000]) or "nop"
        return _case(ErrorCode.UNKNOWN_OP, _map(rng, op=op, body={"n": rng.choice(HUGE_INTS)}))
    if kind == 7:
        return _case(
            ErrorCode.BAD_REQUEST, _map(rng, op="history", body=rng.choice(BAD_HISTORY_ARGS)), history=True
        )
    if kind == 8:
        depth = rng.choice([MAX_DEPTH, MAX_DEPTH + 5, 200, 3000, 100_000])
        fields = _map(rng, body=...)
        return Case(
            [_raw_map(fields, {"body": b"\x81\xa4deep" + _nested(depth, rng)})], ErrorCode.BAD_REQUEST
        )
    if kind == 9:
        ext = rng.choice(
            [
                msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(0, 9))),
                msgpack.Timestamp(rng.randrange(2**33), rng.randrange(10**9)),
            ]
        )
        where = rng.choice(["body", "ts", "id", "top"])
        value: Any = (
            ext
            if where == "top"
            else _map(rng, **({"body": {"x": ext}} if where == "body" else {where: ext}))
        )
        return Case([msgpack.packb(value, use_bin_type=True)], ErrorCode.BAD_REQUEST)
    if kind == 10:
        good = msgpack.packb(_map(rng, op="incr"))
        frames = [good] * rng.randrange(2, 5) if rng.random() < 0.5 else [b"incr", good]
        return Case(frames, ErrorCode.BAD_REQUEST)
    if kind == 11:
        good = msgpack.packb(_map(rng))
        cut = rng.randrange(0, len(good))
        mangled = rng.choice([good[:cut], good + rng.randbytes(rng.randrange(1, 8)), good + good])
        return Case([mangled], ANY if mangled == good else ErrorCode.BAD_REQUEST)
    if kind == 12:
        # a str header followed by bytes that are not UTF-8, in the op or a key
        frame = rng.choice([b"\x81\xa2\xff\xfe\x01", b"\x82\xa1v\x01\xa2op\xa2\xc3\x28"])
        return Case([frame], ErrorCode.BAD_REQUEST)
    if kind == 13:
        key = msgpack.packb(rng.choice([1, -5, 2.5, None, True, b"op", [1], {"k": 1}]), use_bin_type=True)
        head = b"".join(msgpack.packb(item) for item in ("v", 1, "type", "request", "id", "k"))
        return Case([b"\x84" + head + key + b"\x01"], ErrorCode.BAD_REQUEST)
    if kind == 14:
        fields = _map(rng, expires=rng.choice([0, 1.0, 1e9, 1_700_000_000.5]))
        return _case(ErrorCode.EXPIRED, fields)
    return Case([rng.randbytes(rng.randrange(1, 12)) for _ in range(rng.randrange(2, 6))], ANY)


def cases(seed: int, count: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for _ in range(count):
        yield generate(rng)


class Counter:
    """The state the fuzz must not disturb: changed only by valid `incr` requests."""

    def __init__(self) -> None:
        self.value = 0
        self.incr = CallLog(self._incr)
        self.status = CallLog(lambda args: {"value": self.value})

    def _incr(self, args: dict[str, Any]) -> dict[str, Any]:
        self.value += 1
        return {"value": self.value}


@pytest.fixture
def fuzz_target(
    endpoint: Callable[[str], str], serve: Callable[..., ControlServer]
) -> tuple[str, Counter, CallLog]:
    counter = Counter()
    history = CallLog(Publisher(endpoint("unused"), session="fuzz").history_handler)
    control = endpoint("control")
    serve(control, {"incr": counter.incr, "status": counter.status, "history": history}, session="fuzz")
    return control, counter, history


def exchange_batch(dealer: zmq.Socket[bytes], batch: list[Case]) -> list[Message]:
    for case in batch:
        dealer.send_multipart([b"", *case.frames])
    answers = []
    for index in range(len(batch)):
        if not dealer.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
            raise AssertionError(
                f"no reply to fuzz request {index} of the batch: {batch[index].frames!r:.200}"
            )
        empty, *frames = dealer.recv_multipart()
        assert empty == b"" and len(frames) == 1, f"malformed reply envelope {frames!r:.200}"
        answers.append(Message.from_frames(frames))
    return answers


def test_every_malformed_request_gets_one_error_reply_and_changes_nothing(
    fuzz_target: tuple[str, Counter, CallLog], client: Callable[..., ControlClient]
) -> None:
    control, counter, history = fuzz_target
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    expected_history_calls = 0
    seen_codes: set[str] = set()
    with context.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(control)
        all_cases = list(cases(SEED, FUZZ_CASES))
        for start in range(0, len(all_cases), BATCH):
            batch = all_cases[start : start + BATCH]
            for case, answer in zip(batch, exchange_batch(dealer, batch), strict=True):
                assert answer.type == msg.REPLY and answer.ok is False, f"{case.frames!r:.200} -> {answer}"
                assert answer.error is not None and answer.error["code"] in ErrorCode.ALL
                assert case.code in (ANY, answer.error["code"]), f"{case.frames!r:.300} -> {answer.error}"
                assert answer.session == "fuzz"
                if case.request_id is not None:
                    assert answer.id == case.request_id
                seen_codes.add(answer.error["code"])
                expected_history_calls += case.runs_history
            # a valid request in between: served, and the only thing that moves the counter
            valid = msg.request("incr")
            [answer] = exchange_batch(dealer, [Case(valid.to_frames(), "")])
            assert answer.ok and answer.id == valid.id
            assert answer.body == {"value": start // BATCH + 1}
    batches = -(-FUZZ_CASES // BATCH)
    assert counter.incr.count == batches
    assert history.count == expected_history_calls
    assert {
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.UNKNOWN_OP,
        ErrorCode.EXPIRED,
    } <= seen_codes
    assert client(control).status() == {"value": batches}


def test_an_oversized_frame_disconnects_that_peer_only(
    fuzz_target: tuple[str, Counter, CallLog], client: Callable[..., ControlClient]
) -> None:
    control, counter, _ = fuzz_target
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    with context.socket(zmq.REQ) as greedy:
        greedy.linger = 0
        greedy.connect(control)
        greedy.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        well_behaved = client(control, timeout_ms=2000, retries=0)
        assert well_behaved.status() == {"value": 0}
        assert well_behaved.request("incr") == {"value": 1}
        assert greedy.poll(1000, zmq.POLLIN) == 0, "the oversized request was answered"
    assert counter.incr.count == 1
    assert well_behaved.status() == {"value": 1}


def test_fuzz_cases_are_reproducible() -> None:
    assert [case.frames for case in cases(SEED, 300)] == [case.frames for case in cases(SEED, 300)]
