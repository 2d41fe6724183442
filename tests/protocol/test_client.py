"""The control client never hangs, and a request it gave up on never runs later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from protocol import ControlClient, ControlServer, ErrorCode, RemoteError, TrainerUnavailable
from protocol import message as msg
from tests.protocol.support import CallLog, raw_exchange

TIMEOUT_MS = 200
RETRIES = 2
SLACK_S = 0.5
LATE_WINDOW_S = 0.6  # a few heartbeat lengths of the fast tests


@pytest.fixture
def control(endpoint: Callable[[str], str]) -> str:
    return endpoint("control")


def test_no_server_means_unavailable_within_the_configured_bound(
    control: str, client: Callable[..., ControlClient]
) -> None:
    control_client = client(control, timeout_ms=TIMEOUT_MS, retries=RETRIES)
    began = time.monotonic()
    with pytest.raises(TrainerUnavailable, match="3 attempts"):
        control_client.status()
    elapsed = time.monotonic() - began
    assert elapsed <= TIMEOUT_MS / 1000 * (RETRIES + 1) + SLACK_S


def test_no_server_on_tcp_means_unavailable_within_the_bound(
    free_tcp_endpoint: Callable[[], str], client: Callable[..., ControlClient]
) -> None:
    control_client = client(free_tcp_endpoint(), timeout_ms=TIMEOUT_MS, retries=1)
    began = time.monotonic()
    with pytest.raises(TrainerUnavailable):
        control_client.stop()
    assert time.monotonic() - began <= TIMEOUT_MS / 1000 * 2 + SLACK_S


def test_a_timed_out_request_never_runs_on_a_server_that_starts_later(
    control: str, client: Callable[..., ControlClient], serve: Callable[..., ControlServer]
) -> None:
    control_client = client(control, timeout_ms=TIMEOUT_MS, retries=1)
    with pytest.raises(TrainerUnavailable):
        control_client.request("stop", token="given-up")
    stop = CallLog()
    serve(control, {"stop": stop})
    assert not stop.called.wait(LATE_WINDOW_S), f"a timed-out request ran later: {stop.calls}"
    assert control_client.request("stop", token="fresh") == {"n": 1}
    assert stop.calls == [{"token": "fresh"}]


def test_a_stalled_server_makes_the_client_give_up_and_nothing_runs_twice_or_late(
    control: str, client: Callable[..., ControlClient], serve: Callable[..., ControlServer]
) -> None:
    release = threading.Event()
    # Held until released (a loaded machine can take seconds between the steps below: a shorter
    # hold could end by itself while the stop is still within its deadline, and then it may run).
    slow = CallLog(lambda args: {"released": release.wait(120)})
    stop = CallLog()
    serve(control, {"slow": slow, "stop": stop, "status": CallLog()})
    blocked = client(control, timeout_ms=TIMEOUT_MS, retries=1)
    began = time.monotonic()
    with pytest.raises(TrainerUnavailable):
        blocked.request("slow")  # the handler holds the server thread
    assert time.monotonic() - began <= TIMEOUT_MS / 1000 * 2 + SLACK_S
    queued = client(control, timeout_ms=TIMEOUT_MS, retries=1)
    with pytest.raises(TrainerUnavailable):
        queued.stop()  # reaches the server while it is stuck; it must not run once it is free
    release.set()
    assert client(control, timeout_ms=2000).status() == {"n": 1}
    assert not stop.called.wait(LATE_WINDOW_S), "a stop the client gave up on ran after the stall"
    assert slow.count == 1, "the retried request ran twice"
    assert blocked.status() == {"n": 2}  # the client that gave up works again


def test_the_client_never_gives_up_before_the_deadline_its_request_carries(
    control: str, client: Callable[..., ControlClient]
) -> None:
    # A server that takes every request and never answers. Whatever the attempts' timing, when the
    # client says "unavailable" the server must already refuse the request (its `expires` passed),
    # or a stop the caller was told did not happen could still start.
    deadlines: list[float] = []
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = context.socket(zmq.ROUTER)  # ROUTER: it takes each attempt without answering
    router.bind(control)
    stop = threading.Event()

    def take() -> None:
        while not stop.is_set():
            if router.poll(50, zmq.POLLIN):
                frames = router.recv_multipart()
                deadlines.append(float(msg.Message.from_frames(frames[-1:]).expires or 0))

    taker = threading.Thread(target=take)
    taker.start()
    try:
        for _ in range(5):
            with pytest.raises(TrainerUnavailable):
                client(control, timeout_ms=100, retries=1).request("stop")
            gave_up = time.time()
            assert deadlines and gave_up > deadlines[-1], (gave_up, deadlines[-1])
    finally:
        stop.set()
        taker.join()
        router.close(linger=0)
        context.term()


def test_the_reply_of_a_server_that_exits_at_once_after_replying_is_not_lost(
    control: str, client: Callable[..., ControlClient]
) -> None:
    # A trainer that answers `stop` and exits: its reply is on the wire when the connection drops.
    # With ZMQ_IMMEDIATE the client's libzmq discarded such a reply (about 1 time in 3 here), and
    # the caller heard "unavailable" for a stop that ran.
    def reply_once_and_close(ready: threading.Event) -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        socket = context.socket(zmq.REP)
        socket.bind(control)
        ready.set()
        try:
            if socket.poll(5000, zmq.POLLIN):
                request = msg.Message.from_frames(socket.recv_multipart())
                time.sleep(0.05)  # the stop's work: the client is waiting in poll when the reply comes
                socket.send_multipart(msg.reply(request.id, request.op, "s", {"stopped": True}).to_frames())
        finally:
            socket.close(linger=1000)
            context.term()

    for attempt in range(20):
        ready = threading.Event()
        server = threading.Thread(target=reply_once_and_close, args=(ready,))
        server.start()
        assert ready.wait(5)
        try:
            assert client(control, timeout_ms=3000, retries=0).stop() == {"stopped": True}, attempt
        finally:
            server.join(10)


def test_a_retry_after_a_lost_reply_gets_the_cached_answer(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    request = msg.request("stop", expires=time.time() + 5)
    first = raw_exchange(control, request.to_frames())
    retry = raw_exchange(control, request.to_frames())
    assert first == retry and first.ok
    assert stop.count == 1


def test_a_request_past_its_deadline_is_expired_not_run(
    control: str, serve: Callable[..., ControlServer]
) -> None:
    stop = CallLog()
    serve(control, {"stop": stop})
    answer = raw_exchange(control, msg.request("stop", expires=time.time() - 0.01).to_frames())
    assert answer.error is not None and answer.error["code"] == ErrorCode.EXPIRED
    assert stop.count == 0


def test_an_expired_reply_means_unavailable_and_is_not_retried(
    control: str, client: Callable[..., ControlClient]
) -> None:
    # A server that reaches a request just after its deadline answers `expired` while the client is
    # still waiting: nothing ran, so the caller must see the same outcome as no reply at all.
    received: list[msg.Message] = []
    context = zmq.Context.instance()
    late_server = context.socket(zmq.REP)
    late_server.linger = 0
    late_server.bind(control)

    def answer_expired() -> None:
        while late_server.poll(2000, zmq.POLLIN):
            request = msg.Message.from_frames(late_server.recv_multipart())
            received.append(request)
            late = msg.error_reply(request.id, request.op, "s", ErrorCode.EXPIRED, "arrived late")
            late_server.send_multipart(late.to_frames())

    thread = threading.Thread(target=answer_expired, daemon=True)
    thread.start()
    try:
        with pytest.raises(TrainerUnavailable):
            client(control, timeout_ms=TIMEOUT_MS, retries=RETRIES).history(since=1)
    finally:
        thread.join(5)
        late_server.close()
    assert [request.op for request in received] == ["history"], "an expired request was retried"


def test_convenience_methods_send_their_op_and_args(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def recorder(op: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def handler(args: dict[str, Any]) -> dict[str, Any]:
            seen.append((op, args))
            return {"op": op}

        return handler

    ops = ["describe", "status", "start", "stop", "pause", "resume", "get_params", "set_params"]
    ops += ["history", "checkpoint", "evaluate"]
    serve(control, {op: recorder(op) for op in ops}, session="abc")
    control_client = client(control)
    control_client.describe()
    control_client.status()
    control_client.start({"lr": "0.1"})
    control_client.start()
    control_client.stop()
    control_client.pause()
    control_client.resume()
    control_client.get_params()
    control_client.set_params({"lr": 0.5})
    control_client.history(since=3)
    control_client.history(since=3, limit=10)
    control_client.checkpoint()
    assert control_client.evaluate() == {"op": "evaluate"}
    assert control_client.last_session == "abc"
    assert seen == [
        ("describe", {}),
        ("status", {}),
        ("start", {"params": {"lr": "0.1"}}),
        ("start", {}),
        ("stop", {}),
        ("pause", {}),
        ("resume", {}),
        ("get_params", {}),
        ("set_params", {"params": {"lr": 0.5}}),
        ("history", {"since": 3}),
        ("history", {"since": 3, "limit": 10}),
        ("checkpoint", {}),
        ("evaluate", {}),
    ]


def test_remote_error_carries_the_reply_error(
    control: str, serve: Callable[..., ControlServer], client: Callable[..., ControlClient]
) -> None:
    serve(control, {})
    with pytest.raises(RemoteError) as raised:
        client(control).status()
    assert raised.value.code == ErrorCode.UNKNOWN_OP
    assert str(raised.value).startswith("unknown_op: ")


def test_close_returns_even_with_a_socket_of_its_context_left_open(control: str) -> None:
    # A Ctrl-C between making a socket and keeping hold of it (inside get_monitor_socket, say) left
    # one open: term() then waited for it forever and `trainctl watch` never exited.
    control_client = ControlClient(control, timeout_ms=200, retries=0)
    with pytest.raises(TrainerUnavailable):
        control_client.status()
    stray = control_client._context.socket(zmq.PAIR)  # noqa: SLF001 (held, as a half-made one is)
    stray.connect("inproc://stray")
    closed = threading.Event()
    threading.Thread(target=lambda: (control_client.close(), closed.set()), daemon=True).start()
    assert closed.wait(10), "close() hung on a stray socket"
    assert stray.closed
