"""The control server: a REP socket served from its own thread, one reply for every request.

Frames that cannot be decoded, unknown operations, bad arguments and handler exceptions all get a
typed error reply, because REP must always answer and the trainer must keep serving. A request id
seen before returns the cached reply, so clients may retry safely. Handlers run in this thread and
must be quick: they hand work to the training loop and read status from its snapshot.

The serving loop logs and survives anything an iteration raises; if the thread ends anyway (a
persistent socket error, or a `BaseException` from a handler), the owner's `on_thread_death` is
called, so that a process which can no longer be steered does not go on looking alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from protocol import codec
from protocol import message as msg
from protocol.errors import ErrorCode, ProtocolError, RequestError
from protocol.reply_cache import ReplyCache
from protocol.security import ServerCurve
from protocol.serving import CLOSE_TIMEOUT_S, ServerSocket, SocketHandover, ThreadDeath, guarded_thread

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
POLL_INTERVAL_MS = 100
UNCACHED_OPS = frozenset({"history", "status", "describe", "get_params"})
MAX_ERROR_CHARS = 1000
# An error reply is for a person; bigger ones lose their details (a reply of 1 MiB was once cached).
MAX_ERROR_REPLY_BYTES = 16 * 1024
MAX_CONSECUTIVE_FAILURES = 50


class ControlServer:
    """Serves `handlers` (op name -> function of the request body) on a REP socket."""

    def __init__(
        self,
        endpoint: str,
        handlers: Mapping[str, Handler],
        *,
        session: str,
        curve: ServerCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        allow_remote: bool = False,
        on_thread_death: ThreadDeath | None = None,
        reply_cache: ReplyCache | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self._handlers = dict(handlers)
        self._curve = curve
        self._context = context
        self._allow_remote = allow_remote
        self._on_thread_death = on_thread_death
        self._replies = ReplyCache() if reply_cache is None else reply_cache
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ServerSocket | None = None
        self._handover = SocketHandover("control-server")

    def start(self) -> None:
        """Bind now (raises EndpointInUse or ValueError) and serve from a daemon thread."""
        self._server = ServerSocket(
            zmq.REP,
            self.endpoint,
            curve=self._curve,
            context=self._context,
            allow_remote=self._allow_remote,
        )
        target = guarded_thread("control-server", self._serve, self._closing, self._on_thread_death)
        self._thread = threading.Thread(target=target, name="control-server", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the serving thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self._closing.set()
        self._handover.close(self._thread, self._close_socket, CLOSE_TIMEOUT_S)

    def _close_socket(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def _serve(self) -> None:
        try:
            self._serve_loop()
        finally:
            self._handover.thread_ended(self._close_socket)

    def _serve_loop(self) -> None:
        assert self._server is not None
        socket = self._server.socket
        failures = 0
        while not self._closing.is_set():
            try:
                self._serve_one(socket)
                failures = 0
            except zmq.ZMQError as exc:
                if self._closing.is_set():
                    return
                if exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
                    raise  # the socket is gone: nothing more can be served
                failures = self._count_failure(failures)
            except Exception:
                failures = self._count_failure(failures)

    def _count_failure(self, failures: int) -> int:
        logger.exception("the control server loop failed; serving on")
        if failures + 1 >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError(f"the control server loop failed {failures + 1} times in a row")
        return failures + 1

    def _serve_one(self, socket: zmq.Socket[bytes]) -> None:
        if not socket.poll(POLL_INTERVAL_MS, zmq.POLLIN):
            return
        try:
            # poll() can report POLLIN for a frame REP then drops; never block here.
            frames = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        socket.send_multipart(self.answer(frames))

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The reply frames for one request's frames; never raises an `Exception`."""
        try:
            return self._answer(frames)
        except Exception as exc:
            logger.exception("answering a request failed")
            try:
                return self._error(
                    _salvage_id(frames), None, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"
                )
            except Exception:
                text = "the reply could not be built"
                return msg.error_reply(None, None, self.session, ErrorCode.INTERNAL, text).to_frames()

    def _answer(self, frames: list[bytes]) -> list[bytes]:
        try:
            if len(frames) != 1:  # from_frames would take two frames as a feed message
                raise ProtocolError(f"a control request is one frame, received {len(frames)}")
            request = msg.Message.from_frames(frames)
        except ProtocolError as exc:
            return self._error(_salvage_id(frames), None, ErrorCode.BAD_REQUEST, str(exc))
        rid, op = request.id, request.op
        if rid is not None and op is not None:
            cached_op, cached = self._replies.get(rid)
            if cached is not None and cached_op == op:
                return cached
            if cached is not None:
                text = f"request id {rid!r} was used for op {cached_op!r:.40}; a new request needs a new id"
                return self._error(rid, op, ErrorCode.BAD_REQUEST, text)
        refusal = self._refusal(request)
        if refusal is not None:
            # Not kept: nothing ran, and a corrected retry under the same id must run.
            return refusal
        assert rid is not None and op is not None  # _refusal refuses a request without them
        try:
            frames_out = self._run(request, self._handlers[op])
        except ProtocolError as exc:  # the reply cannot be encoded: too big, or odd details
            logger.error("reply to %.40r cannot be encoded: %s", op, exc)
            text = f"the reply could not be encoded: {exc}"
            frames_out = self._error(rid, None, ErrorCode.INTERNAL, text)
        # Only replies of ops that change state are kept: `history` pages are the big replies
        # and only read.
        if op not in UNCACHED_OPS:
            self._replies.put(rid, op, frames_out)
        return frames_out

    def _refusal(self, request: msg.Message) -> list[bytes] | None:
        """The error reply for a request no handler may run (its envelope, its deadline, its op)."""
        rid, op = request.id, request.op
        if request.v not in msg.SUPPORTED_VERSIONS:
            supported = list(msg.SUPPORTED_VERSIONS)
            text = f"protocol version {request.v} is not supported; supported: {supported}"
            return self._error(rid, op, ErrorCode.UNSUPPORTED_VERSION, text, {"supported": supported})
        if request.type != msg.REQUEST or not op or rid is None:
            text = f"expected a request with an id and an op, received type {request.type!r:.40}"
            return self._error(rid, op, ErrorCode.BAD_REQUEST, text)
        if request.expires is None:
            text = "field 'expires' is required: a request without a deadline could run late"
            return self._error(rid, op, ErrorCode.BAD_REQUEST, text)
        if time.time() > request.expires:
            return self._error(rid, op, ErrorCode.EXPIRED, "request arrived after its deadline")
        if op not in self._handlers:
            ops = sorted(self._handlers)
            return self._error(rid, op, ErrorCode.UNKNOWN_OP, f"unknown op {op!r:.40}", {"ops": ops})
        return None

    def _run(self, request: msg.Message, handler: Handler) -> list[bytes]:
        rid, op = request.id, request.op
        try:
            result = handler(request.body)
            if not isinstance(result, dict):
                raise TypeError(f"handler for {op!r} returned {type(result).__name__}, not a dict")
            return msg.reply(rid, op, self.session, result).to_frames()
        except RequestError as exc:
            return self._error(rid, op, exc.code, exc.message, exc.details)
        except Exception as exc:
            logger.exception("control handler %r failed", op)
            return self._error(rid, op, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _error(
        self,
        rid: str | None,
        op: str | None,
        code: str,
        text: str,
        details: dict[str, Any] | None = None,
    ) -> list[bytes]:
        op = op if op is None or len(op) <= msg.MAX_ID_CHARS else None  # echoing a huge op could overflow
        text = _shorten(text, MAX_ERROR_CHARS)
        frames = msg.error_reply(rid, op, self.session, code, text, details).to_frames()
        if details and len(frames[0]) > MAX_ERROR_REPLY_BYTES:
            text = _shorten(f"{text} (details of {len(frames[0])} bytes left out)", MAX_ERROR_CHARS)
            frames = msg.error_reply(rid, op, self.session, code, text).to_frames()
        return frames


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def _salvage_id(frames: list[bytes]) -> str | None:
    """The id of a refused request, if its frame decodes as a map with a usable string id."""
    if len(frames) != 1:
        return None
    try:
        value = codec.unpack(frames[0], check=False)  # refused already: only the id is read
    except ProtocolError:
        return None
    rid = value.get("id") if isinstance(value, dict) else None
    return rid if isinstance(rid, str) and len(rid) <= msg.MAX_ID_CHARS else None
