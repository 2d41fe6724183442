"""The control client: Lazy Pirate over REQ, so a caller never hangs and never acts late.

Each attempt waits for a peer that completed the handshake (the socket monitor's
HANDSHAKE_SUCCEEDED) before queueing the request, then polls for the reply with a timeout. On a
timeout the socket is closed with linger 0 and reopened, so nothing queued can reach a trainer that
starts later; the request also carries an `expires` deadline that the server honours. Retries
reuse the request id, so a retried `stop` whose first reply was lost returns the cached reply
instead of acting twice.

Not ZMQ_IMMEDIATE: with it, libzmq discards a reply that has arrived but is not yet read when the
peer disconnects (the pipe is terminated without delay), so the reply to a `stop` from a trainer
that then exits at once was lost, and the caller heard "unavailable" for a stop that ran.

An `expired` reply means the server reached the request only after the caller's budget ran out:
nothing ran, exactly as if no reply had come, so the caller gets the same `TrainerUnavailable`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from protocol import message as msg
from protocol.errors import ErrorCode, ProtocolError, RemoteError, TrainerUnavailable
from protocol.security import ClientCurve

REQUEST_TIMEOUT_MS = 1500
REQUEST_RETRIES = 2
EXPIRY_MARGIN_S = 0.05  # the client gives up this long after the request's own deadline
HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "it refused this client's CurveZMQ key (use the keys of its "
    "connection file, or list this client's public key with --curve-clients)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "its security differs from this client's (CurveZMQ on one side "
    "only: --insecure-no-curve on one of them?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CurveZMQ handshake failed (a wrong server key, or "
    "CurveZMQ on one side only)",
}
HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# What the monitor reports: the handshake's outcome, and a lost connection (no peer until the next
# HANDSHAKE_SUCCEEDED).
MONITOR_EVENTS = HANDSHAKE_EVENTS | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class ControlClient:
    """Sends control requests to one trainer. Not thread-safe: one client per thread."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout_ms: int = REQUEST_TIMEOUT_MS,
        retries: int = REQUEST_RETRIES,
        curve: ClientCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.last_session: str | None = None
        self._curve = curve
        self._own_context = context is None
        self._context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self._socket: zmq.Socket[bytes] | None = None
        self._monitor: zmq.Socket[bytes] | None = None  # the REQ socket's connection events
        self._peer = False  # whether the REQ socket has a peer that completed the handshake
        self._hint: str | None = None  # a failed handshake seen while waiting, for the timeout

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Send `op` with `args`; the reply's body, or RemoteError / TrainerUnavailable."""
        budget_s = self.timeout_ms * (self.retries + 1) / 1000
        # The same instant on both clocks: the server refuses the request after `expires`, and the
        # client gives up no earlier than `expired_at`, so a request it gave up on never starts.
        expired_at = time.monotonic() + budget_s
        request = msg.request(op, args, expires=time.time() + budget_s)
        frames = request.to_frames()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            answer = self._attempt(frames, request.id, not_before=expired_at if last else None)
            if answer is None:
                continue
            if (answer.error or {}).get("code") == ErrorCode.EXPIRED:
                break  # the whole budget is spent: a retry would expire too
            return self._result(answer)
        hint, self._hint = self._hint, None
        raise TrainerUnavailable(
            f"trainer unavailable: no reply from {self.endpoint} to {op!r} "
            f"within {budget_s:.1f} s ({self.retries + 1} attempts)" + (f"; {hint}" if hint else "")
        )

    def _attempt(
        self, frames: list[bytes], request_id: str | None, not_before: float | None = None
    ) -> msg.Message | None:
        """One send and wait; ``not_before``: the last attempt waits at least until then (the
        request's deadline), since attempts that each ended a little early must not add up to
        giving up while the server could still start the request (seen on a loaded machine)."""
        socket = self._connected_socket()
        deadline = time.monotonic() + self.timeout_ms / 1000
        if not self._wait_connected(socket, deadline):
            self._reset()  # nothing connected: the request was never queued
            return None
        socket.send_multipart(frames, zmq.NOBLOCK)
        if not_before is not None:
            deadline = max(deadline, not_before + EXPIRY_MARGIN_S)
        while (left_ms := math.ceil((deadline - time.monotonic()) * 1000)) > 0:
            if not socket.poll(left_ms, zmq.POLLIN):
                break
            try:
                answer = msg.Message.from_frames(socket.recv_multipart())
            except ProtocolError:
                break  # a broken reply counts as no reply; the retry gets the cached one
            if answer.id == request_id or answer.id is None:
                return answer
        self._reset()
        return None

    def _wait_connected(self, socket: zmq.Socket[bytes], deadline: float) -> bool:
        """Until `deadline`, wait for a peer that completed the handshake. A handshake the trainer
        refused (a key it does not admit, CurveZMQ on one side only) ends the request at once with
        the reason: no retry can fix it, and the caller should not wait out its whole budget."""
        monitor = self._monitor
        assert monitor is not None
        while monitor.poll(0, zmq.POLLIN):  # what happened since the last request
            self._on_monitor_event(recv_monitor_message(monitor)["event"])
        while not self._peer:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not monitor.poll(left_ms, zmq.POLLIN):
                return False
            self._on_monitor_event(recv_monitor_message(monitor)["event"])
        return True

    def _on_monitor_event(self, event: int) -> None:
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._peer = True
        elif event == zmq.EVENT_DISCONNECTED:
            self._peer = False
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._hint = HANDSHAKE_FAILURES[event]  # also what a peer dying mid-handshake looks like
        elif event in HANDSHAKE_FAILURES:
            self._reset()
            raise TrainerUnavailable(f"trainer unavailable: {HANDSHAKE_FAILURES[event]} ({self.endpoint})")

    def _result(self, answer: msg.Message) -> dict[str, Any]:
        self.last_session = answer.session
        if answer.ok:
            return answer.body
        error = answer.error or {}
        raise RemoteError(
            str(error.get("code", "internal")),
            str(error.get("message", "no message")),
            error.get("details") if isinstance(error.get("details"), dict) else None,
        )

    def _connected_socket(self) -> zmq.Socket[bytes]:
        if self._socket is None:
            socket = self._context.socket(zmq.REQ)
            self._socket = socket
            try:
                socket.linger = 0
                if self._curve is not None:
                    self._curve.apply(socket)
                self._monitor = socket.get_monitor_socket(MONITOR_EVENTS)
                socket.connect(self.endpoint)
            except BaseException:
                self._reset()  # an open socket would make close()'s term() wait forever
                raise
        return self._socket

    def _reset(self) -> None:
        self._peer = False
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def close(self) -> None:
        self._reset()
        if self._own_context:
            # destroy, not term: it closes any socket of ours still open first (one a Ctrl-C left
            # half-made, say), where term() would wait for it forever and the process never exit.
            self._context.destroy(linger=0)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # One method per operation, all of the same shape (see PROTOCOL.md for their bodies).
    def describe(self) -> dict[str, Any]:
        return self.request("describe")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def start(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("start", **({"params": params} if params else {}))

    def stop(self) -> dict[str, Any]:
        return self.request("stop")

    def pause(self) -> dict[str, Any]:
        return self.request("pause")

    def resume(self) -> dict[str, Any]:
        return self.request("resume")

    def get_params(self) -> dict[str, Any]:
        return self.request("get_params")

    def set_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.request("set_params", params=params)

    def history(self, since: int, limit: int | None = None) -> dict[str, Any]:
        return self.request("history", since=since, **({"limit": limit} if limit is not None else {}))

    def checkpoint(self) -> dict[str, Any]:
        return self.request("checkpoint")

    def evaluate(self) -> dict[str, Any]:
        return self.request("evaluate")
