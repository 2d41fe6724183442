"""The WeChat backend: web WeChat through itchat 1.3.10. The only sidecar module importing itchat.

Login shows a QR code in the terminal (also saved as `<state_dir>/qr.png`; no viewer, no
cleared screen) and keeps the session in `<state_dir>/itchat.pkl` (itchat's hot reload),
so a restart needs no new scan. When WeChat ends the session (retcode 1101, or an outage
that stops itchat's receive loop), this logs it, logs in again (hot reload first, then a
new QR code) and keeps running.

itchat traps handled here (see NOTES.md):
- Python 3.9 removed `HTMLParser.unescape`, which itchat calls on every incoming text;
  without it each text fails inside itchat and is lost. Restored on itchat's own parser.
- itchat calls the deprecated `Thread.setDaemon`: ignored while itchat starts its thread.
- Requests without a timeout: the session gets a default one, so nothing hangs for good.
- The owner's messages to the file transfer helper arrive as FromUserName = owner:
  replies go to 'filehelper' explicitly, and texts this backend sent that come back
  through sync are not taken as commands.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import requests

from protocol import UnsafeDirectory
from protocol.endpoints import check_private_file

from .access import AccessPolicy, Contact
from .backend import OWNER_CHAT, ChatBackend, IncomingText, MessageCallback, Priority, SendError
from .wechat_util import REQUEST_TIMEOUT_S, SentLog, TimeoutAdapter, login_failure, qr_text

with contextlib.redirect_stdout(io.StringIO()):  # itchat writes a block character on import
    import itchat
    import itchat.components.login
    import itchat.config
    import itchat.utils

logger = logging.getLogger(__name__)

RELOGIN_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # after a failed login, then stays at 60
STOP_WAIT_S = 5.0  # how long stop waits for itchat's receive loop to finish its long poll
QR_URL_PREFIX = "https://login.weixin.qq.com/l/"
QR_FILE = "qr.png"
STATUS_FILE = "itchat.pkl"


def restore_html_unescape() -> None:
    """Give itchat's HTMLParser the `unescape` method Python 3.9 removed (idempotent)."""
    parser = itchat.utils.htmlParser
    if not hasattr(parser, "unescape"):
        parser.unescape = html.unescape


def convert_messages_one_by_one() -> None:
    """Make itchat's receive loop skip a message it cannot convert, not its whole batch
    (idempotent). The loop advances its sync key before converting, and converts a batch in one
    call: one malformed message (a null Content) lost every message of the batch, the owner's
    commands included, for good."""
    whole_batch = itchat.components.login.produce_msg
    if getattr(whole_batch, "one_by_one", False):
        return

    def one_by_one(core: Any, messages: list[Any]) -> list[Any]:
        produced: list[Any] = []
        for message in messages:
            try:
                produced += whole_batch(core, [message])
            except Exception as exc:  # itchat's own code, on the server's data
                sender = message.get("FromUserName") if isinstance(message, dict) else None
                logger.warning("dropped a message WeChat sent that cannot be read (from %s): %r", sender, exc)
        return produced

    one_by_one.one_by_one = True  # type: ignore[attr-defined]
    itchat.components.login.produce_msg = one_by_one


restore_html_unescape()
convert_messages_one_by_one()


class _LoginCancelled(Exception):
    """Raised from itchat's QR callback to end a login wait when the backend stops."""


