"""What the fake iLink server knows: QR logins, users, their messages, the reply window, the CDN.

Written from Tencent/openclaw-weixin docs/protocol.md. Tests drive it directly (push a user's
message, script QR statuses, expire the session, fail a path) and wait on `changed`. What a
broken server would send is scripted too: `push(..., item_list=5)` queues a malformed message
(the real server serves it again until the cursor moves past it), `fail(path, Raw(b"..."))`
answers raw bytes, trickled a byte at a time with `Raw(..., trickle_s=2.0)`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

OWNER = "o9cq80_owner@im.wechat"  # the account that scans the QR code
BOT_ID = "b7f3_bot@im.bot"
VERIFY_CODE = "246810"
DEFAULT_QR_SCRIPT = ("wait", "scaned", "confirmed")
OUT_OF_WINDOW = {"ret": -2, "errmsg": "out of reply window"}
SESSION_EXPIRED = {"ret": -14, "errcode": -14, "errmsg": "session expired"}


@dataclass(frozen=True)
class Sent:
    """One sendmessage the server accepted: text, or the decrypted image bytes."""

    to: str
    context_token: str
    text: str = ""
    image: bytes | None = None


@dataclass(frozen=True)
class Raw:
    """An HTTP 200 answer of exactly `body`; with `trickle_s`, the headers at once and then one
    byte every `trickle_s` seconds (a stalled server or proxy that never quite stops)."""

    body: bytes
    trickle_s: float = 0.0


Answer = dict[str, Any] | int | Raw


@dataclass
class Window:
    last_inbound: float = float("-inf")
    since_inbound: int = 0
    tokens: list[str] = field(default_factory=list)


def _position(cursor: str) -> int:
    """How many inbound messages the cursor `cur-N` is past."""
    return int(cursor[4:]) if cursor.startswith("cur-") and cursor[4:].isdigit() else 0


def aes_ecb_decrypt(data: bytes, key: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    plain = decryptor.update(data) + decryptor.finalize()
    return unpadder.update(plain) + unpadder.finalize()


def decode_aes_key(value: str) -> bytes:
    """The document's two encodings: base64 of 16 raw bytes, or of a 32-hex-digit key."""
    raw = base64.b64decode(value)
    return bytes.fromhex(raw.decode()) if len(raw) == 32 else raw


