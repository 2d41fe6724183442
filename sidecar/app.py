"""The sidecar: a chat backend, the command dispatcher and the trainer feed, wired together.

Threads: the backend's receive thread calls `on_message` (access check, parse, command, reply
queued); the feed thread owns the Subscriber and its own ControlClient; the outbox thread does
all sending. The message path's ControlClient is used by the receive thread only (and is
behind TrainerLink's lock in case a backend ever calls from more than one thread).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from protocol import check_private_dir
from sidecar.access import AccessPolicy
from sidecar.backend import ChatBackend, IncomingText, Priority
from sidecar.commands import COMMANDS, CommandContext, Reply
from sidecar.config import Config
from sidecar.cursor import CursorStore
from sidecar.dispatch import INTERNAL_ERROR_TEXT, Dispatcher
from sidecar.feed import FeedHandler, FeedThread
from sidecar.i18n import LanguagePreference
from sidecar.link import Catalog, Request, TrainerLink
from sidecar.outbox import Outbox
from sidecar.series import MetricSeries
from sidecar.throttle import Clock

logger = logging.getLogger(__name__)

FEED_REQUEST_TIMEOUT_MS = 1000
FEED_REQUEST_RETRIES = 1


class Sidecar:
    """Run with `run()` (blocks in the backend) or `start()` + the backend's callback in tests."""

    def __init__(
        self,
        config: Config,
        backend: ChatBackend,
        *,
        clock: Clock = time.monotonic,
        access: AccessPolicy | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.outbox = Outbox(backend)
        self.catalog = Catalog()
        self.series = MetricSeries()
        self.access = access or AccessPolicy(config.allow)  # the backend resolves it at login
        self._clock = clock
        connection = config.connection()
        client = connection.control_client(
            timeout_ms=config.request_timeout_ms, retries=config.request_retries
        )
        self.link = TrainerLink(client, self.catalog)
        self.language = LanguagePreference(config.language)
        self.context = CommandContext(self.link, self.series, config.state_dir)
        self.dispatcher = Dispatcher(COMMANDS, self.context, self.language)
        feed_options: dict[str, Any] = {
            "timeout_ms": min(config.request_timeout_ms, FEED_REQUEST_TIMEOUT_MS),
            "retries": FEED_REQUEST_RETRIES,
        }
        self.feed = FeedThread(self._feed_handler, connection, client_options=feed_options)

    def _feed_handler(self, request: Request) -> FeedHandler:
        return FeedHandler(
            self._notify,
            request,
            catalog=self.catalog,
            series=self.series,
            cursors=CursorStore(self.config.state_dir),
            progress_interval_s=self.config.progress_interval_s,
            clock=self._clock,
            language=self.language.current,
            own_changes=self.context.own_changes,
        )

    def _notify(self, text: str, priority: Priority) -> None:
        """The feed's messages to the owner's chat: unsolicited, so never REPLY."""
        self.outbox.text(text, priority=priority)

    def start(self) -> None:
        """Start the outbox and feed threads (not the backend)."""
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The state dir holds the chat session (a pickle: code) and what we send: ours alone.
        check_private_dir(self.config.state_dir, "state directory")
        self.outbox.start()
        self.feed.start()

    def run(self) -> None:
        """Start, then run the backend until it stops; always closes."""
        self.start()
        threading.Thread(target=self._log_ready, name="sidecar-ready", daemon=True).start()
        try:
            self.backend.run(self.on_message)
        finally:
            self.close()

    def stop(self) -> None:
        self.backend.stop()

    def close(self) -> None:
        self.feed.stop()
        self.outbox.close()
        self.link.close()

    def on_message(self, message: IncomingText) -> None:
        """The backend's callback: never raises (a failure is logged and answered)."""
        # Our own messages echoed back by web WeChat never get here: the backend that sees the
        # echo (sidecar.wechat, by message id and chat) drops it, once, where it knows which it is.
        role = self.access.check(message)
        if role is None:
            return
        try:
            reply = self.dispatcher.handle(message.text, lambda spec: self.access.may_run(role, spec.op))
        except Exception:
            logger.exception("handling %r failed", message.text[:80])
            reply = Reply(INTERNAL_ERROR_TEXT)
        if reply is None:
            logger.debug("chatter from %s ignored", message.sender_id)
            return
        if reply.image is not None:
            self.outbox.image(reply.image, to=message.chat_id)
        if reply.text:
            self.outbox.text(reply.text, to=message.chat_id)

    def _log_ready(self) -> None:
        started = time.monotonic()
        self.backend.ready.wait()
        logger.info(
            "sidecar ready (%s backend) after %.2f s", self.config.backend, time.monotonic() - started
        )
