"""What the control server and the publisher share: one bound server socket with its safeguards,
and the guard that reports a serving thread's death to its owner."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from protocol.codec import MAX_MESSAGE_BYTES
from protocol.endpoints import BoundEndpoint, check_bind_address
from protocol.security import ServerCurve

logger = logging.getLogger(__name__)

# Called with the thread's name and what ended it (None when it returned without being closed).
ThreadDeath = Callable[[str, BaseException | None], None]
# How long `close()` waits for a serving thread before leaving its socket for it to close.
CLOSE_TIMEOUT_S = 5.0
# How long a closing socket keeps trying to deliver what was already sent: a reply sent just
# before close (or by a late thread as it ends) must still reach its client; linger 0 drops it.
CLOSE_LINGER_MS = 1000


def guarded_thread(
    name: str, body: Callable[[], None], closing: threading.Event, on_death: ThreadDeath | None
) -> Callable[[], None]:
    """A thread target that runs `body` and, unless `closing` is set, reports its end to `on_death`.

    A serving thread that ends while its process goes on leaves a trainer that looks alive and
    cannot be steered or followed; the owner decides what to do (the trainer exits non-zero).
    """

    def run() -> None:
        error: BaseException | None = None
        try:
            body()
        except BaseException as exc:  # whatever ended it, the owner must hear of it
            error = exc
        if closing.is_set():
            return
        logger.critical("the %s thread died", name, exc_info=error)
        if on_death is not None:
            try:
                on_death(name, error)
            except Exception:
                logger.exception("the %s thread's death handler failed", name)

    return run


class SocketHandover:
    """Who closes a serving thread's socket: `close()` when the thread stopped in time, else the
    thread itself as it ends (a socket must never be closed under a thread still using it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._thread_done = False
        self._late = False

    def thread_ended(self, close: Callable[[], None]) -> None:
        """From the serving thread, last thing: close now if `close()` gave up waiting for it."""
        with self._lock:
            self._thread_done = True
            late = self._late
        if late:
            close()

    def close(self, thread: threading.Thread | None, close: Callable[[], None], timeout_s: float) -> None:
        """From the owner: wait for `thread`, then close; if it is still busy, leave it to it."""
        if thread is not None:
            thread.join(timeout_s)
        with self._lock:
            if thread is not None and thread.is_alive() and not self._thread_done:
                self._late = True
                logger.warning("the %s thread is still busy; it closes its socket when it ends", self._name)
                return
        close()


class ServerSocket:
    """A socket of `kind` bound to `endpoint`, owning its context unless one is given.

    Bound in the constructor (the caller's thread) so that a taken endpoint fails loudly at start;
    after that, exactly one serving thread uses `.socket`.
    """

    def __init__(
        self,
        kind: int,
        endpoint: str,
        *,
        curve: ServerCurve | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        allow_remote: bool = False,
        send_hwm: int | None = None,
    ) -> None:
        check_bind_address(endpoint, allow_remote=allow_remote)
        self._own_context = context is None
        self.context: zmq.Context[zmq.Socket[bytes]] = context or zmq.Context()
        self._authenticator: ThreadAuthenticator | None = None
        self.socket: zmq.Socket[bytes] = self.context.socket(kind)
        self.socket.linger = 0
        # A peer that sends an oversized frame is disconnected by libzmq; nobody else notices.
        self.socket.maxmsgsize = MAX_MESSAGE_BYTES
        if send_hwm is not None:
            self.socket.sndhwm = send_hwm
        try:
            if curve is not None:
                self._authenticator = curve.start_authenticator(self.context)
                curve.apply(self.socket)
            self._bound = BoundEndpoint(self.socket, endpoint)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.socket.close(linger=CLOSE_LINGER_MS)
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._own_context:
            self.context.term()
        bound = getattr(self, "_bound", None)
        if bound is not None:  # last: its files go while its lock is still held
            bound.release()