class FakeIlinkState:
    """Thread-safe; every change notifies `changed`."""

    def __init__(self, *, window_s: float = 24 * 3600.0, per_inbound: int = 10) -> None:
        self.changed = threading.Condition()
        self.window_s = window_s
        self.per_inbound = per_inbound
        self.qr_scripts: list[list[str]] = []  # statuses of the next QR codes' polls (then the default)
        self.qrcodes: list[str] = []
        self._qr_steps: dict[str, list[str]] = {}
        self.redirected = False
        self.verify_codes: list[str] = []
        self.valid_tokens: set[str] = set()
        self.issued_tokens: list[str] = []
        self.windows: dict[str, Window] = {}
        self.inbound: list[dict[str, Any]] = []  # every user message, seq = index + 1
        self.sent: list[Sent] = []
        self.refused: list[dict[str, Any]] = []  # sendmessage bodies answered ret -2
        self.bad_requests: list[str] = []  # what the server found wrong in a request
        self.polls = 0
        self.notifications: list[str] = []  # 'start' / 'stop', from msg/notifystart and notifystop
        self.hold_s = 1.0  # how long getupdates holds when there is nothing new
        self.suggest_ms: int | None = None  # longpolling_timeout_ms to suggest
        self.hang_next_poll_s = 0.0
        self._failures: dict[str, list[Answer]] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self._blobs: dict[str, bytes] = {}
        self.clock_offset_s = 0.0
        self.closed = False

    # -- test controls -------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() + self.clock_offset_s

    def advance(self, seconds: float) -> None:
        """Move the server's clock on (to close reply windows without waiting)."""
        with self.changed:
            self.clock_offset_s += seconds

    def push(
        self, user: str, text: str | None = None, items: list[dict[str, Any]] | None = None, **fields: Any
    ) -> str:
        """User `user` writes to the bot; returns the message's context_token. `fields` replace the
        message's own (`item_list=5`, `message_id=None`): what a malformed message looks like."""
        with self.changed:
            seq = len(self.inbound) + 1
            token = f"ctx-{seq}"
            window = self.windows.setdefault(user, Window())
            window.last_inbound, window.since_inbound = self.now(), 0
            window.tokens.append(token)
            self.inbound.append(
                {
                    "seq": seq,
                    "message_id": 7000 + seq,
                    "from_user_id": user,
                    "to_user_id": BOT_ID,
                    "create_time_ms": int(time.time() * 1000),
                    "message_type": 1,
                    "message_state": 2,
                    "context_token": token,
                    "item_list": items or [{"type": 1, "text_item": {"text": text or ""}}],
                    **fields,
                }
            )
            self.changed.notify_all()
            return token

    def fail(self, path: str, answer: Answer, times: int = 1) -> None:
        """The next `times` calls of `path` answer `answer` (a JSON body, an HTTP status, raw bytes)."""
        with self.changed:
            self._failures.setdefault(path, []).extend([answer] * times)

    def failures_left(self, path: str) -> int:
        with self.changed:
            return len(self._failures.get(path, []))

    def take_failure(self, path: str) -> Answer | None:
        with self.changed:
            queued = self._failures.get(path)
            self.changed.notify_all()
            return queued.pop(0) if queued else None

    def notified(self, what: str) -> None:
        with self.changed:
            self.notifications.append(what)
            self.changed.notify_all()

    def expire_session(self) -> None:
        """Every issued bot token stops working (errcode -14 from now on)."""
        with self.changed:
            self.valid_tokens.clear()
            self.changed.notify_all()

    def wait_until(self, predicate: Callable[[FakeIlinkState], bool], timeout_s: float) -> None:
        with self.changed:
            ok = self.changed.wait_for(lambda: predicate(self), timeout_s)
        assert ok, f"fake iLink: condition not met within {timeout_s} s; sent {self.texts()!r}"

    def texts(self, to: str | None = None) -> list[str]:
        with self.changed:
            return [s.text for s in self.sent if s.image is None and (to is None or s.to == to)]

    def wait_text(self, fragment: str, timeout_s: float = 10.0, after: int = 0) -> str:
        self.wait_until(lambda s: any(fragment in t for t in s.texts()[after:]), timeout_s)
        return next(t for t in self.texts()[after:] if fragment in t)

    # -- login ----------------------------------------------------------------------------
    def new_qr(self) -> dict[str, str]:
        with self.changed:
            qrcode = f"qr-{len(self.qrcodes) + 1}"
            self.qrcodes.append(qrcode)
            self._qr_steps[qrcode] = self.qr_scripts.pop(0) if self.qr_scripts else list(DEFAULT_QR_SCRIPT)
            self.changed.notify_all()
            return {"qrcode": qrcode, "qrcode_img_content": f"https://liteapp.weixin.qq.com/q/{qrcode}"}

    def qr_status(self, qrcode: str, verify_code: str, redirected: bool) -> dict[str, Any]:
        with self.changed:
            steps = self._qr_steps.get(qrcode)
            if steps is None:
                return {"ret": -1, "errmsg": "unknown qrcode"}
            if verify_code:
                self.verify_codes.append(verify_code)
            status = steps[0] if steps else "expired"
            if status == "need_verifycode" and verify_code == VERIFY_CODE:
                steps.pop(0)
                status = steps[0] if steps else "expired"
            elif status == "scaned_but_redirect" and redirected:
                self.redirected = True
                steps.pop(0)
                status = steps[0] if steps else "expired"
            if status not in ("need_verifycode", "scaned_but_redirect") and len(steps) > 1:
                steps.pop(0)
            self.changed.notify_all()
            return self._status_answer(status)

    def _status_answer(self, status: str) -> dict[str, Any]:
        if status == "scaned_but_redirect":
            return {"status": status, "redirect_host": "REDIRECT"}  # the server fills in its URL
        if status != "confirmed":
            return {"status": status}
        token = f"tok-{len(self.issued_tokens) + 1}"
        self.issued_tokens.append(token)
        self.valid_tokens.add(token)
        return {
            "status": status,
            "bot_token": token,
            "ilink_bot_id": BOT_ID,
            "baseurl": "BASEURL",
            "ilink_user_id": OWNER,
        }

    # -- bot API --------------------------------------------------------------------------
    def updates_after(self, cursor: str) -> list[dict[str, Any]]:
        with self.changed:
            return list(self.inbound[_position(cursor) :])

    def cursor_of(self, messages: list[dict[str, Any]], cursor: str) -> str:
        # By position, not the messages' `seq`: a test may have pushed one without it.
        return f"cur-{_position(cursor) + len(messages)}" if messages else (cursor or "cur-0")

    def send(self, msg: dict[str, Any]) -> dict[str, Any]:
        with self.changed:
            to, token = str(msg.get("to_user_id")), str(msg.get("context_token") or "")
            window = self.windows.get(to)
            if window is None or token not in window.tokens:
                self.bad_requests.append(f"sendmessage to {to} with context_token {token!r} not issued to it")
                return {"ret": -1, "errmsg": "invalid context_token"}
            if self.now() > window.last_inbound + self.window_s or window.since_inbound >= self.per_inbound:
                self.refused.append(msg)
                self.changed.notify_all()
                return OUT_OF_WINDOW
            sent = self._decode(to, token, msg.get("item_list") or [])
            if isinstance(sent, str):
                self.bad_requests.append(sent)
                return {"ret": -1, "errmsg": sent}
            window.since_inbound += 1
            self.sent.append(sent)
            self.changed.notify_all()
            return {"ret": 0, "errmsg": ""}

    def _decode(self, to: str, token: str, items: list[dict[str, Any]]) -> Sent | str:
        if len(items) != 1:
            return f"sendmessage with {len(items)} items (the client sends one per request)"
        item = items[0]
        if item.get("type") == 1:
            return Sent(to, token, text=str(item["text_item"]["text"]))
        if item.get("type") != 2:
            return f"sendmessage item type {item.get('type')!r}"
        media = item["image_item"]["media"]
        blob = self._blobs.get(str(media.get("encrypt_query_param")))
        if blob is None:
            return "image_item refers to nothing uploaded"
        return Sent(to, token, image=aes_ecb_decrypt(blob, decode_aes_key(str(media["aes_key"]))))

    def upload_url(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.changed:
            filekey = str(body.get("filekey"))
            self._uploads[filekey] = body
            return {"ret": 0, "upload_param": f"up-{filekey}"}

    def cdn_upload(self, param: str, filekey: str, ciphertext: bytes) -> tuple[str | None, str]:
        """(download param, '') or (None, why) after checking the upload against its request."""
        with self.changed:
            request = self._uploads.get(filekey)
            if request is None or param != f"up-{filekey}":
                return None, "unknown upload"
            try:
                plain = aes_ecb_decrypt(ciphertext, bytes.fromhex(str(request["aeskey"])))
            except ValueError as error:
                return None, f"does not decrypt: {error}"
            if len(ciphertext) != request.get("filesize") or len(plain) != request.get("rawsize"):
                return None, "sizes differ from getuploadurl's"
            if hashlib.md5(plain).hexdigest() != request.get("rawfilemd5"):
                return None, "md5 differs from getuploadurl's"
            download = f"dl-{len(self._blobs) + 1}"
            self._blobs[download] = ciphertext
            return download, ""
