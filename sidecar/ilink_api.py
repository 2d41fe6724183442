"""iLink bot API calls (Tencent/openclaw-weixin docs/protocol.md): HTTP JSON over `requests`.

One `IlinkApi` per base URL and token. Every call returns the response body as a dict or
raises: `IlinkUnavailable` for transport failures (connection, timeout, HTTP status, an answer
that is not a complete JSON object within the call's total deadline), `IlinkError` for a
non-zero `ret` or `errcode` in an HTTP 200 (never a silent success), `SessionExpired` for
errcode -14. Credentials never appear in an exception or a log line. Media: AES-128-ECB with
PKCS#7 (`cryptography`), uploaded by POST to the CDN. What the answers say is read by
ilink_messages.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sidecar.ilink_messages import json_kind

DEFAULT_BASE_URL = "https://ilinkai.weixin.qq.com"
DEFAULT_CDN_URL = "https://novac2c.cdn.weixin.qq.com/c2c"
APP_ID = "bot"
CHANNEL_VERSION = "0.1.0"  # chattrain's version
CLIENT_VERSION = str(0x00000100)  # 0x00MMNNPP of CHANNEL_VERSION
BOT_AGENT = "chattrain"
REQUEST_TIMEOUT_S = 15.0
READ_CHUNK_BYTES = 65536
SESSION_EXPIRED = -14
OUT_OF_WINDOW = -2  # sendmessage outside the reply window or over the per-inbound limit
ITEM_TEXT, ITEM_IMAGE = 1, 2
MEDIA_IMAGE = 1
MESSAGE_TYPE_BOT, MESSAGE_STATE_FINISH = 2, 2


class IlinkUnavailable(ConnectionError):
    """The iLink server could not be reached or answered with an HTTP error."""


class IlinkError(RuntimeError):
    """iLink answered HTTP 200 with a non-zero `ret` / `errcode`."""

    def __init__(self, what: str, ret: int, errcode: int, errmsg: str) -> None:
        super().__init__(f"{what}: ret {ret}, errcode {errcode}: {errmsg or 'no message'}")
        self.ret, self.errcode, self.errmsg = ret, errcode, errmsg


class SessionExpired(IlinkError):
    """errcode -14: the bot token no longer works; log in again."""


def aes_ecb_encrypt(data: bytes, key: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def padded_size(size: int) -> int:
    return (size // 16 + 1) * 16


@dataclass(frozen=True)
class Uploaded:
    """An image on the CDN, as sendmessage's image_item refers to it."""

    download_param: str
    aes_key_hex: str
    ciphertext_size: int

    def item(self) -> dict[str, Any]:
        media = {
            "encrypt_query_param": self.download_param,
            "aes_key": base64.b64encode(self.aes_key_hex.encode()).decode(),
            "encrypt_type": 1,
        }
        return {"type": ITEM_IMAGE, "image_item": {"media": media, "mid_size": self.ciphertext_size}}


