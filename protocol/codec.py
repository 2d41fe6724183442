"""The only place where Python values become bytes and back, with every size and depth limit.

msgpack is decoded one frame at a time with `unpackb`, so its own length limits scale with the frame;
ext types are refused (the Timestamp ext bypasses `ext_hook`, so decoded values are checked afterwards),
map keys must be strings, and nesting deeper than `MAX_DEPTH` is refused.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.errors import ProtocolError

# The socket-level limit (zmq MAXMSGSIZE): a bigger frame disconnects that peer, nothing else.
MAX_MESSAGE_BYTES = 1 << 20
MAX_DEPTH = 32
# The integers the contract carries: msgpack stops at 64 bits, and a signed reader (most languages'
# int64) misreads an unsigned value above INT_MAX, so a parameter's ints stay within these.
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
_SCALARS = (str, int, float, bool, bytes, type(None))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack ext type {code} is not allowed")


def _check_plain(value: Any) -> None:
    """Refuse anything but nil, bool, int, float, str, bin, arrays and string-keyed maps, or deep nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if depth > MAX_DEPTH:
            raise ProtocolError(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, dict):
            # strict_map_key still lets bin keys through; the contract allows only str keys.
            if not all(isinstance(key, str) for key in item):
                raise ProtocolError("map keys must be strings")
            stack.extend((child, depth + 1) for child in item.values())
        else:
            raise ProtocolError(f"value of type {type(item).__name__} is not allowed")


def pack(value: Any) -> bytes:
    """Encode plain data; raises `ProtocolError` for anything msgpack cannot or should not carry."""
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode {type(value).__name__}: {exc}") from exc
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"encoded message is {len(data)} bytes, over {MAX_MESSAGE_BYTES}")
    return data


def unpack(data: bytes, *, check: bool = True) -> Any:
    """Decode one frame of untrusted bytes, or raise `ProtocolError` naming what was received.

    `check=False` skips the value checks (types, depth) after decoding: only for reading the id of
    a request that is refused anyway, so that its error reply can echo it.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"frame of {len(data)} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            use_list=True,
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable frame of {len(data)} bytes ({type(exc).__name__}: {exc})") from exc
    if check:
        _check_plain(value)
    return value