class WeChatBackend(ChatBackend):
    """Web WeChat through one itchat instance (`itchat.new_instance()`)."""

    def __init__(
        self,
        state_dir: Path,
        base_url: str | None = None,
        *,
        access: AccessPolicy | None = None,
        qr_stream: TextIO | None = None,
        request_timeout_s: tuple[float, float] = REQUEST_TIMEOUT_S,
        relogin_delays_s: tuple[float, ...] = RELOGIN_DELAYS_S,
        stop_wait_s: float = STOP_WAIT_S,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.access = access or AccessPolicy()
        self.base_url = base_url
        self.qr_path = self.state_dir / QR_FILE
        self.status_path = self.state_dir / STATUS_FILE
        self._qr_stream = qr_stream
        self._relogin_delays_s = relogin_delays_s
        self._stop_wait_s = stop_wait_s
        self._core = itchat.new_instance()
        adapter = TimeoutAdapter(request_timeout_s)
        self._core.s.mount("http://", adapter)
        self._core.s.mount("https://", adapter)
        self._core.msg_register("Text")(self._on_itchat_text)
        itchat.set_logging(showOnCmd=False)  # itchat's own stderr handler: ours is enough
        self._on_message: MessageCallback | None = None
        self._sent = SentLog()
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._wake = threading.Event()  # set when the session ends or on stop()
        self._receive_done = threading.Event()
        self._qr_announced = ""

    @property
    def ready(self) -> threading.Event:
        return self._ready

    # -- running ---------------------------------------------------------------------------------
    def run(self, on_message: MessageCallback) -> None:
        self._on_message = on_message
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dispatcher = threading.Thread(target=self._dispatch, name="wechat-dispatch", daemon=True)
        dispatcher.start()
        failures = 0
        while not self._stopped.is_set():
            self._wake.clear()
            self._receive_done.clear()
            try:
                self._log_in()
            except _LoginCancelled:
                self._core.isLogging = False
                break
            except Exception as error:
                self._core.isLogging = False
                delay = self._relogin_delays_s[min(failures, len(self._relogin_delays_s) - 1)]
                failures += 1
                logger.warning(
                    "%s; retrying in %.0f s (without WeChat: --backend console)",
                    login_failure(error), delay,
                )  # fmt: skip
                logger.debug("the failed login", exc_info=True)
                self._stopped.wait(delay)
                continue
            failures = 0
            self._ready.set()
            self._wake.wait()
            self._ready.clear()
            if not self._stopped.is_set():
                logger.warning(
                    "WeChat ended the session (logged out elsewhere, expired or unreachable): "
                    "logging in again; scan the new QR code if one is shown"
                )
        self._shut_down()
        dispatcher.join()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _log_in(self) -> None:
        """Hot reload if the saved session still works, else QR login."""
        if self.base_url is not None:
            itchat.config.BASE_URL = self.base_url.rstrip("/")
        core = self._core
        core.useHotReload, core.hotReloadDir = True, str(self.status_path)
        self._drop_unsafe_status()
        with _setdaemon_tolerated():
            if self.status_path.exists() and core.load_login_status(
                str(self.status_path), loginCallback=self._on_login, exitCallback=self._on_exit
            ):
                logger.info("WeChat session restored from %s: no QR scan needed", self.status_path)
            else:
                core.login(
                    picDir=str(self.qr_path),  # itchat-uos writes the PNG even with a callback
                    qrCallback=self._on_qr,
                    loginCallback=self._on_login,
                    exitCallback=self._on_exit,
                )
        if not core.alive:
            # itchat logged why (often: this account may not use web WeChat at all).
            raise RuntimeError("WeChat did not complete the login")
        self._save_status()
        self.access.resolve(self._contacts())

    def _shut_down(self) -> None:
        """Keep the session for the next start (no logout); end itchat's receive loop."""
        if self._core.alive:
            self._save_status()
            self._core.alive = False
            if not self._receive_done.wait(self._stop_wait_s):
                logger.info("itchat's receive loop still in its long poll; leaving it")

    def _drop_unsafe_status(self) -> None:
        """itchat unpickles the saved session: a file anyone else could have written is code
        they would run as us. Such a file is deleted, never loaded (a new QR login follows)."""
        if not self.status_path.exists():
            return
        try:
            check_private_file(self.status_path, "saved WeChat session")
        except UnsafeDirectory as exc:
            logger.error("%s: deleting it, not loading it", exc)
            self.status_path.unlink()

    def _save_status(self) -> None:
        try:
            self._core.dump_login_status(str(self.status_path))
            self.status_path.chmod(0o600)  # session cookies: credentials
        except Exception:
            logger.exception("could not save the WeChat session to %s", self.status_path)

    def _contacts(self) -> list[Contact]:
        """The friends as this login knows them: UserName (stable for the login) and remark."""
        fields = ("UserName", "RemarkName", "NickName")
        return [Contact(*(str(f.get(k) or "") for k in fields)) for f in self._core.memberList]

    # -- itchat callbacks (called on itchat's threads) ---------------------------------------
    def _on_qr(self, uuid: str, status: str, qrcode: bytes) -> None:
        # itchat calls this after every login check and waits for a scan in a loop that
        # only an exception ends: that is how stop() gets out of it.
        if self._stopped.is_set():
            raise _LoginCancelled
        if self._qr_announced == uuid + status:
            return
        self._qr_announced = uuid + status
        if status == "0":
            tmp = self.qr_path.with_suffix(".tmp")
            tmp.write_bytes(qrcode)
            tmp.replace(self.qr_path)
            stream = self._qr_stream or sys.stdout
            stream.write(qr_text(QR_URL_PREFIX + uuid))
            stream.flush()
            logger.warning("Scan the QR code above with WeChat to log in (also in %s)", self.qr_path)
        elif status == "201":
            logger.info("QR code scanned: confirm the login on the phone")
        elif not qrcode:
            logger.warning("WeChat asked the phone to confirm the login: confirm it there")

    def _on_login(self) -> None:
        logger.info("logged in to WeChat as %s", self._core.storageClass.nickName)

    def _on_exit(self) -> None:
        self._receive_done.set()
        self._wake.set()

    def _dispatch(self) -> None:
        while not self._stopped.is_set():
            try:
                self._core.configured_reply()  # waits up to 1 s for a message
            except Exception:
                logger.exception("itchat failed to dispatch a message")

    def _on_itchat_text(self, msg: dict[str, Any]) -> None:
        """itchat's handler for texts; returns None so itchat never replies by itself."""
        incoming = self._incoming(msg)
        if incoming is None or self._on_message is None:
            return
        try:
            self._on_message(incoming)
        except Exception:
            logger.exception("message handler failed on %r", incoming.text)

    def _incoming(self, msg: dict[str, Any]) -> IncomingText | None:
        """The message as the core sees it, or None when it is not for the bot."""
        owner = self._core.storageClass.userName
        sender, to, text = msg["FromUserName"], msg["ToUserName"], msg["Text"]
        if sender == owner:
            if to != OWNER_CHAT:
                logger.debug("ignoring the owner's message to %s", to)
                return None
            if self._sent.take_echo(str(msg.get("MsgId", "")), to, text):
                logger.debug("ignoring our own message coming back: %r", text)
                return None
            nick = self._core.storageClass.nickName or ""
            return IncomingText(text, owner, nick, "", OWNER_CHAT, from_owner=True)
        user = msg.get("User") or {}
        nick, remark = user.get("NickName") or "", user.get("RemarkName") or ""
        # Names are for the log only: the access policy goes by `sender`, the UserName.
        return IncomingText(text, sender, nick, remark, sender, from_owner=False)

    # -- sending --------------------------------------------------------------------------------
    def send_text(self, text: str, to: str | None = None, priority: Priority = Priority.REPLY) -> None:
        chat = to or OWNER_CHAT
        self._sent.record(chat, text)
        result = self._call("send a text", lambda: self._core.send_msg(text, toUserName=chat))
        self._sent.record_id(str(result.get("MsgID", "")))

    def send_image(self, path: Path, to: str | None = None) -> None:
        chat = to or OWNER_CHAT
        if not Path(path).is_file():
            raise SendError(f"cannot send image {path}: no such file")
        self._call("send an image", lambda: self._core.send_image(str(path), toUserName=chat))

    def _call(self, what: str, send: Callable[[], Any]) -> Any:
        if not self._ready.is_set():
            raise SendError(f"cannot {what}: not logged in to WeChat")
        try:
            with self._send_lock:
                result = send()
        except requests.RequestException as error:
            raise SendError(f"cannot {what}: {error}") from error
        except (ValueError, AttributeError, TypeError, KeyError) as error:  # itchat reading an odd answer
            raise SendError(f"WeChat gave an answer to {what} that cannot be read: {error!r}") from error
        if not result:
            raise SendError(f"WeChat refused to {what}: {result.get('BaseResponse')}")
        return result


@contextlib.contextmanager
def _setdaemon_tolerated() -> Any:
    """itchat starts its receive thread with `Thread.setDaemon`, deprecated since 3.10:
    ignore that one warning while itchat starts it, so `-W error` cannot break login."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"setDaemon\(\) is deprecated", DeprecationWarning)
        yield
