"""The codec refuses every frame that is not plain, bounded msgpack, always with a ProtocolError."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import ProtocolError
from protocol.codec import MAX_DEPTH, MAX_MESSAGE_BYTES, pack, unpack


def nested(depth: int) -> object:
    """`depth` arrays, one inside the other, around an int."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def test_plain_values_round_trip() -> None:
    value = {"a": [1, -2, 2**64 - 1, -(2**63), 1.5, None, True, "ü", b"\x00\xff"], "b": {}}
    assert unpack(pack(value)) == value


def test_nesting_at_the_limit_is_accepted() -> None:
    assert unpack(pack(nested(MAX_DEPTH))) == nested(MAX_DEPTH)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (msgpack.packb(msgpack.ExtType(5, b"abc")), "ext type"),
        (b"\x81\xa4body\xd4\xfb\x00", "negative (reserved) ext type inside a map"),
        (msgpack.packb(msgpack.Timestamp(1_700_000_000, 0)), "Timestamp ext -1 (bypasses ext_hook)"),
        (msgpack.packb({"ts": msgpack.Timestamp(1, 2)}), "Timestamp inside a map"),
        (msgpack.packb([msgpack.Timestamp(2**40, 999)]), "96-bit Timestamp in an array"),
        (msgpack.packb({1: "x"}), "int map key"),
        (msgpack.packb({1.5: "x"}), "float map key"),
        (msgpack.packb({None: "x"}), "nil map key"),
        (b"\x81\x91\x01\x02", "array as map key"),
        (msgpack.packb({b"v": 1}, use_bin_type=True), "bin (bytes) map key"),
        (msgpack.packb({"body": {b"k": 1}}, use_bin_type=True), "bytes key in a nested map"),
        (msgpack.packb(nested(MAX_DEPTH + 1)), "nesting one level too deep"),
        (msgpack.packb({"body": nested(MAX_DEPTH)}), "too deep under a map"),
        (b"\x91" * 100_000 + b"\x01", "nesting deeper than msgpack's own stack"),
        (msgpack.packb({"v": 1}) + b"\x00", "trailing bytes"),
        (msgpack.packb([1, 2]) + msgpack.packb([3]), "two objects in one frame"),
        (b"\xa2\xff\xfe", "invalid UTF-8 in a str"),
        (b"\x81\xa1\xc3\x01", "invalid UTF-8 in a map key"),
        (msgpack.packb({"v": 1, "type": "request"})[:-3], "truncated"),
        (b"", "empty frame"),
        (b"\xc1", "reserved byte 0xc1"),
        (b"\xdd\xff\xff\xff\xff", "array header claiming 4 G items"),
        (b"\xdb\x7f\xff\xff\xff", "str header claiming 2 GiB"),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), "oversized frame"),
    ],
)
def test_unpack_refuses(frame: bytes, why: str) -> None:
    with pytest.raises(ProtocolError):
        unpack(frame)


@given(st.binary(max_size=200))
def test_unpack_of_random_bytes_returns_plain_data_or_raises_protocol_error(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        unpack(frame)


def test_protocol_error_names_what_was_received() -> None:
    with pytest.raises(ProtocolError, match="1048577 bytes"):
        unpack(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ProtocolError, match="ext type 5"):
        unpack(msgpack.packb(msgpack.ExtType(5, b"")))


@pytest.mark.parametrize(
    "value",
    [
        {"x": object()},
        {"x": {1, 2}},
        {"x": 2**64},
        {"x": -(2**63) - 1},
        {"x": "a" * MAX_MESSAGE_BYTES},
    ],
    ids=["object", "set", "int over uint64", "int under int64", "oversized"],
)
def test_pack_refuses(value: object) -> None:
    with pytest.raises(ProtocolError):
        pack(value)
