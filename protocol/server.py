"""The control server: a REP socket served from its own thread, one reply for every request.

Frames that cannot be decoded, unknown operations, bad arguments and handler exceptions all get a
typed error reply, because REP must always answer and the trainer must keep serving. A request id
seen before returns the cached reply, so clients may retry safely. Handlers run in this thread and
must be quick: they hand work to the training loop and read status from its snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from protocol import message as msg
from protocol.errors import ErrorCode, ProtocolError, RequestError
from protocol.security import ServerCurve
from protocol.serving import ServerSocket

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
POLL_INTERVAL_MS = 100
REPLY_CACHE_SIZE = 1024
UNCACHED_OPS = frozenset({"history", "status", "describe", "get_params"})


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
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self._handlers = dict(handlers)
        self._curve = curve
        self._context = context
        self._allow_remote = allow_remote
        self._replies: OrderedDict[str, list[bytes]] = OrderedDict()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ServerSocket | None = None

    def start(self) -> None:
        """Bind now (raises EndpointInUse or ValueError) and serve from a daemon thread."""
        self._server = ServerSocket(
            zmq.REP,
            self.endpoint,
            curve=self._curve,
            context=self._context,
            allow_remote=self._allow_remote,
        )
        self._thread = threading.Thread(target=self._serve, name="control-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
            self._server = None

    def _serve(self) -> None:
        assert self._server is not None
        socket = self._server.socket
        while not self._closing.is_set():
            if not socket.poll(POLL_INTERVAL_MS, zmq.POLLIN):
                continue
            try:
                # poll() can report POLLIN for a frame REP then drops; never block here.
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError:
                if self._closing.is_set():
                    return
                raise
            socket.send_multipart(self.answer(frames))

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """The reply frames for one request's frames; never raises."""
        try:
            if len(frames) != 1:  # from_frames would take two frames as a feed message
                raise ProtocolError(f"a control request is one frame, received {len(frames)}")
            request = msg.Message.from_frames(frames)
        except ProtocolError as exc:
            return self._error(None, None, ErrorCode.BAD_REQUEST, str(exc))
        if request.id is not None and request.id in self._replies:
            self._replies.move_to_end(request.id)
            return self._replies[request.id]
        try:
            frames_out = self._answer_new(request)
        except ProtocolError as exc:  # the reply cannot be encoded: too big, or odd details
            logger.error("reply to %r cannot be encoded: %s", request.op, exc)
            text = f"the reply could not be encoded: {exc}"
            frames_out = self._error(request.id, None, ErrorCode.INTERNAL, text)
        # `history` only reads, and its pages are the big replies: caching them would only cost memory.
        if request.id is not None and request.op not in UNCACHED_OPS:
            self._replies[request.id] = frames_out
            if len(self._replies) > REPLY_CACHE_SIZE:
                self._replies.popitem(last=False)
        return frames_out

    def _answer_new(self, request: msg.Message) -> list[bytes]:
        rid, op = request.id, request.op
        if request.v not in msg.SUPPORTED_VERSIONS:
            supported = list(msg.SUPPORTED_VERSIONS)
            text = f"protocol version {request.v} is not supported; supported: {supported}"
            return self._error(rid, op, ErrorCode.UNSUPPORTED_VERSION, text, {"supported": supported})
        if request.type != msg.REQUEST or not op or rid is None:
            text = f"expected a request with an id and an op, received type {request.type!r:.40}"
            return self._error(rid, op, ErrorCode.BAD_REQUEST, text)
        if request.expires is not None and time.time() > request.expires:
            return self._error(rid, op, ErrorCode.EXPIRED, "request arrived after its deadline")
        handler = self._handlers.get(op)
        if handler is None:
            ops = sorted(self._handlers)
            return self._error(rid, op, ErrorCode.UNKNOWN_OP, f"unknown op {op!r:.40}", {"ops": ops})
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
        return msg.error_reply(rid, op, self.session, code, text, details).to_frames()
