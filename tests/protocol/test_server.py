"""The control server answers every request exactly once and keeps serving whatever a handler does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from protocol import ControlClient, ControlServer, ErrorCode, RemoteError, RequestError
from protocol import message as msg
from protocol.codec import MAX_MESSAGE_BYTES
from tests.protocol.support import CallLog, raw_exchange

SESSION = "test-session"


@pytest.fixture
def control(endpoint: Callable[[str], str]) -> str:
    return endpoint("control")


def boom(args: dict[str, Any]) -> dict[str, Any]:
    raise ZeroDivisionError("the handler broke")


def test_handler_exception_becomes_internal_error_and_serving_continues(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    status = CallLog()
    serve(control, {"boom": boom, "status": status})
    control_client = client(control)
    with pytest.raises(RemoteError) as raised:
        control_client.request("boom")
    assert raised.value.code == ErrorCode.INTERNAL
    assert "ZeroDivisionError" in raised.value.message
    assert control_client.status() == {"n": 1}
    assert control_client.last_session == SESSION


def test_request_error_is_passed_through_with_code_and_details(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    def refuse(args: dict[str, Any]) -> dict[str, Any]:
        raise RequestError(ErrorCode.INVALID_STATE, "not while paused", {"state": "paused"})

    serve(control, {"start": refuse})
    with pytest.raises(RemoteError) as raised:
        client(control).start()
    assert (raised.value.code, raised.value.message, raised.value.details) == (
        ErrorCode.INVALID_STATE,
        "not while paused",
        {"state": "paused"},
    )


@pytest.mark.parametrize(
    "bad_handler",
    [
        lambda args: ["not", "a", "dict"],
        lambda args: {"big": "x" * MAX_MESSAGE_BYTES},
        lambda args: {"unencodable": {1, 2}},
    ],
    ids=["returns a list", "result over MAX_MESSAGE_BYTES", "unencodable result"],
)
def test_a_result_that_cannot_be_sent_is_an_internal_error(
    bad_handler: Callable[[dict[str, Any]], Any],
    control: str,
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
) -> None:
    serve(control, {"bad": bad_handler, "status": CallLog()})
    control_client = client(control, timeout_ms=2000, retries=0)
    with pytest.raises(RemoteError) as raised:
        control_client.request("bad")
    assert raised.value.code == ErrorCode.INTERNAL
    assert control_client.status() == {"n": 1}


def test_an_error_reply_that_cannot_be_encoded_still_gets_an_answer(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    def refuse_oddly(args: dict[str, Any]) -> dict[str, Any]:
        raise RequestError(ErrorCode.INVALID_PARAMS, "bad", {"values": {1, 2}})

    serve(control, {"odd": refuse_oddly, "status": CallLog()})
    control_client = client(control, timeout_ms=2000, retries=0)
    with pytest.raises(RemoteError) as raised:
        control_client.request("odd")
    assert raised.value.code in ErrorCode.ALL
    assert control_client.status() == {"n": 1}


def test_an_op_so_long_that_the_echoing_reply_is_oversized_still_gets_an_answer(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    serve(control, {"status": CallLog()})
    overhead = len(msg.request("").to_frames()[0])
    request = msg.request("x" * (MAX_MESSAGE_BYTES - overhead - 4))
    assert len(request.to_frames()[0]) == MAX_MESSAGE_BYTES
    answer = raw_exchange(control, request.to_frames())
    assert answer.ok is False
    assert answer.error is not None and answer.error["code"] in ErrorCode.ALL
    assert client(control).status() == {"n": 1}


def test_unsupported_version_lists_the_supported_ones(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    status = CallLog()
    serve(control, {"status": status})
    request = msg.request("status")
    request.v = 2
    answer = raw_exchange(control, request.to_frames())
    assert answer.id == request.id
    assert answer.error is not None
    assert answer.error["code"] == ErrorCode.UNSUPPORTED_VERSION
    assert answer.error["details"] == {"supported": list(msg.SUPPORTED_VERSIONS)}
    assert "supported: [1]" in answer.error["message"]
    assert status.count == 0


def test_duplicate_request_id_returns_the_cached_reply_without_rerunning(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    frames = msg.request("stop").to_frames()
    first = raw_exchange(control, frames)
    second = raw_exchange(control, frames)
    assert first.ok and second.ok
    assert first == second
    assert stop.count == 1


def test_an_expired_request_is_refused_and_not_run(control: str, serve: Callable[..., ControlServer]) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    request = msg.request("stop", expires=time.time() - 1)
    answer = raw_exchange(control, request.to_frames())
    assert answer.error is not None and answer.error["code"] == ErrorCode.EXPIRED
    assert stop.count == 0


def test_unknown_op_lists_the_known_ones(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    serve(control, {"status": CallLog(), "stop": CallLog()})
    with pytest.raises(RemoteError) as raised:
        client(control).request("stpo")
    assert raised.value.code == ErrorCode.UNKNOWN_OP
    assert raised.value.details == {"ops": ["status", "stop"]}


def test_reply_to_a_request_is_a_reply_echoing_id_op_and_session(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    serve(control, {"status": lambda args: {"echo": args}})
    request = msg.request("status", {"a": [1, 2.5, "x", None]})
    answer = raw_exchange(control, request.to_frames())
    assert (answer.type, answer.id, answer.op, answer.ok, answer.session) == (
        msg.REPLY,
        request.id,
        "status",
        True,
        SESSION,
    )
    assert answer.body == {"echo": {"a": [1, 2.5, "x", None]}}


def test_a_two_frame_control_request_is_refused(control: str, serve: Callable[..., ControlServer]) -> None:
    """The wire spec says a control message is one frame; a feed-shaped request must not run."""
    status = CallLog()
    serve(control, {"status": status})
    answer = raw_exchange(control, [b"status", msg.request("status").to_frames()[0]])
    assert answer.error is not None and answer.error["code"] == ErrorCode.BAD_REQUEST
    assert status.count == 0


def test_a_non_request_message_is_bad_request(control: str, serve: Callable[..., ControlServer]) -> None:
    serve(control, {"status": CallLog()})
    reply_frames = msg.reply("abc", "status", "s", {}).to_frames()
    answer = raw_exchange(control, reply_frames)
    assert answer.error is not None and answer.error["code"] == ErrorCode.BAD_REQUEST
    answer = raw_exchange(control, [msgpack.packb({"v": 1, "type": "request", "op": "status"})])
    assert answer.error is not None and answer.error["code"] == ErrorCode.BAD_REQUEST
