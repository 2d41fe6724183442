"""iLink QR login and the credentials it yields, kept in the state dir (mode 0600).

`QrLogin.run()` shows a QR code in the terminal (also saved as `<state_dir>/qr.png`) and
polls its status until the owner confirms on the phone: `expired` and `verify_code_blocked`
get a new QR code, `need_verifycode` asks on the terminal for the code the phone shows,
`scaned_but_redirect` keeps polling at `redirect_host`. `CredentialStore` keeps the bot
token, base URL, bot id and the scanning user's id so a restart needs no new scan.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import pyqrcode

from sidecar.ilink_api import IlinkApi
from sidecar.ilink_store import read_json, write_private_json
from sidecar.wechat_util import qr_text

logger = logging.getLogger(__name__)

CREDENTIALS_FILE = "ilink.json"
QR_FILE = "qr.png"
QR_POLL_INTERVAL_S = 1.0
KEPT_TOKENS = 10  # get_bot_qrcode takes the most recent ten tokens issued to this client
NEW_QR_STATUSES = {
    "expired": "QR code expired: scan the new one",
    "verify_code_blocked": "too many wrong verification codes: scan the new QR code",
    "binded_redirect": "this bot is bound to another client: scan the new QR code to move it here",
}


@dataclass(frozen=True)
class Credentials:
    bot_token: str
    baseurl: str
    ilink_bot_id: str
    ilink_user_id: str  # the account that scanned the QR code: the owner


class CredentialStore:
    """`<state_dir>/ilink.json`, written atomically with mode 0600."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CREDENTIALS_FILE

    def _read(self) -> dict[str, Any]:
        return read_json(self.path)

    def load(self) -> Credentials | None:
        saved = self._read().get("credentials")
        try:
            return Credentials(**saved) if isinstance(saved, dict) and saved.get("bot_token") else None
        except TypeError:
            return None

    def previous_tokens(self) -> list[str]:
        return [str(t) for t in self._read().get("tokens", [])][-KEPT_TOKENS:]

    def save(self, credentials: Credentials) -> None:
        tokens = [t for t in self.previous_tokens() if t != credentials.bot_token] + [credentials.bot_token]
        self._write({"credentials": asdict(credentials), "tokens": tokens[-KEPT_TOKENS:]})

    def forget(self) -> None:
        """Drop the current session (kept tokens stay, for the next QR request)."""
        self._write({"tokens": self.previous_tokens()})

    def _write(self, data: dict[str, Any]) -> None:
        write_private_json(self.path, data)


def terminal_prompt(question: str) -> str:
    """Ask on the terminal; '' when there is none (e.g. under honcho)."""
    try:
        return input(question).strip()
    except EOFError:
        logger.error("no terminal to read the verification code from: run the sidecar in a terminal")
        return ""


class QrLogin:
    """One login: QR codes until the owner confirms, or None once `stop` is set."""

    def __init__(
        self,
        api: IlinkApi,
        store: CredentialStore,
        stop: threading.Event,
        *,
        qr_stream: TextIO | None = None,
        prompt: Callable[[str], str] = terminal_prompt,
        poll_interval_s: float = QR_POLL_INTERVAL_S,
    ) -> None:
        self._api = api
        self._store = store
        self._stop = stop
        self._qr_stream = qr_stream
        self._prompt = prompt
        self._poll_interval_s = poll_interval_s
        self.qr_path = store.path.with_name(QR_FILE)

    def run(self) -> Credentials | None:
        qrcode = self._new_qr()
        host: str | None = None
        verify_code, announced = "", ""
        while not self._stop.is_set():
            answer = self._api.qrcode_status(qrcode, verify_code, host)
            status = str(answer.get("status") or "wait")
            verify_code = ""
            if status != announced:
                logger.info("QR login: %s", status)
                announced = status
            if status == "confirmed":
                return self._confirmed(answer)
            if status in NEW_QR_STATUSES:
                logger.warning("%s", NEW_QR_STATUSES[status])
                qrcode, host, announced = self._new_qr(), None, ""
            elif status == "need_verifycode":
                verify_code = self._prompt("Enter the verification code shown in WeChat: ")
                if verify_code:
                    continue  # no terminal ('' every time): poll at the usual pace, not in a loop
            elif status == "scaned_but_redirect" and answer.get("redirect_host"):
                host = str(answer["redirect_host"])
                continue
            self._stop.wait(self._poll_interval_s)
        return None

    def _confirmed(self, answer: dict[str, Any]) -> Credentials:
        credentials = Credentials(
            bot_token=str(answer.get("bot_token") or ""),
            baseurl=str(answer.get("baseurl") or self._api.base_url),
            ilink_bot_id=str(answer.get("ilink_bot_id") or ""),
            ilink_user_id=str(answer.get("ilink_user_id") or ""),
        )
        if not credentials.bot_token or not credentials.ilink_user_id:
            raise ValueError("QR login confirmed without bot_token or ilink_user_id")
        self._store.save(credentials)
        logger.info("iLink login confirmed (bot %s), kept in %s", credentials.ilink_bot_id, self._store.path)
        return credentials

    def _new_qr(self) -> str:
        answer = self._api.get_qrcode(self._store.previous_tokens())
        qrcode, content = str(answer.get("qrcode") or ""), str(answer.get("qrcode_img_content") or "")
        if not qrcode or not content:
            raise ValueError("get_bot_qrcode answered without qrcode / qrcode_img_content")
        self.qr_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self.qr_path.with_suffix(".tmp")
        pyqrcode.create(content).png(str(partial), scale=6)
        partial.replace(self.qr_path)
        stream = self._qr_stream or sys.stdout
        stream.write(qr_text(content))
        stream.flush()
        logger.warning("Scan the QR code above with WeChat to log in the bot (also in %s)", self.qr_path)
        return qrcode
