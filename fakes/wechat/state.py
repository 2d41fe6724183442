"""What the fake web-WeChat server knows: contacts, sessions, queued and recorded messages.

Pure Python with one `threading.Condition`: every change notifies it, so tests and the
long-polling `synccheck` wait on events, never on sleeps. The HTTP layer
(`server.py`) only parses requests and calls these methods.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .wire import contact_entry, text_message

OWNER_KEY = "owner"
FILEHELPER = "filehelper"
SESSION_ENDED_RETCODE = "1101"


@dataclass(frozen=True)
class Contact:
    """A WeChat account the fake server knows; `key` is how tests name it."""

    key: str
    nick_name: str
    remark_name: str = ""


DEFAULT_CONTACTS = (
    Contact(OWNER_KEY, "Owner"),
    Contact("alice", "Alice", "Ally"),
    Contact("bob", "Bob"),
)


@dataclass(frozen=True)
class SentText:
    """A text the client sent (webwxsendmsg), UserNames as the client gave them."""

    from_user: str
    to_user: str
    text: str
    msg_id: str
    session: int


@dataclass(frozen=True)
class SentImage:
    """An image the client uploaded and sent (webwxsendmsgimg)."""

    from_user: str
    to_user: str
    data: bytes
    file_name: str
    media_id: str
    session: int


@dataclass
class Session:
    """One web login: its credentials, UserNames and sync counter."""

    number: int
    sid: str
    skey: str
    uin: int
    pass_ticket: str
    user_names: dict[str, str]  # contact key -> UserName, new for every login
    sync_step: int = 1
    ended: bool = False
    queue: list[dict[str, Any]] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)  # contact keys for the next ModContactList

    def sync_key(self) -> dict[str, Any]:
        return {"Count": 1, "List": [{"Key": 1, "Val": self.sync_step}]}


class FakeWeChatState:
    """Thread-safe state of the fake server. All waits are on `self.changed`."""

    def __init__(self, contacts: tuple[Contact, ...], *, auto_scan: bool, echo_sent: bool) -> None:
        self.contacts = {c.key: c for c in contacts}
        if OWNER_KEY not in self.contacts:
            raise ValueError(f"contacts must include one with key {OWNER_KEY!r}: {contacts!r}")
        self.auto_scan = auto_scan
        self.echo_sent = echo_sent
        self.changed = threading.Condition()
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None
        self.qr_count = 0  # /jslogin answers: each is a new QR code to scan
        self.login_count = 0  # completed QR logins (redirect page served)
        self.logout_count = 0
        self.sent_texts: list[SentText] = []
        self.sent_images: list[SentImage] = []
        self.requests: list[str] = []  # paths in arrival order
        self.closed = False
        self.stalled: set[str] = set()  # paths answered only after release() (a hung server)
        self.failing: set[str] = set()  # paths answered 500 until recover() (an outage)
        self.failures = 0  # requests answered 500 so far
        self.answers: dict[str, list[Any]] = {}  # path -> JSON answers to give next (answer_next)
        self._scanned: dict[str, int] = {}  # QR uuid -> login-check answers so far
        self._scan_requested = False
        self._waiting: list[dict[str, Any]] = []  # pushed while nobody was logged in
        self._uploads: dict[str, bytearray] = {}  # ClientMediaId -> chunks so far
        self._media: dict[str, tuple[bytes, str]] = {}  # MediaId -> (data, file name)
        self._ids = itertools.count(1)

    # -- test API -------------------------------------------------------------------------------
    def push_text(self, from_user: str, to_user: str, text: str, **fields: Any) -> None:
        """Queue a text for the next webwxsync: users by contact key or UserName. ``fields``
        replace those of its AddMsgList entry (a malformed message: ``Content=None``)."""
        with self.changed:
            self._pending().append({"from": from_user, "to": to_user, "text": text, "fields": fields})
            self.changed.notify_all()

    def answer_next(self, path: str, body: Any) -> None:
        """The next request to `path` (e.g. '/webwxsendmsg') gets `body` as its JSON answer."""
        with self.changed:
            self.answers.setdefault(path, []).append(body)

    def take_answer(self, path: str) -> tuple[bool, Any]:
        """(True, the body) queued for `path` by `answer_next`, or (False, None)."""
        with self.changed:
            queued = self.answers.get(path)
            return (True, queued.pop(0)) if queued else (False, None)

    def rename(self, key: str, nick_name: str) -> None:
        """Contact `key` changes his own profile's NickName (the remark, the owner's, stays);
        the next webwxsync reports it in ModContactList, as web WeChat does."""
        with self.changed:
            self.contacts[key] = dataclasses.replace(self.contacts[key], nick_name=nick_name)
            if self.current is not None and not self.current.ended:
                self.current.modified.append(key)
            self.changed.notify_all()

    def end_session(self) -> None:
        """WeChat ends the current session: synccheck answers retcode 1101 from now on."""
        with self.changed:
            if self.current is not None:
                self._end(self.current)
            self.changed.notify_all()

    def scan(self) -> None:
        """The owner scans the current QR code (only needed with auto_scan=False)."""
        with self.changed:
            self._scan_requested = True
            self.changed.notify_all()

    def stall(self, path: str) -> None:
        """Requests to `path` (e.g. '/webwxsendmsg') hang until `release()` or close."""
        with self.changed:
            self.stalled.add(path)

    def release(self) -> None:
        with self.changed:
            self.stalled.clear()
            self.changed.notify_all()

    def fail(self, path: str) -> None:
        """Requests to `path` (e.g. '/synccheck') get HTTP 500 until `recover()`."""
        with self.changed:
            self.failing.add(path)

    def should_fail(self, path: str) -> bool:
        """Whether to answer this request 500 (counted, so tests can wait for failures)."""
        with self.changed:
            if path not in self.failing:
                return False
            self.failures += 1
            self.changed.notify_all()
            return True

    def recover(self) -> None:
        with self.changed:
            self.failing.clear()

    def wait_if_stalled(self, path: str) -> None:
        with self.changed:
            self.changed.wait_for(lambda: path not in self.stalled or self.closed)

    def user_name(self, key: str) -> str:
        """The UserName contact `key` has in the current session."""
        with self.changed:
            if key == FILEHELPER:
                return FILEHELPER
            if self.current is None:
                raise LookupError("no session yet: nobody has logged in")
            return self.current.user_names[key]

    def wait_until(self, predicate: Callable[[FakeWeChatState], bool], timeout_s: float) -> None:
        """Block until `predicate(state)` holds; AssertionError after `timeout_s`."""
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout_s):
                raise AssertionError(f"fake WeChat: condition not met within {timeout_s} s")

    def snapshot(self) -> dict[str, Any]:
        """Counters and everything sent, as JSON-able data (the standalone server's /_test/state)."""
        with self.changed:
            return {
                "qr_count": self.qr_count,
                "login_count": self.login_count,
                "logout_count": self.logout_count,
                "user_names": dict(self.current.user_names) if self.current else {},
                "sent_texts": [vars(t) for t in self.sent_texts],
                "sent_images": [
                    {
                        "to_user": i.to_user,
                        "file_name": i.file_name,
                        "size": len(i.data),
                        "session": i.session,
                    }
                    for i in self.sent_images
                ],
            }

    def wait_for_sent(self, predicate: Callable[[SentText], bool], timeout_s: float) -> SentText:
        """The first sent text matching `predicate`, waiting up to `timeout_s` for it."""
        found: list[SentText] = []

        def match(_: FakeWeChatState) -> bool:
            found[:] = [t for t in self.sent_texts if predicate(t)][:1]
            return bool(found)

        self.wait_until(match, timeout_s)
        return found[0]

    # -- login ---------------------------------------------------------------------------------
    def new_qr(self) -> str:
        with self.changed:
            self.qr_count += 1
            self._scan_requested = False
            uuid = f"qr{self.qr_count}-{_token(str(time.time()), 8)}"
            self._scanned[uuid] = 0
            self.changed.notify_all()
            return uuid

    def check_login(self, uuid: str, long_poll_s: float) -> str:
        """The login-check code for `uuid`: '201' (scanned), then '200'; '408' while waiting."""
        with self.changed:
            if uuid not in self._scanned:
                return "400"
            if not self.auto_scan and not self.changed.wait_for(
                lambda: self._scan_requested or self.closed, long_poll_s
            ):
                return "408"
            self._scanned[uuid] += 1
            return "201" if self._scanned[uuid] == 1 else "200"

    def open_session(self) -> Session:
        with self.changed:
            self.login_count += 1
            number = self.login_count
            names = {key: "@" + _token(f"{key}/{number}", 32) for key in self.contacts}
            session = Session(
                number=number,
                sid=_token(f"sid{number}", 16),
                skey="@crypt_" + _token(f"skey{number}", 16),
                uin=1000 + number,
                pass_ticket=_token(f"ticket{number}", 24),
                user_names=names,
            )
            if self.current is not None and not self.current.ended:
                self._waiting.extend(self.current.queue)
                self.current.queue = []
            session.queue, self._waiting = self._waiting, []
            self.sessions[session.sid] = session
            self.current = session
            self.changed.notify_all()
            return session

    def session(self, sid: str | None) -> Session | None:
        """The live session with this sid, or None (unknown or ended)."""
        with self.changed:
            found = self.sessions.get(sid or "")
            return found if found is not None and not found.ended else None

    def logout(self, skey: str) -> None:
        with self.changed:
            for found in self.sessions.values():
                if found.skey == skey and not found.ended:
                    self._end(found)
            self.logout_count += 1
            self.changed.notify_all()

    # -- sync ----------------------------------------------------------------------------------
    def sync_check(self, sid: str | None, long_poll_s: float) -> tuple[str, str]:
        """(retcode, selector): waits up to `long_poll_s` for a message or the session's end."""
        with self.changed:
            found = self.sessions.get(sid or "")
            if found is None:
                return SESSION_ENDED_RETCODE, "0"
            pending = lambda: found.queue or found.modified  # noqa: E731
            self.changed.wait_for(lambda: found.ended or pending() or self.closed, long_poll_s)
            if found.ended:
                return SESSION_ENDED_RETCODE, "0"
            return "0", ("2" if pending() else "0")

    def take_messages(self, session: Session) -> list[dict[str, Any]]:
        """The queued messages as AddMsgList entries; advances the session's SyncKey."""
        with self.changed:
            queued, session.queue = session.queue, []
            session.sync_step += 1
            return [self._add_msg(session, q) for q in queued]

    def take_modified(self, session: Session) -> list[dict[str, Any]]:
        """The contacts changed since the last webwxsync, as ModContactList entries."""
        with self.changed:
            keys, session.modified = list(dict.fromkeys(session.modified)), []
            return [self.contact_dict(session, key) for key in keys]

    def _add_msg(self, session: Session, queued: dict[str, Any]) -> dict[str, Any]:
        msg_id = queued.get("msg_id") or str(next(self._ids) + 10**17)
        sender, to = self._resolve(session, queued["from"]), self._resolve(session, queued["to"])
        return {**text_message(msg_id, sender, to, queued["text"]), **queued.get("fields", {})}

    def _pending(self) -> list[dict[str, Any]]:
        if self.current is None or self.current.ended:
            return self._waiting  # nobody logged in: kept for whoever logs in next
        return self.current.queue

    def _end(self, session: Session) -> None:
        session.ended = True
        # What it never fetched goes to the next login, as the phone would still show it.
        self._waiting.extend(q for q in session.queue if "msg_id" not in q)
        session.queue = []

    @staticmethod
    def _resolve(session: Session, who: str) -> str:
        return session.user_names.get(who, who)

    # -- sending -------------------------------------------------------------------------------
    def record_text(self, session: Session, from_user: str, to_user: str, text: str) -> str:
        with self.changed:
            msg_id = str(next(self._ids) + 10**17)
            self.sent_texts.append(SentText(from_user, to_user, text, msg_id, session.number))
            if self.echo_sent:
                # Web WeChat reports what this client sent back through sync, same MsgId.
                session.queue.append({"from": from_user, "to": to_user, "text": text, "msg_id": msg_id})
            self.changed.notify_all()
            return msg_id

    def add_chunk(self, client_media_id: str, data: bytes) -> None:
        with self.changed:
            self._uploads.setdefault(client_media_id, bytearray()).extend(data)

    def finish_upload(self, client_media_id: str, file_name: str) -> str:
        with self.changed:
            media_id = "@media_" + client_media_id
            self._media[media_id] = (bytes(self._uploads.pop(client_media_id, b"")), file_name)
            return media_id

    def record_image(self, session: Session, from_user: str, to_user: str, media_id: str) -> None:
        with self.changed:
            data, name = self._media.get(media_id, (b"", ""))
            self.sent_images.append(SentImage(from_user, to_user, data, name, media_id, session.number))
            self.changed.notify_all()

    def contact_dict(self, session: Session, key: str) -> dict[str, Any]:
        """A contact as webwxinit / webwxgetcontact describe it."""
        contact = self.contacts[key]
        return contact_entry(session.user_names[key], contact.nick_name, contact.remark_name)


def _token(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]
