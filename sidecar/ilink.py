"""The iLink backend: Tencent's official bot API for personal WeChat (the "ClawBot" channel).

The only sidecar module that drives iLink (HTTP calls in ilink_api.py, reading their answers in
ilink_messages.py, login in ilink_login.py).
Login: saved credentials (`<state_dir>/ilink.json`, 0600) or a QR code; errcode -14 (session
expired) logs in again with a new QR code and says so. Receive: long-poll `getupdates`, the
cursor and the handled message ids persisted (ilink_store.py), the server's
`longpolling_timeout_ms` honoured (within bounds), errors backed off with one log line each; no
answer of the server ends the receiver: a message that cannot be read is logged and marked
handled. Text is a command, a voice message's transcript too; other items get a short "text
only" reply. Send: every message carries the chat's latest `context_token`; `ret != 0` is an
error; a reply is tried again after a transient failure. What the reply window does not allow
(window.py) or what still fails is held for the next inbound message (never dropped), alerts
also pushed to the fallback webhook (push.py) when one is configured. The backend's own texts
follow the sidecar's language (i18n.py). Owner messages arrive with chat_id
OWNER_CHAT (as the owner's file-transfer chat does with itchat), so AccessPolicy applies as is;
iLink has no nicknames, so a sender's name is its stable user id (what --allow names).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sidecar.access import AccessPolicy
from sidecar.backend import OWNER_CHAT, ChatBackend, IncomingText, MessageCallback, Priority, SendError
from sidecar.i18n import LanguagePreference, tr
from sidecar.ilink_api import (
    DEFAULT_BASE_URL,
    DEFAULT_CDN_URL,
    ITEM_TEXT,
    MESSAGE_TYPE_BOT,
    OUT_OF_WINDOW,
    IlinkApi,
    IlinkError,
    IlinkUnavailable,
    SessionExpired,
)
from sidecar.ilink_login import Credentials, CredentialStore, QrLogin, terminal_prompt
from sidecar.ilink_messages import MalformedMessage, message_id, message_text, suggested_hold_s
from sidecar.ilink_store import UpdatesCursor
from sidecar.push import PushChannel
from sidecar.window import ReplyWindows

logger = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # after consecutive failures, then stays at 60
DEFAULT_POLL_TIMEOUT_S = 35.0
POLL_MARGIN_S = 3.0  # beyond the server's suggested hold, before the client gives up the poll
STOP_WAIT_S = 2.0
REPLY_RETRY_S = (0.5, 2.0)  # pauses before a reply is tried again; then it is held for the summary


class IlinkBackend(ChatBackend):
    """One iLink bot login serving the owner (the QR-scanning account) and allowed users."""

    def __init__(
        self,
        state_dir: Path,
        *,
        access: AccessPolicy | None = None,
        base_url: str = DEFAULT_BASE_URL,
        cdn_url: str = DEFAULT_CDN_URL,
        windows: ReplyWindows | None = None,
        push: PushChannel | None = None,
        qr_stream: TextIO | None = None,
        prompt: Callable[[str], str] = terminal_prompt,
        qr_poll_interval_s: float = 1.0,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        language: LanguagePreference | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.access = access or AccessPolicy()  # the sidecar's one policy: who may command
        self.windows = windows or ReplyWindows(self.state_dir)
        self.push = push
        self.language = language or LanguagePreference()  # the sidecar's one preference
        self.cursor = UpdatesCursor(self.state_dir)
        self.credentials: Credentials | None = None
        self._store = CredentialStore(self.state_dir)
        self._login_api = IlinkApi(base_url, cdn_url=cdn_url)
        self._cdn_url = cdn_url
        self._api: IlinkApi | None = None
        self._qr_stream = qr_stream
        self._prompt = prompt
        self._qr_poll_interval_s = qr_poll_interval_s
        self._backoff_s = backoff_s
        self._poll_timeout_s = DEFAULT_POLL_TIMEOUT_S + POLL_MARGIN_S
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._send_lock = threading.Lock()

    @property
    def ready(self) -> threading.Event:
        return self._ready

    @property
    def poll_timeout_s(self) -> float:
        return self._poll_timeout_s

    def run(self, on_message: MessageCallback) -> None:
        failed: list[BaseException] = []
        worker = threading.Thread(
            target=self._run, args=(on_message, failed), name="ilink-receive", daemon=True
        )
        worker.start()
        self._stopping.wait()
        worker.join(STOP_WAIT_S)  # a long poll in flight may outlive this: it is a daemon
        if self._ready.is_set():
            self._notify(started=False)
        self._ready.clear()
        if failed:  # the sidecar exits for a restart rather than sit there deaf
            raise RuntimeError(f"the iLink receiver failed: {failed[0]!r:.200}") from failed[0]

    def stop(self) -> None:
        self._stopping.set()

    def _run(self, on_message: MessageCallback, failed: list[BaseException]) -> None:
        try:
            while not self._stopping.is_set():
                if not self._log_in():
                    return
                try:
                    self._receive(on_message)
                except SessionExpired:
                    self._session_expired()
        except BaseException as exc:  # whatever ended it: run() raises it in the sidecar's main thread
            failed.append(exc)
        finally:
            self._stopping.set()

    # -- login ----------------------------------------------------------------------------
    def _log_in(self) -> bool:
        credentials = self._store.load()
        if credentials is not None:
            logger.info("iLink session restored from %s: no QR scan needed", self._store.path)
        failures = 0
        while credentials is None and not self._stopping.is_set():
            login = QrLogin(
                self._login_api,
                self._store,
                self._stopping,
                qr_stream=self._qr_stream,
                prompt=self._prompt,
                poll_interval_s=self._qr_poll_interval_s,
            )
            try:
                credentials = login.run()
            except (IlinkUnavailable, IlinkError, ValueError) as error:
                failures += 1
                self._pause(failures, f"iLink login failed ({error})")
        if credentials is None:
            return False
        self.credentials = credentials
        self._api = IlinkApi(credentials.baseurl, credentials.bot_token, cdn_url=self._cdn_url)
        self._notify(started=True)
        self._ready.set()
        return True

    def _notify(self, started: bool) -> None:
        try:
            if self._api is not None:
                self._api.notify(started)
        except (IlinkUnavailable, IlinkError) as error:
            logger.info("iLink %s", error)  # observability only: never stops the backend

    def _session_expired(self) -> None:
        self._ready.clear()
        message = "iLink session expired (errcode -14): logging in again, scan the new QR code"
        logger.warning("%s", message)
        if self._qr_stream is not None:
            self._qr_stream.write(message + "\n")
        self._store.forget()
        self.cursor.reset()

    def _pause(self, failures: int, what: str) -> None:
        delay = self._backoff_s[min(failures, len(self._backoff_s)) - 1]
        logger.warning("%s; retrying in %.0f s", what, delay)
        self._stopping.wait(delay)

    # -- receiving ------------------------------------------------------------------------
    def _receive(self, on_message: MessageCallback) -> None:
        assert self._api is not None
        failures = 0
        while not self._stopping.is_set():
            try:
                answer = self._api.get_updates(self.cursor.buf, self._poll_timeout_s)
            except SessionExpired:
                raise
            except (IlinkUnavailable, IlinkError) as error:
                failures += 1
                self._pause(failures, f"iLink getupdates failed ({error})")
                continue
            failures = 0
            hold_s = suggested_hold_s(answer)
            if hold_s is not None:
                self._poll_timeout_s = hold_s + POLL_MARGIN_S
            for message in answer.get("msgs") or []:
                if not self._stopping.is_set():
                    self._handle(message, on_message)
            if not self._stopping.is_set():
                self.cursor.advance(str(answer.get("get_updates_buf") or ""))

    def _handle(self, message: Any, on_message: MessageCallback) -> None:
        assert self.credentials is not None
        if not isinstance(message, dict):
            logger.warning("iLink message skipped: it is %s, not an object", type(message).__name__)
            return
        handled_id = message_id(message)
        sender = str(message.get("from_user_id") or "")
        if self.cursor.seen(handled_id):
            logger.info("iLink message %s from %.60s skipped: handled already", handled_id, sender)
            return
        if message.get("message_type") == MESSAGE_TYPE_BOT:
            logger.debug("iLink message %s skipped: the bot's own", handled_id)
            return
        try:
            text = message_text(message.get("item_list"))
        except MalformedMessage as error:  # marked handled: a restart must not meet it again
            logger.warning("iLink message %s from %.60s skipped, unreadable: %s", handled_id, sender, error)
            self.cursor.handled(handled_id)
            return
        self._accept(sender, str(message.get("context_token") or ""), text, on_message)
        self.cursor.handled(handled_id)

    def _accept(self, sender: str, context_token: str, text: str | None, on_message: MessageCallback) -> None:
        """A readable message: a command for `on_message`, or other items answered 'text only'."""
        assert self.credentials is not None
        from_owner = sender == self.credentials.ilink_user_id
        chat = OWNER_CHAT if from_owner else sender
        # iLink knows no names: the stable user id is the identity, nickname and remark stay empty.
        incoming = IncomingText(text or "", sender, "", "", chat, from_owner=from_owner)
        permitted = self.access.permits(incoming)
        if permitted:
            self._inbound(sender, context_token)
        try:
            if text is None:
                if permitted:
                    self.send_text(tr(self.language.current(), "ilink_text_only"), to=chat)
            else:
                on_message(incoming)
        except Exception:
            logger.exception("handling an iLink message from %s failed", sender)

    def _inbound(self, user: str, context_token: str) -> None:
        """The window opens again; what it held goes out now, as one message."""
        summary = self.windows.inbound(user, context_token, self.language.current())
        if summary is not None:
            try:
                self.send_text(summary, to=user)
            except SendError as error:
                logger.warning("the summary of held updates was not sent: %s", error)

    # -- sending --------------------------------------------------------------------------
    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        self._send(self._user(to), {"type": ITEM_TEXT, "text_item": {"text": text}}, text, priority)

    def send_image(self, path: Path, to: str | None = None) -> None:
        user = self._user(to)
        try:
            data = Path(path).read_bytes()
            uploaded = self._connected().upload_image(data, user)
        except (OSError, IlinkUnavailable, IlinkError) as error:
            logger.warning("image upload failed, sending text instead: %s", error)
            self.send_text(tr(self.language.current(), "ilink_image_failed", error=error), to=to)
            return
        self._send(user, uploaded.item(), tr(self.language.current(), "ilink_plot_held"), Priority.REPLY)

    def _send(self, user: str, item: dict[str, Any], text: str, priority: Priority) -> None:
        """Send, or hold for the next summary: what fails is never dropped (README's promise)."""
        with self._send_lock:
            if not self.windows.may_send(user, priority):
                self._hold(user, priority, text, "outside the reply window", logging.INFO)
                return
            failure = self._deliver(user, item, priority)
            if failure is not None:
                self._hold(user, priority, text, failure)
                return
            self.windows.sent(user)
            self._send_notice(user)

    def _deliver(self, user: str, item: dict[str, Any], priority: Priority) -> str | None:
        """One sendmessage (a reply: tried again after a transient failure); None when sent, else why not."""
        retries = list(REPLY_RETRY_S) if priority is Priority.REPLY else []
        while True:
            try:
                self._connected().send_message(user, self.windows.context_token(user), item)
                return None
            except SessionExpired as error:  # the receiver logs in again: retrying cannot help
                return str(error)
            except IlinkError as error:
                if OUT_OF_WINDOW in (error.ret, error.errcode):
                    self.windows.refused(user)
                    return "refused by WeChat (ret -2)"
                failure = str(error)
            except IlinkUnavailable as error:
                failure = str(error)
            if not retries:
                return failure
            delay = retries.pop(0)
            logger.warning("iLink send failed (%s); trying again in %.1f s", failure, delay)
            if self._stopping.wait(delay):
                return failure

    def _send_notice(self, user: str) -> None:
        notice = self.windows.take_notice(user, self.language.current())
        if notice is None:
            return
        item = {"type": ITEM_TEXT, "text_item": {"text": notice}}
        try:
            self._connected().send_message(user, self.windows.context_token(user), item)
            self.windows.sent(user)
        except (IlinkError, IlinkUnavailable) as error:
            logger.warning("the 'send any message' notice was not sent: %s", error)

    def _hold(self, user: str, priority: Priority, text: str, why: str, level: int = logging.WARNING) -> None:
        self.windows.hold(user, priority, text)
        logger.log(level, "held until the next inbound message (%s): %.60s", why, text)
        if priority is Priority.ALERT and self.push is not None:
            self.push.push(text)

    def _user(self, to: str | None) -> str:
        if to in (None, OWNER_CHAT):
            if self.credentials is None:
                raise SendError("not logged in to iLink yet")
            return self.credentials.ilink_user_id
        return str(to)

    def _connected(self) -> IlinkApi:
        if self._api is None or not self._ready.is_set():
            raise IlinkUnavailable("not logged in to iLink")
        return self._api