class IlinkApi:
    """The bot API at `base_url`, authenticated with `token` (None: login calls only)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        cdn_url: str = DEFAULT_CDN_URL,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cdn_url = cdn_url.rstrip("/")
        self.token = token
        self.request_timeout_s = request_timeout_s  # each call's total, getupdates' own aside
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    def headers(self) -> dict[str, str]:
        uin = base64.b64encode(str(secrets.randbits(32)).encode()).decode()
        headers = {
            "Content-Type": "application/json",
            "AuthorizationType": "ilink_bot_token",
            "X-WECHAT-UIN": uin,
            "iLink-App-Id": APP_ID,
            "iLink-App-ClientVersion": CLIENT_VERSION,
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    # -- login ----------------------------------------------------------------------------
    def get_qrcode(self, local_tokens: list[str]) -> dict[str, Any]:
        body = {"local_token_list": local_tokens[-10:]}
        return self._request("POST", "ilink/bot/get_bot_qrcode?bot_type=3", "get a QR code", body)

    def qrcode_status(self, qrcode: str, verify_code: str = "", host: str | None = None) -> dict[str, Any]:
        query = f"qrcode={quote(qrcode, safe='')}"
        if verify_code:
            query += f"&verify_code={quote(verify_code, safe='')}"
        base = _host_url(host) if host else self.base_url
        return self._request("GET", f"ilink/bot/get_qrcode_status?{query}", "poll the QR code", base=base)

    # -- bot calls ------------------------------------------------------------------------
    def get_updates(self, cursor: str, timeout_s: float) -> dict[str, Any]:
        """One long poll; a client-side timeout is normal and returns no messages. Its `msgs` is a
        list (or absent); anything else is an answer that cannot be read (IlinkUnavailable)."""
        body = {"get_updates_buf": cursor, "base_info": _base_info()}
        try:
            answer = self._request("POST", "ilink/bot/getupdates", "get updates", body, timeout_s=timeout_s)
        except IlinkUnavailable as error:
            if isinstance(error.__cause__, requests.Timeout):
                return {"ret": 0, "msgs": [], "get_updates_buf": cursor}
            raise
        msgs = answer.get("msgs")
        if msgs is not None and not isinstance(msgs, list):
            raise IlinkUnavailable(f"get updates: msgs is {json_kind(msgs)}, not a list")
        return answer

    def notify(self, started: bool) -> None:
        """msg/notifystart when the client starts receiving, msg/notifystop when it stops."""
        path = "ilink/bot/msg/notifystart" if started else "ilink/bot/msg/notifystop"
        self._request("POST", path, "notify start" if started else "notify stop", {"base_info": _base_info()})

    def send_message(self, to: str, context_token: str, item: dict[str, Any]) -> None:
        msg = {
            "from_user_id": "",
            "to_user_id": to,
            "client_id": f"chattrain-{uuid.uuid4().hex}",
            "message_type": MESSAGE_TYPE_BOT,
            "message_state": MESSAGE_STATE_FINISH,
            "item_list": [item],
            "context_token": context_token,
        }
        body = {"msg": msg, "base_info": _base_info()}
        self._request("POST", "ilink/bot/sendmessage", "send a message", body)

    def upload_image(self, data: bytes, to: str) -> Uploaded:
        """getuploadurl, encrypt, POST to the CDN; the reference sendmessage needs."""
        key = secrets.token_bytes(16)
        filekey = secrets.token_hex(16)
        body = {
            "filekey": filekey,
            "media_type": MEDIA_IMAGE,
            "to_user_id": to,
            "rawsize": len(data),
            "rawfilemd5": hashlib.md5(data).hexdigest(),
            "filesize": padded_size(len(data)),
            "no_need_thumb": True,
            "aeskey": key.hex(),
            "base_info": _base_info(),
        }
        answer = self._request("POST", "ilink/bot/getuploadurl", "get an upload URL", body)
        url = str(answer.get("upload_full_url") or "").strip()
        if not url and answer.get("upload_param"):
            param = quote(str(answer["upload_param"]), safe="")
            url = f"{self.cdn_url}/upload?encrypted_query_param={param}&filekey={filekey}"
        if not url:
            raise IlinkError("get an upload URL", 0, 0, "neither upload_full_url nor upload_param")
        ciphertext = aes_ecb_encrypt(data, key)
        return Uploaded(self._cdn_post(url, ciphertext), key.hex(), len(ciphertext))

    def _cdn_post(self, url: str, ciphertext: bytes) -> str:
        try:
            response = self._http.post(
                url,
                data=ciphertext,
                headers={"Content-Type": "application/octet-stream"},
                timeout=self.request_timeout_s,
            )
        except requests.RequestException as error:
            raise IlinkUnavailable(f"CDN upload: {type(error).__name__}") from error
        param = response.headers.get("x-encrypted-param")
        if response.status_code != 200 or not param:
            message = response.headers.get("x-error-message") or "no x-encrypted-param"
            raise IlinkUnavailable(f"CDN upload: HTTP {response.status_code}: {message}")
        return param

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        body: dict[str, Any] | None = None,
        *,
        base: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        url = f"{base or self.base_url}/{path}"
        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            response = self._http.request(
                method, url, json=body, headers=self.headers(), timeout=timeout_s, stream=True
            )
        except requests.RequestException as error:
            raise IlinkUnavailable(f"{what}: {type(error).__name__}") from error
        with response:  # closed, whatever happens: a call given up must not leave its socket open
            if response.status_code != 200:
                raise IlinkUnavailable(f"{what}: HTTP {response.status_code}")
            content = _read_body(response, what, deadline, timeout_s)
        try:
            answer = json.loads(content)
        except (ValueError, RecursionError) as error:  # RecursionError: nested deeper than the parser goes
            raise IlinkUnavailable(f"{what}: the answer is not JSON") from error
        if not isinstance(answer, dict):
            raise IlinkUnavailable(f"{what}: the answer is not a JSON object")
        _check(what, answer)
        return answer


def _read_body(response: requests.Response, what: str, deadline: float, timeout_s: float) -> bytes:
    """The whole body, or IlinkUnavailable once `deadline` (time.monotonic()) has passed.

    requests' `timeout` bounds each socket read, not the call: a server or proxy trickling a
    byte now and then would hold it open for ever. `read1` returns what one read brings, so the
    deadline is looked at between reads (a call ends at most one read timeout after it).
    """
    chunks: list[bytes] = []
    while True:
        try:
            chunk = response.raw.read1(READ_CHUNK_BYTES, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as error:  # silent for a read: as requests' timeout
            raise IlinkUnavailable(f"{what}: timed out reading the answer") from requests.ReadTimeout(error)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise IlinkUnavailable(f"{what}: {type(error).__name__} reading the answer") from error
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise IlinkUnavailable(f"{what}: no complete answer within {timeout_s:.1f} s")


def _check(what: str, answer: dict[str, Any]) -> None:
    ret, errcode = _int(answer.get("ret")), _int(answer.get("errcode"))
    if ret == 0 and errcode == 0:
        return
    kind = SessionExpired if SESSION_EXPIRED in (ret, errcode) else IlinkError
    raise kind(what, ret, errcode, str(answer.get("errmsg") or ""))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return -1


def _host_url(host: str) -> str:
    return host.rstrip("/") if "://" in host else f"https://{host}"


def _base_info() -> dict[str, str]:
    return {"channel_version": CHANNEL_VERSION, "bot_agent": BOT_AGENT}
