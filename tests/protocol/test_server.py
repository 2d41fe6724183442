"""The control server answers every request exactly once and keeps serving whatever a handler does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from protocol import (
    ControlClient,
    ControlServer,
    ErrorCode,
    ParamSpec,
    RemoteError,
    RequestError,
    TrainerUnavailable,
    coerce_params,
)
from protocol import message as msg
from protocol.codec import MAX_MESSAGE_BYTES
from protocol.reply_cache import ReplyCache
from tests.protocol.support import CallLog, raw_exchange, wait_until

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


def _raw_request(**fields: Any) -> list[bytes]:
    base: dict[str, Any] = {
        "v": 1,
        "type": "request",
        "id": "req-1",
        "op": "status",
        "body": {},
        "expires": time.time() + 30,
    }
    base.update(fields)
    return [msgpack.packb({key: value for key, value in base.items() if value is not ...})]


def test_a_null_ts_is_absent_and_the_request_is_served(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    status = CallLog()
    server = serve(control, {"status": status})
    answer = raw_exchange(control, _raw_request(ts=None))
    assert answer.ok and answer.id == "req-1" and status.count == 1
    assert server.alive


def test_a_bad_request_with_a_string_id_echoes_the_id(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    status = CallLog()
    serve(control, {"status": status})
    for frames in (_raw_request(ts="now"), _raw_request(body=[1]), _raw_request(op=7), _raw_request(v=...)):
        answer = raw_exchange(control, frames)
        assert answer.error is not None and answer.error["code"] == ErrorCode.BAD_REQUEST
        assert answer.id == "req-1", answer.error
    assert status.count == 0


def test_a_request_without_expires_is_refused_and_not_run(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    answer = raw_exchange(control, _raw_request(op="stop", expires=...))
    assert answer.error is not None and answer.error["code"] == ErrorCode.BAD_REQUEST
    assert "'expires' is required" in answer.error["message"]
    assert stop.count == 0


@pytest.mark.parametrize(
    "wrong",
    [{"expires": ...}, {"v": 2}, {"type": "reply"}, {"expires": 1.0}],
    ids=["no expires", "version", "type", "expired"],
)
def test_a_refusal_before_the_handler_is_not_cached_so_a_corrected_retry_runs(
    control: str, serve: Callable[..., ControlServer], wrong: dict[str, Any]
) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    refused = raw_exchange(control, _raw_request(id="same-id", op="stop", **wrong))
    assert refused.error is not None and stop.count == 0
    retried = raw_exchange(control, _raw_request(id="same-id", op="stop"))
    assert retried.ok and retried.id == "same-id" and stop.count == 1
    assert raw_exchange(control, _raw_request(id="same-id", op="stop")) == retried  # now it is kept
    assert stop.count == 1


def test_the_library_always_sends_expires() -> None:
    assert msg.request("status").expires is not None


def test_a_reused_id_for_another_op_is_refused_not_answered_from_the_cache(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    stop, start = CallLog(), CallLog()
    serve(control, {"stop": stop, "start": start})
    first = raw_exchange(control, _raw_request(op="stop"))
    reused = raw_exchange(control, _raw_request(op="start"))
    retried = raw_exchange(control, _raw_request(op="stop"))
    assert first.ok and retried == first
    assert reused.op == "start" and reused.error is not None
    assert reused.error["code"] == ErrorCode.BAD_REQUEST and "'stop'" in reused.error["message"]
    assert (stop.count, start.count) == (1, 0)


def test_any_exception_while_answering_becomes_an_internal_reply(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    class BrokenCache(ReplyCache):
        def get(self, request_id: str) -> tuple[str | None, list[bytes] | None]:
            if request_id == "req-1":
                raise RuntimeError("the cache broke")
            return super().get(request_id)

    server = serve(control, {"status": CallLog()}, reply_cache=BrokenCache())
    answer = raw_exchange(control, _raw_request())
    assert answer.error is not None and answer.error["code"] == ErrorCode.INTERNAL
    assert "the cache broke" in answer.error["message"] and answer.id == "req-1"
    assert client(control).status() == {"n": 1}
    assert server.alive


class Fault(BaseException):
    """Not an Exception: what no handler guard catches (like SystemExit from a handler)."""


def test_a_dead_serving_thread_is_reported_to_the_owner(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    deaths: list[tuple[str, BaseException | None]] = []
    died = threading.Event()

    def on_death(name: str, exc: BaseException | None) -> None:
        deaths.append((name, exc))
        died.set()

    def fault(args: dict[str, Any]) -> dict[str, Any]:
        raise Fault("injected")

    server = serve(control, {"fault": fault, "status": CallLog()}, on_thread_death=on_death)
    with pytest.raises(TrainerUnavailable):
        client(control, timeout_ms=300, retries=0).request("fault")
    assert died.wait(10)
    [(name, exc)] = deaths
    assert name == "control-server" and isinstance(exc, Fault)
    assert not server.alive


def test_closing_the_server_is_not_a_death(control: str, endpoint: Callable[[str], str]) -> None:
    deaths: list[str] = []
    server = ControlServer(
        control, {}, session=SESSION, on_thread_death=lambda name, exc: deaths.append(name)
    )
    server.start()
    server.close()
    assert deaths == [] and not server.alive


def test_a_huge_parameter_name_is_a_short_clear_refusal(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    specs = [ParamSpec("learning_rate", "float", 0.1, aliases=("lr",))]
    serve(control, {"set_params": lambda args: coerce_params(specs, args["params"])})
    with pytest.raises(RemoteError) as raised:
        client(control).set_params({"x" * 500_000: 1})
    assert raised.value.code == ErrorCode.INVALID_PARAMS
    assert raised.value.message.startswith("unknown parameter 'xxx") and len(raised.value.message) < 200


def test_error_replies_stay_short_and_the_reply_cache_stays_bounded(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    """Once, 1,100 requests naming 4,000 unknown parameters each grew the trainer by 944 MB for good."""
    specs = [ParamSpec("learning_rate", "float", 0.1, aliases=("lr",))]
    cache = ReplyCache(max_entries=1024, max_bytes=256 * 1024)
    serve(control, {"set_params": lambda args: coerce_params(specs, args["params"])}, reply_cache=cache)
    unknown = {f"unknown_parameter_{index:05d}": 1 for index in range(4000)}
    for index in range(40):
        answer = raw_exchange(
            control, _raw_request(id=f"r{index}", op="set_params", body={"params": unknown})
        )
        assert answer.error is not None and answer.error["code"] == ErrorCode.INVALID_PARAMS
        assert len(answer.to_frames()[0]) < 4096
        assert "and 3995 more (4000 refused in all)" in answer.error["message"]
    assert len(cache) == 40 and cache.size_bytes < 40 * 4096


def test_a_failing_loop_iteration_is_logged_and_serving_goes_on(
    control: str,
    serve: Callable[..., ControlServer],
    client: Callable[..., ControlClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deaths: list[str] = []
    server = serve(control, {"status": CallLog()}, on_thread_death=lambda name, exc: deaths.append(name))
    serve_one = server._serve_one
    failures = []

    def fails_twice(socket: Any) -> None:
        if len(failures) < 2:
            failures.append(1)
            raise RuntimeError("the loop broke")
        serve_one(socket)

    monkeypatch.setattr(server, "_serve_one", fails_twice)
    wait_until(lambda: len(failures) == 2, what="two failed iterations")
    assert client(control).status() == {"n": 1}
    assert server.alive and deaths == []


def test_close_never_pulls_the_socket_from_under_a_busy_serving_thread(
    control: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import protocol.server

    monkeypatch.setattr(protocol.server, "CLOSE_TIMEOUT_S", 0.2)
    entered, release = threading.Event(), threading.Event()

    def slow(args: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(10)
        return {"done": True}

    server = ControlServer(control, {"slow": slow}, session=SESSION)
    server.start()
    client = ControlClient(control, timeout_ms=5000, retries=0)
    replies: list[dict[str, Any]] = []
    asking = threading.Thread(target=lambda: replies.append(client.request("slow")))
    asking.start()
    try:
        assert entered.wait(5)
        server.close()  # the thread is inside the handler: it must keep its socket
        release.set()
        asking.join(10)
        assert replies == [{"done": True}]  # the in-flight request still got its reply
        wait_until(lambda: not server.alive, what="the serving thread to end")
        assert server._server is None  # and it closed its socket itself as it ended
    finally:
        release.set()
        client.close()
        server.close()
